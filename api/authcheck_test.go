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

// request is the context of a gRPC request with the given metadata (key,
// value pairs) over a connection whose verified client certificate has
// common name cn ("" for no TLS).
func (f *authFixture) request(certAuth bool, cn string, kv ...string) context.Context {
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(kv...))
	if cn != "" {
		cert := &x509.Certificate{Subject: pkix.Name{CommonName: cn}}
		ti := credentials.TLSInfo{State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert}}}}
		ctx = peer.NewContext(ctx, &peer.Peer{AuthInfo: ti})
	}
	return context.WithValue(ctx, identityKey{}, &identitySource{store: f.store, certAuth: certAuth})
}

// TestAuthInfoResolvesTokenThenCertificate: the token names the user; a bad
// token is etcd's invalid auth token even with a certificate; without a
// token the certificate's CN names the user only with --client-cert-auth,
// and never on a gateway request.
func TestAuthInfoResolvesTokenThenCertificate(t *testing.T) {
	f := newAuthFixture(t)
	for _, tc := range []struct {
		name     string
		ctx      context.Context
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
		{"outside the gRPC server", context.Background(), "", nil},
	} {
		ai, err := authInfo(tc.ctx)
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
	read := func(ctx context.Context) error {
		_, err := readCheck(ctx, readA)
		return err
	}
	for _, tc := range []struct {
		name                  string
		ctx                   context.Context
		user, admin, readsKey error
	}{
		{"nobody", f.request(false, ""), rpctypes.ErrGRPCUserEmpty, rpctypes.ErrGRPCUserEmpty, rpctypes.ErrGRPCUserEmpty},
		{"bad token", f.request(false, "", "token", "x"), rpctypes.ErrGRPCInvalidAuthToken, rpctypes.ErrGRPCInvalidAuthToken, rpctypes.ErrGRPCInvalidAuthToken},
		{"u", f.request(false, "", "token", f.tokenU), nil, rpctypes.ErrGRPCPermissionDenied, nil},
		{"root by certificate", f.request(true, "root"), nil, nil, nil},
		{"unknown user by certificate", f.request(true, "ghost"), nil, rpctypes.ErrGRPCUserNotFound, rpctypes.ErrGRPCPermissionDenied},
		{"outside the gRPC server", context.Background(), nil, nil, nil},
	} {
		if err := requireUser(tc.ctx); err != tc.user {
			t.Errorf("%s: requireUser %v, want %v", tc.name, err, tc.user)
		}
		if err := requireAdmin(tc.ctx); err != tc.admin {
			t.Errorf("%s: requireAdmin %v, want %v", tc.name, err, tc.admin)
		}
		if err := read(tc.ctx); err != tc.readsKey {
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
	ctx := f.request(false, "", "token", f.tokenU)
	readA := func(s *auth.Store, ai *auth.AuthInfo) error { return s.IsRangePermitted(ai, []byte("a"), nil) }
	after, err := readCheck(ctx, readA)
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
	if _, err := readCheck(ctx, readA); err != rpctypes.ErrGRPCPermissionDenied {
		t.Fatalf("read after the revoke: %v, want %v", err, rpctypes.ErrGRPCPermissionDenied)
	}
}
