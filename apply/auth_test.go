package apply

import (
	"context"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// as returns r as proposed by user at the store's current auth revision.
func (e *applyEnv) as(user string, r *pb.InternalRaftRequest) *pb.InternalRaftRequest {
	r.Header = &pb.RequestHeader{Username: user, AuthRevision: e.auth.Revision()}
	return r
}

func (e *applyEnv) addUser(name string, roles ...string) {
	e.t.Helper()
	hash, err := e.auth.HashPassword("pw")
	if err != nil {
		e.t.Fatal(err)
	}
	e.do(e.as("root", &pb.InternalRaftRequest{AuthUserAdd: &pb.AuthUserAddRequest{Name: name, HashedPassword: hash}}))
	for _, r := range roles {
		e.do(e.as("root", &pb.InternalRaftRequest{AuthUserGrantRole: &pb.AuthUserGrantRoleRequest{User: name, Role: r}}))
	}
}

// authEnv has auth enabled with users root (root) and u (role r, read on
// "a"), and role r2 not granted to u.
func authEnv(t *testing.T) *applyEnv {
	e := newApplyEnv(t)
	e.do(e.as("", &pb.InternalRaftRequest{AuthRoleAdd: &pb.AuthRoleAddRequest{Name: "r"}}))
	e.do(e.as("", &pb.InternalRaftRequest{AuthRoleAdd: &pb.AuthRoleAddRequest{Name: "r2"}}))
	e.do(e.as("", &pb.InternalRaftRequest{AuthRoleGrantPermission: &pb.AuthRoleGrantPermissionRequest{
		Name: "r", Perm: &authpb.Permission{PermType: authpb.Permission_READ, Key: []byte("a")}}}))
	e.addUser("root", "root")
	e.addUser("u", "r")
	e.do(e.as("", &pb.InternalRaftRequest{AuthEnable: &pb.AuthEnableRequest{}}))
	return e
}

// TestAuthManagementNeedsRootAtApply: the requester in the entry header
// must hold root, except for AuthStatus, Authenticate, UserGet of oneself
// and RoleGet of one's own role, as in etcd.
func TestAuthManagementNeedsRootAtApply(t *testing.T) {
	e := authEnv(t)
	for _, tc := range []struct {
		name string
		user string
		r    *pb.InternalRaftRequest
		want error
	}{
		{"user add by u", "u", &pb.InternalRaftRequest{AuthUserAdd: &pb.AuthUserAddRequest{Name: "x", Options: &authpb.UserAddOptions{NoPassword: true}}}, rpctypes.ErrGRPCPermissionDenied},
		{"user add by nobody", "", &pb.InternalRaftRequest{AuthUserAdd: &pb.AuthUserAddRequest{Name: "x", Options: &authpb.UserAddOptions{NoPassword: true}}}, rpctypes.ErrGRPCUserEmpty},
		{"user add by a ghost", "ghost", &pb.InternalRaftRequest{AuthUserAdd: &pb.AuthUserAddRequest{Name: "x", Options: &authpb.UserAddOptions{NoPassword: true}}}, rpctypes.ErrGRPCUserNotFound},
		{"user list by u", "u", &pb.InternalRaftRequest{AuthUserList: &pb.AuthUserListRequest{}}, rpctypes.ErrGRPCPermissionDenied},
		{"role list by u", "u", &pb.InternalRaftRequest{AuthRoleList: &pb.AuthRoleListRequest{}}, rpctypes.ErrGRPCPermissionDenied},
		{"passwd of oneself by u", "u", &pb.InternalRaftRequest{AuthUserChangePassword: &pb.AuthUserChangePasswordRequest{Name: "u"}}, rpctypes.ErrGRPCPermissionDenied},
		{"auth disable by u", "u", &pb.InternalRaftRequest{AuthDisable: &pb.AuthDisableRequest{}}, rpctypes.ErrGRPCPermissionDenied},
		{"user get of root by u", "u", &pb.InternalRaftRequest{AuthUserGet: &pb.AuthUserGetRequest{Name: "root"}}, rpctypes.ErrGRPCPermissionDenied},
		{"role get of r2 by u", "u", &pb.InternalRaftRequest{AuthRoleGet: &pb.AuthRoleGetRequest{Role: "r2"}}, rpctypes.ErrGRPCPermissionDenied},
		{"user get of oneself by u", "u", &pb.InternalRaftRequest{AuthUserGet: &pb.AuthUserGetRequest{Name: "u"}}, nil},
		{"role get of own role by u", "u", &pb.InternalRaftRequest{AuthRoleGet: &pb.AuthRoleGetRequest{Role: "r"}}, nil},
		{"auth status by nobody", "", &pb.InternalRaftRequest{AuthStatus: &pb.AuthStatusRequest{}}, nil},
		{"user list by root", "root", &pb.InternalRaftRequest{AuthUserList: &pb.AuthUserListRequest{}}, nil},
	} {
		res, _ := e.batch(e.as(tc.user, tc.r))
		if res[0].Err != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, res[0].Err, tc.want)
		}
		if tc.want == nil && res[0].Resp == nil {
			t.Errorf("%s: no response", tc.name)
		}
	}
}

func TestAuthResponsesCarryTheStoreRevision(t *testing.T) {
	e := authEnv(t)
	e.do(e.as("root", putReq("k", 0))) // writes are checked at apply
	e.do(e.as("root", putReq("k", 0))) // writes are checked at apply
	res := e.do(e.as("root", &pb.InternalRaftRequest{AuthUserList: &pb.AuthUserListRequest{}}))
	resp := res.Resp.(*pb.AuthUserListResponse)
	if resp.Header.GetRevision() != 3 || strings.Join(resp.Users, ",") != "root,u" {
		t.Fatalf("%v", resp)
	}
}

// TestAuthenticateTokenNamesTheEntryIndex: the simple token applied at
// index i ends in ".i", and resolves on the store that applied it.
func TestAuthenticateTokenNamesTheEntryIndex(t *testing.T) {
	e := authEnv(t)
	b := e.db.NewIndexedBatch()
	defer b.Close()
	w := e.kv.NewWriter(b)
	defer w.Release()
	res, err := e.a.Apply(WithIndex(context.Background(), 77), w, b, &pb.InternalRaftRequest{
		Authenticate: &pb.InternalAuthenticateRequest{Name: "u", SimpleToken: "abcdefghijklmnop"}})
	if err != nil || res.Err != nil {
		t.Fatal(err, res.Err)
	}
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	tok := res.Resp.(*pb.AuthenticateResponse).Token
	if tok != "abcdefghijklmnop.77" {
		t.Fatalf("token %q", tok)
	}
	ai, err := e.auth.AuthInfoFromToken(context.Background(), tok)
	if err != nil || ai.Username != "u" {
		t.Fatalf("%v %v", ai, err)
	}
	res2, _ := e.batch(&pb.InternalRaftRequest{Authenticate: &pb.InternalAuthenticateRequest{Name: "ghost", SimpleToken: "x"}})
	if res2[0].Err != rpctypes.ErrGRPCAuthFailed {
		t.Fatalf("authenticate an unknown user: %v", res2[0].Err)
	}
}
