package auth

import (
	"encoding/binary"
	"fmt"

	"go.etcd.io/etcd/api/v3/authpb"
	"google.golang.org/protobuf/proto"

	"github.com/keeldb/keel/storage"
)

// Raw state records of the auth store, for moving auth state in and out of
// keel without a running store (snapshot import from etcd and export to
// it). A state written with these helpers is what the store itself writes.

// EnabledRecord returns the record of the auth flag.
func EnabledRecord(on bool) (key, value []byte) {
	v := byte(0)
	if on {
		v = 1
	}
	return dbKey(kindEnabled, ""), []byte{v}
}

// RevisionRecord returns the record of the auth revision.
func RevisionRecord(rev uint64) (key, value []byte) {
	return dbKey(kindRevision, ""), binary.BigEndian.AppendUint64(nil, rev)
}

// UserRecord returns the record of u, which carries its password hash
// (bcrypt, as etcd stores it) and its roles.
func UserRecord(u *authpb.User) (key, value []byte, err error) {
	v, err := proto.MarshalOptions{Deterministic: true}.Marshal(u)
	if err != nil {
		return nil, nil, fmt.Errorf("user %q: %w", u.Name, err)
	}
	return dbKey(kindUser, string(u.Name)), v, nil
}

// RoleRecord returns the record of r with its permissions.
func RoleRecord(r *authpb.Role) (key, value []byte, err error) {
	v, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	if err != nil {
		return nil, nil, fmt.Errorf("role %q: %w", r.Name, err)
	}
	return dbKey(kindRole, string(r.Name)), v, nil
}

// State is the auth state as raw records carry it. Feed it every record
// (Add); records of other packages are ignored.
type State struct {
	Enabled  bool
	Revision uint64
	Users    []*authpb.User
	Roles    []*authpb.Role
}

// Add decodes one raw state record into st; a record of the auth store
// that cannot be decoded is an error.
func (st *State) Add(key, value []byte) error {
	if len(key) == 0 || key[0] != storage.PrefixAuth {
		return nil
	}
	s := &state{users: map[string]*authpb.User{}, roles: map[string]*authpb.Role{}}
	if err := s.decode(key, value); err != nil {
		return err
	}
	switch key[1] {
	case kindEnabled:
		st.Enabled = s.enabled
	case kindRevision:
		st.Revision = s.revision
	}
	for _, u := range s.users {
		st.Users = append(st.Users, u)
	}
	for _, r := range s.roles {
		st.Roles = append(st.Roles, r)
	}
	return nil
}
