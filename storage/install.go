package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// keyInstall marks a snapshot install under way. It lives in the Raft
// namespace, which an install never replaces and a state stream never
// carries.
var keyInstall = []byte{PrefixRaft, 0, 'i', 'n', 's', 't'}

// installBatchBytes is the size at which an install commits a batch of
// records and starts the next, well under half the memtable, so batches stay
// ordinary memtable writes.
const installBatchBytes = 16 << 20

// installTestHooks let tests cut an install into small batches and stop at
// its crash points.
type installTestHooks struct {
	batchBytes int                // 0: installBatchBytes
	at         func(stage string) // "checked", "marked", "batch", "done"
}

func (h *installTestHooks) stage(s string) {
	if h.at != nil {
		h.at(s)
	}
}

// InstallSnapshot replaces the member's state with the state stream staged
// in the file at path (see OpenState), and makes the Raft log start at the
// snapshot described by meta, as Raft expects once it has accepted that
// snapshot: the whole log is dropped, the log begins after meta.Index, and
// the hard state's commit index is raised to it. The member identity is
// kept. The file is removed once the install is complete.
//
// It is crash-safe: a marker naming the file is synced before anything is
// replaced, the new state is written in unsynced batches, and the last,
// synced batch records the Raft side and removes the marker. Opening an
// engine whose marker is present redoes the install from the file (the
// install is idempotent), so the state is never seen half-replaced after a
// restart. The file must therefore stay where it is until InstallSnapshot
// returns.
//
// The state is checked to decode completely, to hold only state keys and to
// be applied at or past meta.Index before anything changes; an error then
// leaves the engine as it was. An error after that leaves the marker, and
// the next Open finishes the install.
//
// Concurrency: InstallSnapshot is a writer like Save and CreateSnapshot and
// must not run concurrently with them. Readers of the state (other than
// through the RaftLog) see it change underneath them while it runs and must
// arrange not to look (mvcc.Store.BeginRestore does).
func (l *RaftLog) InstallSnapshot(path string, meta *raftpb.SnapshotMetadata) error {
	e := l.e
	n, err := e.checkStateFile(path, meta.GetIndex())
	if err != nil {
		return err
	}
	e.test.stage("checked")
	b := e.db.NewBatch()
	defer b.Close()
	if err := b.Set(keyInstall, encodeInstallMarker(path, meta), nil); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("record the snapshot install: %w", err)
	}
	e.test.stage("marked")
	e.lg.Info("installing snapshot state", zap.String("path", path), zap.Uint64("snapshot-index", meta.GetIndex()),
		zap.Uint64("snapshot-term", meta.GetTerm()), zap.Uint64("records", n))
	if err := e.install(path, meta); err != nil {
		return err
	}
	return l.load()
}

// ApplySnapshot makes the Raft log start at the snapshot described by meta
// without touching the state: for a snapshot that Raft accepted although the
// state already is at or past its index (an earlier install brought state
// from further ahead than that install's snapshot). Like InstallSnapshot it
// drops the whole log and raises the commit index to meta.Index.
func (l *RaftLog) ApplySnapshot(meta *raftpb.SnapshotMetadata) error {
	b := l.db.NewBatch()
	defer b.Close()
	if err := raftSnapshotBatch(l.db, b, meta); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("persist raft snapshot: %w", err)
	}
	return l.load()
}

// checkStateFile decodes the state stream in path completely and checks it
// before an install starts, so that a bad file is refused while the state
// is still intact. It returns the number of records.
func (e *Engine) checkStateFile(path string, index uint64) (uint64, error) {
	f, err := e.fs.Open(path)
	if err != nil {
		return 0, fmt.Errorf("open snapshot state %s: %w", path, err)
	}
	defer f.Close()
	sr, err := NewStateReader(f)
	if err != nil {
		return 0, fmt.Errorf("snapshot state %s: %w", path, err)
	}
	var applied uint64
	haveApplied := false
	for {
		k, v, err := sr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("snapshot state %s: %w", path, err)
		}
		if !isStateKey(k) {
			return 0, fmt.Errorf("snapshot state %s: %w: record %d has key %x, which is not part of the state", path, ErrCorruptState, sr.Count(), k)
		}
		if bytes.Equal(k, keyApplied) {
			if len(v) != 8 {
				return 0, fmt.Errorf("snapshot state %s: %w: applied index of %d bytes", path, ErrCorruptState, len(v))
			}
			applied, haveApplied = binary.BigEndian.Uint64(v), true
		}
	}
	if !haveApplied {
		return 0, fmt.Errorf("snapshot state %s: %w: it has no applied index", path, ErrCorruptState)
	}
	if applied < index {
		return 0, fmt.Errorf("snapshot state %s is applied up to index %d, before the snapshot's index %d", path, applied, index)
	}
	return sr.Count(), nil
}

// install does the work of an install whose marker is recorded: replace the
// state with the file's, then, in the last synced batch, the Raft side and
// the marker's removal; then remove the file.
func (e *Engine) install(path string, meta *raftpb.SnapshotMetadata) error {
	f, err := e.fs.Open(path)
	if err != nil {
		return fmt.Errorf("open snapshot state %s: %w", path, err)
	}
	defer f.Close()
	sr, err := NewStateReader(f)
	if err != nil {
		return fmt.Errorf("snapshot state %s: %w", path, err)
	}
	end, err := e.stateEnd()
	if err != nil {
		return err
	}
	b := e.db.NewBatch()
	defer func() { b.Close() }()
	for _, sp := range stateSpans() {
		lo, hi := sp[0], sp[1]
		if lo == nil {
			lo = []byte{}
		}
		if hi == nil {
			hi = end
		}
		if err := b.DeleteRange(lo, hi, nil); err != nil {
			return err
		}
	}
	sawConf := false
	limit := installBatchBytes
	if e.test.batchBytes > 0 {
		limit = e.test.batchBytes
	}
	for {
		k, v, err := sr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("snapshot state %s: %w", path, err)
		}
		if !isStateKey(k) {
			return fmt.Errorf("snapshot state %s: %w: record %d has key %x, which is not part of the state", path, ErrCorruptState, sr.Count(), k)
		}
		sawConf = sawConf || bytes.Equal(k, keyConfState)
		if err := b.Set(k, v, nil); err != nil {
			return err
		}
		if b.Len() >= limit {
			// Unsynced: the marker makes a crash redo the install, and the
			// last batch's sync makes all of them durable.
			if err := b.Commit(pebble.NoSync); err != nil {
				return fmt.Errorf("write snapshot state: %w", err)
			}
			b.Close()
			b = e.db.NewBatch()
			e.test.stage("batch")
		}
	}
	if !sawConf {
		// A leader that never applied a conf change: the snapshot's own
		// conf state is the state's.
		if err := setProto(b, keyConfState, meta.GetConfState()); err != nil {
			return err
		}
	}
	if err := raftSnapshotBatch(e.db, b, meta); err != nil {
		return err
	}
	if err := b.Delete(keyInstall, nil); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("finish the snapshot install: %w", err)
	}
	e.test.stage("done")
	if err := e.fs.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		e.lg.Warn("failed to remove installed snapshot state", zap.String("path", path), zap.Error(err))
	}
	e.lg.Info("installed snapshot state", zap.String("path", path), zap.Uint64("snapshot-index", meta.GetIndex()),
		zap.Uint64("records", sr.Count()))
	return nil
}

// raftSnapshotBatch records in b what Raft expects to find once it has
// restored the snapshot meta: the snapshot metadata, no log entries (Raft
// discards the whole log), the log starting after meta.Index, and a hard
// state committed at least up to it.
func raftSnapshotBatch(db pebble.Reader, b *pebble.Batch, meta *raftpb.SnapshotMetadata) error {
	index, term := meta.GetIndex(), meta.GetTerm()
	m := proto.Clone(meta).(*raftpb.SnapshotMetadata)
	if m.ConfState == nil {
		m.ConfState = &raftpb.ConfState{}
	}
	if err := setProto(b, keySnapshot, m); err != nil {
		return err
	}
	if err := b.DeleteRange(logPrefix, []byte{PrefixRaft, logPrefix[1] + 1}, nil); err != nil {
		return err
	}
	v := binary.BigEndian.AppendUint64(nil, index)
	v = binary.BigEndian.AppendUint64(v, term)
	if err := b.Set(keyTruncated, v, nil); err != nil {
		return err
	}
	hs := &raftpb.HardState{}
	if err := getProto(db, keyHardState, hs); err != nil {
		return fmt.Errorf("load raft hard state: %w", err)
	}
	if hs.GetCommit() < index {
		hs.Commit = new(index)
	}
	if hs.GetTerm() < term {
		hs.Term, hs.Vote = new(term), new(uint64(0))
	}
	return setProto(b, keyHardState, hs)
}

// stateEnd returns a key above every key in the database, the end of the
// last state span.
func (e *Engine) stateEnd() ([]byte, error) {
	end := []byte{0xff}
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: end})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	if it.Last() {
		end = append(bytes.Clone(it.Key()), 0)
	}
	return end, it.Error()
}

// resumeInstall finishes an install that a crash interrupted, before the
// engine is used.
func (e *Engine) resumeInstall() error {
	v, ok, err := get(e.db, keyInstall)
	if err != nil || !ok {
		return err
	}
	path, meta, err := decodeInstallMarker(v)
	if err != nil {
		return err
	}
	if _, err := e.fs.Stat(path); err != nil {
		return fmt.Errorf("the data dir %s is damaged: installing the snapshot at index %d was interrupted and its state file %s cannot be read (%v); "+
			"remove the data dir, remove the member from the cluster and add it again", e.dir, meta.GetIndex(), path, err)
	}
	e.lg.Warn("resuming an interrupted snapshot install", zap.String("path", path),
		zap.Uint64("snapshot-index", meta.GetIndex()), zap.Uint64("snapshot-term", meta.GetTerm()))
	if err := e.install(path, meta); err != nil {
		return fmt.Errorf("resume the interrupted snapshot install from %s: %w", path, err)
	}
	return nil
}

// The marker's value is uvarint len(path) | path | SnapshotMetadata.
func encodeInstallMarker(path string, meta *raftpb.SnapshotMetadata) []byte {
	v := binary.AppendUvarint(nil, uint64(len(path)))
	v = append(v, path...)
	m, _ := proto.Marshal(meta) // cannot fail for a valid message
	return append(v, m...)
}

func decodeInstallMarker(v []byte) (string, *raftpb.SnapshotMetadata, error) {
	n, k := binary.Uvarint(v)
	if k <= 0 || uint64(len(v)-k) < n {
		return "", nil, fmt.Errorf("snapshot install marker is corrupt")
	}
	path := string(v[k : k+int(n)])
	meta := &raftpb.SnapshotMetadata{}
	if err := proto.Unmarshal(v[k+int(n):], meta); err != nil {
		return "", nil, fmt.Errorf("snapshot install marker is corrupt: %w", err)
	}
	return path, meta, nil
}

// InstallPending reports whether an install is recorded as under way (only
// between InstallSnapshot's first and last batch, or after a crash there
// until the next Open).
func (e *Engine) InstallPending() (bool, error) {
	_, ok, err := get(e.db, keyInstall)
	return ok, err
}
