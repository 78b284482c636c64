package member

import (
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/keeldb/keel/apply"
	"github.com/keeldb/keel/metrics"
)

func TestOpNameIsEtcdsApplyOp(t *testing.T) {
	for _, c := range []struct {
		r    *pb.InternalRaftRequest
		want string
	}{
		{&pb.InternalRaftRequest{Header: &pb.RequestHeader{ID: 1}, Put: &pb.PutRequest{}}, "Put"},
		{&pb.InternalRaftRequest{ID: 3, DeleteRange: &pb.DeleteRangeRequest{}}, "DeleteRange"},
		{&pb.InternalRaftRequest{LeaseGrant: &pb.LeaseGrantRequest{}}, "LeaseGrant"},
		{&pb.InternalRaftRequest{AuthUserAdd: &pb.AuthUserAddRequest{}}, "AuthUserAdd"},
		{&pb.InternalRaftRequest{Authenticate: &pb.InternalAuthenticateRequest{}}, "Authenticate"},
		{&pb.InternalRaftRequest{}, "unknown"},
	} {
		if got := opName(c.r); got != c.want {
			t.Errorf("opName(%v) = %q, want %q", c.r, got, c.want)
		}
	}
}

func TestAppliedOpsCountsTheBranchThatRan(t *testing.T) {
	put := func(k, v string) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(k), Value: []byte(v)}}}
	}
	del := &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{}}}
	rng := &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{}}}
	inner := &pb.TxnRequest{Success: []*pb.RequestOp{put("a", "bc")}, Failure: []*pb.RequestOp{del}}
	txn := &pb.TxnRequest{
		Success: []*pb.RequestOp{put("x", "y"), {Request: &pb.RequestOp_RequestTxn{RequestTxn: inner}}},
		Failure: []*pb.RequestOp{rng},
	}
	resp := &pb.TxnResponse{Succeeded: true, Responses: []*pb.ResponseOp{
		{Response: &pb.ResponseOp_ResponsePut{ResponsePut: &pb.PutResponse{}}},
		{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: &pb.TxnResponse{Succeeded: false}}},
	}}
	got := appliedOps(&pb.InternalRaftRequest{Txn: txn}, &apply.Result{Resp: resp})
	if want := (metrics.Ops{Puts: 1, Deletes: 1, PutBytes: 2}); got != want {
		t.Errorf("appliedOps = %+v, want %+v", got, want)
	}
	if got := appliedOps(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("k")}}, &apply.Result{Err: errTest}); got != (metrics.Ops{}) {
		t.Errorf("a failed put counted %+v", got)
	}
}

var errTest = errTestType{}

type errTestType struct{}

func (errTestType) Error() string { return "test" }
