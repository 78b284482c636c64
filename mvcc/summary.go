package mvcc

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/keeldb/keel/storage"
)

// StateSummary reads the store's metadata and counts its live keys from the
// raw records of a member's state, as a state stream or a snapshot file
// carries them, without opening a store. Feed it every record in key order
// (Add); records of other packages are ignored.
//
// The counts are those of the state's own revision: a key is live when its
// newest version is not a tombstone, as etcd counts the keys of a snapshot.
type StateSummary struct {
	// Rev is the store's current revision (1 on an empty store, as etcd).
	Rev int64
	// CompactRev is the compacted revision, -1 before the first compaction.
	CompactRev int64
	// Keys is the number of live keys at Rev.
	Keys int64
	last []byte // user-key prefix of the last version seen
}

// NewStateSummary returns the summary of an empty state.
func NewStateSummary() *StateSummary { return &StateSummary{Rev: 1, CompactRev: -1} }

// Add accounts for one record. It fails on a record of the store that
// cannot be decoded.
func (s *StateSummary) Add(key, value []byte) error {
	switch {
	case bytes.Equal(key, keyCurrentRev):
		v, err := decodeInt(key, value)
		if err != nil {
			return err
		}
		s.Rev = v
	case bytes.Equal(key, keyScheduledCompact):
		v, err := decodeInt(key, value)
		if err != nil {
			return err
		}
		s.CompactRev = v
	case len(key) > 0 && key[0] == storage.PrefixKV:
		if len(key) < 3+revLen {
			return fmt.Errorf("malformed key version %q", key)
		}
		prefix, _ := splitVersionKey(key)
		if bytes.Equal(prefix, s.last) {
			return nil // an older version of the key just counted
		}
		s.last = append(s.last[:0], prefix...)
		if len(value) == 0 {
			return fmt.Errorf("empty version record under %q", key)
		}
		if value[0]&flagTombstone == 0 {
			s.Keys++
		}
	}
	return nil
}

func decodeInt(key, v []byte) (int64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("corrupt value of %q: %d bytes", key, len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}
