package auth

import (
	"bytes"
	"encoding/base64"
	"sort"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The methods in this file change the auth state. They are called by the
// apply loop only, in log order, with the batch of the entry being applied:
// each writes its change into b and into memory at once (readers see it
// before b commits; if the commit fails the member stops). They are
// deterministic: no clock, no randomness (passwords arrive hashed). Request
// errors are etcd's rpctypes.ErrGRPC* values and change nothing; any other
// error means b can no longer be trusted.

// errNoPasswordUser is what etcd answers for a password hash it cannot
// use, or a password given to a user without one: its internal error,
// which reaches clients with code Unknown.
var errNoPasswordUser = status.Error(codes.Unknown, "auth: authentication failed, password was given for no password user")

var errAuthFailed = rpctypes.ErrGRPCAuthFailed

// AuthEnable turns authentication on. It needs user root holding role root;
// enabling twice is no change. Like etcd it leaves the revision alone.
func (s *Store) AuthEnable(b *pebble.Batch) (*pb.AuthEnableResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.enabled.Load() {
		s.lg.Info("authentication is already enabled; ignored auth enable request")
		return &pb.AuthEnableResponse{}, nil
	}
	u := s.users[RootUser]
	if u == nil {
		return nil, rpctypes.ErrGRPCRootUserNotExist
	}
	if !hasRole(u, rootRole) {
		return nil, rpctypes.ErrGRPCRootRoleNotExist
	}
	if err := putEnabled(b, true); err != nil {
		return nil, err
	}
	s.enabled.Store(true)
	s.lg.Info("enabled authentication")
	return &pb.AuthEnableResponse{}, nil
}

// AuthDisable turns authentication off, bumps the revision, records it as
// the revision of the last disable (for Reload) and forgets every simple
// token; disabling twice is no change.
func (s *Store) AuthDisable(b *pebble.Batch) (*pb.AuthDisableResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.enabled.Load() {
		return &pb.AuthDisableResponse{}, nil
	}
	if err := putEnabled(b, false); err != nil {
		return nil, err
	}
	if err := s.bumpLocked(b); err != nil {
		return nil, err
	}
	if err := putDisabledAt(b, s.revision); err != nil {
		return nil, err
	}
	s.disabledAt = s.revision
	s.enabled.Store(false)
	s.tokens.disable()
	s.lg.Info("disabled authentication")
	return &pb.AuthDisableResponse{}, nil
}

// UserAdd adds a user. r.HashedPassword is the base64 of the bcrypt hash
// (see HashPassword) unless r.Options.NoPassword.
func (s *Store) UserAdd(b *pebble.Batch, r *pb.AuthUserAddRequest) (*pb.AuthUserAddResponse, error) {
	if r.Name == "" {
		return nil, rpctypes.ErrGRPCUserEmpty
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.users[r.Name] != nil {
		return nil, rpctypes.ErrGRPCUserAlreadyExist
	}
	opts := r.Options
	if opts == nil {
		opts = &authpb.UserAddOptions{}
	}
	u := &authpb.User{Name: []byte(r.Name), Options: &authpb.UserAddOptions{NoPassword: opts.NoPassword}}
	if !opts.NoPassword {
		hash, err := decodeHash(r.HashedPassword)
		if err != nil {
			return nil, err
		}
		u.Password = hash
	}
	if err := s.putUserLocked(b, u); err != nil {
		return nil, err
	}
	s.lg.Info("added a user", zap.String("user-name", r.Name))
	return &pb.AuthUserAddResponse{}, nil
}

// UserDelete deletes a user and their tokens; root cannot be deleted while
// auth is enabled.
func (s *Store) UserDelete(b *pebble.Batch, r *pb.AuthUserDeleteRequest) (*pb.AuthUserDeleteResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.enabled.Load() && r.Name == RootUser {
		s.lg.Error("cannot delete 'root' user", zap.String("user-name", r.Name))
		return nil, rpctypes.ErrGRPCInvalidAuthMgmt
	}
	if s.users[r.Name] == nil {
		return nil, rpctypes.ErrGRPCUserNotFound
	}
	if err := deleteRecord(b, kindUser, r.Name); err != nil {
		return nil, err
	}
	delete(s.users, r.Name)
	if err := s.changedLocked(b); err != nil {
		return nil, err
	}
	s.invalidateUser(r.Name)
	s.lg.Info("deleted a user", zap.String("user-name", r.Name))
	return &pb.AuthUserDeleteResponse{}, nil
}

// UserChangePassword replaces a user's password hash (a user without a
// password keeps none) and drops the user's tokens.
func (s *Store) UserChangePassword(b *pebble.Batch, r *pb.AuthUserChangePasswordRequest) (*pb.AuthUserChangePasswordResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.users[r.Name]
	if old == nil {
		return nil, rpctypes.ErrGRPCUserNotFound
	}
	u := &authpb.User{Name: old.Name, Roles: old.Roles, Options: old.Options}
	if old.Options == nil || !old.Options.NoPassword {
		hash, err := decodeHash(r.HashedPassword)
		if err != nil {
			return nil, err
		}
		u.Password = hash
	}
	if err := s.putUserLocked(b, u); err != nil {
		return nil, err
	}
	s.invalidateUser(r.Name)
	s.lg.Info("changed a password of a user", zap.String("user-name", r.Name))
	return &pb.AuthUserChangePasswordResponse{}, nil
}

// UserGrantRole grants an existing role (or root, which need not exist) to
// a user; granting a held role is no change.
func (s *Store) UserGrantRole(b *pebble.Batch, r *pb.AuthUserGrantRoleRequest) (*pb.AuthUserGrantRoleResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.users[r.User]
	if old == nil {
		return nil, rpctypes.ErrGRPCUserNotFound
	}
	if r.Role != rootRole && s.roles[r.Role] == nil {
		return nil, rpctypes.ErrGRPCRoleNotFound
	}
	if hasRole(old, r.Role) {
		s.lg.Warn("ignored grant role request to a user", zap.String("user-name", r.User), zap.String("duplicate-role-name", r.Role))
		return &pb.AuthUserGrantRoleResponse{}, nil
	}
	roles := append(append([]string{}, old.Roles...), r.Role)
	sort.Strings(roles)
	if err := s.putUserLocked(b, withRoles(old, roles)); err != nil {
		return nil, err
	}
	s.lg.Info("granted a role to a user", zap.String("user-name", r.User), zap.String("added-role-name", r.Role))
	return &pb.AuthUserGrantRoleResponse{}, nil
}

// UserRevokeRole revokes a role from a user; root keeps root while auth is
// enabled.
func (s *Store) UserRevokeRole(b *pebble.Batch, r *pb.AuthUserRevokeRoleRequest) (*pb.AuthUserRevokeRoleResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.enabled.Load() && r.Name == RootUser && r.Role == rootRole {
		s.lg.Error("'root' user cannot revoke 'root' role", zap.String("user-name", r.Name), zap.String("role-name", r.Role))
		return nil, rpctypes.ErrGRPCInvalidAuthMgmt
	}
	old := s.users[r.Name]
	if old == nil {
		return nil, rpctypes.ErrGRPCUserNotFound
	}
	roles := withoutRole(old.Roles, r.Role)
	if len(roles) == len(old.Roles) {
		return nil, rpctypes.ErrGRPCRoleNotGranted
	}
	if err := s.putUserLocked(b, withRoles(old, roles)); err != nil {
		return nil, err
	}
	s.lg.Info("revoked a role from a user", zap.String("user-name", r.Name), zap.String("revoked-role-name", r.Role))
	return &pb.AuthUserRevokeRoleResponse{}, nil
}

// RoleAdd adds a role without permissions.
func (s *Store) RoleAdd(b *pebble.Batch, r *pb.AuthRoleAddRequest) (*pb.AuthRoleAddResponse, error) {
	if r.Name == "" {
		return nil, rpctypes.ErrGRPCRoleEmpty
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.roles[r.Name] != nil {
		return nil, rpctypes.ErrGRPCRoleAlreadyExist
	}
	if err := s.putRoleLocked(b, &authpb.Role{Name: []byte(r.Name)}); err != nil {
		return nil, err
	}
	s.lg.Info("created a role", zap.String("role-name", r.Name))
	return &pb.AuthRoleAddResponse{}, nil
}

// RoleDelete deletes a role and revokes it from every user; the root role
// cannot be deleted while auth is enabled.
func (s *Store) RoleDelete(b *pebble.Batch, r *pb.AuthRoleDeleteRequest) (*pb.AuthRoleDeleteResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.enabled.Load() && r.Role == rootRole {
		s.lg.Error("cannot delete 'root' role", zap.String("role-name", r.Role))
		return nil, rpctypes.ErrGRPCInvalidAuthMgmt
	}
	if s.roles[r.Role] == nil {
		return nil, rpctypes.ErrGRPCRoleNotFound
	}
	if err := deleteRecord(b, kindRole, r.Role); err != nil {
		return nil, err
	}
	delete(s.roles, r.Role)
	for _, name := range sortedKeys(s.users) {
		old := s.users[name]
		roles := withoutRole(old.Roles, r.Role)
		if len(roles) == len(old.Roles) {
			continue
		}
		u := withRoles(old, roles)
		if err := putRecord(b, kindUser, name, u); err != nil {
			return nil, err
		}
		s.users[name] = u
	}
	if err := s.changedLocked(b); err != nil {
		return nil, err
	}
	s.lg.Info("deleted a role", zap.String("role-name", r.Role))
	return &pb.AuthRoleDeleteResponse{}, nil
}

// RoleGrantPermission grants a key, range or prefix permission to a role,
// or changes the type of the permission already granted on exactly that
// key and range end. Permissions stay sorted by key, same-key ones in
// etcd's order.
func (s *Store) RoleGrantPermission(b *pebble.Batch, r *pb.AuthRoleGrantPermissionRequest) (*pb.AuthRoleGrantPermissionResponse, error) {
	if r.Perm == nil {
		return nil, rpctypes.ErrGRPCPermissionNotGiven
	}
	if !validPermRange(r.Perm.Key, r.Perm.RangeEnd) {
		return nil, rpctypes.ErrGRPCInvalidAuthMgmt
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.roles[r.Name]
	if old == nil {
		return nil, rpctypes.ErrGRPCRoleNotFound
	}
	perms := make([]*authpb.Permission, 0, len(old.KeyPermission)+1)
	for _, p := range old.KeyPermission {
		perms = append(perms, clonePerm(p))
	}
	// As etcd, only the first permission on the key is a candidate for
	// an update; any other one with the same key is appended.
	i := sort.Search(len(perms), func(i int) bool { return bytes.Compare(perms[i].Key, r.Perm.Key) >= 0 })
	if i < len(perms) && bytes.Equal(perms[i].Key, r.Perm.Key) && bytes.Equal(perms[i].RangeEnd, r.Perm.RangeEnd) {
		perms[i].PermType = r.Perm.PermType
	} else {
		perms = append(perms, &authpb.Permission{Key: r.Perm.Key, RangeEnd: r.Perm.RangeEnd, PermType: r.Perm.PermType})
		// Not stable, on purpose: etcd sorts with sort.Sort, which from
		// 13 elements on reorders permissions on the same key; the
		// same algorithm on the same slice gives RoleGet etcd's order.
		sort.Slice(perms, func(i, j int) bool { return bytes.Compare(perms[i].Key, perms[j].Key) < 0 })
	}
	if err := s.putRoleLocked(b, &authpb.Role{Name: old.Name, KeyPermission: perms}); err != nil {
		return nil, err
	}
	s.lg.Info("granted/updated a permission to a user", zap.String("user-name", r.Name),
		zap.String("permission-name", r.Perm.PermType.String()), zap.ByteString("key", r.Perm.Key), zap.ByteString("range-end", r.Perm.RangeEnd))
	return &pb.AuthRoleGrantPermissionResponse{}, nil
}

// RoleRevokePermission revokes the permissions granted to a role on
// exactly r.Key and r.RangeEnd.
func (s *Store) RoleRevokePermission(b *pebble.Batch, r *pb.AuthRoleRevokePermissionRequest) (*pb.AuthRoleRevokePermissionResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.roles[r.Role]
	if old == nil {
		return nil, rpctypes.ErrGRPCRoleNotFound
	}
	var perms []*authpb.Permission
	for _, p := range old.KeyPermission {
		if !bytes.Equal(p.Key, r.Key) || !bytes.Equal(p.RangeEnd, r.RangeEnd) {
			perms = append(perms, p)
		}
	}
	if len(perms) == len(old.KeyPermission) {
		return nil, rpctypes.ErrGRPCPermissionNotGranted
	}
	if err := s.putRoleLocked(b, &authpb.Role{Name: old.Name, KeyPermission: perms}); err != nil {
		return nil, err
	}
	s.lg.Info("revoked a permission on range", zap.String("role-name", r.Role), zap.ByteString("key", r.Key), zap.ByteString("range-end", r.RangeEnd))
	return &pb.AuthRoleRevokePermissionResponse{}, nil
}

// Authenticate is the applied half of etcd's Authenticate: the password was
// checked by the proposer (CheckPassword) before proposing. It checks the
// user may still log in and, when r carries a simple token prefix and this
// member issues simple tokens, registers the token prefix.index for the
// user and returns it; every member applying the entry does the same, so
// the token works on all of them. Otherwise the token is left empty for
// the proposer to sign (SignToken). No state changes; no batch.
func (s *Store) Authenticate(index uint64, r *pb.InternalAuthenticateRequest) (*pb.AuthenticateResponse, error) {
	s.mu.RLock()
	enabled, u := s.enabled.Load(), s.users[r.Name]
	s.mu.RUnlock()
	if !enabled {
		return nil, rpctypes.ErrGRPCAuthNotEnabled
	}
	if u == nil || (u.Options != nil && u.Options.NoPassword) {
		return nil, errAuthFailed
	}
	resp := &pb.AuthenticateResponse{}
	if r.SimpleToken != "" {
		resp.Token, _ = s.tokens.assignSimple(r.SimpleToken, index, r.Name)
	}
	return resp, nil
}

// putUserLocked stores u and records the change.
func (s *Store) putUserLocked(b *pebble.Batch, u *authpb.User) error {
	if err := putRecord(b, kindUser, string(u.Name), u); err != nil {
		return err
	}
	s.users[string(u.Name)] = u
	return s.changedLocked(b)
}

// putRoleLocked stores r and records the change.
func (s *Store) putRoleLocked(b *pebble.Batch, r *authpb.Role) error {
	if err := putRecord(b, kindRole, string(r.Name), r); err != nil {
		return err
	}
	s.roles[string(r.Name)] = r
	return s.changedLocked(b)
}

// changedLocked bumps the revision and rebuilds the merged permissions
// after a change of users or roles.
func (s *Store) changedLocked(b *pebble.Batch) error {
	if err := s.bumpLocked(b); err != nil {
		return err
	}
	s.refreshPermsLocked()
	return nil
}

func (s *Store) bumpLocked(b *pebble.Batch) error {
	if err := putRevision(b, s.revision+1); err != nil {
		return err
	}
	s.revision++
	return nil
}

func (s *Store) invalidateUser(name string) {
	s.tokens.keepUsers(func(u string) bool { return u != name })
}

// withRoles returns a copy of u holding roles instead of its own.
func withRoles(u *authpb.User, roles []string) *authpb.User {
	return &authpb.User{Name: u.Name, Password: u.Password, Options: u.Options, Roles: roles}
}

func withoutRole(roles []string, role string) []string {
	var out []string
	for _, r := range roles {
		if r != role {
			out = append(out, r)
		}
	}
	return out
}

func decodeHash(hashed string) ([]byte, error) {
	h, err := base64.StdEncoding.DecodeString(hashed)
	if err != nil {
		return nil, errNoPasswordUser
	}
	return h, nil
}
