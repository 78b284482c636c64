package grpcproxy

import (
	"context"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// kvProxy serves KV: serializable ranges from the cache when it can,
// everything else from the cluster. Every range response refreshes the
// cache (a linearizable answer is a valid serializable one); every write
// invalidates the ranges it touches.
type kvProxy struct {
	pb.UnimplementedKVServer
	p *Proxy
}

func (k *kvProxy) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	c := k.p.cache
	if hasToken(ctx) {
		// The cache does not know who may read what: a client with a
		// token always asks the cluster, which checks its permissions.
		op, err := rangeOp(r)
		if err != nil {
			return nil, err
		}
		resp, err := k.p.kv.Do(upstream(ctx), op)
		if err != nil {
			return nil, toGRPC(err)
		}
		return (*pb.RangeResponse)(resp.Get()), nil
	}
	if r.Serializable {
		resp, ok, compacted := c.get(r)
		if compacted {
			return nil, rpctypes.ErrGRPCCompacted
		}
		if ok {
			k.p.metrics.cacheHits.Inc()
			return resp, nil
		}
		k.p.metrics.cacheMisses.Inc()
	}
	since := c.begin()
	op, err := rangeOp(r)
	if err != nil {
		return nil, err
	}
	resp, err := k.p.kv.Do(upstream(ctx), op)
	if err != nil {
		return nil, toGRPC(err)
	}
	gr := (*pb.RangeResponse)(resp.Get())
	c.add(since, r, gr)
	k.p.metrics.cacheKeys.Set(float64(c.size()))
	return gr, nil
}

func (k *kvProxy) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	resp, err := k.p.kv.Do(upstream(ctx), putOp(r))
	k.p.cache.invalidate(r.Key, nil)
	if err != nil {
		return nil, toGRPC(err)
	}
	return (*pb.PutResponse)(resp.Put()), nil
}

func (k *kvProxy) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	resp, err := k.p.kv.Do(upstream(ctx), deleteOp(r))
	k.p.cache.invalidate(r.Key, r.RangeEnd)
	if err != nil {
		return nil, toGRPC(err)
	}
	return (*pb.DeleteRangeResponse)(resp.Del()), nil
}

func (k *kvProxy) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	op, err := txnOp(r)
	if err != nil {
		return nil, err
	}
	resp, err := k.p.kv.Do(upstream(ctx), op)
	// Both branches: which one ran is unknown when the call failed.
	k.invalidateOps(r.Success)
	k.invalidateOps(r.Failure)
	if err != nil {
		return nil, toGRPC(err)
	}
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
	var opts []clientv3.CompactOption
	if r.Physical {
		opts = append(opts, clientv3.WithCompactPhysical())
	}
	resp, err := k.p.kv.Compact(upstream(ctx), r.Revision, opts...)
	if err != nil {
		return nil, toGRPC(err)
	}
	k.p.cache.compact(r.Revision)
	return (*pb.CompactionResponse)(resp), nil
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
