package mvcc

import (
	"bytes"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"

	"github.com/keeldb/keel/storage"
)

// compactionBatchLimit is how many deletions one compaction batch carries
// before it is committed; small batches keep compaction from holding up
// writers and bound its memory.
const compactionBatchLimit = 1000

// compactor removes superseded versions in the background, one scheduled
// compaction after another, in small batches so that reads and writes go on
// while it runs.
type compactor struct {
	s *Store

	mu       sync.Mutex
	cond     *sync.Cond
	queue    []int64
	waiters  []chan struct{} // closed when the queue drains
	finished int64           // revision of the last finished compaction
	running  bool
	stopped  bool
	done     chan struct{}
}

func newCompactor(s *Store, finished int64) *compactor {
	c := &compactor{s: s, finished: finished, done: make(chan struct{})}
	c.cond = sync.NewCond(&c.mu)
	go c.run()
	return c
}

func (c *compactor) schedule(rev int64) {
	c.mu.Lock()
	c.queue = append(c.queue, rev)
	c.mu.Unlock()
	c.cond.Signal()
}

// barrier returns a channel closed once the queue as of now has drained.
func (c *compactor) barrier() <-chan struct{} {
	ch := make(chan struct{})
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) == 0 && !c.running {
		close(ch)
		return ch
	}
	c.waiters = append(c.waiters, ch)
	return ch
}

func (c *compactor) stop() {
	c.mu.Lock()
	c.stopped = true
	c.mu.Unlock()
	c.cond.Broadcast()
	<-c.done
}

func (c *compactor) run() {
	defer close(c.done)
	for {
		c.mu.Lock()
		for len(c.queue) == 0 && !c.stopped {
			c.cond.Wait()
		}
		if c.stopped {
			c.mu.Unlock()
			return
		}
		rev := c.queue[0]
		c.queue = c.queue[1:]
		c.running = true
		from := c.finished
		c.mu.Unlock()

		start := time.Now()
		versions, err := c.compact(from, rev)
		c.mu.Lock()
		c.running = false
		if err == nil {
			c.finished = rev
		}
		var release []chan struct{}
		if len(c.queue) == 0 {
			release, c.waiters = c.waiters, nil
		}
		stopped := c.stopped
		c.mu.Unlock()
		for _, ch := range release {
			close(ch)
		}
		switch {
		case err == errStopped:
			return
		case err != nil:
			// The compaction stays scheduled on disk and resumes at the next
			// start; reads below rev already fail, so nothing is inconsistent.
			c.s.lg.Warn("failed compaction", zap.Int64("compact-revision", rev), zap.Error(err))
		default:
			took := time.Since(start)
			if o := c.s.observer.Load(); o != nil {
				(*o).Compacted(versions, took)
			}
			c.s.lg.Info("finished scheduled compaction", zap.Int64("compact-revision", rev), zap.Duration("took", took))
		}
		if stopped {
			return
		}
	}
}

type stopError struct{}

func (stopError) Error() string { return "compaction stopped" }

var errStopped error = stopError{}

func (c *compactor) isStopped() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopped
}

// compact removes every version superseded at rev: for each key changed in
// (from, rev], the newest version at or before rev stays (unless it is a
// tombstone) and every older one goes. Keys not changed in that window were
// already compacted by the compaction to from. It returns the number of
// versions it removed.
func (c *compactor) compact(from, rev int64) (versions int, err error) {
	db := c.s.db
	logIt, err := db.NewIter(&pebble.IterOptions{
		LowerBound: revLogKey(Revision{Main: from + 1}),
		UpperBound: revLogKey(Revision{Main: rev + 1}),
	})
	if err != nil {
		return versions, err
	}
	defer logIt.Close()

	var (
		b    = db.NewBatch()
		seen = make(map[string]struct{})
		kvIt *pebble.Iterator
	)
	defer func() {
		b.Close()
		if kvIt != nil {
			kvIt.Close()
		}
	}()
	flush := func() error {
		versions += int(b.Count())
		if err := c.commit(b, pebble.NoSync); err != nil {
			return err
		}
		b.Reset()
		clear(seen)
		if kvIt != nil {
			err := kvIt.Close()
			kvIt = nil
			return err
		}
		return nil
	}
	for valid := logIt.First(); valid; valid = logIt.Next() {
		v, err := logIt.ValueAndErr()
		if err != nil {
			return versions, err
		}
		key := v[1:]
		if _, ok := seen[string(key)]; ok {
			continue
		}
		seen[string(key)] = struct{}{}
		if kvIt == nil {
			if c.isStopped() {
				return versions, errStopped
			}
			if kvIt, err = db.NewIter(&pebble.IterOptions{LowerBound: kvSpaceStart, UpperBound: kvSpaceEnd}); err != nil {
				return versions, err
			}
		}
		prefix := appendKeyPrefix(nil, key)
		seek := appendRevDesc(append([]byte(nil), prefix...), Revision{Main: rev, Sub: maxSub})
		ok := kvIt.SeekGE(seek) && bytes.HasPrefix(kvIt.Key(), prefix)
		if ok {
			val, err := kvIt.ValueAndErr()
			if err != nil {
				return versions, err
			}
			if len(val) > 0 && val[0]&flagTombstone != 0 {
				if err := b.Delete(kvIt.Key(), nil); err != nil {
					return versions, err
				}
			}
			for kvIt.Next() && bytes.HasPrefix(kvIt.Key(), prefix) {
				if err := b.Delete(kvIt.Key(), nil); err != nil {
					return versions, err
				}
			}
		}
		if err := kvIt.Error(); err != nil {
			return versions, err
		}
		if b.Count() >= compactionBatchLimit || len(seen) >= 8*compactionBatchLimit {
			if err := flush(); err != nil {
				return versions, err
			}
		}
	}
	if err := logIt.Error(); err != nil {
		return versions, err
	}
	// The log below rev is no longer needed: nobody can read or watch there.
	// Every deletion so far was a version; the range deletion and the
	// record below are not.
	versions += int(b.Count())
	if err := b.DeleteRange([]byte{storage.PrefixRevLog}, revLogKey(Revision{Main: rev}), nil); err != nil {
		return versions, err
	}
	if err := putInt(b, keyFinishedCompact, rev); err != nil {
		return versions, err
	}
	return versions, c.commit(b, pebble.Sync)
}

// commit commits one batch of a compaction and reports how long it took.
func (c *compactor) commit(b *pebble.Batch, opts *pebble.WriteOptions) error {
	start := time.Now()
	if err := b.Commit(opts); err != nil {
		return err
	}
	if o := c.s.observer.Load(); o != nil {
		(*o).CompactionBatch(time.Since(start))
	}
	return nil
}
