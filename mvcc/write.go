package mvcc

import (
	"context"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Writer applies write transactions into one apply batch. It belongs to the
// apply loop: create it over the batch, run transactions, commit the batch,
// then hand the Writer to Store.Committed so readers see the new revision.
type Writer struct {
	s          *Store
	b          *pebble.Batch // an indexed batch, so transactions read their own writes
	rev        int64         // current revision including this batch's transactions
	startRev   int64
	compactRev int64
	compacts   []int64 // compactions to start once the batch is committed
	events     []Event // changes made so far, in revision order
	it         *pebble.Iterator
	itOpts     pebble.IterOptions
}

// NewWriter starts writing into b, which must be an indexed batch.
func (s *Store) NewWriter(b *pebble.Batch) *Writer {
	rev := s.rev.Load()
	return &Writer{s: s, b: b, rev: rev, startRev: rev, compactRev: s.compactRev.Load(),
		itOpts: pebble.IterOptions{LowerBound: kvSpaceStart, UpperBound: kvSpaceEnd}}
}

// iter returns an iterator over the batch and the database that sees every
// write made to the batch so far.
func (w *Writer) iter() (*pebble.Iterator, error) {
	if w.it == nil {
		it, err := w.b.NewIter(&w.itOpts)
		if err != nil {
			return nil, err
		}
		w.it = it
		return it, nil
	}
	w.it.SetOptions(&w.itOpts) // refreshes the view of the batch
	return w.it, nil
}

// Rev returns the current revision as of the transactions run so far.
func (w *Writer) Rev() int64 { return w.rev }

// Finish records the new current revision in the batch and releases the
// Writer's iterator. Call it before committing the batch.
func (w *Writer) Finish() error {
	if err := w.Release(); err != nil {
		return err
	}
	if w.rev != w.startRev {
		return putInt(w.b, keyCurrentRev, w.rev)
	}
	return nil
}

// Release frees the Writer's resources; safe to call more than once, and
// needed when a batch is abandoned without Finish.
func (w *Writer) Release() error {
	if w.it == nil {
		return nil
	}
	err := w.it.Close()
	w.it = nil
	return err
}

// Committed publishes what w wrote, once its batch is committed: readers see
// the new revision and scheduled compactions start.
func (s *Store) Committed(w *Writer) {
	s.rev.Store(w.rev)
	if w.compactRev != s.compactRev.Load() {
		s.compactRev.Store(w.compactRev)
	}
	for _, rev := range w.compacts {
		s.compactor.Load().schedule(rev)
	}
	w.compacts = nil
}

// Events returns the changes written through w so far, in revision order.
// The slice and the KeyValues belong to the caller once the batch is
// committed; w does not touch them again.
func (w *Writer) Events() []Event { return w.events }

// Compact schedules a compaction to rev, as etcd does: a revision at or
// below the compacted one is ErrCompacted, one beyond the current revision
// ErrFutureRev. Reads below rev fail from the moment the batch is committed;
// superseded versions are removed in the background afterwards.
func (w *Writer) Compact(rev int64) error {
	if rev <= w.compactRev {
		return ErrCompacted
	}
	if rev > w.rev {
		return ErrFutureRev
	}
	if err := putInt(w.b, keyScheduledCompact, rev); err != nil {
		return err
	}
	w.compactRev = rev
	w.compacts = append(w.compacts, rev)
	return nil
}

// Txn is one write transaction: every change it makes gets the same main
// revision, the one after the revision it began at.
type Txn struct {
	w        *Writer
	beginRev int64
	changes  int64
}

// Txn begins a write transaction. End it before beginning the next.
func (w *Writer) Txn() *Txn { return &Txn{w: w, beginRev: w.rev} }

// End finishes the transaction: if it changed anything the current revision
// moves on by one.
func (t *Txn) End() {
	if t.changes > 0 {
		t.w.rev++
	}
}

// Rev is the revision the transaction began at.
func (t *Txn) Rev() int64 { return t.beginRev }

// FirstRev implements Reader.
func (t *Txn) FirstRev() int64 { return t.w.compactRev }

// Changed reports whether the transaction has written anything.
func (t *Txn) Changed() bool { return t.changes > 0 }

// readRev is the revision the transaction's own reads see: its begin
// revision, or the next one once it has written.
func (t *Txn) readRev() int64 {
	if t.changes > 0 {
		return t.beginRev + 1
	}
	return t.beginRev
}

// Range implements Reader; it sees the transaction's own writes.
func (t *Txn) Range(ctx context.Context, key, end []byte, ro RangeOptions) (*RangeResult, error) {
	cur := t.readRev()
	if ro.Rev > cur {
		return &RangeResult{Rev: cur}, ErrFutureRev
	}
	rev := ro.Rev
	if rev <= 0 {
		rev = cur
	}
	if rev < t.w.compactRev {
		return &RangeResult{}, ErrCompacted
	}
	it, err := t.w.iter()
	if err != nil {
		return nil, err
	}
	res, err := scan(ctx, it, key, end, rev, ro)
	if err != nil {
		return nil, err
	}
	res.Rev = cur
	return res, nil
}

// Put writes key=value with lease and returns the revision it was written at.
func (t *Txn) Put(key, value []byte, lease int64) (int64, error) {
	rev := Revision{Main: t.beginRev + 1, Sub: t.changes}
	it, err := t.w.iter()
	if err != nil {
		return 0, err
	}
	prefix := appendKeyPrefix(nil, key)
	create, version := rev.Main, int64(1)
	prev, ok, err := latest(it, prefix)
	if err != nil {
		return 0, fmt.Errorf("read previous version of %q: %w", key, err)
	}
	if ok && !prev.tombstone {
		create, version = prev.create, prev.version+1
	}
	if err := t.w.b.Set(appendRevDesc(prefix, rev), appendRecord(nil, create, version, lease, value), nil); err != nil {
		return 0, err
	}
	if err := t.w.b.Set(revLogKey(rev), append([]byte{logPut}, key...), nil); err != nil {
		return 0, err
	}
	ev := Event{Type: mvccpb.PUT, KV: &mvccpb.KeyValue{Key: key, Value: value, Lease: lease,
		CreateRevision: create, ModRevision: rev.Main, Version: version}}
	if ok && !prev.tombstone {
		ev.PrevLease = prev.lease
	}
	t.w.events = append(t.w.events, ev)
	t.changes++
	return rev.Main, nil
}

// DeleteRange deletes the keys in [key, end) (end as in Range) and returns
// how many it deleted and the revision of the response header.
func (t *Txn) DeleteRange(ctx context.Context, key, end []byte) (int64, int64, error) {
	res, err := t.Range(ctx, key, end, RangeOptions{KeysOnly: true, withLease: true})
	if err != nil {
		return 0, 0, err
	}
	for _, kv := range res.KVs {
		if err := t.deleteKey(kv); err != nil {
			return 0, 0, err
		}
	}
	n := int64(len(res.KVs))
	if n != 0 || t.changes > 0 {
		return n, t.beginRev + 1, nil
	}
	return 0, t.beginRev, nil
}

func (t *Txn) deleteKey(kv *mvccpb.KeyValue) error {
	rev := Revision{Main: t.beginRev + 1, Sub: t.changes}
	if err := t.w.b.Set(versionKey(kv.Key, rev), tombstoneRecord, nil); err != nil {
		return err
	}
	if err := t.w.b.Set(revLogKey(rev), append([]byte{logDelete}, kv.Key...), nil); err != nil {
		return err
	}
	t.w.events = append(t.w.events, Event{Type: mvccpb.DELETE,
		KV: &mvccpb.KeyValue{Key: kv.Key, ModRevision: rev.Main}, PrevLease: kv.Lease})
	t.changes++
	return nil
}
