package storage

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

var (
	keyApplied   = []byte{PrefixMeta, 'a', 'p', 'p', 'l', 'i', 'e', 'd'}
	keyConfState = []byte{PrefixMeta, 'c', 'o', 'n', 'f'}
	keyIdentity  = []byte{PrefixMeta, 'i', 'd'}
)

// SetApplied records, in the apply batch b, that every entry up to index has
// been applied. Writing it in the same batch as the entries' effects is what
// makes apply atomic and restart exact.
func SetApplied(b *pebble.Batch, index uint64) error {
	return b.Set(keyApplied, binary.BigEndian.AppendUint64(nil, index), nil)
}

// Applied returns the index of the last applied entry (0 on a new member).
func (e *Engine) Applied() (uint64, error) {
	v, ok, err := get(e.db, keyApplied)
	if err != nil || !ok {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("applied index is corrupt: %d bytes", len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// Identity is who this member is: fixed when the data dir is initialised and
// checked at every start.
type Identity struct {
	MemberID  uint64
	ClusterID uint64
}

// Identity returns the stored identity; ok is false on a new data dir.
func (e *Engine) Identity() (id Identity, ok bool, err error) {
	v, ok, err := get(e.db, keyIdentity)
	if err != nil || !ok {
		return Identity{}, false, err
	}
	if len(v) != 16 {
		return Identity{}, false, fmt.Errorf("member identity is corrupt: %d bytes", len(v))
	}
	return Identity{MemberID: binary.BigEndian.Uint64(v), ClusterID: binary.BigEndian.Uint64(v[8:])}, true, nil
}

// SetIdentity records the member's identity in b.
func SetIdentity(b *pebble.Batch, id Identity) error {
	v := binary.BigEndian.AppendUint64(nil, id.MemberID)
	v = binary.BigEndian.AppendUint64(v, id.ClusterID)
	return b.Set(keyIdentity, v, nil)
}

var keyJoinPeers = []byte{PrefixMeta, 'j', 'o', 'i', 'n'}

// SetJoinPeers records, in b, that this member joined an existing cluster
// and the members it learned from the cluster when it did (encoded by the
// caller). It goes in the same batch as the identity, so a member killed
// before Raft first saves anything restarts as the member it joined as,
// able to reach its peers even if none of them answers at that moment.
func SetJoinPeers(b *pebble.Batch, peers []byte) error { return b.Set(keyJoinPeers, peers, nil) }

// JoinPeers returns what SetJoinPeers recorded; ok is false for a member
// that bootstrapped a new cluster.
func (e *Engine) JoinPeers() (peers []byte, ok bool, err error) { return get(e.db, keyJoinPeers) }
