package grpcproxy

import (
	"context"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// kvProxy serves KV: serializable ranges from the cache when it can,
// everything else from the cluster. Every range response refreshes the
// cache (a linearizable answer is a valid serializable one); every write
// invalidates the ranges it touches.
//
// Requests go to the cluster unchanged (raw) unless a namespace or a KV
// layer is configured; then they are rebuilt as client operations, which
// cannot carry every malformed request the same way (an empty request op
// is refused by the proxy itself).
type kvProxy struct {
	pb.UnimplementedKVServer
	p   *Proxy
	raw pb.KVClient
}

func (k *kvProxy) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	c := k.p.cache
	if hasToken(ctx) {
		// The cache does not know who may read what: a client with a
		// token always asks the cluster, which checks its permissions.
		return k.fetch(ctx, r)
	}
	if r.Serializable {
		// A read below a compaction goes to the cluster, which answers
		// with the right error (a malformed request's before the
		// compaction's).
		resp, ok, _ := c.get(r)
		if ok {
			k.p.metrics.cacheHits.Inc()
			return k.current(resp), nil
		}
		k.p.metrics.cacheMisses.Inc()
	}
	since := c.begin()
	resp, err := k.fetch(ctx, r)
	if err != nil {
		return nil, err
	}
	c.add(since, r, resp)
	k.p.metrics.cacheKeys.Set(float64(c.size()))
	return resp, nil
}

// current returns a cached response with the newest revision the proxy
// knows in its header: no write through the proxy touched the range
// since it was read, so it is still the answer at that revision.
func (k *kvProxy) current(r *pb.RangeResponse) *pb.RangeResponse {
	rev := k.p.lastRev.Load()
	if r.Header == nil || r.Header.Revision >= rev {
		return r
	}
	h := proto.Clone(r.Header).(*pb.ResponseHeader)
	h.Revision = rev
	return &pb.RangeResponse{Header: h, Kvs: r.Kvs, More: r.More, Count: r.Count}
}

// fetch sends r to the cluster.
func (k *kvProxy) fetch(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	var resp *pb.RangeResponse
	if k.raw != nil {
		var err error
		if resp, err = k.raw.Range(upstream(ctx), r); err != nil {
			return nil, err
		}
	} else {
		op, err := rangeOp(r)
		if err != nil {
			return nil, err
		}
		or, err := k.p.kv.Do(upstream(ctx), op)
		if err != nil {
			return nil, toGRPC(err)
		}
		resp = (*pb.RangeResponse)(or.Get())
	}
	k.p.noteRev(resp.Header)
	return resp, nil
}

func (k *kvProxy) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	defer k.p.cache.invalidate(r.Key, nil)
	if k.raw != nil {
		resp, err := k.raw.Put(upstream(ctx), r)
		if err == nil {
			k.p.noteRev(resp.Header)
		}
		return resp, err
	}
	resp, err := k.p.kv.Do(upstream(ctx), putOp(r))
	if err != nil {
		return nil, toGRPC(err)
	}
	k.p.noteRev(resp.Put().Header)
	return (*pb.PutResponse)(resp.Put()), nil
}

func (k *kvProxy) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	defer k.p.cache.invalidate(r.Key, r.RangeEnd)
	if k.raw != nil {
		resp, err := k.raw.DeleteRange(upstream(ctx), r)
		if err == nil {
			k.p.noteRev(resp.Header)
		}
		return resp, err
	}
	resp, err := k.p.kv.Do(upstream(ctx), deleteOp(r))
	if err != nil {
		return nil, toGRPC(err)
	}
	k.p.noteRev(resp.Del().Header)
	return (*pb.DeleteRangeResponse)(resp.Del()), nil
}

func (k *kvProxy) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	// Both branches: which one ran is unknown when the call failed.
	defer k.invalidateOps(r.Failure)
	defer k.invalidateOps(r.Success)
	if k.raw != nil {
		resp, err := k.raw.Txn(upstream(ctx), r)
		if err == nil {
			k.p.noteRev(resp.Header)
		}
		return resp, err
	}
	op, err := txnOp(r)
	if err != nil {
		return nil, err
	}
	resp, err := k.p.kv.Do(upstream(ctx), op)
	if err != nil {
		return nil, toGRPC(err)
	}
	k.p.noteRev(resp.Txn().Header)
	return (*pb.TxnResponse)(resp.Txn()), nil
}

func (k *kvProxy) invalidateOps(ops []*pb.RequestOp) {
	for _, o := range ops {
		switch {
		case o.GetRequestPut() != nil:
			k.p.cache.invalidate(o.GetRequestPut().Key, nil)
		case o.GetRequestDeleteRange() != nil:
			d := o.GetRequestDeleteRange()
			k.p.cache.invalidate(d.Key, d.RangeEnd)
		case o.GetRequestTxn() != nil:
			k.invalidateOps(o.GetRequestTxn().Success)
			k.invalidateOps(o.GetRequestTxn().Failure)
		}
	}
}

func (k *kvProxy) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	var resp *pb.CompactionResponse
	var err error
	if k.raw != nil {
		resp, err = k.raw.Compact(upstream(ctx), r)
	} else {
		var opts []clientv3.CompactOption
		if r.Physical {
			opts = append(opts, clientv3.WithCompactPhysical())
		}
		var cr *clientv3.CompactResponse
		cr, err = k.p.kv.Compact(upstream(ctx), r.Revision, opts...)
		resp, err = (*pb.CompactionResponse)(cr), toGRPC(err)
	}
	if err != nil {
		return nil, err
	}
	k.p.cache.compact(r.Revision)
	return resp, nil
}

// rangeOp is the client operation that sends r unchanged.
func rangeOp(r *pb.RangeRequest) (clientv3.Op, error) {
	var opts []clientv3.OpOption
	if len(r.RangeEnd) > 0 {
		opts = append(opts, clientv3.WithRange(string(r.RangeEnd)))
	}
	if r.Limit != 0 {
		opts = append(opts, clientv3.WithLimit(r.Limit))
	}
	if r.Revision != 0 {
		opts = append(opts, clientv3.WithRev(r.Revision))
	}
	if r.SortOrder != pb.RangeRequest_NONE || r.SortTarget != pb.RangeRequest_KEY {
		// The target matters even without an order: etcd then sorts
		// ascending by it.
		opts = append(opts, clientv3.WithSort(clientv3.SortTarget(r.SortTarget), clientv3.SortOrder(r.SortOrder)))
	}
	if r.Serializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	if r.KeysOnly {
		opts = append(opts, clientv3.WithKeysOnly())
	}
	if r.CountOnly {
		opts = append(opts, clientv3.WithCountOnly())
	}
	if r.MinModRevision != 0 {
		opts = append(opts, clientv3.WithMinModRev(r.MinModRevision))
	}
	if r.MaxModRevision != 0 {
		opts = append(opts, clientv3.WithMaxModRev(r.MaxModRevision))
	}
	if r.MinCreateRevision != 0 {
		opts = append(opts, clientv3.WithMinCreateRev(r.MinCreateRevision))
	}
	if r.MaxCreateRevision != 0 {
		opts = append(opts, clientv3.WithMaxCreateRev(r.MaxCreateRevision))
	}
	return clientv3.OpGet(string(r.Key), opts...), nil
}

func putOp(r *pb.PutRequest) clientv3.Op {
	var opts []clientv3.OpOption
	if r.Lease != 0 {
		opts = append(opts, clientv3.WithLease(clientv3.LeaseID(r.Lease)))
	}
	if r.PrevKv {
		opts = append(opts, clientv3.WithPrevKV())
	}
	if r.IgnoreValue {
		opts = append(opts, clientv3.WithIgnoreValue())
	}
	if r.IgnoreLease {
		opts = append(opts, clientv3.WithIgnoreLease())
	}
	return clientv3.OpPut(string(r.Key), string(r.Value), opts...)
}

func deleteOp(r *pb.DeleteRangeRequest) clientv3.Op {
	var opts []clientv3.OpOption
	if len(r.RangeEnd) > 0 {
		opts = append(opts, clientv3.WithRange(string(r.RangeEnd)))
	}
	if r.PrevKv {
		opts = append(opts, clientv3.WithPrevKV())
	}
	return clientv3.OpDelete(string(r.Key), opts...)
}

func txnOp(r *pb.TxnRequest) (clientv3.Op, error) {
	cmps := make([]clientv3.Cmp, 0, len(r.Compare))
	for _, c := range r.Compare {
		cmp, err := toCmp(c)
		if err != nil {
			return clientv3.Op{}, err
		}
		cmps = append(cmps, cmp)
	}
	thenOps, err := requestOps(r.Success)
	if err != nil {
		return clientv3.Op{}, err
	}
	elseOps, err := requestOps(r.Failure)
	if err != nil {
		return clientv3.Op{}, err
	}
	return clientv3.OpTxn(cmps, thenOps, elseOps), nil
}

func requestOps(ros []*pb.RequestOp) ([]clientv3.Op, error) {
	ops := make([]clientv3.Op, 0, len(ros))
	for _, ro := range ros {
		var op clientv3.Op
		var err error
		switch {
		case ro.GetRequestRange() != nil:
			op, err = rangeOp(ro.GetRequestRange())
		case ro.GetRequestPut() != nil:
			op = putOp(ro.GetRequestPut())
		case ro.GetRequestDeleteRange() != nil:
			op = deleteOp(ro.GetRequestDeleteRange())
		case ro.GetRequestTxn() != nil:
			op, err = txnOp(ro.GetRequestTxn())
		default:
			// etcd's answer to a request op it cannot read.
			return nil, status.Error(codes.InvalidArgument, "etcdserver: invalid request op")
		}
		if err != nil {
			return nil, err
		}
		ops = append(ops, op)
	}
	return ops, nil
}

var cmpResults = map[pb.Compare_CompareResult]string{
	pb.Compare_EQUAL: "=", pb.Compare_NOT_EQUAL: "!=", pb.Compare_GREATER: ">", pb.Compare_LESS: "<",
}

// toCmp rebuilds c through the client's constructors.
func toCmp(c *pb.Compare) (clientv3.Cmp, error) {
	key := string(c.Key)
	res, ok := cmpResults[c.Result]
	if !ok {
		return clientv3.Cmp{}, status.Error(codes.InvalidArgument, fmt.Sprintf("etcdserver: unknown compare result %d", c.Result))
	}
	var base clientv3.Cmp
	var v any
	switch c.Target {
	case pb.Compare_VERSION:
		base, v = clientv3.Version(key), c.GetVersion()
	case pb.Compare_CREATE:
		base, v = clientv3.CreateRevision(key), c.GetCreateRevision()
	case pb.Compare_MOD:
		base, v = clientv3.ModRevision(key), c.GetModRevision()
	case pb.Compare_VALUE:
		base, v = clientv3.Value(key), string(c.GetValue())
	case pb.Compare_LEASE:
		base, v = clientv3.LeaseValue(key), c.GetLease()
	default:
		return clientv3.Cmp{}, status.Error(codes.InvalidArgument, fmt.Sprintf("etcdserver: unknown compare target %d", c.Target))
	}
	if len(c.RangeEnd) > 0 {
		return clientv3.Compare(base, res, v).WithRange(string(c.RangeEnd)), nil
	}
	return clientv3.Compare(base, res, v), nil
}
