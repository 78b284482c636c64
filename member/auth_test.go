package member

import (
	"testing"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/crypto/bcrypt"

	"github.com/keeldb/keel/auth"
)

// startAuthMember starts a one-member cluster issuing simple tokens, with
// auth enabled: user root (no password, holding role root) and user u
// (password "pw", no role).
func startAuthMember(t *testing.T) *leaseMember {
	t.Helper()
	lm := startLeaseMember(t, 0)
	lm.cfg.AuthToken = "simple"
	lm.cfg.BcryptCost = bcrypt.MinCost
	lm.restart()
	for _, r := range []*pb.InternalRaftRequest{
		{AuthUserAdd: &pb.AuthUserAddRequest{Name: "root", Options: &authpb.UserAddOptions{NoPassword: true}}},
		{AuthUserGrantRole: &pb.AuthUserGrantRoleRequest{User: "root", Role: "root"}},
		{AuthUserAdd: &pb.AuthUserAddRequest{Name: "u", Password: "pw"}},
		{AuthEnable: &pb.AuthEnableRequest{}},
	} {
		if _, err := lm.m.AuthRequest(lm.ctx(), nil, r); err != nil {
			t.Fatalf("%v: %v", r, err)
		}
	}
	return lm
}

// TestSimpleTokenOfAnUncommittedIndexIsRefusedAtOnce: a simple token names
// the index of the entry that issued it. An index past the leader's commit
// index names no entry: the token is refused after one read index round
// instead of parking the request until its context ends.
func TestSimpleTokenOfAnUncommittedIndexIsRefusedAtOnce(t *testing.T) {
	lm := startAuthMember(t)
	ctx := lm.ctx()
	for _, tok := range []string{"abcdefghijklmnop.18446744073709551615", "abcdefghijklmnop.1000000"} {
		_, err := lm.m.Auth().AuthInfoFromToken(ctx, tok)
		if err != rpctypes.ErrGRPCInvalidAuthToken {
			t.Fatalf("token %s: %v, want %v", tok, err, rpctypes.ErrGRPCInvalidAuthToken)
		}
		if ctx.Err() != nil {
			t.Fatalf("token %s was refused only when the request's context ended", tok)
		}
	}
	resp, err := lm.m.Authenticate(ctx, &pb.AuthenticateRequest{Name: "u", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	if ai, err := lm.m.Auth().AuthInfoFromToken(ctx, resp.Token); err != nil || ai.Username != "u" {
		t.Fatalf("a token just issued: %v %v", ai, err)
	}
}

// TestAuthRequestChecksRootBeforeHashing: while auth is enabled, a request
// that carries a password is refused before its password is hashed (bcrypt
// is slow on purpose; nobody unauthorised may make the member run it) and
// before anything is proposed, with the error the apply would give.
func TestAuthRequestChecksRootBeforeHashing(t *testing.T) {
	lm := startAuthMember(t)
	ctx := lm.ctx()
	for _, tc := range []struct {
		who  *auth.AuthInfo
		want error
	}{
		{nil, rpctypes.ErrGRPCUserEmpty},
		{&auth.AuthInfo{Username: "u", Revision: lm.m.Auth().Revision()}, rpctypes.ErrGRPCPermissionDenied},
		{&auth.AuthInfo{Username: "ghost", Revision: lm.m.Auth().Revision()}, rpctypes.ErrGRPCUserNotFound},
	} {
		for _, r := range []*pb.InternalRaftRequest{
			{AuthUserAdd: &pb.AuthUserAddRequest{Name: "v", Password: "secret"}},
			{AuthUserChangePassword: &pb.AuthUserChangePasswordRequest{Name: "u", Password: "secret"}},
		} {
			applied := lm.m.applied.Load()
			_, err := lm.m.AuthRequest(ctx, tc.who, r)
			if err != tc.want {
				t.Errorf("%v as %v: %v, want %v", r, tc.who, err, tc.want)
			}
			if r.GetAuthUserAdd().GetHashedPassword() != "" || r.GetAuthUserChangePassword().GetHashedPassword() != "" {
				t.Errorf("%v as %v: the password was hashed", r, tc.who)
			}
			if got := lm.m.applied.Load(); got != applied {
				t.Errorf("%v as %v: proposed (applied index %d -> %d)", r, tc.who, applied, got)
			}
		}
	}
	root := &auth.AuthInfo{Username: "root", Revision: lm.m.Auth().Revision()}
	if _, err := lm.m.AuthRequest(ctx, root, &pb.InternalRaftRequest{AuthUserAdd: &pb.AuthUserAddRequest{Name: "v", Password: "secret"}}); err != nil {
		t.Fatalf("root adds a user: %v", err)
	}
	if _, err := lm.m.Auth().CheckPassword("v", "secret"); err != nil {
		t.Fatalf("the added user's password: %v", err)
	}
}

// TestAuthenticateWhileDisabledLogsNoInvalidRequest: as etcd, an
// Authenticate refused because auth is disabled is not logged as an
// invalid authentication (clients probe with it).
func TestAuthenticateWhileDisabledLogsNoInvalidRequest(t *testing.T) {
	lm := startLeaseMember(t, 0)
	core, logs := observer.New(zap.InfoLevel)
	lm.cfg.Logger = zap.New(core)
	lm.restart()
	_, err := lm.m.Authenticate(lm.ctx(), &pb.AuthenticateRequest{Name: "root", Password: "pw"})
	if err != rpctypes.ErrGRPCAuthNotEnabled {
		t.Fatalf("authenticate while disabled: %v, want %v", err, rpctypes.ErrGRPCAuthNotEnabled)
	}
	if n := logs.FilterMessage("invalid authentication was requested").Len(); n != 0 {
		t.Fatalf("logged %d invalid authentication requests", n)
	}
}
