package apply

import (
	"context"

	"github.com/cockroachdb/pebble/v2"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/keeldb/keel/auth"
	"github.com/keeldb/keel/mvcc"
)

type indexKey struct{}

// WithIndex returns ctx carrying the Raft index of the entry being applied;
// Apply needs it for Authenticate, whose simple token names the index.
func WithIndex(ctx context.Context, index uint64) context.Context {
	return context.WithValue(ctx, indexKey{}, index)
}

func indexFrom(ctx context.Context) uint64 {
	i, _ := ctx.Value(indexKey{}).(uint64)
	return i
}

// isAuthRequest reports whether r is one of the Auth service's requests.
func isAuthRequest(r *pb.InternalRaftRequest) bool {
	return r.Authenticate != nil || r.AuthEnable != nil || r.AuthDisable != nil || r.AuthStatus != nil ||
		r.AuthUserAdd != nil || r.AuthUserDelete != nil || r.AuthUserChangePassword != nil ||
		r.AuthUserGrantRole != nil || r.AuthUserRevokeRole != nil || r.AuthUserGet != nil || r.AuthUserList != nil ||
		r.AuthRoleAdd != nil || r.AuthRoleDelete != nil || r.AuthRoleGrantPermission != nil ||
		r.AuthRoleRevokePermission != nil || r.AuthRoleGet != nil || r.AuthRoleList != nil
}

// applyAuth applies an Auth service request. The requester is the one the
// proposer recorded in r.Header (Username, AuthRevision); the root check
// happens here, at apply, so that every member reaches the same verdict
// against the same state, as in etcd. Responses carry the store revision
// in their header.
func (a *Applier) applyAuth(ctx context.Context, w *mvcc.Writer, b *pebble.Batch, r *pb.InternalRaftRequest) (*Result, error) {
	ai := requester(r)
	if err := a.authAllowed(ai, r); err != nil {
		return &Result{Err: err}, nil
	}
	resp, err := a.authChange(ctx, b, r)
	if err != nil {
		if isRequestError(err) {
			return &Result{Err: err}, nil
		}
		return nil, err
	}
	setHeader(resp, &pb.ResponseHeader{Revision: w.Rev()})
	return &Result{Resp: resp}, nil
}

// authAllowed decides whether ai may make r while auth is enabled, as
// etcd does: anyone may Authenticate and ask AuthStatus, a user may get
// themselves (UserGet) and the roles they hold (RoleGet), and everything
// else needs the root role. The error is IsAdminPermitted's.
func (a *Applier) authAllowed(ai *auth.AuthInfo, r *pb.InternalRaftRequest) error {
	if r.Authenticate != nil || r.AuthStatus != nil {
		return nil
	}
	err := a.auth.IsAdminPermitted(ai)
	switch {
	case err == nil:
		return nil
	case r.AuthUserGet != nil && r.AuthUserGet.Name == ai.Username:
		return nil
	case r.AuthRoleGet != nil && a.auth.HasRole(ai.Username, r.AuthRoleGet.Role):
		return nil
	}
	return err
}

// authChange runs r against the auth store. A nil error means the
// returned response is not nil.
func (a *Applier) authChange(ctx context.Context, b *pebble.Batch, r *pb.InternalRaftRequest) (proto.Message, error) {
	s := a.auth
	switch {
	case r.Authenticate != nil:
		return nonNil(s.Authenticate(indexFrom(ctx), r.Authenticate))
	case r.AuthEnable != nil:
		return nonNil(s.AuthEnable(b))
	case r.AuthDisable != nil:
		return nonNil(s.AuthDisable(b))
	case r.AuthStatus != nil:
		return s.AuthStatus(), nil
	case r.AuthUserAdd != nil:
		return nonNil(s.UserAdd(b, r.AuthUserAdd))
	case r.AuthUserDelete != nil:
		return nonNil(s.UserDelete(b, r.AuthUserDelete))
	case r.AuthUserChangePassword != nil:
		return nonNil(s.UserChangePassword(b, r.AuthUserChangePassword))
	case r.AuthUserGrantRole != nil:
		return nonNil(s.UserGrantRole(b, r.AuthUserGrantRole))
	case r.AuthUserRevokeRole != nil:
		return nonNil(s.UserRevokeRole(b, r.AuthUserRevokeRole))
	case r.AuthUserGet != nil:
		return nonNil(s.UserGet(r.AuthUserGet))
	case r.AuthUserList != nil:
		return s.UserList(), nil
	case r.AuthRoleAdd != nil:
		return nonNil(s.RoleAdd(b, r.AuthRoleAdd))
	case r.AuthRoleDelete != nil:
		return nonNil(s.RoleDelete(b, r.AuthRoleDelete))
	case r.AuthRoleGrantPermission != nil:
		return nonNil(s.RoleGrantPermission(b, r.AuthRoleGrantPermission))
	case r.AuthRoleRevokePermission != nil:
		return nonNil(s.RoleRevokePermission(b, r.AuthRoleRevokePermission))
	case r.AuthRoleGet != nil:
		return nonNil(s.RoleGet(r.AuthRoleGet))
	default: // r.AuthRoleList != nil
		return s.RoleList(), nil
	}
}

// nonNil turns a typed response and error into a proto.Message that is nil
// exactly when err is set.
func nonNil[M proto.Message](m M, err error) (proto.Message, error) {
	if err != nil {
		return nil, err
	}
	return m, nil
}

// setHeader sets the header field every etcd response message has.
func setHeader(m proto.Message, h *pb.ResponseHeader) {
	rm := m.ProtoReflect()
	if fd := rm.Descriptor().Fields().ByName("header"); fd != nil {
		rm.Set(fd, protoreflect.ValueOfMessage(h.ProtoReflect()))
	}
}
