package api

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/keeldb/keel/auth"
	"github.com/keeldb/keel/storage"
)

// authFixture is an auth store with auth enabled, users root (root role)
// and u (role r: read on "a"), and a simple token of u.
type authFixture struct {
	t      *testing.T
	db     *pebble.DB
	store  *auth.Store
	tokenU string
}

func newAuthFixture(t *testing.T) *authFixture {
	t.Helper()
	e, err := storage.Open("db", storage.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	s, err := auth.Load(e.DB(), auth.Options{Token: "simple", BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	f := &authFixture{t: t, db: e.DB(), store: s}
	hash, err := s.HashPassword("pw")
	if err != nil {
		t.Fatal(err)
	}
	f.change(func(b *pebble.Batch) error {
		must := func(_ any, err error) {
			if err != nil {
				t.Fatal(err)
			}
		}
		must(s.RoleAdd(b, &pb.AuthRoleAddRequest{Name: "root"}))
		must(s.RoleAdd(b, &pb.AuthRoleAddRequest{Name: "r"}))
		must(s.RoleGrantPermission(b, &pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: &authpb.Permission{PermType: authpb.READ, Key: []byte("a")}}))
		must(s.UserAdd(b, &pb.AuthUserAddRequest{Name: "root", HashedPassword: hash}))
		must(s.UserAdd(b, &pb.AuthUserAddRequest{Name: "u", HashedPassword: hash}))
		must(s.UserGrantRole(b, &pb.AuthUserGrantRoleRequest{User: "root", Role: "root"}))
		must(s.UserGrantRole(b, &pb.AuthUserGrantRoleRequest{User: "u", Role: "r"}))
		must(s.AuthEnable(b))
		return nil
	})
	prefix, err := s.TokenPrefix()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := s.Authenticate(100, &pb.InternalAuthenticateRequest{Name: "u", SimpleToken: prefix})
	if err != nil || resp.Token == "" {
		t.Fatalf("authenticate u: %v %v", resp, err)
	}
	f.tokenU = resp.Token
	return f
}

// change runs auth changes in one committed batch.
func (f *authFixture) change(fn func(b *pebble.Batch) error) {
	f.t.Helper()
	b := f.db.NewIndexedBatch()
	defer b.Close()
	if err := fn(b); err != nil {
		f.t.Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		f.t.Fatal(err)
	}
}

// request is a gRPC request with the given metadata (key, value pairs)
// over a connection whose verified client certificate has common name cn
// ("" for no TLS), and the identity source of a server with or without
// --client-cert-auth.
type request struct {
	ids *identitySource
	ctx context.Context
}

func (f *authFixture) request(certAuth bool, cn string, kv ...string) request {
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(kv...))
	if cn != "" {
		ctx = withClientCert(ctx, cn)
	}
	return request{ids: &identitySource{store: f.store, certAuth: certAuth}, ctx: ctx}
}

// withClientCert is ctx on a TLS connection whose verified client
// certificate has common name cn.
func withClientCert(ctx context.Context, cn string) context.Context {
	cert := &x509.Certificate{Subject: pkix.Name{CommonName: cn}}
	ti := credentials.TLSInfo{State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert}}}}
	return peer.NewContext(ctx, &peer.Peer{AuthInfo: ti})
}

// TestAuthInfoResolvesTokenThenCertificate: the token names the user; a bad
// token is etcd's invalid auth token even with a certificate; without a
// token the certificate's CN names the user only with --client-cert-auth,
// and never on a gateway request.
func TestAuthInfoResolvesTokenThenCertificate(t *testing.T) {
	f := newAuthFixture(t)
	for _, tc := range []struct {
		name     string
		req      request
		wantUser string // "" for no identity
		wantErr  error
	}{
		{"token", f.request(false, "", "token", f.tokenU), "u", nil},
		{"token in authorization", f.request(false, "", "authorization", "Bearer "+f.tokenU), "u", nil},
		{"token wins over certificate", f.request(true, "root", "token", f.tokenU), "u", nil},
		{"bad token", f.request(false, "", "token", "nope.1"), "", rpctypes.ErrGRPCInvalidAuthToken},
		{"bad token with certificate", f.request(true, "root", "token", "nope.1"), "", rpctypes.ErrGRPCInvalidAuthToken},
		{"certificate with client-cert-auth", f.request(true, "root"), "root", nil},
		{"certificate without client-cert-auth", f.request(false, "root"), "", nil},
		{"certificate on a gateway request", f.request(true, "root", "grpcgateway-accept", "application/json"), "", nil},
		{"nothing", f.request(true, ""), "", nil},
	} {
		ai, err := tc.req.ids.authInfo(tc.req.ctx)
		if err != tc.wantErr {
			t.Errorf("%s: error %v, want %v", tc.name, err, tc.wantErr)
			continue
		}
		switch {
		case tc.wantUser == "" && ai != nil:
			t.Errorf("%s: identity %+v, want none", tc.name, ai)
		case tc.wantUser != "" && (ai == nil || ai.Username != tc.wantUser || ai.Revision != f.store.Revision()):
			t.Errorf("%s: identity %+v, want %s at revision %d", tc.name, ai, tc.wantUser, f.store.Revision())
		}
	}
}

// TestIdentityChecksAnswerAsEtcd: requireUser, requireAdmin and readCheck
// give etcd's errors for nobody, a user, root and a bad token.
func TestIdentityChecksAnswerAsEtcd(t *testing.T) {
	f := newAuthFixture(t)
	readA := func(s *auth.Store, ai *auth.AuthInfo) error { return s.IsRangePermitted(ai, []byte("a"), nil) }
	read := func(req request) error {
		_, err := req.ids.readCheck(req.ctx, readA)
		return err
	}
	noCN := f.request(true, "")
	noCN.ctx = withClientCert(noCN.ctx, "")
	for _, tc := range []struct {
		name                  string
		req                   request
		user, admin, readsKey error
	}{
		{"nobody", f.request(false, ""), rpctypes.ErrGRPCUserEmpty, rpctypes.ErrGRPCUserEmpty, rpctypes.ErrGRPCUserEmpty},
		{"bad token", f.request(false, "", "token", "x"), rpctypes.ErrGRPCInvalidAuthToken, rpctypes.ErrGRPCInvalidAuthToken, rpctypes.ErrGRPCInvalidAuthToken},
		{"u", f.request(false, "", "token", f.tokenU), nil, rpctypes.ErrGRPCPermissionDenied, nil},
		{"root by certificate", f.request(true, "root"), nil, nil, nil},
		{"unknown user by certificate", f.request(true, "ghost"), nil, rpctypes.ErrGRPCUserNotFound, rpctypes.ErrGRPCPermissionDenied},
		// As etcd: an empty CN names a user without a name.
		{"certificate without CN", noCN, nil, rpctypes.ErrGRPCUserEmpty, rpctypes.ErrGRPCPermissionDenied},
	} {
		if _, err := tc.req.ids.requireUser(tc.req.ctx); err != tc.user {
			t.Errorf("%s: requireUser %v, want %v", tc.name, err, tc.user)
		}
		if err := tc.req.ids.requireAdmin(tc.req.ctx); err != tc.admin {
			t.Errorf("%s: requireAdmin %v, want %v", tc.name, err, tc.admin)
		}
		if err := read(tc.req); err != tc.readsKey {
			t.Errorf("%s: readCheck %v, want %v", tc.name, err, tc.readsKey)
		}
	}
}

// TestReadRefusedWhenAuthChangesWhileServed: a read checked before an auth
// change and answered after it is refused with ErrAuthOldRevision, so that
// nothing read under a revoked permission reaches the client; a later read
// is checked against the change.
func TestReadRefusedWhenAuthChangesWhileServed(t *testing.T) {
	f := newAuthFixture(t)
	req := f.request(false, "", "token", f.tokenU)
	readA := func(s *auth.Store, ai *auth.AuthInfo) error { return s.IsRangePermitted(ai, []byte("a"), nil) }
	after, err := req.ids.readCheck(req.ctx, readA)
	if err != nil {
		t.Fatal(err)
	}
	f.change(func(b *pebble.Batch) error {
		_, err := f.store.RoleRevokePermission(b, &pb.AuthRoleRevokePermissionRequest{Role: "r", Key: []byte("a")})
		return err
	})
	if err := after(); err != rpctypes.ErrGRPCAuthOldRevision {
		t.Fatalf("read answered after the revoke: %v, want %v", err, rpctypes.ErrGRPCAuthOldRevision)
	}
	if _, err := req.ids.readCheck(req.ctx, readA); err != rpctypes.ErrGRPCPermissionDenied {
		t.Fatalf("read after the revoke: %v, want %v", err, rpctypes.ErrGRPCPermissionDenied)
	}
}

// TestChecksCostNoAllocationWhileAuthIsDisabled: the checks every request
// makes are free while auth is disabled (they used to allocate an empty
// identity and a closure on every read).
func TestChecksCostNoAllocationWhileAuthIsDisabled(t *testing.T) {
	f := newAuthFixture(t)
	f.change(func(b *pebble.Batch) error {
		_, err := f.store.AuthDisable(b)
		return err
	})
	req := f.request(true, "root", "token", f.tokenU)
	readA := func(s *auth.Store, ai *auth.AuthInfo) error { return s.IsRangePermitted(ai, []byte("a"), nil) }
	allocs := testing.AllocsPerRun(100, func() {
		after, err := req.ids.readCheck(req.ctx, readA)
		if err != nil || after() != nil {
			t.Fatal("read refused while auth is disabled")
		}
		if _, err := req.ids.requireUser(req.ctx); err != nil {
			t.Fatal(err)
		}
		if err := req.ids.requireAdmin(req.ctx); err != nil {
			t.Fatal(err)
		}
		after, err = req.ids.leaseCheck(req.ctx, readA)
		if err != nil || after() != nil {
			t.Fatal("lease check refused while auth is disabled")
		}
		if err := req.ids.leaseCheckNow(req.ctx, readA); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("the checks allocate %v times while auth is disabled, want 0", allocs)
	}
}

// TestLeaseTimeToLiveOfRootRefusedAcrossAnAuthChange: as etcd's
// time-to-live with keys, root's answer is refused too when an auth change
// is applied while it is served; the lease list and keepalive check root no
// further, as etcd.
func TestLeaseTimeToLiveOfRootRefusedAcrossAnAuthChange(t *testing.T) {
	f := newAuthFixture(t)
	root := f.request(true, "root")
	refuse := func(*auth.Store, *auth.AuthInfo) error { return rpctypes.ErrGRPCPermissionDenied }
	after, err := root.ids.leaseCheck(root.ctx, refuse)
	if err != nil {
		t.Fatalf("root's time-to-live: %v", err)
	}
	f.change(func(b *pebble.Batch) error {
		_, err := f.store.RoleRevokePermission(b, &pb.AuthRoleRevokePermissionRequest{Role: "r", Key: []byte("a")})
		return err
	})
	if err := after(); err != rpctypes.ErrGRPCAuthOldRevision {
		t.Fatalf("root's time-to-live answered after an auth change: %v, want %v", err, rpctypes.ErrGRPCAuthOldRevision)
	}
	if err := root.ids.leaseCheckNow(root.ctx, refuse); err != nil {
		t.Fatalf("root's lease list: %v", err)
	}
	u := f.request(false, "", "token", f.tokenU)
	if err := u.ids.leaseCheckNow(u.ctx, refuse); err != rpctypes.ErrGRPCPermissionDenied {
		t.Fatalf("u's lease list: %v, want %v", err, rpctypes.ErrGRPCPermissionDenied)
	}
	nobody := f.request(false, "")
	if _, err := nobody.ids.leaseCheck(nobody.ctx, refuse); err != rpctypes.ErrGRPCUserEmpty {
		t.Fatalf("time-to-live without a user: %v, want %v", err, rpctypes.ErrGRPCUserEmpty)
	}
}
