package api

import (
	"errors"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

func putOp(k string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(k)}}}
}

func delOp(k, end string) *pb.RequestOp {
	d := &pb.DeleteRangeRequest{Key: []byte(k)}
	if end != "" {
		d.RangeEnd = []byte(end)
	}
	return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: d}}
}

func txnOp(then, els []*pb.RequestOp) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Success: then, Failure: els}}}
}

func ops(o ...*pb.RequestOp) []*pb.RequestOp { return o }

func TestDuplicateKeyRule(t *testing.T) {
	tests := []struct {
		name string
		ops  []*pb.RequestOp
		dup  bool
	}{
		{"distinct puts", ops(putOp("a"), putOp("b")), false},
		{"same key put twice", ops(putOp("a"), putOp("a")), true},
		{"put inside a deleted range", ops(delOp("a", "c"), putOp("b")), true},
		{"put before the delete of its key", ops(putOp("b"), delOp("b", "")), true},
		{"put at the excluded end of a deleted range", ops(delOp("a", "c"), putOp("c")), false},
		{"overlapping deletes", ops(delOp("a", "c"), delOp("b", "d")), false},
		{"delete to the end of the key space", ops(delOp("a", "\x00"), putOp("b")), false},
		{"inverted deleted range", ops(delOp("c", "a"), putOp("b")), false},
		{"unbounded-looking empty end is a point", ops(delOp("a", ""), putOp("ab")), false},
		{"then and else put the same key", ops(txnOp(ops(putOp("a")), ops(putOp("a")))), false},
		{"nested put of a key put at the top", ops(putOp("a"), txnOp(ops(putOp("a")), nil)), true},
		{"two nested txns put the same key", ops(txnOp(ops(putOp("a")), nil), txnOp(nil, ops(putOp("a")))), true},
		{"nested put inside a top-level delete", ops(delOp("a", "z"), txnOp(nil, ops(putOp("m")))), true},
		{"top-level put inside a nested delete", ops(txnOp(ops(delOp("a", "z")), nil), putOp("m")), true},
		{"else put of a key put by an earlier then", ops(txnOp(ops(putOp("a")), nil), txnOp(ops(putOp("b")), ops(putOp("a")))), true},
		{"deep nesting", ops(txnOp(ops(txnOp(ops(putOp("k")), nil)), nil), putOp("k")), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := checkDuplicates(tt.ops)
			if tt.dup != errors.Is(err, rpctypes.ErrGRPCDuplicateKey) || (!tt.dup && err != nil) {
				t.Fatalf("got %v, want duplicate=%v", err, tt.dup)
			}
		})
	}
}

func TestTxnOpsLimitAppliesPerListAndShrinksWhenNested(t *testing.T) {
	many := func(n int) []*pb.RequestOp {
		var o []*pb.RequestOp
		for i := 0; i < n; i++ {
			o = append(o, &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("k")}}})
		}
		return o
	}
	if err := checkTxn(&pb.TxnRequest{Success: many(4), Failure: many(4)}, 4); err != nil {
		t.Fatalf("4 per list with a limit of 4: %v", err)
	}
	if err := checkTxn(&pb.TxnRequest{Success: many(5)}, 4); !errors.Is(err, rpctypes.ErrGRPCTooManyOps) {
		t.Fatalf("5 with a limit of 4: %v", err)
	}
	// The parent uses 2 of 4, so a nested txn may hold 2.
	nested := &pb.TxnRequest{Success: append(many(1), txnOp(many(3), nil))}
	nested.Failure = many(2)
	if err := checkTxn(nested, 4); !errors.Is(err, rpctypes.ErrGRPCTooManyOps) {
		t.Fatalf("nested txn over what its parent left: %v", err)
	}
	if err := checkTxn(&pb.TxnRequest{Success: ops(&pb.RequestOp{})}, 4); !errors.Is(err, rpctypes.ErrGRPCKeyNotFound) {
		t.Fatalf("empty operation: %v", err)
	}
}
