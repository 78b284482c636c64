package keeltest

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/keeldb/keel/storage"
)

// DamageValue rewrites, straight in the Pebble database of the stopped
// member whose data dir is dataDir, the value of the newest version of key
// to value, keeping the version's revision, create revision, version and
// lease: the damage a bad disk or a bug would do, that Raft never saw. It
// returns the revision of the damaged version. key must not contain a NUL
// byte.
//
// It knows mvcc's layout (see mvcc/keys.go): versions of a key live under
// PrefixKV | key | 0x00 0x01 | ^main | ^sub, newest first, and a record is
// flags | uvarint create | uvarint version | varint lease | value.
func DamageValue(dataDir, key, value string) (int64, error) {
	if bytes.IndexByte([]byte(key), 0) >= 0 {
		return 0, fmt.Errorf("damage %q: keys with NUL bytes are not supported", key)
	}
	e, err := storage.Open(storage.DBDir(dataDir), storage.Options{})
	if err != nil {
		return 0, err
	}
	defer e.Close()
	db := e.DB()
	prefix := append(append([]byte{storage.PrefixKV}, key...), 0x00, 0x01)
	k, rec, err := newest(db, prefix)
	if err != nil {
		return 0, err
	}
	if k == nil {
		return 0, fmt.Errorf("damage %q: no version of the key in %s", key, dataDir)
	}
	if len(k) != len(prefix)+16 || len(rec) == 0 || rec[0] != 0 {
		return 0, fmt.Errorf("damage %q: the newest version is a tombstone or not in the layout expected", key)
	}
	n := 1
	for range 2 { // create revision, version
		_, w := binary.Uvarint(rec[n:])
		if w <= 0 {
			return 0, fmt.Errorf("damage %q: corrupt version record", key)
		}
		n += w
	}
	_, w := binary.Varint(rec[n:])
	if w <= 0 {
		return 0, fmt.Errorf("damage %q: corrupt version record", key)
	}
	n += w
	damaged := append(bytes.Clone(rec[:n]), value...)
	rev := int64(^binary.BigEndian.Uint64(k[len(prefix):]))
	if err := db.Set(k, damaged, pebble.Sync); err != nil {
		return 0, err
	}
	return rev, nil
}

// newest returns the first record under prefix, nil if there is none.
func newest(db *pebble.DB, prefix []byte) (k, v []byte, err error) {
	end := bytes.Clone(prefix)
	end[len(end)-1]++ // past every version: they follow prefix with ^main
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: end})
	if err != nil {
		return nil, nil, err
	}
	if it.First() {
		k, v = bytes.Clone(it.Key()), bytes.Clone(it.Value())
	}
	return k, v, it.Close()
}
