package apply

import (
	"bytes"
	"cmp"
	"context"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/keeldb/keel/mvcc"
)

// IsTxnReadOnly reports whether neither branch of r (at its top level)
// writes; such a txn is served without going through Raft. A nested txn
// counts as a write, as in etcd.
func IsTxnReadOnly(r *pb.TxnRequest) bool {
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range ops {
			if op.GetRequestRange() == nil {
				return false
			}
		}
	}
	return true
}

// IsTxnSerializable reports whether every operation of a read-only txn is a
// serializable range, so it needs no ReadIndex round.
func IsTxnSerializable(r *pb.TxnRequest) bool {
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range ops {
			if rr := op.GetRequestRange(); rr == nil || !rr.Serializable {
				return false
			}
		}
	}
	return true
}

// ReadTxn executes a read-only txn against a read view.
func ReadTxn(ctx context.Context, rd mvcc.Reader, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	return runTxn(ctx, readOnly{rd}, r, NoLeases{})
}

type readOnly struct{ mvcc.Reader }

func (readOnly) Put([]byte, []byte, int64) (int64, error) {
	panic("apply: write in a read-only txn")
}

func (readOnly) DeleteRange(context.Context, []byte, []byte) (int64, int64, error) {
	panic("apply: write in a read-only txn")
}

func (readOnly) Changed() bool { return false }

// runTxn evaluates the compares of every txn on the chosen path first (all
// against the state before the txn), checks the chosen operations, and only
// then executes them, as etcd does.
func runTxn(ctx context.Context, w writeView, r *pb.TxnRequest, lessor LeaseChecker) (*pb.TxnResponse, error) {
	path := comparePath(ctx, w, r)
	if _, err := checkTxn(ctx, w, r, lessor, path); err != nil {
		return nil, err
	}
	resp, _ := newTxnResponse(r, path)
	if _, err := execTxn(ctx, w, r, path, resp); err != nil {
		return nil, err
	}
	rev := w.Rev()
	if w.Changed() {
		rev++
	}
	resp.Header.Revision = rev
	return resp, nil
}

// comparePath returns, depth first, whether each txn on the executed path
// succeeded: the top-level txn first, then its nested txns in order.
func comparePath(ctx context.Context, rd mvcc.Reader, r *pb.TxnRequest) []bool {
	ok := compareAll(ctx, rd, r.Compare)
	path := []bool{ok}
	ops := r.Success
	if !ok {
		ops = r.Failure
	}
	for _, op := range ops {
		if t := op.GetRequestTxn(); t != nil {
			path = append(path, comparePath(ctx, rd, t)...)
		}
	}
	return path
}

func branch(r *pb.TxnRequest, succeeded bool) []*pb.RequestOp {
	if succeeded {
		return r.Success
	}
	return r.Failure
}

func compareAll(ctx context.Context, rd mvcc.Reader, cmps []*pb.Compare) bool {
	for _, c := range cmps {
		if !compare(ctx, rd, c) {
			return false
		}
	}
	return true
}

// compare holds when every key in the compare's range satisfies it. With no
// key present, a value compare fails and the others compare against zeros.
func compare(ctx context.Context, rd mvcc.Reader, c *pb.Compare) bool {
	rr, err := rd.Range(ctx, c.Key, gteRange(c.RangeEnd), mvcc.RangeOptions{})
	if err != nil {
		return false
	}
	if len(rr.KVs) == 0 {
		if c.Target == pb.Compare_VALUE {
			return false
		}
		return compareKV(c, &mvccpb.KeyValue{})
	}
	for _, kv := range rr.KVs {
		if !compareKV(c, kv) {
			return false
		}
	}
	return true
}

func compareKV(c *pb.Compare, kv *mvccpb.KeyValue) bool {
	var res int
	switch c.Target {
	case pb.Compare_VALUE:
		res = bytes.Compare(kv.Value, c.GetValue())
	case pb.Compare_CREATE:
		res = cmp.Compare(kv.CreateRevision, c.GetCreateRevision())
	case pb.Compare_MOD:
		res = cmp.Compare(kv.ModRevision, c.GetModRevision())
	case pb.Compare_VERSION:
		res = cmp.Compare(kv.Version, c.GetVersion())
	case pb.Compare_LEASE:
		res = cmp.Compare(kv.Lease, c.GetLease())
	}
	switch c.Result {
	case pb.Compare_EQUAL:
		return res == 0
	case pb.Compare_NOT_EQUAL:
		return res != 0
	case pb.Compare_GREATER:
		return res > 0
	case pb.Compare_LESS:
		return res < 0
	}
	return true
}

// checkTxn validates the operations on the executed path against the state
// before the txn: ranges must be within the live revisions, puts must name a
// known lease and find the previous value they keep. It returns how many
// nested txns it consumed from path.
func checkTxn(ctx context.Context, rd mvcc.Reader, r *pb.TxnRequest, lessor LeaseChecker, path []bool) (int, error) {
	nested := 0
	for _, op := range branch(r, path[0]) {
		var err error
		switch v := op.Request.(type) {
		case *pb.RequestOp_RequestRange:
			switch rev := v.RequestRange.Revision; {
			case rev == 0:
			case rev > rd.Rev():
				err = mvcc.ErrFutureRev
			case rev < rd.FirstRev():
				err = mvcc.ErrCompacted
			}
		case *pb.RequestOp_RequestPut:
			_, err = checkPut(ctx, rd, lessor, v.RequestPut)
		case *pb.RequestOp_RequestTxn:
			var n int
			n, err = checkTxn(ctx, rd, v.RequestTxn, lessor, path[1+nested:])
			nested += n + 1
		}
		if err != nil {
			return 0, err
		}
	}
	return nested, nil
}

// newTxnResponse shapes the response tree of the executed path before any
// operation runs. Nested txn responses keep an empty header, as in etcd.
func newTxnResponse(r *pb.TxnRequest, path []bool) (*pb.TxnResponse, int) {
	ops := branch(r, path[0])
	resp := &pb.TxnResponse{Header: &pb.ResponseHeader{}, Succeeded: path[0], Responses: make([]*pb.ResponseOp, len(ops))}
	nested := 0
	for i, op := range ops {
		switch v := op.Request.(type) {
		case *pb.RequestOp_RequestRange:
			resp.Responses[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{}}
		case *pb.RequestOp_RequestPut:
			resp.Responses[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{}}
		case *pb.RequestOp_RequestDeleteRange:
			resp.Responses[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseDeleteRange{}}
		case *pb.RequestOp_RequestTxn:
			sub, n := newTxnResponse(v.RequestTxn, path[1+nested:])
			resp.Responses[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: sub}}
			nested += n + 1
		}
	}
	return resp, nested
}

func execTxn(ctx context.Context, w writeView, r *pb.TxnRequest, path []bool, resp *pb.TxnResponse) (int, error) {
	nested := 0
	for i, op := range branch(r, path[0]) {
		out := resp.Responses[i]
		switch v := op.Request.(type) {
		case *pb.RequestOp_RequestRange:
			rr, err := Range(ctx, w, v.RequestRange, true)
			if err != nil {
				return 0, fmt.Errorf("txn range: %w", err)
			}
			out.Response.(*pb.ResponseOp_ResponseRange).ResponseRange = rr
		case *pb.RequestOp_RequestPut:
			prev, err := prevKV(ctx, w, v.RequestPut)
			if err != nil {
				return 0, fmt.Errorf("txn put: %w", err)
			}
			pr, err := put(w, v.RequestPut, prev)
			if err != nil {
				return 0, fmt.Errorf("txn put: %w", err)
			}
			out.Response.(*pb.ResponseOp_ResponsePut).ResponsePut = pr
		case *pb.RequestOp_RequestDeleteRange:
			dr, err := deleteRange(ctx, w, v.RequestDeleteRange)
			if err != nil {
				return 0, fmt.Errorf("txn delete: %w", err)
			}
			out.Response.(*pb.ResponseOp_ResponseDeleteRange).ResponseDeleteRange = dr
		case *pb.RequestOp_RequestTxn:
			sub := out.Response.(*pb.ResponseOp_ResponseTxn).ResponseTxn
			n, err := execTxn(ctx, w, v.RequestTxn, path[1+nested:], sub)
			if err != nil {
				return 0, err
			}
			nested += n + 1
		}
	}
	return nested, nil
}
