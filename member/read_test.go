package member

import (
	"sync/atomic"
	"testing"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/keeldb/keel/auth"
)

// startReadMember is startAuthMember with key "a" put and user u holding
// role r, which has no permission yet.
func startReadMember(t *testing.T) *leaseMember {
	t.Helper()
	lm := startAuthMember(t)
	lm.asRoot(&pb.InternalRaftRequest{AuthRoleAdd: &pb.AuthRoleAddRequest{Name: "r"}})
	lm.asRoot(&pb.InternalRaftRequest{AuthUserGrantRole: &pb.AuthUserGrantRoleRequest{User: "u", Role: "r"}})
	if _, err := lm.m.Put(lm.ctx(), lm.root(), &pb.PutRequest{Key: []byte("a"), Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	return lm
}

func (lm *leaseMember) root() *auth.AuthInfo {
	return &auth.AuthInfo{Username: "root", Revision: lm.m.Auth().Revision()}
}

// asRoot applies an auth change made by root.
func (lm *leaseMember) asRoot(r *pb.InternalRaftRequest) {
	lm.t.Helper()
	if _, err := lm.m.AuthRequest(lm.ctx(), lm.root(), r); err != nil {
		lm.t.Fatalf("%v: %v", r, err)
	}
}

var (
	grantReadA  = &pb.InternalRaftRequest{AuthRoleGrantPermission: &pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: &authpb.Permission{PermType: authpb.READ, Key: []byte("a")}}}
	revokeReadA = &pb.InternalRaftRequest{AuthRoleRevokePermission: &pb.AuthRoleRevokePermissionRequest{Role: "r", Key: []byte("a")}}
)

// duringWait makes the next linearizable read apply r as root as it starts
// waiting: an auth change committed before the read's ReadIndex round, but
// not applied here when the read arrived.
func (lm *leaseMember) duringWait(r *pb.InternalRaftRequest) {
	lm.t.Helper()
	var done atomic.Bool
	f := func() {
		if done.CompareAndSwap(false, true) {
			lm.asRoot(r)
		}
	}
	lm.m.reads.onWait.Store(&f)
	lm.t.Cleanup(func() { lm.m.reads.onWait.Store(nil) })
}

// checkAs is the ReadCheck the api builds for a token of user: the user at
// the auth revision of the moment it runs, then permitted, then a
// comparison of the revision once read. Before returning, it runs meanwhile
// (if not nil), standing for an auth change applied while the read is
// served.
func (lm *leaseMember) checkAs(user string, permitted func(*auth.Store, *auth.AuthInfo) error, meanwhile func()) ReadCheck {
	return func() (func() error, error) {
		as := lm.m.Auth()
		ai := &auth.AuthInfo{Username: user, Revision: as.Revision()}
		if err := permitted(as, ai); err != nil {
			return nil, err
		}
		if meanwhile != nil {
			meanwhile()
		}
		return func() error {
			if ai.Revision != as.Revision() {
				return rpctypes.ErrGRPCAuthOldRevision
			}
			return nil
		}, nil
	}
}

func readsA(as *auth.Store, ai *auth.AuthInfo) error {
	return as.IsRangePermitted(ai, []byte("a"), nil)
}

// kvReads are the member's KV reads of "a", linearizable, each checked by
// check; they return the value read.
var kvReads = []struct {
	name string
	read func(lm *leaseMember, check ReadCheck) (string, error)
}{
	{"Range", func(lm *leaseMember, check ReadCheck) (string, error) {
		resp, err := lm.m.Range(lm.ctx(), &pb.RangeRequest{Key: []byte("a")}, check)
		if err != nil {
			return "", err
		}
		return string(resp.Kvs[0].Value), nil
	}},
	{"RangeStream", func(lm *leaseMember, check ReadCheck) (string, error) {
		var v string
		err := lm.m.RangeStream(lm.ctx(), &pb.RangeRequest{Key: []byte("a")}, check, func(resp *pb.RangeResponse) error {
			for _, kv := range resp.Kvs {
				v += string(kv.Value)
			}
			return nil
		})
		return v, err
	}},
	{"ReadTxn", func(lm *leaseMember, check ReadCheck) (string, error) {
		get := &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("a")}}}
		resp, err := lm.m.ReadTxn(lm.ctx(), &pb.TxnRequest{Success: []*pb.RequestOp{get}}, check)
		if err != nil {
			return "", err
		}
		return string(resp.Responses[0].GetResponseRange().Kvs[0].Value), nil
	}},
}

// TestLinearizableReadIsCheckedAfterItsWait: as in etcd, a linearizable
// read is checked once its ReadIndex wait is over, against every auth
// change committed before it: a grant applied during the wait lets the read
// through, and a revoke applied during the wait refuses it with
// PermissionDenied (not ErrAuthOldRevision).
func TestLinearizableReadIsCheckedAfterItsWait(t *testing.T) {
	for _, tc := range kvReads {
		t.Run(tc.name, func(t *testing.T) {
			lm := startReadMember(t)
			lm.duringWait(grantReadA)
			if v, err := tc.read(lm, lm.checkAs("u", readsA, nil)); err != nil || v != "v" {
				t.Fatalf("read while a grant is applied: %q, %v; want the value", v, err)
			}
			lm.duringWait(revokeReadA)
			if v, err := tc.read(lm, lm.checkAs("u", readsA, nil)); err != rpctypes.ErrGRPCPermissionDenied {
				t.Fatalf("read while a revoke is applied: %q, %v; want %v", v, err, rpctypes.ErrGRPCPermissionDenied)
			}
		})
	}
}

// TestReadServedAcrossAnAuthChangeIsRefused: a read checked and then
// served while an auth change is applied is refused with
// ErrAuthOldRevision, so nothing read under a revoked permission is
// answered (a range stream's chunks are sent already: it ends with the
// error). The same holds for a lease's time-to-live with its keys.
func TestReadServedAcrossAnAuthChangeIsRefused(t *testing.T) {
	revoke := func(lm *leaseMember) func() { return func() { lm.asRoot(revokeReadA) } }
	for _, tc := range kvReads {
		t.Run(tc.name, func(t *testing.T) {
			lm := startReadMember(t)
			lm.asRoot(grantReadA)
			if v, err := tc.read(lm, lm.checkAs("u", readsA, nil)); err != nil || v != "v" {
				t.Fatalf("read: %q, %v; want the value", v, err)
			}
			if _, err := tc.read(lm, lm.checkAs("u", readsA, revoke(lm))); err != rpctypes.ErrGRPCAuthOldRevision {
				t.Fatalf("read across a revoke: %v, want %v", err, rpctypes.ErrGRPCAuthOldRevision)
			}
		})
	}
	t.Run("LeaseTimeToLive", func(t *testing.T) {
		lm := startReadMember(t)
		lm.asRoot(grantReadA)
		g, err := lm.m.LeaseGrant(lm.ctx(), &pb.LeaseGrantRequest{TTL: 600})
		if err != nil {
			t.Fatal(err)
		}
		r := &pb.LeaseTimeToLiveRequest{ID: g.ID, Keys: true}
		if _, err := lm.m.LeaseTimeToLive(lm.ctx(), r, lm.checkAs("u", readsA, nil)); err != nil {
			t.Fatal(err)
		}
		if _, err := lm.m.LeaseTimeToLive(lm.ctx(), r, lm.checkAs("u", readsA, revoke(lm))); err != rpctypes.ErrGRPCAuthOldRevision {
			t.Fatalf("time-to-live across a revoke: %v, want %v", err, rpctypes.ErrGRPCAuthOldRevision)
		}
	})
}
