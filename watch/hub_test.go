package watch

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/keeldb/keel/mvcc"
	"github.com/keeldb/keel/storage"
)

// testRecentEvents is the hub's in-memory window in tests, small so that
// catching up from the store needs few writes.
const testRecentEvents = 100

type fixture struct {
	t     *testing.T
	db    *pebble.DB
	store *mvcc.Store
	hub   *Hub
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	e, err := storage.Open("db", storage.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	s, err := mvcc.Open(e.DB(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	h := NewHub(s, Config{MaxRequestBytes: 1 << 20})
	h.mu.Lock()
	h.recentMax = testRecentEvents
	h.mu.Unlock()
	t.Cleanup(func() { h.Stop(); s.Close(); e.Close() })
	return &fixture{t: t, db: e.DB(), store: s, hub: h}
}

// batch applies one apply batch of transactions, each a list of writes,
// and notifies the hub, as the apply loop does.
func (f *fixture) batch(txns ...func(tx *mvcc.Txn)) {
	f.t.Helper()
	b := f.db.NewIndexedBatch()
	defer b.Close()
	w := f.store.NewWriter(b)
	for _, fn := range txns {
		tx := w.Txn()
		fn(tx)
		tx.End()
	}
	if err := w.Finish(); err != nil {
		f.t.Fatal(err)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		f.t.Fatal(err)
	}
	f.store.Committed(w)
	if evs := w.Events(); len(evs) > 0 {
		f.hub.Notify(w.Rev(), evs)
	}
}

func putTx(k, v string) func(tx *mvcc.Txn) {
	return func(tx *mvcc.Txn) {
		if _, err := tx.Put([]byte(k), []byte(v), 0); err != nil {
			panic(err)
		}
	}
}

func delTx(k string) func(tx *mvcc.Txn) {
	return func(tx *mvcc.Txn) {
		if _, _, err := tx.DeleteRange(context.Background(), []byte(k), nil); err != nil {
			panic(err)
		}
	}
}

func (f *fixture) stream() *Stream {
	s := f.hub.NewStream(func(rev int64) *pb.ResponseHeader { return &pb.ResponseHeader{Revision: rev} })
	f.t.Cleanup(s.Close)
	return s
}

// collect reads s until cond holds on everything read, bounded in time.
func collect(t *testing.T, s *Stream, cond func([]*pb.WatchResponse) bool) []*pb.WatchResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []*pb.WatchResponse
	for !cond(got) {
		err := s.Send(ctx, func(r *pb.WatchResponse) error {
			got = append(got, r)
			return nil
		})
		if err != nil {
			t.Fatalf("after %d responses: %v", len(got), err)
		}
	}
	return got
}

func events(rs []*pb.WatchResponse, id int64) []*mvccpb.Event {
	var out []*mvccpb.Event
	for _, r := range rs {
		if r.WatchId == id {
			out = append(out, r.Events...)
		}
	}
	return out
}

func untilEvents(id int64, n int) func([]*pb.WatchResponse) bool {
	return func(rs []*pb.WatchResponse) bool { return len(events(rs, id)) >= n }
}

// checkSequence requires evs to be exactly the puts of keys k0..k(n-1) at
// revisions from..from+n-1.
func checkSequence(t *testing.T, evs []*mvccpb.Event, from int64, n int) {
	t.Helper()
	if len(evs) != n {
		t.Fatalf("got %d events, want %d", len(evs), n)
	}
	for i, e := range evs {
		if e.Kv.ModRevision != from+int64(i) || string(e.Kv.Key) != fmt.Sprintf("k%d", i) {
			t.Fatalf("event %d is %s@%d, want k%d@%d", i, e.Kv.Key, e.Kv.ModRevision, i, from+int64(i))
		}
	}
}

func TestEventsOfOneBatchArriveInOrderInOneResponse(t *testing.T) {
	f := newFixture(t)
	s := f.stream()
	s.Create(&pb.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte("b")})
	f.batch(putTx("a1", "x"), putTx("a2", "y"), putTx("zz", "not watched"), delTx("a1"))
	rs := collect(t, s, untilEvents(0, 3))
	if !rs[0].Created || rs[0].Header.Revision != 1 {
		t.Fatalf("first response %v, want created at revision 1", rs[0])
	}
	if len(rs) != 2 || len(rs[1].Events) != 3 || rs[1].Header.Revision != 5 {
		t.Fatalf("want one response with 3 events at header revision 5, got %v", rs)
	}
	evs := rs[1].Events
	if evs[0].Kv.ModRevision != 2 || evs[1].Kv.ModRevision != 3 || evs[2].Type != mvccpb.DELETE || evs[2].Kv.ModRevision != 5 {
		t.Fatalf("events %v", evs)
	}
}

func TestSlowStreamFallsBehindWithoutBlockingAndCatchesUp(t *testing.T) {
	f := newFixture(t)
	slow, fast := f.stream(), f.stream()
	slow.Create(&pb.WatchCreateRequest{Key: []byte("k"), RangeEnd: []byte("l")})
	fast.Create(&pb.WatchCreateRequest{Key: []byte("k"), RangeEnd: []byte("l")})
	// More than the stream queues, and past the in-memory window, so that
	// catching up reads the store.
	const n = minQueuedResponses + 3*testRecentEvents
	done := make(chan []*pb.WatchResponse)
	go func() {
		done <- collect(t, fast, untilEvents(0, n))
	}()
	for i := range n {
		f.batch(putTx(fmt.Sprintf("k%d", i), "v"))
	}
	checkSequence(t, events(<-done, 0), 2, n)
	f.hub.mu.Lock()
	behind := len(f.hub.unsynced)
	f.hub.mu.Unlock()
	if behind != 1 {
		t.Fatalf("%d unsynced watchers, want the slow one", behind)
	}
	checkSequence(t, events(collect(t, slow, untilEvents(0, n)), 0), 2, n)
	// Caught up: synced again, and new events flow directly.
	f.batch(putTx("k-last", "v"))
	rs := collect(t, slow, untilEvents(0, 1))
	if evs := events(rs, 0); len(evs) != 1 || string(evs[0].Kv.Key) != "k-last" {
		t.Fatalf("after catching up got %v", evs)
	}
}

func TestWatchFromOldRevisionReplaysHistory(t *testing.T) {
	f := newFixture(t)
	const n = 2*testRecentEvents + 10
	for i := range n {
		f.batch(putTx(fmt.Sprintf("k%d", i), "v"))
	}
	s := f.stream()
	s.Create(&pb.WatchCreateRequest{Key: []byte("k"), RangeEnd: []byte("l"), StartRevision: 2})
	s.Create(&pb.WatchCreateRequest{Key: []byte("k"), RangeEnd: []byte("l"), StartRevision: n - 5 + 2})
	rs := collect(t, s, func(rs []*pb.WatchResponse) bool { return len(events(rs, 0)) >= n && len(events(rs, 1)) >= 5 })
	checkSequence(t, events(rs, 0), 2, n)
	if evs := events(rs, 1); len(evs) != 5 || evs[0].Kv.ModRevision != n-5+2 {
		t.Fatalf("second watcher got %v", evs)
	}
}

func TestCompactionCancelsWatcherBehindIt(t *testing.T) {
	f := newFixture(t)
	for i := range 10 {
		f.batch(putTx(fmt.Sprintf("k%d", i), "v"))
	}
	f.batch(func(tx *mvcc.Txn) {})
	b := f.db.NewIndexedBatch()
	w := f.store.NewWriter(b)
	if err := w.Compact(8); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	f.store.Committed(w)
	b.Close()
	s := f.stream()
	s.Create(&pb.WatchCreateRequest{Key: []byte("k0"), StartRevision: 3})
	rs := collect(t, s, func(rs []*pb.WatchResponse) bool { return len(rs) >= 2 })
	if !rs[1].Canceled || rs[1].CompactRevision != 8 || rs[1].WatchId != 0 {
		t.Fatalf("want canceled with compact revision 8, got %v", rs[1])
	}
	// The ID stays taken until the client cancels it, and the cancel is
	// answered, as in etcd.
	s.Create(&pb.WatchCreateRequest{Key: []byte("k0"), WatchId: 0, StartRevision: 0})
	s.Cancel(0)
	rs = collect(t, s, func(rs []*pb.WatchResponse) bool { return len(rs) >= 2 })
	if rs[0].WatchId != 1 || !rs[0].Created || rs[1].WatchId != 0 || !rs[1].Canceled {
		t.Fatalf("after the compaction cancel: %v", rs)
	}
	// At the compacted revision itself the watch is allowed.
	s.Create(&pb.WatchCreateRequest{Key: []byte("k"), RangeEnd: []byte("l"), StartRevision: 8})
	rs = collect(t, s, untilEvents(2, 4))
	if evs := events(rs, 2); evs[0].Kv.ModRevision != 8 || evs[3].Kv.ModRevision != 11 {
		t.Fatalf("events from the compacted revision: %v", evs)
	}
}

func TestRequestProgressOnlyWhenAllSynced(t *testing.T) {
	f := newFixture(t)
	for i := range 5 {
		f.batch(putTx(fmt.Sprintf("k%d", i), "v"))
	}
	s := f.stream()
	s.RequestProgress() // no watchers: nothing
	s.Create(&pb.WatchCreateRequest{Key: []byte("k0")})
	s.RequestProgress()
	rs := collect(t, s, func(rs []*pb.WatchResponse) bool { return len(rs) >= 2 })
	if len(rs) != 2 || rs[1].WatchId != InvalidWatchID || rs[1].Header.Revision != 6 || rs[1].Created {
		t.Fatalf("got %v", rs)
	}
	// A watcher on a future revision holds progress back.
	s.Create(&pb.WatchCreateRequest{Key: []byte("k0"), StartRevision: 100})
	s.RequestProgress()
	s.Create(&pb.WatchCreateRequest{Key: []byte("k9")})
	rs = collect(t, s, func(rs []*pb.WatchResponse) bool { return len(rs) >= 2 })
	for _, r := range rs {
		if r.WatchId == InvalidWatchID {
			t.Fatalf("progress sent with a watcher waiting for a future revision: %v", rs)
		}
	}
}

func TestCreateRefusals(t *testing.T) {
	f := newFixture(t)
	s := f.stream()
	s.Create(&pb.WatchCreateRequest{Key: []byte("b"), RangeEnd: []byte("a")})
	s.Create(&pb.WatchCreateRequest{Key: []byte("a"), StartRevision: -1})
	s.Create(&pb.WatchCreateRequest{Key: []byte("a"), WatchId: 7})
	s.Create(&pb.WatchCreateRequest{Key: []byte("a"), WatchId: 7})
	s.Cancel(42) // unknown: no answer
	s.Cancel(7)
	rs := collect(t, s, func(rs []*pb.WatchResponse) bool { return len(rs) >= 5 })
	want := []struct {
		id       int64
		canceled bool
		reason   string
	}{
		{-1, true, "mvcc: watcher range is empty"},
		{-1, true, "etcdserver: mvcc: required revision has been compacted"},
		{7, false, ""},
		{-1, true, "mvcc: duplicate watch ID provided on the WatchStream"},
		{7, true, ""},
	}
	for i, w := range want {
		r := rs[i]
		if r.WatchId != w.id || r.Canceled != w.canceled || r.CancelReason != w.reason {
			t.Errorf("response %d: %v, want id %d canceled %v reason %q", i, r, w.id, w.canceled, w.reason)
		}
	}
}

func TestPrevKVAndFilters(t *testing.T) {
	f := newFixture(t)
	f.batch(putTx("a", "1"))
	s := f.stream()
	s.Create(&pb.WatchCreateRequest{Key: []byte("a"), PrevKv: true})
	s.Create(&pb.WatchCreateRequest{Key: []byte("a"), Filters: []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NOPUT}})
	f.batch(putTx("a", "2"))
	f.batch(delTx("a"))
	f.batch(putTx("a", "3"))
	rs := collect(t, s, func(rs []*pb.WatchResponse) bool { return len(events(rs, 0)) >= 3 && len(events(rs, 1)) >= 1 })
	evs := events(rs, 0)
	if string(evs[0].PrevKv.GetValue()) != "1" || string(evs[1].PrevKv.GetValue()) != "2" || evs[2].PrevKv != nil {
		t.Fatalf("prev kvs: %v", evs)
	}
	if d := events(rs, 1); len(d) != 1 || d[0].Type != mvccpb.DELETE || d[0].Kv.ModRevision != 4 {
		t.Fatalf("NOPUT watcher got %v", d)
	}
}

func TestFragmentsSplitLargeResponses(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 400)
	wr := &pb.WatchResponse{Header: &pb.ResponseHeader{Revision: 9}, WatchId: 3}
	for i := range 10 {
		wr.Events = append(wr.Events, &mvccpb.Event{Kv: &mvccpb.KeyValue{Key: []byte{byte('a' + i)}, Value: big, ModRevision: 9}})
	}
	out := appendFragments(nil, wr, 1000)
	var n int
	for i, r := range out {
		n += len(r.Events)
		if r.Fragment != (i < len(out)-1) {
			t.Fatalf("fragment flag of %d of %d is %v", i, len(out), r.Fragment)
		}
		if len(r.Events) > 1 && proto.Size(r) >= 1000 {
			t.Fatalf("fragment %d has %d bytes", i, proto.Size(r))
		}
	}
	if n != 10 || len(out) < 4 {
		t.Fatalf("%d fragments with %d events", len(out), n)
	}
	if out := appendFragments(nil, wr, 1<<20); len(out) != 1 || out[0].Fragment {
		t.Fatalf("a small response was split: %v", out)
	}
}

func TestCoalesceMergesPerWatcherUpToControlResponses(t *testing.T) {
	a, b := &watcher{id: 1}, &watcher{id: 2}
	ev := func(rev int64) [][]*event {
		return [][]*event{{{ev: &mvccpb.Event{Kv: &mvccpb.KeyValue{ModRevision: rev}}}}}
	}
	// Batches are shared between watchers; each response has its own list.
	shared := ev(2)[0]
	in := []*pending{
		{w: a, watchID: 1, rev: 2, events: [][]*event{shared}},
		{w: b, watchID: 2, rev: 2, events: [][]*event{shared}},
		{w: a, watchID: 1, rev: 3, events: ev(3)},
		{watchID: InvalidWatchID, rev: 3}, // progress for the stream: a barrier
		{w: a, watchID: 1, rev: 4, events: ev(4)},
		{w: b, watchID: 2, rev: 4, events: ev(4)},
		{watchID: 2, rev: 4, canceled: true}, // b's cancel: a barrier for b
	}
	out := coalesce(in)
	var got []string
	for _, p := range out {
		var revs []int64
		for _, seg := range p.events {
			for _, e := range seg {
				revs = append(revs, e.rev())
			}
		}
		got = append(got, fmt.Sprintf("%d@%d%v", p.watchID, p.rev, revs))
	}
	want := "[1@3[2 3] 2@2[2] -1@3[] 1@4[4] 2@4[4] 2@4[]]"
	if fmt.Sprint(got) != want {
		t.Fatalf("got %v, want %s", got, want)
	}
	if len(shared) != 1 || len(in[1].events) != 1 {
		t.Fatal("merging changed events shared with another watcher")
	}
}

func TestPendingEventsCountQueuedEventsUntilTakenOrClosed(t *testing.T) {
	f := newFixture(t)
	s := f.stream()
	s.Create(&pb.WatchCreateRequest{Key: []byte("k"), RangeEnd: []byte("l")})
	collect(t, s, func(rs []*pb.WatchResponse) bool { return len(rs) == 1 }) // created
	f.batch(putTx("k1", "v"), putTx("k2", "v"))
	f.batch(putTx("k3", "v"), putTx("x", "not watched"))
	if got := f.hub.PendingEvents(); got != 3 {
		t.Fatalf("PendingEvents = %d with three events queued, want 3", got)
	}
	collect(t, s, func(rs []*pb.WatchResponse) bool { return len(events(rs, 0)) == 3 })
	if got := f.hub.PendingEvents(); got != 0 {
		t.Fatalf("PendingEvents = %d once they were sent, want 0", got)
	}
	f.batch(putTx("k4", "v"))
	if got := f.hub.PendingEvents(); got != 1 {
		t.Fatalf("PendingEvents = %d, want 1", got)
	}
	s.Close() // the client went away: nobody sends it
	if got := f.hub.PendingEvents(); got != 0 {
		t.Fatalf("PendingEvents = %d after the stream closed, want 0", got)
	}
}
