// Package auth keeps etcd's authentication state: users, roles, their key
// permissions, whether auth is enabled and the auth revision. It stores them
// under storage.PrefixAuth, answers permission checks for every request and
// issues and resolves the tokens clients authenticate with.
//
// The state changes only through the methods in change.go, which the apply
// loop calls with the batch of the entry being applied; everything else is a
// read, safe from any goroutine. Tokens are not state: simple tokens live in
// the memory of every member (each one registers the tokens of the
// Authenticate entries it applies) and JWTs are verified by signature.
package auth

import (
	"bytes"
	"context"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/zap"
)

// RootUser is the user who holds the root role, which auth enable needs
// and as whom the member itself acts (see RootInfo).
const RootUser = "root"

const rootRole = "root"

// Store holds the users, roles, permissions, the enabled flag and the auth
// revision. Reads are safe from any goroutine; changes come only from the
// apply loop (through a *pebble.Batch).
type Store struct {
	lg         *zap.Logger
	tokens     tokenProvider
	bcryptCost int

	// enabled is written with mu held, and read without it on the hot
	// path of every request (Enabled), or with it for a view consistent
	// with the rest of the state.
	enabled atomic.Bool

	mu       sync.RWMutex
	revision uint64
	// disabledAt is the revision the last AuthDisable set (see state).
	disabledAt uint64
	users      map[string]*authpb.User
	roles      map[string]*authpb.Role
	// perms are the merged permissions of every user, rebuilt after every
	// change of users or roles.
	perms map[string]*userPerms
}

// AuthInfo is who made a request and at which auth revision their token was
// checked.
type AuthInfo struct {
	Username string
	Revision uint64
}

// Load reads the auth state kept in db. The token settings come from opts;
// a bad --auth-token is reported here, with etcd's error.
func Load(db pebble.Reader, opts Options) (*Store, error) {
	lg := opts.Logger
	if lg == nil {
		lg = zap.NewNop()
	}
	tp, err := newTokenProvider(lg, opts)
	if err != nil {
		return nil, err
	}
	s := &Store{lg: lg, tokens: tp, bcryptCost: bcryptCost(lg, opts.BcryptCost)}
	if err := s.Reload(db); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload replaces the auth state with the one kept in db, after the member's
// state was replaced by a Raft snapshot. Apply loop only. Simple tokens of
// users that no longer exist or whose password changed, and all of them if
// auth is now disabled or was disabled in the skipped entries, are
// dropped, as applying those entries would have.
func (s *Store) Reload(db pebble.Reader) error {
	st, err := readState(db)
	if err != nil {
		return err
	}
	s.mu.Lock()
	old, oldDisabledAt := s.users, s.disabledAt
	s.enabled.Store(st.enabled)
	s.disabledAt = st.disabledAt
	s.revision = st.revision
	s.users = st.users
	s.roles = st.roles
	s.refreshPermsLocked()
	s.mu.Unlock()
	if !st.enabled || st.disabledAt != oldDisabledAt {
		s.tokens.disable()
		return nil
	}
	s.tokens.keepUsers(func(name string) bool {
		u, was := st.users[name], old[name]
		return u != nil && was != nil && bytes.Equal(u.Password, was.Password)
	})
	return nil
}

// Enabled reports whether authentication is enabled.
func (s *Store) Enabled() bool { return s.enabled.Load() }

// Revision returns the auth revision, bumped by every change of users,
// roles and permissions and by AuthDisable, as in etcd (it starts at 1).
func (s *Store) Revision() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.revision
}

// AuthInfoFromToken resolves a token sent in the gRPC metadata key "token"
// (simple or JWT; a "Bearer " prefix is ignored). It returns nil, nil when
// auth is disabled. A simple token issued by another member may name a Raft
// index this member has not applied yet: it waits for it, bounded by ctx.
// Errors: rpctypes.ErrGRPCInvalidAuthToken (what etcd returns for unknown or
// expired tokens).
func (s *Store) AuthInfoFromToken(ctx context.Context, token string) (*AuthInfo, error) {
	if !s.Enabled() {
		return nil, nil
	}
	token = trimBearer(token)
	ai, current := s.tokens.info(ctx, token)
	if ai == nil {
		s.lg.Warn("invalid auth token", zap.String("token-fingerprint", fingerprint(token)))
		return nil, rpctypes.ErrGRPCInvalidAuthToken
	}
	if current {
		ai.Revision = s.Revision()
	}
	return ai, nil
}

// RootInfo is the identity of requests the member makes itself, such as the
// revocation of expired leases: root at the current auth revision, as
// etcd's requests made "with root".
func (s *Store) RootInfo() *AuthInfo {
	return &AuthInfo{Username: RootUser, Revision: s.Revision()}
}

// AuthInfoFromCommonName is the identity of a client certificate's CN (no
// password needed), at the current auth revision: returns nil when auth is
// disabled.
func (s *Store) AuthInfoFromCommonName(cn string) *AuthInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.enabled.Load() {
		return nil
	}
	return &AuthInfo{Username: cn, Revision: s.revision}
}

// AuthStatus answers the AuthStatus RPC (header left to the caller).
func (s *Store) AuthStatus() *pb.AuthStatusResponse {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return &pb.AuthStatusResponse{Enabled: s.enabled.Load(), AuthRevision: s.revision}
}

// UserGet answers the UserGet RPC: the user's roles, sorted.
func (s *Store) UserGet(r *pb.AuthUserGetRequest) (*pb.AuthUserGetResponse, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	u := s.users[r.Name]
	if u == nil {
		return nil, rpctypes.ErrGRPCUserNotFound
	}
	return &pb.AuthUserGetResponse{Roles: append([]string(nil), u.Roles...)}, nil
}

// UserList answers the UserList RPC: every user's name, sorted.
func (s *Store) UserList() *pb.AuthUserListResponse {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return &pb.AuthUserListResponse{Users: sortedKeys(s.users)}
}

// RoleGet answers the RoleGet RPC: the role's permissions sorted by key; the
// root role shows readwrite on every key, as in etcd.
func (s *Store) RoleGet(r *pb.AuthRoleGetRequest) (*pb.AuthRoleGetResponse, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	role := s.roles[r.Role]
	if role == nil {
		return nil, rpctypes.ErrGRPCRoleNotFound
	}
	if r.Role == rootRole {
		return &pb.AuthRoleGetResponse{Perm: []*authpb.Permission{{PermType: authpb.Permission_READWRITE, Key: []byte{}, RangeEnd: []byte{0}}}}, nil
	}
	resp := &pb.AuthRoleGetResponse{}
	for _, p := range role.KeyPermission {
		resp.Perm = append(resp.Perm, clonePerm(p))
	}
	return resp, nil
}

// RoleList answers the RoleList RPC: every role's name, sorted.
func (s *Store) RoleList() *pb.AuthRoleListResponse {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return &pb.AuthRoleListResponse{Roles: sortedKeys(s.roles)}
}

// HasRole reports whether user exists and holds role.
func (s *Store) HasRole(user, role string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	u := s.users[user]
	return u != nil && hasRole(u, role)
}

func hasRole(u *authpb.User, role string) bool {
	i := sort.SearchStrings(u.Roles, role)
	return i < len(u.Roles) && u.Roles[i] == role
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func clonePerm(p *authpb.Permission) *authpb.Permission {
	return &authpb.Permission{PermType: p.PermType, Key: p.Key, RangeEnd: p.RangeEnd}
}
