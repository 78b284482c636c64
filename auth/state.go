package auth

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/api/v3/authpb"
	"google.golang.org/protobuf/proto"

	"github.com/keeldb/keel/storage"
)

// Keys under storage.PrefixAuth: the enabled flag, the revision, the
// revision the last AuthDisable set, one record per user and one per role
// (the marshalled authpb message, by name).
const (
	kindEnabled    byte = 'e'
	kindRevision   byte = 'r'
	kindDisabledAt byte = 'd'
	kindUser       byte = 'u'
	kindRole       byte = 'o'
)

func dbKey(kind byte, name string) []byte {
	return append([]byte{storage.PrefixAuth, kind}, name...)
}

// state is the stored auth state.
type state struct {
	enabled  bool
	revision uint64
	// disabledAt is the revision set by the last AuthDisable (0: never),
	// which tells a member installing a snapshot whether the entries it
	// skipped disabled auth, and so dropped every token, even if they
	// enabled it again.
	disabledAt uint64
	users      map[string]*authpb.User
	roles      map[string]*authpb.Role
}

func readState(db pebble.Reader) (*state, error) {
	st := &state{revision: 1, users: map[string]*authpb.User{}, roles: map[string]*authpb.Role{}}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{storage.PrefixAuth}, UpperBound: []byte{storage.PrefixAuth + 1}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		if err := st.decode(it.Key(), it.Value()); err != nil {
			return nil, err
		}
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	return st, nil
}

func (st *state) decode(k, v []byte) error {
	if len(k) < 2 {
		return fmt.Errorf("auth record %x is corrupt", k)
	}
	name := string(k[2:])
	switch k[1] {
	case kindEnabled:
		st.enabled = len(v) == 1 && v[0] == 1
	case kindRevision, kindDisabledAt:
		if len(v) != 8 {
			return fmt.Errorf("auth revision record %x is corrupt", v)
		}
		if k[1] == kindRevision {
			st.revision = binary.BigEndian.Uint64(v)
		} else {
			st.disabledAt = binary.BigEndian.Uint64(v)
		}
	case kindUser:
		u := &authpb.User{}
		if err := proto.Unmarshal(v, u); err != nil {
			return fmt.Errorf("auth user %q is corrupt: %w", name, err)
		}
		st.users[name] = u
	case kindRole:
		r := &authpb.Role{}
		if err := proto.Unmarshal(v, r); err != nil {
			return fmt.Errorf("auth role %q is corrupt: %w", name, err)
		}
		st.roles[name] = r
	default:
		return fmt.Errorf("auth record %x is of unknown kind", k)
	}
	return nil
}

func putEnabled(b *pebble.Batch, on bool) error {
	v := byte(0)
	if on {
		v = 1
	}
	return b.Set(dbKey(kindEnabled, ""), []byte{v}, nil)
}

func putRevision(b *pebble.Batch, rev uint64) error {
	return b.Set(dbKey(kindRevision, ""), binary.BigEndian.AppendUint64(nil, rev), nil)
}

func putDisabledAt(b *pebble.Batch, rev uint64) error {
	return b.Set(dbKey(kindDisabledAt, ""), binary.BigEndian.AppendUint64(nil, rev), nil)
}

func putRecord(b *pebble.Batch, kind byte, name string, m proto.Message) error {
	v, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return err
	}
	return b.Set(dbKey(kind, name), v, nil)
}

func deleteRecord(b *pebble.Batch, kind byte, name string) error {
	return b.Delete(dbKey(kind, name), nil)
}
