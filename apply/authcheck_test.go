package apply

import (
	"context"
	"testing"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/keeldb/keel/mvcc"
)

// rbacEnv is authEnv plus user w, whose role w may write [b, d) and read
// "b" only.
func rbacEnv(t *testing.T) *applyEnv {
	e := authEnv(t)
	e.do(e.as("root", &pb.InternalRaftRequest{AuthRoleAdd: &pb.AuthRoleAddRequest{Name: "w"}}))
	e.do(e.as("root", &pb.InternalRaftRequest{AuthRoleGrantPermission: &pb.AuthRoleGrantPermissionRequest{
		Name: "w", Perm: &authpb.Permission{PermType: authpb.Permission_WRITE, Key: []byte("b"), RangeEnd: []byte("d")}}}))
	e.do(e.as("root", &pb.InternalRaftRequest{AuthRoleGrantPermission: &pb.AuthRoleGrantPermissionRequest{
		Name: "w", Perm: &authpb.Permission{PermType: authpb.Permission_READ, Key: []byte("b")}}}))
	e.addUser("w", "w")
	return e
}

func txnReq(t *pb.TxnRequest) *pb.InternalRaftRequest { return &pb.InternalRaftRequest{Txn: t} }

// value returns the value of key, "" if it does not exist.
func (e *applyEnv) value(key string) string {
	e.t.Helper()
	res, err := e.kv.Read().Range(context.Background(), []byte(key), nil, mvcc.RangeOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	if len(res.KVs) == 0 {
		return ""
	}
	return string(res.KVs[0].Value)
}

// TestWritesAreCheckedAtApply: the requester in the header needs write
// permission on what a put, delete or txn writes, read permission on what
// it compares, reads or returns as previous values, nested txns and both
// branches included; nobody gets etcd's "user name is empty", root may do
// anything. A refused request writes nothing.
func TestWritesAreCheckedAtApply(t *testing.T) {
	put := func(k string, prevKV bool) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(k), Value: []byte("x"), PrevKv: prevKV}}}
	}
	rng := func(k string) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte(k)}}}
	}
	del := func(k, end string, prevKV bool) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte(k), RangeEnd: []byte(end), PrevKv: prevKV}}}
	}
	nested := func(t *pb.TxnRequest) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: t}}
	}
	cmp := func(k string) []*pb.Compare {
		return []*pb.Compare{{Key: []byte(k), Target: pb.Compare_VERSION, Result: pb.Compare_EQUAL}}
	}
	for _, tc := range []struct {
		name    string
		user    string
		r       *pb.InternalRaftRequest
		want    error
		written string // key written when permitted
	}{
		{"put in", "w", putReq("c", 0), nil, "c"},
		{"put outside", "w", putReq("d", 0), rpctypes.ErrGRPCPermissionDenied, ""},
		{"put by a reader", "u", putReq("a", 0), rpctypes.ErrGRPCPermissionDenied, ""},
		{"put by nobody", "", putReq("c", 0), rpctypes.ErrGRPCUserEmpty, ""},
		{"put by root", "root", putReq("z", 0), nil, "z"},
		{"put prev_kv without read", "w", &pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("c"), PrevKv: true}}, rpctypes.ErrGRPCPermissionDenied, ""},
		{"put prev_kv with read", "w", &pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("b"), PrevKv: true}}, nil, "b"},
		{"delete range in", "w", &pb.InternalRaftRequest{DeleteRange: &pb.DeleteRangeRequest{Key: []byte("b"), RangeEnd: []byte("d")}}, nil, ""},
		{"delete range over", "w", &pb.InternalRaftRequest{DeleteRange: &pb.DeleteRangeRequest{Key: []byte("b"), RangeEnd: []byte("e")}}, rpctypes.ErrGRPCPermissionDenied, ""},
		{"delete prev_kv without read", "w", &pb.InternalRaftRequest{DeleteRange: &pb.DeleteRangeRequest{Key: []byte("c"), PrevKv: true}}, rpctypes.ErrGRPCPermissionDenied, ""},
		{"txn put in", "w", txnReq(&pb.TxnRequest{Success: []*pb.RequestOp{put("c", false)}}), nil, "c"},
		{"txn compare not readable", "w", txnReq(&pb.TxnRequest{Compare: cmp("c"), Success: []*pb.RequestOp{put("c", false)}}), rpctypes.ErrGRPCPermissionDenied, ""},
		{"txn compare readable", "w", txnReq(&pb.TxnRequest{Compare: cmp("b"), Success: []*pb.RequestOp{put("c", false)}, Failure: []*pb.RequestOp{put("c", false)}}), nil, "c"},
		{"txn failure branch outside", "w", txnReq(&pb.TxnRequest{Success: []*pb.RequestOp{put("c", false)}, Failure: []*pb.RequestOp{put("z", false)}}), rpctypes.ErrGRPCPermissionDenied, ""},
		{"txn range not readable", "w", txnReq(&pb.TxnRequest{Success: []*pb.RequestOp{put("c", false), rng("c")}}), rpctypes.ErrGRPCPermissionDenied, ""},
		{"txn nested put outside", "w", txnReq(&pb.TxnRequest{Success: []*pb.RequestOp{put("c", false), nested(&pb.TxnRequest{Failure: []*pb.RequestOp{put("z", false)}})}}), rpctypes.ErrGRPCPermissionDenied, ""},
		{"txn nested compare not readable", "w", txnReq(&pb.TxnRequest{Success: []*pb.RequestOp{nested(&pb.TxnRequest{Compare: cmp("a"), Success: []*pb.RequestOp{put("c", false)}})}}), rpctypes.ErrGRPCPermissionDenied, ""},
		{"txn nested put prev_kv with read", "w", txnReq(&pb.TxnRequest{Success: []*pb.RequestOp{nested(&pb.TxnRequest{Success: []*pb.RequestOp{put("b", true)}})}}), nil, "b"},
		{"txn delete prev_kv without read", "w", txnReq(&pb.TxnRequest{Success: []*pb.RequestOp{del("c", "", true)}}), rpctypes.ErrGRPCPermissionDenied, ""},
		{"txn delete over", "w", txnReq(&pb.TxnRequest{Failure: []*pb.RequestOp{del("a", "d", false)}}), rpctypes.ErrGRPCPermissionDenied, ""},
		{"txn by nobody", "", txnReq(&pb.TxnRequest{Success: []*pb.RequestOp{put("c", false)}}), rpctypes.ErrGRPCUserEmpty, ""},
	} {
		e := rbacEnv(t)
		r := e.as(tc.user, tc.r)
		if tc.user == "" {
			r.Header = &pb.RequestHeader{} // as proposed without a token
		}
		res, _ := e.batch(r)
		if res[0].Err != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, res[0].Err, tc.want)
			continue
		}
		for _, k := range []string{"a", "b", "c", "d", "z"} {
			got, want := e.value(k), ""
			if k == tc.written {
				want = "x"
				if tc.r.Put != nil {
					want = string(tc.r.Put.Value)
				}
			}
			if got != want {
				t.Errorf("%s: key %s = %q, want %q", tc.name, k, got, want)
			}
		}
	}
}

// TestWriteProposedBeforeAnAuthChangeFailsAtApply: a write whose requester
// was checked at an auth revision that an auth change applied since has
// moved on (here in the same batch, between propose and apply) fails with
// ErrAuthOldRevision and writes nothing, so a revoked permission is
// honoured. A write proposed after the change is checked against it.
func TestWriteProposedBeforeAnAuthChangeFailsAtApply(t *testing.T) {
	e := rbacEnv(t)
	stale := e.as("w", putReq("c", 0))
	revoke := e.as("root", &pb.InternalRaftRequest{AuthRoleRevokePermission: &pb.AuthRoleRevokePermissionRequest{
		Role: "w", Key: []byte("b"), RangeEnd: []byte("d")}})
	res, _ := e.batch(revoke, stale)
	if res[0].Err != nil {
		t.Fatalf("revoke: %v", res[0].Err)
	}
	if res[1].Err != rpctypes.ErrGRPCAuthOldRevision {
		t.Fatalf("put proposed before the revoke: %v, want %v", res[1].Err, rpctypes.ErrGRPCAuthOldRevision)
	}
	if v := e.value("c"); v != "" {
		t.Fatalf("refused put wrote %q", v)
	}
	res, _ = e.batch(e.as("w", putReq("c", 0)))
	if res[0].Err != rpctypes.ErrGRPCPermissionDenied {
		t.Fatalf("put proposed after the revoke: %v, want %v", res[0].Err, rpctypes.ErrGRPCPermissionDenied)
	}
}

// TestLeaseWritesNeedWriteOnTheLeaseKeys: revoking a lease, or attaching a
// key to it, needs write permission on every key attached to it (those of
// earlier entries of the same batch included); root may always, and the
// member revokes expired leases as root.
func TestLeaseWritesNeedWriteOnTheLeaseKeys(t *testing.T) {
	e := rbacEnv(t)
	e.do(e.as("root", grantReq(1, 60)))
	e.do(e.as("root", grantReq(2, 60)))
	e.do(e.as("root", putReq("c", 1)))
	e.do(e.as("root", putReq("z", 2)))

	if res, _ := e.batch(e.as("w", putReq("b", 2))); res[0].Err != rpctypes.ErrGRPCPermissionDenied {
		t.Errorf("attach to a lease holding z: %v, want permission denied", res[0].Err)
	}
	if res, _ := e.batch(e.as("w", revokeReq(2))); res[0].Err != rpctypes.ErrGRPCPermissionDenied {
		t.Errorf("revoke of a lease holding z: %v, want permission denied", res[0].Err)
	}
	// z joins lease 1 in the same batch as w's revoke.
	res, _ := e.batch(e.as("root", putReq("z", 1)), e.as("w", revokeReq(1)))
	if res[1].Err != rpctypes.ErrGRPCPermissionDenied {
		t.Errorf("revoke of a lease z joined earlier in the batch: %v, want permission denied", res[1].Err)
	}
	e.do(e.as("root", putReq("z", 2)))
	if res, _ := e.batch(e.as("w", putReq("b", 1))); res[0].Err != nil {
		t.Errorf("attach to a lease holding only c: %v", res[0].Err)
	}
	if res, _ := e.batch(e.as("w", revokeReq(1))); res[0].Err != nil {
		t.Errorf("revoke of a lease holding b and c: %v", res[0].Err)
	}
	if v := e.value("c"); v != "" {
		t.Errorf("revoked lease's key c still holds %q", v)
	}
	expiry := revokeReq(2)
	expiry.Header = &pb.RequestHeader{Username: "root"}
	if res, _ := e.batch(expiry); res[0].Err != nil {
		t.Errorf("expiry revoke as root: %v", res[0].Err)
	}
}

// TestWritesProposedBeforeAuthIsDisabledAreApplied: once an AuthDisable is
// applied, the writes after it in the log are applied whoever proposed them
// and whatever they write, as in etcd, although the disable moved the auth
// revision past the one they were proposed at.
func TestWritesProposedBeforeAuthIsDisabledAreApplied(t *testing.T) {
	e := rbacEnv(t)
	outside := e.as("w", putReq("z", 0))
	nobody := putReq("a", 0)
	nobody.Header = &pb.RequestHeader{}
	disable := e.as("root", &pb.InternalRaftRequest{AuthDisable: &pb.AuthDisableRequest{}})
	res, _ := e.batch(disable, outside, nobody)
	for i, what := range []string{"disable", "put outside w's permission", "put by nobody"} {
		if res[i].Err != nil {
			t.Errorf("%s: %v", what, res[i].Err)
		}
	}
	for _, k := range []string{"z", "a"} {
		if e.value(k) == "" {
			t.Errorf("key %s not written", k)
		}
	}
}
