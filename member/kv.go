package member

import (
	"bytes"
	"context"
	"math"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/keeldb/keel/apply"
	"github.com/keeldb/keel/auth"
	"github.com/keeldb/keel/membership"
	"github.com/keeldb/keel/metrics"
)

// ReadCheck decides whether the caller may make a read, as of the moment it
// is called. The member calls it once the read may be served (after the
// ReadIndex wait of a linearizable read, so that the check sees every auth
// change committed before the read, as in etcd), serves the read only if it
// returns no error, and calls after once the read is done, before answering:
// after refuses the answer (rpctypes.ErrGRPCAuthOldRevision) if an auth
// change was applied meanwhile, and its error replaces the read's.
type ReadCheck func() (after func() error, err error)

// Unchecked is the ReadCheck of reads no permission governs: the member's
// own, such as the health check's.
func Unchecked() (after func() error, err error) { return noAfter, nil }

func noAfter() error { return nil }

// serveRead runs check, then read, then check's after, whose error wins.
func serveRead(check ReadCheck, read func() error) error {
	after, err := check()
	if err != nil {
		return err
	}
	rerr := read()
	if err := after(); err != nil {
		return err
	}
	return rerr
}

// readNotify waits, unless serializable, until a local read is linearizable.
func (m *Member) readNotify(ctx context.Context, serializable bool) error {
	if serializable {
		return nil
	}
	return m.linearizableReadNotify(ctx)
}

// Range serves a range, checked by check (see ReadCheck); a linearizable one
// waits for a ReadIndex round first.
func (m *Member) Range(ctx context.Context, r *pb.RangeRequest, check ReadCheck) (_ *pb.RangeResponse, err error) {
	defer m.requestMetrics("Range", time.Now(), &err)
	if err := m.readNotify(ctx, r.Serializable); err != nil {
		return nil, err
	}
	var resp *pb.RangeResponse
	err = serveRead(check, func() (err error) {
		start := time.Now()
		resp, err = apply.Range(ctx, m.kv.Read(), r, true)
		m.cfg.Metrics.RangeRead(err == nil, time.Since(start))
		return err
	})
	if err != nil {
		return nil, err
	}
	m.cfg.Metrics.StoreOps(metrics.Ops{Ranges: 1})
	return resp, nil
}

// initialStreamChunk is the key count of a range stream's first chunk; the
// next chunks grow or shrink towards the size of a maximal request.
const initialStreamChunk = 10

// RangeStream serves a range in chunks, all read at the revision current
// when the stream starts, checked by check (see ReadCheck); a linearizable
// one waits for a ReadIndex round first. The last chunk carries the header,
// more and count. check's after runs once the last chunk is sent: chunks
// already sent stay sent, as in etcd, and its error only ends the stream.
func (m *Member) RangeStream(ctx context.Context, r *pb.RangeRequest, check ReadCheck, send func(*pb.RangeResponse) error) error {
	if err := m.readNotify(ctx, r.Serializable); err != nil {
		return err
	}
	return serveRead(check, func() error { return m.rangeStream(ctx, r, send) })
}

func (m *Member) rangeStream(ctx context.Context, r *pb.RangeRequest, send func(*pb.RangeResponse) error) error {
	r = proto.Clone(r).(*pb.RangeRequest)
	if r.CountOnly {
		resp, err := apply.Range(ctx, m.kv.Read(), r, false)
		if err != nil {
			return err
		}
		return send(&pb.RangeResponse{Header: &pb.ResponseHeader{Revision: resp.Header.Revision}, Count: resp.Count})
	}
	// As in etcd, only 0 means "no limit" here; a negative limit becomes the
	// first chunk's limit, which a range reads as unlimited, so everything
	// comes in one chunk.
	total := r.Limit
	if total == 0 {
		total = math.MaxInt64
	}
	r.Limit = min(int64(initialStreamChunk), total)
	var sent, headerRev int64
	for {
		resp, err := apply.Range(ctx, m.kv.Read(), r, false)
		if err != nil {
			return err
		}
		if headerRev == 0 {
			headerRev = resp.Header.Revision
			if r.Revision == 0 {
				r.Revision = headerRev
			}
		}
		sent += int64(len(resp.Kvs))
		out := &pb.RangeResponse{Kvs: resp.Kvs}
		done := !resp.More || sent == total
		var next []byte
		if resp.More {
			next = append(bytes.Clone(resp.Kvs[len(resp.Kvs)-1].Key), 0)
		}
		if done {
			out.Header = &pb.ResponseHeader{Revision: headerRev}
			out.More = resp.More
			out.Count = sent
			if resp.More {
				rest, err := apply.Range(ctx, m.kv.Read(), &pb.RangeRequest{Key: next, RangeEnd: r.RangeEnd, Revision: r.Revision, CountOnly: true}, false)
				if err != nil {
					return err
				}
				out.Count += rest.Count
			}
		}
		if err := send(out); err != nil {
			return err
		}
		if done {
			return nil
		}
		r.Key = next
		r.Limit = min(nextChunk(r.Limit, proto.Size(resp), int(m.cfg.MaxRequestBytes)), total-sent)
	}
}

// nextChunk doubles or halves the chunk's key count when the last chunk was
// far from the target size.
func nextChunk(limit int64, size, target int) int64 {
	switch {
	case size < target/2:
		limit *= 2
	case size > target*2:
		limit /= 2
	}
	return max(limit, 1)
}

// Put proposes a put on behalf of ai (nil: nobody) and returns its response
// once applied. Whether ai may make it is decided at apply.
func (m *Member) Put(ctx context.Context, ai *auth.AuthInfo, r *pb.PutRequest) (*pb.PutResponse, error) {
	resp, err := m.write(ctx, &pb.InternalRaftRequest{Header: requestHeaderOf(ai), Put: r})
	if err != nil {
		return nil, err
	}
	return resp.(*pb.PutResponse), nil
}

// DeleteRange proposes a delete on behalf of ai (nil: nobody) and returns
// its response once applied. Whether ai may make it is decided at apply.
func (m *Member) DeleteRange(ctx context.Context, ai *auth.AuthInfo, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	resp, err := m.write(ctx, &pb.InternalRaftRequest{Header: requestHeaderOf(ai), DeleteRange: r})
	if err != nil {
		return nil, err
	}
	return resp.(*pb.DeleteRangeResponse), nil
}

// ReadTxn serves a read-only txn (apply.IsTxnReadOnly) locally, checked by
// check (see ReadCheck), after a ReadIndex round unless every range is
// serializable.
func (m *Member) ReadTxn(ctx context.Context, r *pb.TxnRequest, check ReadCheck) (_ *pb.TxnResponse, err error) {
	defer m.requestMetrics("ReadonlyTxn", time.Now(), &err)
	if err := m.readNotify(ctx, apply.IsTxnSerializable(r)); err != nil {
		return nil, err
	}
	var resp *pb.TxnResponse
	err = serveRead(check, func() (err error) {
		resp, err = apply.ReadTxn(ctx, m.kv.Read(), r)
		return err
	})
	if err != nil {
		return nil, err
	}
	var ops metrics.Ops
	txnOps(&ops, r, resp)
	m.cfg.Metrics.StoreOps(ops)
	return resp, nil
}

// Txn proposes a txn on behalf of ai (nil: nobody) and returns its response
// once applied; whether ai may make it is decided at apply. A read-only txn
// is served without Raft by ReadTxn.
func (m *Member) Txn(ctx context.Context, ai *auth.AuthInfo, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	resp, err := m.write(ctx, &pb.InternalRaftRequest{Header: requestHeaderOf(ai), Txn: r})
	if err != nil {
		return nil, err
	}
	return resp.(*pb.TxnResponse), nil
}

// Compact proposes a compaction; a physical one also waits until the
// superseded versions are gone.
func (m *Member) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	res, err := m.propose(ctx, &pb.InternalRaftRequest{Compaction: r})
	if err != nil {
		return nil, err
	}
	if r.Physical {
		select {
		case <-m.kv.WaitCompactions():
			// The space the compaction freed counts before the caller
			// hears back, so a write after it sees the room.
			if err := m.quota.count(m.engine.DB()); err != nil {
				m.lg.Warn("failed to measure the state for the space quota", zap.Error(err))
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-m.stopc:
		}
	}
	if res.Err != nil {
		return nil, res.Err
	}
	return res.Resp.(*pb.CompactionResponse), nil
}

func (m *Member) write(ctx context.Context, r *pb.InternalRaftRequest) (proto.Message, error) {
	if err := m.checkQuota(ctx, r); err != nil {
		return nil, err
	}
	res, err := m.propose(ctx, r)
	if err != nil {
		return nil, err
	}
	if res.Err != nil {
		return nil, res.Err
	}
	return res.Resp, nil
}

// Alarm gets, raises or clears alarms, through Raft as etcd does.
func (m *Member) Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	resp, err := m.write(ctx, &pb.InternalRaftRequest{Alarm: r})
	if err != nil {
		return nil, err
	}
	return resp.(*pb.AlarmResponse), nil
}

// Alarms returns the active alarms as this member knows them.
func (m *Member) Alarms() []*pb.AlarmMember { return m.alarms.Get(pb.AlarmType_NONE) }

// Status is the member's view of itself, for Maintenance.Status.
type Status struct {
	Leader           uint64
	RaftIndex        uint64
	RaftTerm         uint64
	RaftAppliedIndex uint64
	DBSize           int64
	DBSizeInUse      int64
	IsLearner        bool
}

// Status returns the member's status.
func (m *Member) Status() Status {
	total, inUse := m.engine.Size()
	self := m.cluster.Member(m.cfg.ID)
	return Status{
		Leader:           m.raft.Lead(),
		RaftIndex:        m.raft.CommittedIndex(),
		RaftTerm:         m.raft.Term(),
		RaftAppliedIndex: m.applied.Load(),
		DBSize:           total,
		DBSizeInUse:      inUse,
		IsLearner:        self != nil && self.IsLearner,
	}
}

// Members returns the cluster's members; linearizable waits for a ReadIndex
// round first.
func (m *Member) Members(ctx context.Context, linearizable bool) ([]*membership.Member, error) {
	if linearizable {
		if err := m.linearizableReadNotify(ctx); err != nil {
			return nil, err
		}
	}
	return m.cluster.Members(), nil
}
