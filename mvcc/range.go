package mvcc

import (
	"bytes"
	"context"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// ctxCheckEvery is how many keys a scan visits between context checks.
const ctxCheckEvery = 1024

// scan reads [key, end) at revision rev from it, an iterator over the whole
// key-version space. end == nil reads the single key; an empty end reads
// every key from key on.
func scan(ctx context.Context, it *pebble.Iterator, key, end []byte, rev int64, ro RangeOptions) (*RangeResult, error) {
	if end == nil {
		return scanOne(it, key, rev, ro)
	}
	res := &RangeResult{}
	lower := appendKeyPrefix(nil, key)
	var upper []byte
	if len(end) > 0 {
		upper = appendKeyPrefix(nil, end)
		if bytes.Compare(upper, lower) <= 0 {
			return res, nil
		}
	}
	// seek is reused to build the key to seek to for the next version read.
	var seek, prefix []byte
	valid := it.SeekGE(lower)
	for visited := 0; valid; visited++ {
		if visited%ctxCheckEvery == ctxCheckEvery-1 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		k := it.Key()
		if upper != nil && bytes.Compare(k, upper) >= 0 {
			break
		}
		p, r := splitVersionKey(k)
		// Copy: the iterator's key memory changes when it moves.
		prefix = append(prefix[:0], p...)
		if r.Main > rev {
			// Written after the revision read at: find the newest version
			// at or before it.
			seek = appendRevDesc(append(seek[:0], prefix...), Revision{Main: rev, Sub: maxSub})
			if !it.SeekGE(seek) {
				break
			}
			if !bytes.HasPrefix(it.Key(), prefix) {
				// This key did not exist at rev; the iterator already sits
				// on the next key.
				continue
			}
		}
		limitReached := ro.Limit > 0 && int64(len(res.KVs)) >= ro.Limit
		if limitReached && !ro.WithTotalCount && !ro.CountOnly {
			break
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, err
		}
		rec, err := decodeRecord(v)
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", prefix, err)
		}
		if !rec.tombstone {
			res.Count++
			if !ro.CountOnly && !limitReached {
				_, r := splitVersionKey(it.Key())
				kv, err := toKeyValue(prefix, r, rec, ro)
				if err != nil {
					return nil, err
				}
				res.KVs = append(res.KVs, kv)
			}
		}
		valid = nextKey(it, prefix)
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	return res, nil
}

// nextsBeforeSeek is how many versions nextKey steps over before it seeks.
const nextsBeforeSeek = 8

// nextKey moves it, which sits on a version of the user key whose prefix
// is p, to the first version of the next user key. Most keys have a few
// versions, and a Next costs a fraction of a seek through every level of
// the LSM, so it steps first and seeks past the versions only for a key
// that has many (seeks were half the CPU of a Kubernetes-like load, most
// of them in lists over keys with two or three versions).
func nextKey(it *pebble.Iterator, p []byte) bool {
	for range nextsBeforeSeek {
		if !it.Next() {
			return false
		}
		if !bytes.HasPrefix(it.Key(), p) {
			return true
		}
	}
	return it.SeekGE(keyPrefixEnd(p))
}

func scanOne(it *pebble.Iterator, key []byte, rev int64, ro RangeOptions) (*RangeResult, error) {
	res := &RangeResult{}
	prefix := appendKeyPrefix(nil, key)
	seek := appendRevDesc(append([]byte(nil), prefix...), Revision{Main: rev, Sub: maxSub})
	if !it.SeekGE(seek) || !bytes.HasPrefix(it.Key(), prefix) {
		return res, it.Error()
	}
	v, err := it.ValueAndErr()
	if err != nil {
		return nil, err
	}
	rec, err := decodeRecord(v)
	if err != nil {
		return nil, fmt.Errorf("key %q: %w", key, err)
	}
	if rec.tombstone {
		return res, nil
	}
	res.Count = 1
	if ro.CountOnly {
		return res, nil
	}
	_, r := splitVersionKey(it.Key())
	kv, err := toKeyValue(prefix, r, rec, ro)
	if err != nil {
		return nil, err
	}
	res.KVs = []*mvccpb.KeyValue{kv}
	return res, nil
}

func toKeyValue(prefix []byte, r Revision, rec record, ro RangeOptions) (*mvccpb.KeyValue, error) {
	k, err := decodeUserKey(prefix)
	if err != nil {
		return nil, err
	}
	kv := &mvccpb.KeyValue{Key: k, CreateRevision: rec.create, ModRevision: r.Main, Version: rec.version}
	if !ro.KeysOnly || ro.withLease {
		kv.Lease = rec.lease
	}
	if !ro.KeysOnly {
		if len(rec.value) > 0 {
			kv.Value = append([]byte(nil), rec.value...)
		}
	}
	return kv, nil
}

// latest returns the newest version of key visible to it, at any revision.
func latest(it *pebble.Iterator, prefix []byte) (record, bool, error) {
	if !it.SeekGE(prefix) || !bytes.HasPrefix(it.Key(), prefix) {
		return record{}, false, it.Error()
	}
	v, err := it.ValueAndErr()
	if err != nil {
		return record{}, false, err
	}
	rec, err := decodeRecord(v)
	if err != nil {
		return record{}, false, err
	}
	// The value aliases iterator memory; callers only read the header.
	rec.value = nil
	return rec, true, nil
}
