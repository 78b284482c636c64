// Package mvcc is keel's multi-version key-value store with etcd's semantics:
// one main revision per write transaction, a sub revision per change inside
// it, create/mod revision and version per key, tombstones on delete, reads at
// any revision between the compacted one and the current one, and online
// compaction.
//
// Nothing here keeps an index of all keys in memory: every read is an ordered
// scan of Pebble (see keys.go for the layout), so memory does not grow with
// the number of keys.
//
// Concurrency contract: any number of goroutines may read (Read, Rev,
// CompactRev). Exactly one goroutine, the apply loop, writes through a Writer
// over the apply batch, and calls Committed once that batch is in Pebble.
package mvcc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.uber.org/zap"
)

// Errors with etcd's wording; the API layer maps them to etcd's gRPC errors.
var (
	ErrCompacted = errors.New("mvcc: required revision has been compacted")
	ErrFutureRev = errors.New("mvcc: required revision is a future revision")
)

// Store is the MVCC key space of one member.
type Store struct {
	db *pebble.DB
	lg *zap.Logger

	rev        atomic.Int64 // current revision, published after each apply batch commits
	compactRev atomic.Int64 // revision compacted to; -1 before the first compaction

	// compactor runs scheduled compactions. Reload replaces it; compactorMu
	// orders that with Close, which sets closed.
	compactorMu sync.Mutex
	compactor   atomic.Pointer[compactor]
	closed      bool

	// While a snapshot install replaces the state underneath the store,
	// reads go to pinned, a Pebble snapshot of the state before it (see
	// BeginRestore). readMu orders choosing the reader against pinning.
	readMu sync.RWMutex
	pinned *pebble.Snapshot

	// counts spares paginated ranges a recount of the rest of the range.
	counts *countCache

	openReads atomic.Int64 // ranges reading Pebble now
	observer  atomic.Pointer[CompactionObserver]
}

// CompactionObserver learns how compactions go, for the metrics. Its
// methods are called from the compaction's goroutine.
type CompactionObserver interface {
	// CompactionBatch reports the commit of one batch of a compaction's
	// deletions, which writers' commits queue behind.
	CompactionBatch(commit time.Duration)
	// Compacted reports a finished compaction: the versions it removed and
	// how long it took.
	Compacted(versions int, took time.Duration)
}

// ObserveCompactions makes o learn about every compaction from now on.
func (s *Store) ObserveCompactions(o CompactionObserver) { s.observer.Store(&o) }

// OpenReads returns the number of ranges reading the store at this moment.
func (s *Store) OpenReads() int64 { return s.openReads.Load() }

// Open loads the store's revisions from db and resumes an interrupted
// compaction in the background.
func Open(db *pebble.DB, lg *zap.Logger) (*Store, error) {
	s := &Store{db: db, lg: lg, counts: newCountCache()}
	st, err := loadState(db)
	if err != nil {
		return nil, err
	}
	s.rev.Store(st.rev)
	s.compactRev.Store(st.compactRev)
	s.startCompactor(st)
	lg.Info("kvstore restored", zap.Int64("current-rev", st.rev))
	return s, nil
}

// Close stops the background compactor and waits for it. An unfinished
// compaction resumes at the next Open.
func (s *Store) Close() {
	s.compactorMu.Lock()
	s.closed = true
	c := s.compactor.Load()
	s.compactorMu.Unlock()
	c.stop()
	s.readMu.Lock()
	if s.pinned != nil {
		s.pinned.Close()
		s.pinned = nil
	}
	s.readMu.Unlock()
}

// Rev returns the current revision: the revision of the last committed write.
func (s *Store) Rev() int64 { return s.rev.Load() }

// CompactRev returns the revision the store is compacted to, -1 if never.
func (s *Store) CompactRev() int64 { return s.compactRev.Load() }

// RangeOptions select what a range returns.
type RangeOptions struct {
	// Limit caps the number of keys returned; 0 or less means no limit.
	Limit int64
	// Rev is the revision to read at; 0 or less means the view's revision.
	Rev int64
	// CountOnly returns only the count.
	CountOnly bool
	// KeysOnly omits values and leases (etcd's fast keys-only path).
	KeysOnly bool
	// withLease keeps the lease in a KeysOnly read (deletes need it for
	// their events).
	withLease bool
	// WithTotalCount counts every key in the range even past Limit.
	WithTotalCount bool
}

// RangeResult is the outcome of a range.
type RangeResult struct {
	KVs []*mvccpb.KeyValue
	// Count is the number of keys in the range (see RangeOptions.WithTotalCount).
	Count int
	// Rev is the revision of the view the range read from (not the revision
	// read at), as etcd reports it in the response header.
	Rev int64
}

// Reader is what both read views and write transactions offer for reads.
type Reader interface {
	// Rev is the revision the reader sees.
	Rev() int64
	// FirstRev is the compacted revision when the reader was opened.
	FirstRev() int64
	// Range reads [key, end) at ro.Rev. end == nil means the single key;
	// an empty non-nil end means every key from key on.
	Range(ctx context.Context, key, end []byte, ro RangeOptions) (*RangeResult, error)
}

// ReadView is a consistent read-only view of the store at one revision.
type ReadView struct {
	s        *Store
	rev      int64
	firstRev int64
}

// Read opens a view at the current revision. Views hold no resources
// between calls and need no closing.
func (s *Store) Read() *ReadView {
	return &ReadView{s: s, rev: s.rev.Load(), firstRev: s.compactRev.Load()}
}

// Rev implements Reader.
func (v *ReadView) Rev() int64 { return v.rev }

// FirstRev implements Reader.
func (v *ReadView) FirstRev() int64 { return v.firstRev }

// Range implements Reader.
func (v *ReadView) Range(ctx context.Context, key, end []byte, ro RangeOptions) (*RangeResult, error) {
	rev, err := v.s.checkRev(ro.Rev, v.rev)
	if err != nil {
		return &RangeResult{Rev: v.rev}, err
	}
	v.s.openReads.Add(1)
	defer v.s.openReads.Add(-1)
	r, done := v.s.reader()
	it, err := r.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: kvSpaceStart, UpperBound: kvSpaceEnd})
	done()
	if err != nil {
		return nil, err
	}
	defer it.Close()
	// A compaction that removed versions this read needs was scheduled before
	// its deletions were written, so checking again after the iterator pinned
	// its view catches every race.
	if rev < v.s.compactRev.Load() {
		return &RangeResult{Rev: v.rev}, ErrCompacted
	}
	// A page of a paginated range: the count of the rest of the range may
	// be known from the page before (see countCache).
	paged := end != nil && ro.Limit > 0 && ro.WithTotalCount && !ro.CountOnly
	total, known := 0, false
	if paged {
		total, known = v.s.counts.get(key, end, rev)
	}
	sro := ro
	if known {
		sro.WithTotalCount = false
	}
	res, err := scan(ctx, it, key, end, rev, sro)
	if err != nil {
		return nil, err
	}
	if known {
		res.Count = total
	}
	if paged && int64(len(res.KVs)) == ro.Limit {
		tail := res.KVs[max(0, len(res.KVs)-2):]
		last := make([][]byte, len(tail))
		for i, kv := range tail {
			last[i] = kv.Key
		}
		v.s.counts.rememberTail(last, end, rev, res.Count, len(res.KVs))
	}
	res.Rev = v.rev
	return res, nil
}

// checkRev resolves the revision a read runs at, as etcd does: a revision
// beyond cur is a future revision, 0 or less means cur, and one below the
// compacted revision is gone.
func (s *Store) checkRev(want, cur int64) (int64, error) {
	if want > cur {
		return 0, ErrFutureRev
	}
	if want <= 0 {
		want = cur
	}
	if want < s.compactRev.Load() {
		return 0, ErrCompacted
	}
	return want, nil
}

// WaitCompactions returns a channel closed once every compaction scheduled
// so far has finished.
func (s *Store) WaitCompactions() <-chan struct{} { return s.compactor.Load().barrier() }

func getInt(r pebble.Reader, key []byte) (int64, bool, error) {
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, false, fmt.Errorf("corrupt value of %q: %d bytes", key, len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), true, nil
}

func putInt(b *pebble.Batch, key []byte, v int64) error {
	return b.Set(key, binary.BigEndian.AppendUint64(nil, uint64(v)), nil)
}
