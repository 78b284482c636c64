// Package snapshot is keel's snapshot file: the whole state of a member at
// one point in time, as Maintenance.Snapshot streams it and `keelctl
// snapshot save` stores it. It writes the file (Writer), reads and verifies
// it (Reader, Verify) and summarises it for `snapshot status` (Info).
//
// File layout (docs/snapshot-format.md has the full description):
//
//	header:  "KEELSNAP" | format version (1 byte) | uvarint n | n header bytes
//	records: 'R' | uvarint len(key) (> 0) | key | uvarint len(value) | value
//	end:     'E' | uvarint records | uvarint live keys | varint revision |
//	         varint compacted revision
//	padding: zero bytes up to a multiple of 512 bytes
//	trailer: sha256 of everything before it (32 bytes)
//
// The records are the member's Pebble keys and values in strictly
// increasing key order: every namespace but Raft's and the member's
// identity. The trailer is etcd's: etcdctl `snapshot save` accepts a stream
// only when its length modulo 512 is 32 and checks nothing else, which the
// padding guarantees.
//
// The file is written and read front to back without seeking, so it can be
// streamed; a Reader hands out a record only after it passed every check
// that can be made so far, and reports the end (io.EOF) only after the
// trailer matched, so a consumer that stages what it reads and commits it
// at io.EOF never keeps anything from a damaged file.
package snapshot

import (
	"errors"
	"time"
)

const (
	magic = "KEELSNAP"
	// FormatVersion is the version of the layout this package writes and
	// the only one it reads.
	FormatVersion = 1

	tagRecord = 'R'
	tagEnd    = 'E'

	// align is the multiple the bytes before the trailer are padded to.
	align = 512
	// trailerLen is the length of the sha256 trailer.
	trailerLen = 32

	// Bounds on what a decoder allocates, so that a corrupt length fails
	// cleanly instead of exhausting memory.
	maxHeader = 64 << 10
	maxKey    = 64 << 20
	maxValue  = 1 << 30
)

// ErrCorrupt marks a file that is not a complete, intact keel snapshot:
// truncated, damaged, or not a keel snapshot at all. Every decoding error
// wraps it, except the underlying reader's own errors.
var ErrCorrupt = errors.New("snapshot file is corrupt")

// Header is what the file says about where and when it was taken; it comes
// first in the file.
type Header struct {
	// ClusterID and MemberID identify the member the snapshot was taken
	// from. A restore gives the new cluster an identity of its own.
	ClusterID uint64
	MemberID  uint64
	// Applied is the Raft index of the last entry applied to the state (the
	// consistent index, in etcd's terms).
	Applied uint64
	// Created is when the snapshot was taken (UTC, nanoseconds).
	Created time.Time
	// StorageVersion is the storage version the member reports, as etcd
	// does in SnapshotResponse.Version and `snapshot status`.
	StorageVersion string
}

// Info describes a whole, verified snapshot file.
type Info struct {
	Header
	// Revision and CompactRevision are the key space's current and
	// compacted revision (-1: never compacted).
	Revision        int64
	CompactRevision int64
	// TotalKeys is the number of live keys at Revision.
	TotalKeys int64
	// Records is the number of records (Pebble keys) in the file.
	Records int64
	// Hash is keel's HASH of `snapshot status`: CRC-32 (Castagnoli) over
	// every record's key then value, in file order. It depends only on the
	// state, not on the header or the encoding, so two snapshots of the same
	// state have the same Hash.
	Hash uint32
	// Size is the length of the file in bytes, trailer included.
	Size int64
	// SHA256 is the trailer.
	SHA256 [32]byte
}
