package mvcc

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/keeldb/keel/storage"
)

// Revision identifies one change: Main is the store revision of the write
// transaction, Sub the position of the change inside it.
type Revision struct {
	Main int64
	Sub  int64
}

// Key layout
//
// Versions of a user key live under
//
//	PrefixKV | escape(key) | 0x00 0x01 | ^main (8 bytes BE) | ^sub (8 bytes BE)
//
// escape() writes 0x00 as 0x00 0xff, so the encoded keys sort exactly like
// the user keys, every version of one key is contiguous, and versions come
// newest first. A read at revision R seeks to the first version with main <= R.
//
// The by-revision log lives under
//
//	PrefixRevLog | main (8 bytes BE) | sub (8 bytes BE)  ->  kind | key
//
// and lets compaction and watch catch-up find what changed between two
// revisions without scanning the key space.
//
// Store metadata lives under PrefixMVCCMeta.

const (
	revLen     = 16
	escapeByte = 0x00
	escapedNul = 0xff
	termByte   = 0x01
)

var (
	keyCurrentRev             = []byte{storage.PrefixMVCCMeta, 'r', 'e', 'v'}
	keyScheduledCompact       = []byte{storage.PrefixMVCCMeta, 'c', 's'}
	keyFinishedCompact        = []byte{storage.PrefixMVCCMeta, 'c', 'f'}
	kvSpaceStart              = []byte{storage.PrefixKV}
	kvSpaceEnd                = []byte{storage.PrefixKV + 1}
	maxSub              int64 = 1<<63 - 1
)

// appendKeyPrefix appends the encoding of user key k shared by all its versions.
func appendKeyPrefix(dst, k []byte) []byte {
	dst = append(dst, storage.PrefixKV)
	for {
		i := bytes.IndexByte(k, escapeByte)
		if i < 0 {
			dst = append(dst, k...)
			break
		}
		dst = append(dst, k[:i+1]...)
		dst = append(dst, escapedNul)
		k = k[i+1:]
	}
	return append(dst, escapeByte, termByte)
}

// keyPrefixEnd returns the smallest encoded key greater than every version
// of the user key whose prefix is p.
func keyPrefixEnd(p []byte) []byte {
	e := append([]byte(nil), p...)
	e[len(e)-1] = termByte + 1
	return e
}

func appendRevDesc(dst []byte, r Revision) []byte {
	dst = binary.BigEndian.AppendUint64(dst, ^uint64(r.Main))
	return binary.BigEndian.AppendUint64(dst, ^uint64(r.Sub))
}

func versionKey(k []byte, r Revision) []byte {
	return appendRevDesc(appendKeyPrefix(make([]byte, 0, len(k)+4+revLen), k), r)
}

// splitVersionKey splits an encoded version key into its user-key prefix and
// its revision. The prefix aliases ek.
func splitVersionKey(ek []byte) (prefix []byte, r Revision) {
	n := len(ek) - revLen
	prefix = ek[:n]
	r.Main = int64(^binary.BigEndian.Uint64(ek[n:]))
	r.Sub = int64(^binary.BigEndian.Uint64(ek[n+8:]))
	return prefix, r
}

// decodeUserKey reverses appendKeyPrefix.
func decodeUserKey(prefix []byte) ([]byte, error) {
	if len(prefix) < 3 || prefix[0] != storage.PrefixKV || prefix[len(prefix)-2] != escapeByte || prefix[len(prefix)-1] != termByte {
		return nil, fmt.Errorf("malformed key version prefix %q", prefix)
	}
	body := prefix[1 : len(prefix)-2]
	out := make([]byte, 0, len(body))
	for {
		i := bytes.IndexByte(body, escapeByte)
		if i < 0 {
			return append(out, body...), nil
		}
		if i+1 >= len(body) || body[i+1] != escapedNul {
			return nil, fmt.Errorf("malformed escape in key %q", prefix)
		}
		out = append(out, body[:i+1]...)
		body = body[i+2:]
	}
}

func revLogKey(r Revision) []byte {
	k := make([]byte, 0, 1+revLen)
	k = append(k, storage.PrefixRevLog)
	k = binary.BigEndian.AppendUint64(k, uint64(r.Main))
	return binary.BigEndian.AppendUint64(k, uint64(r.Sub))
}

func decodeRevLogKey(k []byte) Revision {
	return Revision{Main: int64(binary.BigEndian.Uint64(k[1:])), Sub: int64(binary.BigEndian.Uint64(k[9:]))}
}

// Version records
//
//	flags (1 byte) | uvarint create_revision | uvarint version | varint lease | value
//
// A tombstone is the single byte flagTombstone.
const flagTombstone = 1

type record struct {
	tombstone bool
	create    int64
	version   int64
	lease     int64
	value     []byte // aliases the encoded record
}

func appendRecord(dst []byte, create, version, lease int64, value []byte) []byte {
	dst = append(dst, 0)
	dst = binary.AppendUvarint(dst, uint64(create))
	dst = binary.AppendUvarint(dst, uint64(version))
	dst = binary.AppendVarint(dst, lease)
	return append(dst, value...)
}

var tombstoneRecord = []byte{flagTombstone}

func decodeRecord(v []byte) (record, error) {
	if len(v) == 0 {
		return record{}, fmt.Errorf("empty version record")
	}
	if v[0]&flagTombstone != 0 {
		return record{tombstone: true}, nil
	}
	var r record
	p := v[1:]
	c, n := binary.Uvarint(p)
	if n <= 0 {
		return record{}, fmt.Errorf("corrupt version record")
	}
	p = p[n:]
	ver, n := binary.Uvarint(p)
	if n <= 0 {
		return record{}, fmt.Errorf("corrupt version record")
	}
	p = p[n:]
	l, n := binary.Varint(p)
	if n <= 0 {
		return record{}, fmt.Errorf("corrupt version record")
	}
	r.create, r.version, r.lease, r.value = int64(c), int64(ver), l, p[n:]
	return r, nil
}

// Rev log values: kind (1 byte) | user key.
const (
	logPut    = 'p'
	logDelete = 'd'
)
