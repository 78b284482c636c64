package mvcc

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/keeldb/keel/storage"
)

// Raw state records, for moving a key space in and out of keel without a
// running store: snapshot import from etcd writes them, export to etcd reads
// them. A state written with these helpers is exactly what the store itself
// writes, so mvcc.Open reads it as its own.

// VersionRecord returns the record of one version of a key: a put of kv
// written at rev (kv.ModRevision is rev.Main and is not stored), or a
// deletion of kv.Key when tombstone is set (the rest of kv is ignored).
func VersionRecord(rev Revision, kv *mvccpb.KeyValue, tombstone bool) (key, value []byte) {
	key = versionKey(kv.Key, rev)
	if tombstone {
		return key, append([]byte(nil), tombstoneRecord...)
	}
	return key, appendRecord(nil, kv.CreateRevision, kv.Version, kv.Lease, kv.Value)
}

// LogRecord returns the by-revision log record of the change at rev to
// key. The store keeps the log from its compacted revision on: a state must
// carry it for every version at or after the compacted revision (every
// version, when never compacted), and for those after the finished
// compaction when a scheduled one is still to run.
func LogRecord(rev Revision, key []byte, tombstone bool) (k, v []byte) {
	kind := byte(logPut)
	if tombstone {
		kind = logDelete
	}
	return revLogKey(rev), append([]byte{kind}, key...)
}

// MetaRecords returns the store's metadata records: the current revision,
// and, unless compacted is -1 (never compacted), the compacted revision and
// finished, the revision of the last compaction whose removal of old
// versions has finished (finished < compacted: the store finishes it after
// it opens). The keys come in increasing order.
func MetaRecords(rev, compacted, finished int64) (keys, values [][]byte) {
	add := func(k []byte, v int64) {
		keys = append(keys, bytes.Clone(k))
		values = append(values, binary.BigEndian.AppendUint64(nil, uint64(v)))
	}
	if compacted >= 0 {
		add(keyFinishedCompact, min(finished, compacted))
		add(keyScheduledCompact, compacted)
	}
	add(keyCurrentRev, rev)
	return keys, values
}

// RecordKind says what DecodeRecord found.
type RecordKind int

const (
	// OtherRecord is a record that is not the store's.
	OtherRecord RecordKind = iota
	// VersionKind is a version of a key (Decoded.KV, Decoded.Tombstone).
	VersionKind
	// LogKind is a by-revision log record.
	LogKind
	// CurrentRevKind, CompactRevKind and FinishedCompactKind are metadata
	// (Decoded.Int).
	CurrentRevKind
	CompactRevKind
	FinishedCompactKind
)

// Decoded is one record of the store, decoded.
type Decoded struct {
	Kind RecordKind
	// Rev is the revision of a version.
	Rev Revision
	// KV is a version: a put with every field set (ModRevision = Rev.Main),
	// or, for a tombstone, only Key and ModRevision. Its slices are copies.
	KV        *mvccpb.KeyValue
	Tombstone bool
	// Int is the value of a metadata record.
	Int int64
}

// DecodeRecord decodes a raw state record of the store. Records of other
// packages are OtherRecord; a record of the store that cannot be decoded is
// an error.
func DecodeRecord(key, value []byte) (Decoded, error) {
	switch {
	case len(key) == 0:
		return Decoded{}, nil
	case key[0] == storage.PrefixKV:
		if len(key) < 3+revLen {
			return Decoded{}, fmt.Errorf("malformed key version %x", key)
		}
		prefix, rev := splitVersionKey(key)
		k, err := decodeUserKey(prefix)
		if err != nil {
			return Decoded{}, err
		}
		r, err := decodeRecord(value)
		if err != nil {
			return Decoded{}, fmt.Errorf("version %d of %q: %w", rev.Main, k, err)
		}
		d := Decoded{Kind: VersionKind, Rev: rev, Tombstone: r.tombstone}
		if r.tombstone {
			d.KV = &mvccpb.KeyValue{Key: k, ModRevision: rev.Main}
		} else {
			d.KV = &mvccpb.KeyValue{Key: k, Value: bytes.Clone(r.value), CreateRevision: r.create,
				ModRevision: rev.Main, Version: r.version, Lease: r.lease}
		}
		return d, nil
	case key[0] == storage.PrefixRevLog:
		if len(key) != 1+revLen {
			return Decoded{}, fmt.Errorf("malformed revision log key %x", key)
		}
		return Decoded{Kind: LogKind, Rev: decodeRevLogKey(key)}, nil
	case bytes.Equal(key, keyCurrentRev), bytes.Equal(key, keyScheduledCompact), bytes.Equal(key, keyFinishedCompact):
		v, err := decodeInt(key, value)
		if err != nil {
			return Decoded{}, err
		}
		kind := CurrentRevKind
		if bytes.Equal(key, keyScheduledCompact) {
			kind = CompactRevKind
		} else if bytes.Equal(key, keyFinishedCompact) {
			kind = FinishedCompactKind
		}
		return Decoded{Kind: kind, Int: v}, nil
	}
	return Decoded{}, nil
}
