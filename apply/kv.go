package apply

import (
	"bytes"
	"context"
	"math"
	"sort"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/keeldb/keel/mvcc"
)

// LeaseChecker is what the KV semantics need to know about leases.
type LeaseChecker interface {
	// Exists reports whether the lease with id is granted.
	Exists(id int64) bool
}

// NoLeases is the LeaseChecker of read-only requests: every lease is
// unknown (read-only requests never check one).
type NoLeases struct{}

// Exists implements LeaseChecker.
func (NoLeases) Exists(int64) bool { return false }

// gteRange turns etcd's "\x00" range end (every key from key on) into the
// empty-but-not-nil end mvcc understands.
func gteRange(end []byte) []byte {
	if len(end) == 1 && end[0] == 0 {
		return []byte{}
	}
	return end
}

func isDefaultOrdering(target pb.RangeRequest_SortTarget, order pb.RangeRequest_SortOrder) bool {
	return order == pb.RangeRequest_NONE || (target == pb.RangeRequest_KEY && order == pb.RangeRequest_ASCEND)
}

// HasRevisionFilters reports whether r filters on mod or create revision.
func HasRevisionFilters(r *pb.RangeRequest) bool {
	return r.MinModRevision != 0 || r.MaxModRevision != 0 || r.MinCreateRevision != 0 || r.MaxCreateRevision != 0
}

// IsDefaultOrdering reports whether r returns keys in ascending key order,
// the order they are stored in.
func IsDefaultOrdering(r *pb.RangeRequest) bool { return isDefaultOrdering(r.SortTarget, r.SortOrder) }

// Range executes a range request against rd as etcd does. withTotalCount
// makes Count cover the whole range even when Limit cuts the result.
func Range(ctx context.Context, rd mvcc.Reader, r *pb.RangeRequest, withTotalCount bool) (*pb.RangeResponse, error) {
	limit := r.Limit
	if !isDefaultOrdering(r.SortTarget, r.SortOrder) || HasRevisionFilters(r) {
		// Sorting and filtering need every key; the limit applies after.
		limit = 0
	}
	if limit > 0 && limit < math.MaxInt64 {
		limit++ // one more than asked tells whether there is more
	}
	rr, err := rd.Range(ctx, r.Key, gteRange(r.RangeEnd), mvcc.RangeOptions{
		Limit:          limit,
		Rev:            r.Revision,
		CountOnly:      r.CountOnly,
		KeysOnly:       r.KeysOnly && r.SortTarget != pb.RangeRequest_VALUE,
		WithTotalCount: withTotalCount,
	})
	if err != nil {
		return nil, err
	}
	kvs := filterKVs(rr.KVs, r)
	sortKVs(kvs, r)
	resp := &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: rr.Rev}, Count: int64(rr.Count)}
	if r.Limit > 0 && int64(len(kvs)) > r.Limit {
		kvs = kvs[:r.Limit]
		resp.More = true
	}
	resp.Kvs = make([]*mvccpb.KeyValue, len(kvs))
	for i, kv := range kvs {
		if r.KeysOnly {
			kv.Value = nil
		}
		resp.Kvs[i] = kv
	}
	return resp, nil
}

func filterKVs(kvs []*mvccpb.KeyValue, r *pb.RangeRequest) []*mvccpb.KeyValue {
	if !HasRevisionFilters(r) {
		return kvs
	}
	out := kvs[:0]
	for _, kv := range kvs {
		switch {
		case r.MaxModRevision != 0 && kv.ModRevision > r.MaxModRevision:
		case r.MinModRevision != 0 && kv.ModRevision < r.MinModRevision:
		case r.MaxCreateRevision != 0 && kv.CreateRevision > r.MaxCreateRevision:
		case r.MinCreateRevision != 0 && kv.CreateRevision < r.MinCreateRevision:
		default:
			out = append(out, kv)
		}
	}
	return out
}

// sortKVs orders kvs as etcd does. It uses sort.Sort (not a stable sort) with
// the same comparisons so that keys that compare equal come out in the same
// order as etcd returns them.
func sortKVs(kvs []*mvccpb.KeyValue, r *pb.RangeRequest) {
	order := r.SortOrder
	if r.SortTarget != pb.RangeRequest_KEY && order == pb.RangeRequest_NONE {
		order = pb.RangeRequest_ASCEND
	}
	if isDefaultOrdering(r.SortTarget, order) {
		return
	}
	var less func(a, b *mvccpb.KeyValue) bool
	switch r.SortTarget {
	case pb.RangeRequest_KEY:
		less = func(a, b *mvccpb.KeyValue) bool { return bytes.Compare(a.Key, b.Key) < 0 }
	case pb.RangeRequest_VERSION:
		less = func(a, b *mvccpb.KeyValue) bool { return a.Version < b.Version }
	case pb.RangeRequest_CREATE:
		less = func(a, b *mvccpb.KeyValue) bool { return a.CreateRevision < b.CreateRevision }
	case pb.RangeRequest_MOD:
		less = func(a, b *mvccpb.KeyValue) bool { return a.ModRevision < b.ModRevision }
	case pb.RangeRequest_VALUE:
		less = func(a, b *mvccpb.KeyValue) bool { return bytes.Compare(a.Value, b.Value) < 0 }
	default:
		return // rejected by request validation
	}
	var s sort.Interface = kvSorter{kvs, less}
	if order == pb.RangeRequest_DESCEND {
		s = sort.Reverse(s)
	}
	sort.Sort(s)
}

type kvSorter struct {
	kvs  []*mvccpb.KeyValue
	less func(a, b *mvccpb.KeyValue) bool
}

func (s kvSorter) Len() int           { return len(s.kvs) }
func (s kvSorter) Swap(i, j int)      { s.kvs[i], s.kvs[j] = s.kvs[j], s.kvs[i] }
func (s kvSorter) Less(i, j int) bool { return s.less(s.kvs[i], s.kvs[j]) }

// writeView is what executing writes needs: mvcc.Txn, or a read view for
// read-only transactions (whose write methods are never called).
type writeView interface {
	mvcc.Reader
	Put(key, value []byte, lease int64) (int64, error)
	DeleteRange(ctx context.Context, key, end []byte) (n, rev int64, err error)
	Changed() bool
}

// checkPut validates a put against the state before it: a known lease, and a
// previous value when ignore_value or ignore_lease asks to keep it.
func checkPut(ctx context.Context, rd mvcc.Reader, lessor LeaseChecker, p *pb.PutRequest) (*mvcc.RangeResult, error) {
	if p.Lease != 0 && !lessor.Exists(p.Lease) {
		return nil, rpctypes.ErrGRPCLeaseNotFound
	}
	prev, err := prevKV(ctx, rd, p)
	if err != nil {
		return nil, err
	}
	if (p.IgnoreValue || p.IgnoreLease) && (prev == nil || len(prev.KVs) == 0) {
		return nil, rpctypes.ErrGRPCKeyNotFound
	}
	return prev, nil
}

func prevKV(ctx context.Context, rd mvcc.Reader, p *pb.PutRequest) (*mvcc.RangeResult, error) {
	if !p.IgnoreValue && !p.IgnoreLease && !p.PrevKv {
		return nil, nil
	}
	return rd.Range(ctx, p.Key, nil, mvcc.RangeOptions{})
}

func put(w writeView, p *pb.PutRequest, prev *mvcc.RangeResult) (*pb.PutResponse, error) {
	resp := &pb.PutResponse{Header: &pb.ResponseHeader{}}
	val, lease := p.Value, p.Lease
	havePrev := prev != nil && len(prev.KVs) > 0
	if p.IgnoreValue {
		val = nil
		if havePrev {
			val = prev.KVs[0].Value
		}
	}
	if p.IgnoreLease {
		lease = 0
		if havePrev {
			lease = prev.KVs[0].Lease
		}
	}
	if p.PrevKv && havePrev {
		resp.PrevKv = prev.KVs[0]
	}
	rev, err := w.Put(p.Key, val, lease)
	if err != nil {
		return nil, err
	}
	resp.Header.Revision = rev
	return resp, nil
}

func deleteRange(ctx context.Context, w writeView, d *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	resp := &pb.DeleteRangeResponse{Header: &pb.ResponseHeader{}}
	end := gteRange(d.RangeEnd)
	if d.PrevKv {
		rr, err := w.Range(ctx, d.Key, end, mvcc.RangeOptions{})
		if err != nil {
			return nil, err
		}
		resp.PrevKvs = rr.KVs
		if resp.PrevKvs == nil {
			resp.PrevKvs = []*mvccpb.KeyValue{}
		}
	}
	n, rev, err := w.DeleteRange(ctx, d.Key, end)
	if err != nil {
		return nil, err
	}
	resp.Deleted, resp.Header.Revision = n, rev
	return resp, nil
}
