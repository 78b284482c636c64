package api

import (
	"context"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/keeldb/keel/auth"
	"github.com/keeldb/keel/tlsutil"
)

// identityKey keys the request's identity source in its context.
type identityKey struct{}

// identitySource turns a request's credentials into who made it.
type identitySource struct {
	store *auth.Store
	// certAuth is --client-cert-auth: only then does a client certificate's
	// CN name the user of a request that sends no token.
	certAuth bool
}

// identityUnaryInterceptor and identityStreamInterceptor give every request
// the identity source that authInfo reads. The credentials are resolved when
// a check asks, not here, because a token resolves to the auth revision of
// that moment: a watch stream's later creates, or a read after its ReadIndex
// wait, must see the permissions of their own time, as in etcd.
func identityUnaryInterceptor(src *identitySource) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		return handler(context.WithValue(ctx, identityKey{}, src), req)
	}
}

func identityStreamInterceptor(src *identitySource) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return handler(srv, &identityStream{ServerStream: ss, ctx: context.WithValue(ss.Context(), identityKey{}, src)})
	}
}

type identityStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *identityStream) Context() context.Context { return s.ctx }

// authStore returns the auth store of the request in ctx; nil outside the
// gRPC server (auth then counts as disabled).
func authStore(ctx context.Context) *auth.Store {
	src, _ := ctx.Value(identityKey{}).(*identitySource)
	if src == nil {
		return nil
	}
	return src.store
}

// authInfo returns who made the request in ctx, at the current auth
// revision: the user of the token in the metadata key "token" (or
// "authorization"), else, with --client-cert-auth, the CN of the verified
// client certificate. It returns nil, nil when auth is disabled or the
// request carries neither; rpctypes.ErrGRPCInvalidAuthToken for a token
// that is unknown or expired.
func authInfo(ctx context.Context) (*auth.AuthInfo, error) {
	src, _ := ctx.Value(identityKey{}).(*identitySource)
	if src == nil || src.store == nil || !src.store.Enabled() {
		return nil, nil
	}
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return nil, nil
	}
	ts := md.Get(rpctypes.TokenFieldNameGRPC)
	if len(ts) == 0 {
		ts = md.Get(rpctypes.TokenFieldNameSwagger)
	}
	if len(ts) > 0 {
		return src.store.AuthInfoFromToken(ctx, ts[0])
	}
	if !src.certAuth {
		return nil, nil
	}
	// The JSON gateway dials the server with the server's own certificate,
	// whose CN must not name the user, as in etcd.
	if len(md.Get("grpcgateway-accept")) > 0 {
		return nil, nil
	}
	cn, ok := tlsutil.CommonName(ctx)
	if !ok {
		return nil, nil
	}
	return src.store.AuthInfoFromCommonName(cn), nil
}

// requireUser refuses, while auth is enabled, a request that names no user
// (etcd's check for Status, Alarm GET and the lease calls).
func requireUser(ctx context.Context) error {
	s := authStore(ctx)
	if s == nil || !s.Enabled() {
		return nil
	}
	ai, err := authInfo(ctx)
	if err != nil {
		return err
	}
	if ai == nil {
		return rpctypes.ErrGRPCUserEmpty
	}
	return nil
}

// requireAdmin refuses, while auth is enabled, a request whose user lacks
// the root role (Compact, Cluster changes and Maintenance but Status and
// Alarm GET).
func requireAdmin(ctx context.Context) error {
	s := authStore(ctx)
	if s == nil {
		return nil
	}
	ai, err := authInfo(ctx)
	if err != nil {
		return err
	}
	return s.IsAdminPermitted(ai)
}

// readCheck checks a read served by this member, as etcd does: the
// permission before reading, with a request without a user refused while
// auth is enabled, and, once read, that no auth change was applied
// meanwhile (call the returned function after reading; it returns
// rpctypes.ErrGRPCAuthOldRevision if one was, so nothing read under revoked
// permissions is returned).
func readCheck(ctx context.Context, permitted func(*auth.Store, *auth.AuthInfo) error) (after func() error, err error) {
	s := authStore(ctx)
	if s == nil {
		return func() error { return nil }, nil
	}
	ai, err := authInfo(ctx)
	if err != nil {
		return nil, err
	}
	if ai == nil {
		ai = &auth.AuthInfo{}
	}
	if err := permitted(s, ai); err != nil {
		return nil, err
	}
	return func() error {
		if ai.Revision != 0 && ai.Revision != s.Revision() {
			return rpctypes.ErrGRPCAuthOldRevision
		}
		return nil
	}, nil
}

// leaseCheck is etcd's check of the lease calls that reveal or extend a
// lease's keys (keepalive, time-to-live with keys, the lease list): while
// auth is enabled the request needs a user, and a user without the root
// role must hold permit on every key of the leases (write for keepalive,
// read otherwise). Call the returned function once answered; it refuses the
// answer if an auth change was applied meanwhile.
func leaseCheck(ctx context.Context, permitted func(*auth.Store, *auth.AuthInfo) error) (after func() error, err error) {
	s := authStore(ctx)
	if s == nil || !s.Enabled() {
		return func() error { return nil }, nil
	}
	rev := s.Revision()
	ai, err := authInfo(ctx)
	if err != nil {
		return nil, err
	}
	if ai == nil {
		return nil, rpctypes.ErrGRPCUserEmpty
	}
	if s.IsAdminPermitted(ai) == nil {
		return func() error { return nil }, nil
	}
	if err := permitted(s, ai); err != nil {
		return nil, err
	}
	return func() error {
		if s.Enabled() && rev != s.Revision() {
			return rpctypes.ErrGRPCAuthOldRevision
		}
		return nil
	}, nil
}

// leaseCheckNow is leaseCheck with the revision compared right after the
// check, as etcd does for the lease list (taken before the check) and for
// keepalive (renewed only once checked).
func leaseCheckNow(ctx context.Context, permitted func(*auth.Store, *auth.AuthInfo) error) error {
	after, err := leaseCheck(ctx, permitted)
	if err != nil {
		return err
	}
	return after()
}
