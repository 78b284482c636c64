package mvcc

import (
	"bytes"
	"context"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Event is one change to the key space, as a watcher sees it.
type Event struct {
	Type mvccpb.Event_EventType
	// KV is the key after a put. After a delete it carries only Key and
	// ModRevision (the revision of the delete), as etcd's delete events do.
	KV *mvccpb.KeyValue
	// PrevLease is the lease the key was attached to before this change, 0
	// if it had none or did not exist. Lease bookkeeping uses it to detach
	// keys that are deleted or put with another lease.
	PrevLease int64
}

// Rev returns the revision of the change.
func (e Event) Rev() int64 { return e.KV.ModRevision }

// History reads the changes of revisions from..to (both included) from the
// by-revision log, for watchers catching up. It stops after the revision in
// which the number of events reaches maxEvents (a revision is never split)
// and returns the last revision it read completely. A from below the
// compacted revision is ErrCompacted.
//
// A delete in the compacted revision itself may be missing: its tombstone
// is removed by the compaction, as in etcd.
func (s *Store) History(ctx context.Context, from, to int64, maxEvents int) ([]Event, int64, error) {
	if from < s.compactRev.Load() {
		return nil, 0, ErrCompacted
	}
	if to < from {
		return nil, to, nil
	}
	r, done := s.reader()
	logIt, err := r.NewIterWithContext(ctx, &pebble.IterOptions{
		LowerBound: revLogKey(Revision{Main: from}),
		UpperBound: revLogKey(Revision{Main: to + 1}),
	})
	if err != nil {
		done()
		return nil, 0, err
	}
	defer logIt.Close()
	kvIt, err := r.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: kvSpaceStart, UpperBound: kvSpaceEnd})
	done()
	if err != nil {
		return nil, 0, err
	}
	defer kvIt.Close()
	// The iterators pinned their views: a compaction that began since the
	// check above may have removed versions these views still see or not,
	// so check again now that they are fixed.
	if from < s.compactRev.Load() {
		return nil, 0, ErrCompacted
	}
	var (
		evs  []Event
		last = to
	)
	for valid := logIt.First(); valid; valid = logIt.Next() {
		r := decodeRevLogKey(logIt.Key())
		if len(evs) >= maxEvents && maxEvents > 0 && r.Main != evs[len(evs)-1].Rev() {
			last = r.Main - 1
			break
		}
		if len(evs)%ctxCheckEvery == ctxCheckEvery-1 {
			if err := ctx.Err(); err != nil {
				return nil, 0, err
			}
		}
		v, err := logIt.ValueAndErr()
		if err != nil {
			return nil, 0, err
		}
		if len(v) == 0 {
			return nil, 0, fmt.Errorf("empty revision log entry at %d/%d", r.Main, r.Sub)
		}
		key := append([]byte(nil), v[1:]...)
		switch v[0] {
		case logDelete:
			evs = append(evs, Event{Type: mvccpb.DELETE, KV: &mvccpb.KeyValue{Key: key, ModRevision: r.Main}})
		case logPut:
			vk := versionKey(key, r)
			if !kvIt.SeekGE(vk) || !bytes.Equal(kvIt.Key(), vk) {
				if err := kvIt.Error(); err != nil {
					return nil, 0, err
				}
				return nil, 0, fmt.Errorf("revision log names %q at %d/%d but the version is missing", key, r.Main, r.Sub)
			}
			val, err := kvIt.ValueAndErr()
			if err != nil {
				return nil, 0, err
			}
			rec, err := decodeRecord(val)
			if err != nil {
				return nil, 0, fmt.Errorf("key %q at %d: %w", key, r.Main, err)
			}
			kv := &mvccpb.KeyValue{Key: key, CreateRevision: rec.create, ModRevision: r.Main, Version: rec.version, Lease: rec.lease}
			if len(rec.value) > 0 {
				kv.Value = append([]byte(nil), rec.value...)
			}
			evs = append(evs, Event{Type: mvccpb.PUT, KV: kv})
		default:
			return nil, 0, fmt.Errorf("unknown revision log entry kind %q at %d/%d", v[0], r.Main, r.Sub)
		}
	}
	if err := logIt.Error(); err != nil {
		return nil, 0, err
	}
	return evs, last, nil
}

// PrevKV returns key as it was just before revision rev, nil if it did not
// exist then or that revision is compacted.
func (s *Store) PrevKV(ctx context.Context, key []byte, rev int64) (*mvccpb.KeyValue, error) {
	if rev <= 1 {
		return nil, nil
	}
	v := s.Read()
	res, err := v.Range(ctx, key, nil, RangeOptions{Rev: rev - 1})
	if err != nil {
		if err == ErrCompacted || err == ErrFutureRev {
			return nil, nil
		}
		return nil, err
	}
	if len(res.KVs) == 0 {
		return nil, nil
	}
	return res.KVs[0], nil
}
