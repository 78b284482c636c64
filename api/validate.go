package api

import (
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// Request validation done before anything is proposed, with etcd's rules and
// errors.

func checkRange(r *pb.RangeRequest) error {
	if len(r.Key) == 0 {
		return rpctypes.ErrGRPCEmptyKey
	}
	if _, ok := pb.RangeRequest_SortOrder_name[int32(r.SortOrder)]; !ok {
		return rpctypes.ErrGRPCInvalidSortOption
	}
	if _, ok := pb.RangeRequest_SortTarget_name[int32(r.SortTarget)]; !ok {
		return rpctypes.ErrGRPCInvalidSortOption
	}
	return nil
}

func checkPut(r *pb.PutRequest) error {
	switch {
	case len(r.Key) == 0:
		return rpctypes.ErrGRPCEmptyKey
	case r.IgnoreValue && len(r.Value) != 0:
		return rpctypes.ErrGRPCValueProvided
	case r.IgnoreLease && r.Lease != 0:
		return rpctypes.ErrGRPCLeaseProvided
	}
	return nil
}

func checkDelete(r *pb.DeleteRangeRequest) error {
	if len(r.Key) == 0 {
		return rpctypes.ErrGRPCEmptyKey
	}
	return nil
}

// checkTxn bounds the number of operations: no list of a txn may hold more
// than maxOps entries, and a nested txn gets what its parent left over.
func checkTxn(r *pb.TxnRequest, maxOps int) error {
	n := max(len(r.Compare), len(r.Success), len(r.Failure))
	if n > maxOps {
		return rpctypes.ErrGRPCTooManyOps
	}
	for _, c := range r.Compare {
		if len(c.Key) == 0 {
			return rpctypes.ErrGRPCEmptyKey
		}
	}
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range ops {
			if err := checkOp(op, maxOps-n); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkOp(op *pb.RequestOp, maxOps int) error {
	switch v := op.Request.(type) {
	case *pb.RequestOp_RequestRange:
		return checkRange(v.RequestRange)
	case *pb.RequestOp_RequestPut:
		return checkPut(v.RequestPut)
	case *pb.RequestOp_RequestDeleteRange:
		return checkDelete(v.RequestDeleteRange)
	case *pb.RequestOp_RequestTxn:
		return checkTxn(v.RequestTxn, maxOps)
	}
	// An empty operation: etcd answers "key not found".
	return rpctypes.ErrGRPCKeyNotFound
}

// keyInterval is a deleted range [begin, end); an empty end is unbounded.
type keyInterval struct{ begin, end string }

func (iv keyInterval) contains(k string) bool {
	return iv.begin <= k && (iv.end == "" || k < iv.end)
}

type intervals []keyInterval

func (ivs intervals) contain(k string) bool {
	for _, iv := range ivs {
		if iv.contains(k) {
			return true
		}
	}
	return false
}

// checkDuplicates enforces etcd's rule that one txn path writes a key at
// most once: no key is put twice, and no put falls in a range deleted on the
// same path. Puts in the then and else branches of one nested txn may name
// the same key, since only one branch runs. A delete whose range end is
// "\x00" (every key from its start) conflicts with nothing, as in etcd.
func checkDuplicates(ops []*pb.RequestOp) (map[string]struct{}, intervals, error) {
	var dels intervals
	for _, op := range ops {
		d := op.GetRequestDeleteRange()
		if d == nil {
			continue
		}
		iv := keyInterval{begin: string(d.Key), end: string(d.Key) + "\x00"}
		if len(d.RangeEnd) != 0 {
			iv.end = string(d.RangeEnd)
		}
		dels = append(dels, iv)
	}
	puts := make(map[string]struct{})
	for _, op := range ops {
		t := op.GetRequestTxn()
		if t == nil {
			continue
		}
		thenPuts, thenDels, err := checkDuplicates(t.Success)
		if err != nil {
			return nil, nil, err
		}
		elsePuts, elseDels, err := checkDuplicates(t.Failure)
		if err != nil {
			return nil, nil, err
		}
		for k := range thenPuts {
			if _, dup := puts[k]; dup || dels.contain(k) {
				return nil, nil, rpctypes.ErrGRPCDuplicateKey
			}
			puts[k] = struct{}{}
		}
		for k := range elsePuts {
			if _, dup := puts[k]; dup {
				if _, sameTxn := thenPuts[k]; !sameTxn {
					return nil, nil, rpctypes.ErrGRPCDuplicateKey
				}
			}
			if dels.contain(k) {
				return nil, nil, rpctypes.ErrGRPCDuplicateKey
			}
			puts[k] = struct{}{}
		}
		dels = append(dels, thenDels...)
		dels = append(dels, elseDels...)
	}
	for _, op := range ops {
		p := op.GetRequestPut()
		if p == nil {
			continue
		}
		k := string(p.Key)
		if _, dup := puts[k]; dup || dels.contain(k) {
			return nil, nil, rpctypes.ErrGRPCDuplicateKey
		}
		puts[k] = struct{}{}
	}
	return puts, dels, nil
}
