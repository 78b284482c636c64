package member

import (
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

func TestQuotaBytesDefaultsAndDisables(t *testing.T) {
	for _, c := range []struct{ in, want int64 }{{0, 2 << 30}, {-1, -1}, {1 << 20, 1 << 20}} {
		if got := QuotaBytes(c.in); got != c.want {
			t.Errorf("QuotaBytes(%d) = %d, want %d", c.in, got, c.want)
		}
	}
}

// TestQuotaCostChargesOnlyRequestsThatAddData follows etcd: puts cost their
// key, value and 256 bytes; a txn its costlier branch, nested txns
// included; a lease grant 64; deletes and reads nothing.
func TestQuotaCostChargesOnlyRequestsThatAddData(t *testing.T) {
	put := func(k, v string) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(k), Value: []byte(v)}}}
	}
	del := &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("a")}}}
	nested := &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Success: []*pb.RequestOp{put("n", "12345")}}}}
	for _, c := range []struct {
		name string
		r    *pb.InternalRaftRequest
		want int64
	}{
		{"put", &pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("ab"), Value: []byte("xyz")}}, 261},
		{"txn costlier branch", &pb.InternalRaftRequest{Txn: &pb.TxnRequest{
			Success: []*pb.RequestOp{put("a", "1"), del},
			Failure: []*pb.RequestOp{put("a", "1"), nested},
		}}, 258 + 262},
		{"delete-only txn", &pb.InternalRaftRequest{Txn: &pb.TxnRequest{Success: []*pb.RequestOp{del}}}, 0},
		{"lease grant", &pb.InternalRaftRequest{LeaseGrant: &pb.LeaseGrantRequest{TTL: 5}}, 64},
		{"delete", &pb.InternalRaftRequest{DeleteRange: &pb.DeleteRangeRequest{Key: []byte("a")}}, 0},
		{"lease revoke", &pb.InternalRaftRequest{LeaseRevoke: &pb.LeaseRevokeRequest{ID: 1}}, 0},
	} {
		if got := quotaCost(c.r); got != c.want {
			t.Errorf("%s: cost %d, want %d", c.name, got, c.want)
		}
	}
}
