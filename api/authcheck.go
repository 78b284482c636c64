package api

import (
	"context"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/metadata"

	"github.com/keeldb/keel/auth"
	"github.com/keeldb/keel/tlsutil"
)

// identitySource turns a request's credentials into who made it. Every
// service holds one. The credentials are resolved when a check asks, not
// when the request arrives, because a token resolves to the auth revision
// of that moment: a watch stream's later creates, or a read after its
// ReadIndex wait, must see the permissions of their own time, as in etcd.
type identitySource struct {
	store *auth.Store
	// certAuth is --client-cert-auth: only then does a client certificate's
	// CN name the user of a request that sends no token.
	certAuth bool
}

// noAfter is the after of a check with nothing to compare once answered.
func noAfter() error { return nil }

// authInfo returns who made the request in ctx, at the current auth
// revision: the user of the token in the metadata key "token" (or
// "authorization"), else, with --client-cert-auth, the CN of the verified
// client certificate. It returns nil, nil when auth is disabled or the
// request carries neither; rpctypes.ErrGRPCInvalidAuthToken for a token
// that is unknown or expired.
func (ids *identitySource) authInfo(ctx context.Context) (*auth.AuthInfo, error) {
	if !ids.store.Enabled() {
		return nil, nil
	}
	// ValueFromIncomingContext reads one key without copying the whole
	// metadata, which FromIncomingContext would do on every request.
	ts := metadata.ValueFromIncomingContext(ctx, rpctypes.TokenFieldNameGRPC)
	if len(ts) == 0 {
		ts = metadata.ValueFromIncomingContext(ctx, rpctypes.TokenFieldNameSwagger)
	}
	if len(ts) > 0 {
		return ids.store.AuthInfoFromToken(ctx, ts[0])
	}
	if !ids.certAuth {
		return nil, nil
	}
	// The JSON gateway dials the server with the server's own certificate,
	// whose CN must not name the user, as in etcd.
	if len(metadata.ValueFromIncomingContext(ctx, "grpcgateway-accept")) > 0 {
		return nil, nil
	}
	cn, ok := tlsutil.CommonName(ctx)
	if !ok {
		return nil, nil
	}
	return ids.store.AuthInfoFromCommonName(cn), nil
}

// requireUser returns who made the request in ctx, refusing, while auth is
// enabled, a request that names no user (etcd's check for Status, Alarm
// GET, MemberList and the lease calls). It returns nil, nil while auth is
// disabled.
func (ids *identitySource) requireUser(ctx context.Context) (*auth.AuthInfo, error) {
	if !ids.store.Enabled() {
		return nil, nil
	}
	ai, err := ids.authInfo(ctx)
	if err != nil {
		return nil, err
	}
	if ai == nil {
		return nil, rpctypes.ErrGRPCUserEmpty
	}
	return ai, nil
}

// requireAdmin refuses, while auth is enabled, a request whose user lacks
// the root role (Compact, Cluster changes and Maintenance but Status and
// Alarm GET).
func (ids *identitySource) requireAdmin(ctx context.Context) error {
	if !ids.store.Enabled() {
		return nil
	}
	ai, err := ids.authInfo(ctx)
	if err != nil {
		return err
	}
	return ids.store.IsAdminPermitted(ai)
}

// readCheck checks a read as etcd does (a member.ReadCheck: call it when
// the read may be served): the permission, with a request without a user
// refused while auth is enabled, and, with the returned after, that no auth
// change was applied since (after returns rpctypes.ErrGRPCAuthOldRevision
// if one was). While auth is disabled it costs no allocation.
func (ids *identitySource) readCheck(ctx context.Context, permitted func(*auth.Store, *auth.AuthInfo) error) (after func() error, err error) {
	if !ids.store.Enabled() {
		return noAfter, nil
	}
	ai, err := ids.authInfo(ctx)
	if err != nil {
		return nil, err
	}
	if ai == nil {
		ai = &auth.AuthInfo{}
	}
	if err := permitted(ids.store, ai); err != nil {
		return nil, err
	}
	if ai.Revision == 0 { // no user, and auth disabled since: nothing to compare
		return noAfter, nil
	}
	return func() error { return ids.sameRevision(ai.Revision) }, nil
}

// sameRevision refuses an answer to a request checked at auth revision rev
// if an auth change was applied since (disabling auth is one).
func (ids *identitySource) sameRevision(rev uint64) error {
	if rev != ids.store.Revision() {
		return rpctypes.ErrGRPCAuthOldRevision
	}
	return nil
}

// leaseRequester is the start of etcd's checks of the lease calls that
// reveal or extend a lease's keys: the auth revision, taken first, and the
// requester, who must be named while auth is enabled (nil, 0 while it is
// disabled).
func (ids *identitySource) leaseRequester(ctx context.Context) (ai *auth.AuthInfo, rev uint64, err error) {
	rev = ids.store.Revision()
	ai, err = ids.requireUser(ctx)
	if err != nil || ai == nil {
		return nil, 0, err
	}
	return ai, rev, nil
}

// leaseCheck is etcd's check of a time-to-live with keys: the requester
// must hold the root role or pass permitted (read permission on the
// lease's keys). Call the returned after once answered: it refuses the
// answer, root's too, if an auth change was applied since the check.
func (ids *identitySource) leaseCheck(ctx context.Context, permitted func(*auth.Store, *auth.AuthInfo) error) (after func() error, err error) {
	ai, rev, err := ids.leaseRequester(ctx)
	if err != nil {
		return nil, err
	}
	if ai == nil {
		return noAfter, nil
	}
	if ids.store.IsAdminPermitted(ai) != nil {
		if err := permitted(ids.store, ai); err != nil {
			return nil, err
		}
	}
	return func() error {
		// etcd compares only while auth is still enabled here.
		if !ids.store.Enabled() {
			return nil
		}
		return ids.sameRevision(rev)
	}, nil
}

// leaseCheckNow is etcd's check of the lease list and of keepalive: the
// requester must hold the root role or pass permitted, and then no auth
// change may have been applied since the check began.
func (ids *identitySource) leaseCheckNow(ctx context.Context, permitted func(*auth.Store, *auth.AuthInfo) error) error {
	ai, rev, err := ids.leaseRequester(ctx)
	if err != nil || ai == nil || ids.store.IsAdminPermitted(ai) == nil {
		return err
	}
	if err := permitted(ids.store, ai); err != nil {
		return err
	}
	return ids.sameRevision(rev)
}
