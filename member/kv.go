package member

import (
	"bytes"
	"context"
	"math"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"

	"github.com/keeldb/keel/apply"
	"github.com/keeldb/keel/auth"
	"github.com/keeldb/keel/membership"
)

// Range serves a range; a linearizable one waits for a ReadIndex round first.
func (m *Member) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if !r.Serializable {
		if err := m.linearizableReadNotify(ctx); err != nil {
			return nil, err
		}
	}
	return apply.Range(ctx, m.kv.Read(), r, true)
}

// initialStreamChunk is the key count of a range stream's first chunk; the
// next chunks grow or shrink towards the size of a maximal request.
const initialStreamChunk = 10

// RangeStream serves a range in chunks, all read at the revision current
// when the stream starts. The last chunk carries the header, more and count.
func (m *Member) RangeStream(ctx context.Context, r *pb.RangeRequest, send func(*pb.RangeResponse) error) error {
	if !r.Serializable {
		if err := m.linearizableReadNotify(ctx); err != nil {
			return err
		}
	}
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

// Txn serves a read-only txn locally (after a ReadIndex round unless every
// range is serializable) and proposes any other on behalf of ai (nil:
// nobody), whose permissions are then checked at apply. The caller checks
// those of a read-only txn.
func (m *Member) Txn(ctx context.Context, ai *auth.AuthInfo, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	if apply.IsTxnReadOnly(r) {
		if !apply.IsTxnSerializable(r) {
			if err := m.linearizableReadNotify(ctx); err != nil {
				return nil, err
			}
		}
		return apply.ReadTxn(ctx, m.kv.Read(), r)
	}
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
