package lease

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/keeldb/keel/storage"
)

// Raw state records of the lessor, for moving leases in and out of keel
// without a running lessor (snapshot import from etcd and export to it).
// A state written with these helpers is what the lessor itself writes.

// LeaseRecord returns the record of lease id, granted for ttl seconds, with
// remaining the checkpointed remaining TTL in seconds (0: none).
func LeaseRecord(id, ttl, remaining int64) (key, value []byte) {
	v := binary.BigEndian.AppendUint64(nil, uint64(ttl))
	v = binary.BigEndian.AppendUint64(v, uint64(remaining))
	return leaseKey(id), v
}

// AttachRecord returns the marker that attaches key to lease id. A state
// must carry one for every live key whose newest version names the lease,
// and only for leases it holds.
func AttachRecord(id int64, key []byte) (k, v []byte) {
	return attachKey(id, key), []byte{}
}

// Record is one record of the lessor, decoded.
type Record struct {
	// ID is the lease; zero when the record is not the lessor's.
	ID int64
	// Attached is the key of an attachment marker; nil for a lease record.
	Attached []byte
	// TTL and Remaining are a lease record's (see LeaseRecord).
	TTL, Remaining int64
}

// DecodeRecord decodes a raw state record; ok is false when it is not the
// lessor's. A record of the lessor that cannot be decoded is an error.
func DecodeRecord(key, value []byte) (r Record, ok bool, err error) {
	if len(key) < 2 || key[0] != storage.PrefixLease {
		return Record{}, false, nil
	}
	switch key[1] {
	case kindLease:
		id, err := decodeLeaseKey(key)
		if err != nil {
			return Record{}, true, err
		}
		ttl, remaining, err := decodeRecord(value)
		if err != nil {
			return Record{}, true, fmt.Errorf("lease %x: %w", id, err)
		}
		return Record{ID: id, TTL: ttl, Remaining: remaining}, true, nil
	case kindAttach:
		if len(key) < 10 {
			return Record{}, true, fmt.Errorf("malformed lease marker %x", key)
		}
		return Record{ID: int64(binary.BigEndian.Uint64(key[2:])), Attached: bytes.Clone(key[10:])}, true, nil
	}
	return Record{}, true, fmt.Errorf("lease record %x is of unknown kind", key)
}
