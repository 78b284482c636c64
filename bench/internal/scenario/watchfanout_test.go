package scenario

import (
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func puts(revs ...int64) clientv3.WatchResponse {
	var wr clientv3.WatchResponse
	for _, r := range revs {
		wr.Events = append(wr.Events, &clientv3.Event{Type: mvccpb.PUT, Kv: &mvccpb.KeyValue{ModRevision: r}})
	}
	return wr
}

func newState(n int, startRev int64) *fanoutState {
	st := &fanoutState{watchers: make([]fanoutWatcher, n), createdAll: make(chan struct{}), allDone: make(chan struct{}), failed: make(chan struct{})}
	for i := range st.watchers {
		st.watchers[i].last.Store(startRev)
	}
	return st
}

func feed(st *fanoutState, w *fanoutWatcher, resps ...clientv3.WatchResponse) {
	ch := make(chan clientv3.WatchResponse, len(resps))
	for _, r := range resps {
		ch <- r
	}
	close(ch)
	st.consume(w, ch)
}

func TestFanoutWatcherCountsGapsDuplicatesAndReorderings(t *testing.T) {
	st := newState(1, 10)
	w := &st.watchers[0]
	feed(st, w,
		clientv3.WatchResponse{Created: true},
		puts(11, 12),
		puts(12),     // duplicate
		puts(14),     // gap: 13 missing
		puts(15, 16), // in order again
	)
	if got := w.bad.Load(); got != 2 {
		t.Errorf("bad events = %d, want 2 (the duplicate 12 and the 14 after a gap)", got)
	}
	if got := w.events.Load(); got != 6 {
		t.Errorf("events = %d, want 6", got)
	}
	if got := st.created.Load(); got != 1 {
		t.Errorf("created = %d, want 1", got)
	}
	select {
	case <-st.createdAll:
	default:
		t.Error("createdAll not closed after the only watcher was created")
	}
}

// The coordinator sets the target after some watchers already received
// every event; those are completed by the coordinator's scan, the others by
// their consumer. Either way allDone closes exactly once.
func TestDeliveryCompletesWhetherTheTargetIsKnownBeforeOrAfterTheLastEvent(t *testing.T) {
	st := newState(2, 0)
	early, late := &st.watchers[0], &st.watchers[1]
	feed(st, early, puts(1, 2, 3))
	st.target.Store(3)
	for i := range st.watchers {
		st.markDone(&st.watchers[i])
	}
	select {
	case <-st.allDone:
		t.Fatal("allDone closed while a watcher lacks events")
	default:
	}
	feed(st, late, puts(1, 2), puts(3))
	select {
	case <-st.allDone:
	default:
		t.Fatal("allDone not closed after every watcher reached the target")
	}
	// A second scan must not count a watcher twice (close would panic).
	for i := range st.watchers {
		st.markDone(&st.watchers[i])
	}
	if got := st.nDone.Load(); got != 2 {
		t.Errorf("watchers done = %d, want 2", got)
	}
}

func TestAWatchClosedBeforeCreationIsAnError(t *testing.T) {
	st := newState(1, 0)
	feed(st, &st.watchers[0])
	select {
	case <-st.failed:
	default:
		t.Fatal("failed not signalled")
	}
	if st.nErrors != 1 || st.watchers[0].err == nil {
		t.Errorf("errors = %d, watcher error %v; want one", st.nErrors, st.watchers[0].err)
	}
}
