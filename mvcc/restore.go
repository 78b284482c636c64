package mvcc

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"
)

// storedState is what the store keeps in memory about the data in Pebble.
type storedState struct {
	rev        int64
	compactRev int64 // -1 before the first compaction
	// finished is the revision of the last finished compaction; scheduled,
	// when above it, one that must resume.
	finished, scheduled int64
}

func loadState(db pebble.Reader) (storedState, error) {
	rev, ok, err := getInt(db, keyCurrentRev)
	if err != nil {
		return storedState{}, fmt.Errorf("load current revision: %w", err)
	}
	if !ok {
		rev = 1 // etcd starts at revision 1
	}
	scheduled, haveScheduled, err := getInt(db, keyScheduledCompact)
	if err != nil {
		return storedState{}, fmt.Errorf("load compaction state: %w", err)
	}
	finished, haveFinished, err := getInt(db, keyFinishedCompact)
	if err != nil {
		return storedState{}, fmt.Errorf("load compaction state: %w", err)
	}
	st := storedState{rev: rev, compactRev: -1}
	if haveScheduled {
		st.compactRev, st.scheduled = scheduled, scheduled
	}
	if haveFinished {
		st.finished = finished
	}
	return st, nil
}

// startCompactor starts a compactor that resumes the compaction st left
// unfinished, if any. compactorMu held, or s not shared yet.
func (s *Store) startCompactor(st storedState) {
	c := newCompactor(s, st.finished)
	s.compactor.Store(c)
	if st.scheduled > st.finished {
		s.lg.Info("resuming scheduled compaction", zap.Int64("compact-revision", st.scheduled), zap.Int64("finished-compact-revision", st.finished))
		c.schedule(st.scheduled)
	}
}

// reader returns what reads go to: the database, or the state pinned by
// BeginRestore. Create the read's iterators, then call done; the iterators
// stay valid after done.
func (s *Store) reader() (r pebble.Reader, done func()) {
	s.readMu.RLock()
	if s.pinned != nil {
		return s.pinned, s.readMu.RUnlock
	}
	return s.db, s.readMu.RUnlock
}

// BeginRestore prepares the store for its data in Pebble to be replaced
// (a Raft snapshot install): it stops the background compactor, whose
// writes would mix with the new state, and pins every read started from now
// on to the state as it is now, so readers and watchers never see the state
// half-replaced. Waiters of WaitCompactions are released. Reload ends it.
//
// Apply loop only, with no Writer open.
func (s *Store) BeginRestore() {
	s.compactorMu.Lock()
	c := s.compactor.Load()
	s.compactorMu.Unlock()
	c.stop()
	c.releaseWaiters()
	snap := s.db.NewSnapshot()
	s.readMu.Lock()
	defer s.readMu.Unlock()
	if s.pinned != nil {
		snap.Close()
		return
	}
	s.pinned = snap
}

// Reload re-reads the store from Pebble after its data was replaced: the
// current and compacted revisions, and the compaction to resume. Reads
// started from then on see the new state; the switch and the new compacted
// revision are published together, so a read at a revision the new state no
// longer holds fails with ErrCompacted rather than seeing it half-compacted.
// A new compactor starts (unless the store is closed) and resumes a
// compaction the new state has scheduled but not finished.
//
// Apply loop only, after BeginRestore, with no Writer open.
func (s *Store) Reload() error {
	st, err := loadState(s.db)
	if err != nil {
		return err
	}
	s.readMu.Lock()
	pinned := s.pinned
	s.pinned = nil
	s.rev.Store(st.rev)
	s.compactRev.Store(st.compactRev)
	s.counts.reset()
	s.readMu.Unlock()
	if pinned != nil {
		// Iterators opened on it hold their own references to the data.
		pinned.Close()
	}
	s.compactorMu.Lock()
	defer s.compactorMu.Unlock()
	if s.closed {
		return nil
	}
	old := s.compactor.Load()
	old.stop() // already stopped by BeginRestore, normally
	old.releaseWaiters()
	s.startCompactor(st)
	s.lg.Info("restored kvstore from snapshot", zap.Int64("current-rev", st.rev), zap.Int64("compact-revision", st.compactRev))
	return nil
}

// releaseWaiters closes the channels of WaitCompactions callers of a
// stopped compactor: its queue will not drain, and the waiters must not
// hang on it.
func (c *compactor) releaseWaiters() {
	c.mu.Lock()
	ws := c.waiters
	c.waiters = nil
	c.mu.Unlock()
	for _, ch := range ws {
		close(ch)
	}
}
