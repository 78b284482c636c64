package transport

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Received snapshots are written to "<term>-<index>-<random>.partial" in
// SnapshotDir and renamed to ".snap" once complete, synced and verified.
const (
	partialSuffix  = ".partial"
	completeSuffix = ".snap"
)

// snapWriteTimeout bounds writing one snapshot chunk.
const snapWriteTimeout = 30 * time.Second

// sendSnapshot starts sending MsgSnap m and its state to the peer on a
// connection of its own, unless a snapshot is already in flight to it (Raft
// sends no other until that one is reported). The outcome is reported with
// Handler.ReportSnapshot, unless the peer was closed meanwhile.
func (p *peer) sendSnapshot(m *raftpb.Message) {
	p.mu.Lock()
	if p.snapping {
		p.mu.Unlock()
		p.t.lg.Warn("dropped snapshot message: a snapshot is already being sent to the peer",
			p.t.localField(), idField("remote-peer-id", p.id))
		return
	}
	p.snapping = true
	p.mu.Unlock()
	p.t.wg.Add(1) // Send holds t.mu, so Stop has not begun waiting
	go func() {
		defer p.t.wg.Done()
		lg := p.t.lg.With(p.t.localField(), idField("remote-peer-id", p.id),
			zap.Uint64("snapshot-index", m.GetSnapshot().GetMetadata().GetIndex()))
		lg.Info("sending database snapshot")
		start := time.Now()
		size, err := p.writeSnapshot(m)
		p.mu.Lock()
		p.snapping = false
		p.mu.Unlock()
		if p.ctx.Err() != nil {
			return
		}
		if err != nil {
			p.t.refusal(p.id, err)
			lg.Warn("failed to send database snapshot", zap.Int64("bytes-sent", size), zap.Error(err))
			if h := p.t.h(); h != nil {
				h.ReportSnapshot(p.id, raft.SnapshotFailure)
			}
			return
		}
		lg.Info("sent database snapshot", zap.Int64("snapshot-size", size), zap.Duration("took", time.Since(start)))
		p.t.h().ReportSnapshot(p.id, raft.SnapshotFinish)
	}()
}

// writeSnapshot streams m and its state and waits for the receiver's
// answer. It returns the size of the state sent.
func (p *peer) writeSnapshot(m *raftpb.Message) (int64, error) {
	handler := p.t.h()
	if handler == nil {
		return 0, errors.New("no member to read the snapshot from yet")
	}
	rc, err := handler.OpenSnapshot(m)
	if err != nil {
		return 0, fmt.Errorf("open snapshot: %w", err)
	}
	defer rc.Close()
	_, u, err := p.conn()
	if err != nil {
		return 0, err
	}
	cc, err := dial(u, p.t.cfg.ClientTLS, p.t.cfg.DialTimeout, &p.handshake)
	if err != nil {
		return 0, err
	}
	defer cc.Close()
	ctx, cancel := context.WithCancel(p.ctx)
	defer cancel()
	cs, err := cc.NewStream(p.t.outgoing(ctx, p.id), &snapshotDesc, methodSnapshot)
	if err != nil {
		return 0, err
	}
	writeTimer := time.AfterFunc(time.Hour, cancel)
	writeTimer.Stop()
	send := func(frame []byte) error {
		writeTimer.Reset(snapWriteTimeout)
		err := cs.SendMsg(frame)
		if !writeTimer.Stop() {
			return fmt.Errorf("peer took no snapshot chunk for %v", snapWriteTimeout)
		}
		if errors.Is(err, io.EOF) { // the receiver ended the stream
			var b []byte
			if err = cs.RecvMsg(&b); err == nil {
				err = errors.New("the receiver ended the snapshot stream early")
			}
		}
		return err
	}

	hdr, err := proto.Marshal(m)
	if err != nil {
		return 0, err
	}
	if err := send(append([]byte{snapHeader}, hdr...)); err != nil {
		return 0, err
	}
	h := sha256.New()
	var size int64
	for {
		// A new buffer for each chunk: gRPC may hold a sent frame for a while.
		buf := make([]byte, 1+maxFrameBytes)
		buf[0] = snapChunk
		n, rerr := io.ReadFull(rc, buf[1:])
		if n > 0 {
			h.Write(buf[1 : 1+n])
			size += int64(n)
			if err := send(buf[:1+n]); err != nil {
				return size, err
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			// Abort the stream so that the receiver discards what it has.
			cancel()
			return size, fmt.Errorf("read snapshot: %w", rerr)
		}
	}
	if err := send(trailerFrame(h.Sum(nil), size)); err != nil {
		return size, err
	}
	if err := cs.CloseSend(); err != nil {
		return size, err
	}
	var b []byte
	return size, cs.RecvMsg(&b)
}

// serveSnapshot receives a snapshot: it writes the state into a partial file,
// syncs it, checks its size and checksum, renames it and hands it to the
// handler with the MsgSnap. A stream that breaks or does not verify never
// reaches the handler, and its file is removed.
func (t *Transport) serveSnapshot(ss grpc.ServerStream) (err error) {
	_, lg, err := t.accept(ss)
	if err != nil {
		return err
	}
	ctx := ss.Context()
	var frame []byte
	if err := ss.RecvMsg(&frame); err != nil {
		return err
	}
	m := &raftpb.Message{}
	if len(frame) == 0 || frame[0] != snapHeader {
		return status.Error(codes.InvalidArgument, "transport: snapshot stream does not start with its message")
	}
	if err := proto.Unmarshal(frame[1:], m); err != nil || m.GetType() != raftpb.MessageType_MsgSnap {
		return status.Error(codes.InvalidArgument, "transport: snapshot stream does not start with a MsgSnap")
	}
	index := m.GetSnapshot().GetMetadata().GetIndex()
	lg = lg.With(zap.Uint64("snapshot-index", index))
	lg.Info("receiving database snapshot")
	start := time.Now()
	if t.cfg.SnapshotDir == "" {
		return status.Error(codes.Unavailable, "transport: this member has no snapshot directory")
	}
	if err := os.MkdirAll(t.cfg.SnapshotDir, 0o700); err != nil {
		return status.Errorf(codes.Internal, "transport: create snapshot directory: %v", err)
	}
	f, err := os.CreateTemp(t.cfg.SnapshotDir, fmt.Sprintf("%016x-%016x-*%s", m.GetSnapshot().GetMetadata().GetTerm(), index, partialSuffix))
	if err != nil {
		return status.Errorf(codes.Internal, "transport: create snapshot file: %v", err)
	}
	path := f.Name()
	handedOver := false // the handler owns the file
	defer func() {
		if f != nil {
			f.Close()
		}
		if err != nil && !handedOver {
			os.Remove(path)
			lg.Warn("database snapshot from remote peer not installed", zap.Error(err))
		}
	}()

	h := sha256.New()
	var size int64
	var sum []byte
	var want int64
	for sum == nil {
		frame = nil
		if err := ss.RecvMsg(&frame); err != nil {
			if errors.Is(err, io.EOF) {
				return status.Error(codes.DataLoss, "transport: snapshot stream ended before its trailer")
			}
			return err
		}
		switch {
		case len(frame) > 0 && frame[0] == snapChunk:
			if _, err := f.Write(frame[1:]); err != nil {
				return status.Errorf(codes.Internal, "transport: write snapshot file: %v", err)
			}
			h.Write(frame[1:])
			size += int64(len(frame) - 1)
		case len(frame) > 0 && frame[0] == snapTrailer:
			if sum, want, err = parseTrailer(frame); err != nil {
				return status.Error(codes.InvalidArgument, "transport: corrupt snapshot trailer")
			}
		default:
			return status.Error(codes.InvalidArgument, "transport: unexpected frame in snapshot stream")
		}
	}
	if size != want || !bytes.Equal(sum, h.Sum(nil)) {
		return status.Errorf(codes.DataLoss, "transport: snapshot state does not verify (%d bytes received, %d sent, checksum match %t)",
			size, want, bytes.Equal(sum, h.Sum(nil)))
	}
	syncStart := time.Now()
	if err := f.Sync(); err != nil {
		return status.Errorf(codes.Internal, "transport: sync snapshot file: %v", err)
	}
	synced := time.Since(syncStart)
	cerr := f.Close()
	f = nil
	if cerr != nil {
		return status.Errorf(codes.Internal, "transport: close snapshot file: %v", cerr)
	}
	final := strings.TrimSuffix(path, partialSuffix) + completeSuffix
	if err := os.Rename(path, final); err != nil {
		return status.Errorf(codes.Internal, "transport: rename snapshot file: %v", err)
	}
	path = final
	if err := syncDir(t.cfg.SnapshotDir); err != nil {
		return status.Errorf(codes.Internal, "transport: sync snapshot directory: %v", err)
	}
	t.cfg.Metrics.SnapshotReceived(time.Since(start), synced)
	lg.Info("received and saved database snapshot", zap.Int64("snapshot-size", size), zap.String("path", path))
	if err := t.h().ProcessSnapshot(ctx, m, path); err != nil {
		return err
	}
	handedOver = true
	return ss.SendMsg([]byte{})
}

func syncDir(dir string) error {
	d, err := os.Open(filepath.Clean(dir))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
