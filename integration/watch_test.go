package integration

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// Cancel reasons etcd 3.7 puts in a created-and-canceled response.
const (
	reasonCompacted   = "etcdserver: mvcc: required revision has been compacted"
	reasonEmptyRange  = "mvcc: watcher range is empty"
	reasonDuplicateID = "mvcc: duplicate watch ID provided on the WatchStream"
)

// TestWatchCreatedHeader checks the created response: the first watcher of
// a stream gets id 0, the next id 1, and the header carries the member's
// ids, term and the current revision, also for a watcher that starts at an
// old revision. The client shows it only with WithCreatedNotify.
func TestWatchCreatedHeader(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	put(t, cli, "a", "1")
	cur := put(t, cli, "b", "1")

	w := openRawWatch(t, cli)
	w.create(&pb.WatchCreateRequest{Key: []byte("a")})
	wantCtrl(t, m, w.recv(), ctrl{watchID: 0, created: true, revision: cur})
	w.create(&pb.WatchCreateRequest{Key: []byte("a"), StartRevision: 1})
	wantCtrl(t, m, w.recv(), ctrl{watchID: 1, created: true, revision: cur})
	// The old watcher's history follows its created response.
	resp := w.recv()
	if resp.WatchId != 1 || resp.Created || resp.Canceled {
		t.Fatalf("after created: got %s, want watcher 1's history", respString(resp))
	}
	wantEvents(t, resp.Events, putEv("a", "1", 2, 2, 1))

	c := ctx(t)
	wch := cli.Watch(c, "a", clientv3.WithCreatedNotify())
	got := nextResp(t, c, wch)
	if !got.Created || got.Canceled || got.Err() != nil || len(got.Events) != 0 || got.Header.GetRevision() != cur || got.IsProgressNotify() {
		t.Fatalf("client created response %s, want created at revision %d", clientRespString(got), cur)
	}
}

// TestWatchKeyRangePrefixFromKey checks which events each kind of watched
// range selects: one key, [key, range_end), a prefix, every key from a key
// on, and every key.
func TestWatchKeyRangePrefixFromKey(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	c := ctx(t)
	watches := []struct {
		name string
		wch  clientv3.WatchChan
		want []string // keys of the events, in order
	}{
		{"key b", cli.Watch(c, "b"), []string{"PUT b", "PUT b"}},
		{"range [b, d)", cli.Watch(c, "b", clientv3.WithRange("d")), []string{"PUT b", "PUT ba", "PUT c", "DELETE ba", "PUT b"}},
		{"prefix b", cli.Watch(c, "b", clientv3.WithPrefix()), []string{"PUT b", "PUT ba", "DELETE ba", "PUT b"}},
		{"from key b", cli.Watch(c, "b", clientv3.WithFromKey()), []string{"PUT b", "PUT ba", "PUT c", "PUT d", "PUT e", "DELETE ba", "PUT b"}},
		{"all keys", cli.Watch(c, "", clientv3.WithPrefix()), []string{"PUT a", "PUT b", "PUT ba", "PUT c", "PUT d", "PUT e", "DELETE ba", "PUT b"}},
	}
	for _, k := range []string{"a", "b", "ba", "c", "d", "e"} {
		put(t, cli, k, "1")
	}
	if _, err := cli.Delete(c, "ba"); err != nil {
		t.Fatal(err)
	}
	put(t, cli, "b", "end")
	for _, w := range watches {
		evs := collectUntil(t, c, w.wch, "b", "end", 20)
		var got []string
		for _, ev := range evs {
			got = append(got, ev.Type.String()+" "+string(ev.Kv.Key))
		}
		if strings.Join(got, ",") != strings.Join(w.want, ",") {
			t.Errorf("%s: got %v, want %v", w.name, got, w.want)
		}
	}
}

// TestWatchEmptyKey checks that an empty key is the key "\x00": alone it
// watches that one key, with range_end "\x00" it watches every key.
func TestWatchEmptyKey(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	w := openRawWatch(t, cli)
	single := w.mustCreate(&pb.WatchCreateRequest{})
	all := w.mustCreate(&pb.WatchCreateRequest{RangeEnd: []byte{0}})
	put(t, cli, "a", "1")      // 2
	put(t, cli, "\x00", "1")   // 3
	put(t, cli, "b", "1")      // 4
	put(t, cli, "\x00", "end") // 5
	got := map[int64][]*mvccpb.Event{}
	reached5 := func(id int64) bool { evs := got[id]; return len(evs) > 0 && evs[len(evs)-1].Kv.ModRevision == 5 }
	for range 10 {
		if reached5(single) && reached5(all) {
			break
		}
		resp := w.recv()
		got[resp.WatchId] = append(got[resp.WatchId], resp.Events...)
	}
	wantEvents(t, got[single], putEv("\x00", "1", 3, 3, 1), putEv("\x00", "end", 3, 5, 2))
	wantEvents(t, got[all], putEv("a", "1", 2, 2, 1), putEv("\x00", "1", 3, 3, 1), putEv("b", "1", 4, 4, 1), putEv("\x00", "end", 3, 5, 2))
}

// seedWatchHistory writes a=1 (2), a=2 (3), b=1 (4), del a (5), a=3 (6).
func seedWatchHistory(t *testing.T, cli *clientv3.Client) {
	t.Helper()
	put(t, cli, "a", "1")
	put(t, cli, "a", "2")
	put(t, cli, "b", "1")
	if _, err := cli.Delete(ctx(t), "a"); err != nil {
		t.Fatal(err)
	}
	if got := put(t, cli, "a", "3"); got != 6 {
		t.Fatalf("seed ends at revision %d, want 6", got)
	}
}

// TestWatchStartRevision checks where a watcher starts: start_revision 0
// sees only events after its creation, an old revision replays the history
// from there in order (in one response whose header is the current
// revision) and then continues, and a future revision sees events only from
// that revision on. Every live event comes in its own response whose header
// is the event's revision.
func TestWatchStartRevision(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	seedWatchHistory(t, cli)
	c := ctx(t)

	old := cli.Watch(c, "a", clientv3.WithRev(3))
	resp := nextResp(t, c, old)
	if resp.Header.GetRevision() != 6 {
		t.Fatalf("history response header revision %d, want the current revision 6", resp.Header.GetRevision())
	}
	wantEvents(t, resp.Events, putEv("a", "2", 2, 3, 2), delEv("a", 5), putEv("a", "3", 6, 6, 1))
	all := cli.Watch(c, "", clientv3.WithPrefix(), clientv3.WithRev(1))
	resp = nextResp(t, c, all)
	wantEvents(t, resp.Events, putEv("a", "1", 2, 2, 1), putEv("a", "2", 2, 3, 2), putEv("b", "1", 4, 4, 1), delEv("a", 5), putEv("a", "3", 6, 6, 1))

	now := cli.Watch(c, "a")
	future := cli.Watch(c, "a", clientv3.WithRev(8))
	put(t, cli, "a", "4") // 7
	put(t, cli, "a", "5") // 8
	put(t, cli, "a", "6") // 9
	live := map[int64]*mvccpb.Event{7: putEv("a", "4", 6, 7, 2), 8: putEv("a", "5", 6, 8, 3), 9: putEv("a", "6", 6, 9, 4)}
	for _, w := range []struct {
		name string
		wch  clientv3.WatchChan
		from int64
	}{{"old", old, 7}, {"all", all, 7}, {"now", now, 7}, {"future", future, 8}} {
		for r := w.from; r <= 9; r++ {
			resp := nextResp(t, c, w.wch)
			if resp.Header.GetRevision() != r {
				t.Fatalf("%s watcher: response %s, want header revision %d", w.name, clientRespString(resp), r)
			}
			wantEvents(t, resp.Events, live[r])
		}
	}
}

// TestWatchCompactedStartRevision checks a watcher that starts below the
// compaction revision: it is created, then canceled with the compaction
// revision, which the client turns into ErrCompacted before closing the
// channel. Starting exactly at the compaction revision is allowed.
func TestWatchCompactedStartRevision(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	seedWatchHistory(t, cli)
	if _, err := cli.Compact(ctx(t), 4); err != nil {
		t.Fatal(err)
	}
	c := ctx(t)

	wch := cli.Watch(c, "a", clientv3.WithRev(3))
	resp := nextResp(t, c, wch)
	if resp.Err() != rpctypes.ErrCompacted || resp.CompactRevision != 4 || !resp.Canceled || len(resp.Events) != 0 {
		t.Fatalf("got %s, want ErrCompacted with compact revision 4", clientRespString(resp))
	}
	select {
	case r, ok := <-wch:
		if ok {
			t.Fatalf("after the compacted response got %s, want the channel closed", clientRespString(r))
		}
	case <-c.Done():
		t.Fatal("watch channel not closed after the compacted response")
	}

	w := openRawWatch(t, cli)
	w.create(&pb.WatchCreateRequest{Key: []byte("a"), StartRevision: 2})
	wantCtrl(t, m, w.recv(), ctrl{watchID: 0, created: true, revision: 6})
	// etcd sends the compacted cancel without a revision in the header.
	wantCtrl(t, m, w.recv(), ctrl{watchID: 0, canceled: true, compactRevision: 4, revision: 0})

	at := cli.Watch(c, "", clientv3.WithPrefix(), clientv3.WithRev(4))
	resp = nextResp(t, c, at)
	if resp.Err() != nil {
		t.Fatalf("watch from the compaction revision: %s", clientRespString(resp))
	}
	wantEvents(t, resp.Events, putEv("b", "1", 4, 4, 1), delEv("a", 5), putEv("a", "3", 6, 6, 1))
}

// TestWatchNegativeStartRevision checks that a negative start revision is
// refused in one created-and-canceled response with watch id -1 and the
// compacted error as the reason, and that the stream stays usable.
func TestWatchNegativeStartRevision(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	cur := put(t, cli, "a", "1")
	w := openRawWatch(t, cli)
	w.create(&pb.WatchCreateRequest{Key: []byte("a"), StartRevision: -1})
	wantCtrl(t, m, w.recv(), ctrl{watchID: -1, created: true, canceled: true, cancelReason: reasonCompacted, revision: cur})
	if id := w.mustCreate(&pb.WatchCreateRequest{Key: []byte("a")}); id != 0 {
		t.Fatalf("next watcher got id %d, want 0 (the refused one takes no id)", id)
	}
}

// TestWatchInvalidRange checks that a range whose key is not below its
// range_end is refused with "mvcc: watcher range is empty", and that the
// stream stays usable.
func TestWatchInvalidRange(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	cur := put(t, cli, "a", "1")
	w := openRawWatch(t, cli)
	for _, r := range []struct{ key, end string }{{"b", "a"}, {"b", "b"}} {
		w.create(&pb.WatchCreateRequest{Key: []byte(r.key), RangeEnd: []byte(r.end)})
		wantCtrl(t, m, w.recv(), ctrl{watchID: -1, created: true, canceled: true, cancelReason: reasonEmptyRange, revision: cur})
	}
	if id := w.mustCreate(&pb.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte("b")}); id != 0 {
		t.Fatalf("next watcher got id %d, want 0", id)
	}
}

// TestWatchFilters checks NOPUT and NODELETE, alone and together: filtered
// events are dropped, a response whose events are all filtered is not sent.
// (Responses are checked up to revision 6; revision 7 is a barrier.)
func TestWatchFilters(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	put(t, cli, "x/gone", "1") // 2
	w := openRawWatch(t, cli)
	prefix := func(filters ...pb.WatchCreateRequest_FilterType) *pb.WatchCreateRequest {
		return &pb.WatchCreateRequest{Key: []byte("x/"), RangeEnd: []byte("x0"), Filters: filters}
	}
	noPut := w.mustCreate(prefix(pb.WatchCreateRequest_NOPUT))
	noDel := w.mustCreate(prefix(pb.WatchCreateRequest_NODELETE))
	none := w.mustCreate(prefix(pb.WatchCreateRequest_NOPUT, pb.WatchCreateRequest_NODELETE))
	all := w.mustCreate(prefix())

	put(t, cli, "x/a", "1")                              // 3
	if _, err := cli.Delete(ctx(t), "x/a"); err != nil { // 4
		t.Fatal(err)
	}
	put(t, cli, "x/b", "1") // 5
	// 6: one put and one delete in one revision.
	if _, err := cli.Txn(ctx(t)).Then(clientv3.OpPut("x/c", "1"), clientv3.OpDelete("x/gone")).Commit(); err != nil {
		t.Fatal(err)
	}
	// 7: a barrier. Every response about revisions up to 6, for any
	// watcher of the stream, precedes every response about revision 7.
	put(t, cli, "x/end", "1")
	got := map[int64][][]*mvccpb.Event{}
	for range 20 {
		resp := w.recv()
		if len(resp.Events) == 0 {
			t.Fatalf("unexpected response %s", respString(resp))
		}
		if resp.Events[0].Kv.ModRevision == 7 {
			break
		}
		got[resp.WatchId] = append(got[resp.WatchId], resp.Events)
	}
	if len(got[all]) != 4 {
		t.Fatalf("unfiltered watcher got %d responses, want 4", len(got[all]))
	}
	if len(got[none]) != 0 {
		t.Fatalf("watcher filtering puts and deletes got responses %v", got[none])
	}
	wantResps := func(name string, got [][]*mvccpb.Event, want ...[]*mvccpb.Event) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s watcher got %d responses, want %d", name, len(got), len(want))
		}
		for i := range want {
			wantEvents(t, got[i], want[i]...)
		}
	}
	wantResps("NOPUT", got[noPut], []*mvccpb.Event{delEv("x/a", 4)}, []*mvccpb.Event{delEv("x/gone", 6)})
	wantResps("NODELETE", got[noDel], []*mvccpb.Event{putEv("x/a", "1", 3, 3, 1)}, []*mvccpb.Event{putEv("x/b", "1", 5, 5, 1)}, []*mvccpb.Event{putEv("x/c", "1", 6, 6, 1)})

	// The client's options set the same filters.
	c := ctx(t)
	onlyDel := cli.Watch(c, "x/", clientv3.WithPrefix(), clientv3.WithFilterPut(), clientv3.WithRev(3))
	wantEvents(t, nextResp(t, c, onlyDel).Events, delEv("x/a", 4), delEv("x/gone", 6))
	onlyPut := cli.Watch(c, "x/", clientv3.WithPrefix(), clientv3.WithFilterDelete(), clientv3.WithRev(3))
	wantEvents(t, nextResp(t, c, onlyPut).Events, putEv("x/a", "1", 3, 3, 1), putEv("x/b", "1", 5, 5, 1), putEv("x/c", "1", 6, 6, 1), putEv("x/end", "1", 7, 7, 1))
}

// TestWatchPrevKV checks prev_kv: a put over an existing key and a delete
// carry the key-value pair before the event, a put that creates the key
// carries none; alike for live events and for replayed history.
func TestWatchPrevKV(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	c := ctx(t)
	live := cli.Watch(c, "", clientv3.WithPrefix(), clientv3.WithPrevKV())
	put(t, cli, "a", "1")                         // 2
	put(t, cli, "a", "2")                         // 3
	if _, err := cli.Delete(c, "a"); err != nil { // 4
		t.Fatal(err)
	}
	put(t, cli, "a", "3")                                                                                   // 5
	if _, err := cli.Txn(c).Then(clientv3.OpPut("a", "4"), clientv3.OpPut("b", "1")).Commit(); err != nil { // 6
		t.Fatal(err)
	}
	if _, err := cli.Delete(c, "", clientv3.WithPrefix()); err != nil { // 7
		t.Fatal(err)
	}
	put(t, cli, "a", "end") // 8
	want := []*mvccpb.Event{
		putEv("a", "1", 2, 2, 1),
		withPrev(putEv("a", "2", 2, 3, 2), kv("a", "1", 2, 2, 1)),
		withPrev(delEv("a", 4), kv("a", "2", 2, 3, 2)),
		putEv("a", "3", 5, 5, 1),
		withPrev(putEv("a", "4", 5, 6, 2), kv("a", "3", 5, 5, 1)),
		putEv("b", "1", 6, 6, 1),
		withPrev(delEv("a", 7), kv("a", "4", 5, 6, 2)),
		withPrev(delEv("b", 7), kv("b", "1", 6, 6, 1)),
		putEv("a", "end", 8, 8, 1),
	}
	wantEvents(t, collectUntil(t, c, live, "a", "end", 20), want...)
	history := cli.Watch(c, "", clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithRev(2))
	wantEvents(t, collectUntil(t, c, history, "a", "end", 20), want...)
}

// TestWatchPutEventCarriesLease checks the lease field of put events (and
// of the previous value of a delete), live and replayed.
func TestWatchPutEventCarriesLease(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	c := ctx(t)
	lease, err := cli.Grant(c, 600)
	if err != nil {
		t.Fatal(err)
	}
	start := rev(t, cli) + 1
	live := cli.Watch(c, "k", clientv3.WithPrevKV())
	put(t, cli, "k", "1", clientv3.WithLease(lease.ID))
	if _, err := cli.Delete(c, "k"); err != nil {
		t.Fatal(err)
	}
	put(t, cli, "k", "end")
	withLease := putEv("k", "1", start, start, 1)
	withLease.Kv.Lease = int64(lease.ID)
	prev := kv("k", "1", start, start, 1)
	prev.Lease = int64(lease.ID)
	want := []*mvccpb.Event{withLease, withPrev(delEv("k", start+1), prev), putEv("k", "end", start+2, start+2, 1)}
	wantEvents(t, collectUntil(t, c, live, "k", "end", 10), want...)
	history := cli.Watch(c, "k", clientv3.WithPrevKV(), clientv3.WithRev(start))
	wantEvents(t, collectUntil(t, c, history, "k", "end", 10), want...)
}

// TestWatchManyWatchersOneStream checks that watchers the client multiplexes
// onto one stream (same context) each get exactly their own events, among
// them a watcher on a key nobody writes.
func TestWatchManyWatchersOneStream(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	c := ctx(t)
	const n = 8
	var keyW []clientv3.WatchChan
	for i := range n {
		keyW = append(keyW, cli.Watch(c, fmt.Sprintf("k%d", i)))
	}
	prefixW := cli.Watch(c, "k", clientv3.WithPrefix())
	quiet := cli.Watch(c, "nobody")
	start := rev(t, cli) + 1
	for i := range n {
		put(t, cli, fmt.Sprintf("k%d", i), "1")
	}
	var ops []clientv3.Op
	for i := range n {
		ops = append(ops, clientv3.OpPut(fmt.Sprintf("k%d", i), "end"))
	}
	ops = append(ops, clientv3.OpPut("nobody", "end"))
	if _, err := cli.Txn(c).Then(ops...).Commit(); err != nil {
		t.Fatal(err)
	}
	end := start + n
	var all []*mvccpb.Event
	for i := range n {
		all = append(all, putEv(fmt.Sprintf("k%d", i), "1", start+int64(i), start+int64(i), 1))
	}
	for i := range n {
		k := fmt.Sprintf("k%d", i)
		wantEvents(t, collectUntil(t, c, keyW[i], k, "end", 5), putEv(k, "1", start+int64(i), start+int64(i), 1), putEv(k, "end", start+int64(i), end, 2))
		all = append(all, putEv(k, "end", start+int64(i), end, 2))
	}
	wantEvents(t, collectUntil(t, c, prefixW, fmt.Sprintf("k%d", n-1), "end", n+1), all...)
	wantEvents(t, collectUntil(t, c, quiet, "nobody", "end", 1), putEv("nobody", "end", end, end, 1))
}

// TestWatchIDs checks watch ids on one stream: a client-chosen id is used
// and carried by its events, a duplicate id is refused, automatic ids count
// up from 0 and skip ids in use.
func TestWatchIDs(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	cur := rev(t, cli)
	w := openRawWatch(t, cli)
	for _, c := range []struct{ ask, want int64 }{{1, 1}, {0, 0}, {0, 2}, {7, 7}, {0, 3}} {
		if got := w.mustCreate(&pb.WatchCreateRequest{Key: []byte("a"), WatchId: c.ask}); got != c.want {
			t.Fatalf("create asking for id %d: got id %d, want %d", c.ask, got, c.want)
		}
	}
	w.create(&pb.WatchCreateRequest{Key: []byte("a"), WatchId: 7})
	wantCtrl(t, m, w.recv(), ctrl{watchID: -1, created: true, canceled: true, cancelReason: reasonDuplicateID, revision: cur})
	if got := w.mustCreate(&pb.WatchCreateRequest{Key: []byte("b")}); got != 4 {
		t.Fatalf("automatic id after a refused duplicate: %d, want 4", got)
	}
	w.cancel(1)
	wantCtrl(t, m, w.recv(), ctrl{watchID: 1, canceled: true, revision: cur})
	// A canceled id is free again for the client to choose.
	if got := w.mustCreate(&pb.WatchCreateRequest{Key: []byte("b"), WatchId: 1}); got != 1 {
		t.Fatalf("re-using canceled id 1: got %d", got)
	}
	r := put(t, cli, "a", "1")
	seen := map[int64]bool{}
	for range 4 {
		resp := w.recv()
		if seen[resp.WatchId] {
			t.Fatalf("watcher %d got a second response %s", resp.WatchId, respString(resp))
		}
		seen[resp.WatchId] = true
		if resp.Header.GetRevision() != r {
			t.Fatalf("event response %s, want header revision %d", respString(resp), r)
		}
		wantEvents(t, resp.Events, putEv("a", "1", r, r, 1))
	}
	for _, id := range []int64{0, 2, 3, 7} {
		if !seen[id] {
			t.Fatalf("watchers on a that got the put: %v, want 0, 2, 3 and 7", seen)
		}
	}
}

// TestWatchCancel checks cancel: the server confirms with a canceled
// response carrying the id and the current revision, sends no further
// events to that watcher, and says nothing at all to a cancel of an id it
// does not know (or no longer knows).
func TestWatchCancel(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	cur := put(t, cli, "x", "1")
	w := openRawWatch(t, cli)
	id := w.mustCreate(&pb.WatchCreateRequest{Key: []byte("a")})
	w.cancel(id)
	wantCtrl(t, m, w.recv(), ctrl{watchID: id, canceled: true, revision: cur})
	w.cancel(id)
	w.cancel(42)
	// Control responses keep their order on the stream: had the cancels of
	// unknown ids been answered, those answers would come first.
	next := w.mustCreate(&pb.WatchCreateRequest{Key: []byte("a")})
	r := put(t, cli, "a", "1")
	resp := w.recv()
	if resp.WatchId != next || resp.Canceled || resp.Created {
		t.Fatalf("got %s, want the event of watcher %d only", respString(resp), next)
	}
	wantEvents(t, resp.Events, putEv("a", "1", r, r, 1))

}

// TestWatchTxnEventsInOneResponse checks that all events of one revision
// come in one response, in the order the txn made them (a delete-range in
// key order), with the revision in the header; and that replayed history
// keeps each revision whole too.
func TestWatchTxnEventsInOneResponse(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	c := ctx(t)
	live := cli.Watch(c, "t/", clientv3.WithPrefix())
	put(t, cli, "t/0", "1")                                                                                                                                           // 2
	if _, err := cli.Txn(c).Then(clientv3.OpPut("t/2", "1"), clientv3.OpDelete("t/0"), clientv3.OpPut("t/1", "1"), clientv3.OpPut("t/3", "1")).Commit(); err != nil { // 3
		t.Fatal(err)
	}
	if _, err := cli.Delete(c, "t/", clientv3.WithPrefix()); err != nil { // 4
		t.Fatal(err)
	}
	put(t, cli, "t/end", "1") // 5
	want := [][]*mvccpb.Event{
		{putEv("t/0", "1", 2, 2, 1)},
		{putEv("t/2", "1", 3, 3, 1), delEv("t/0", 3), putEv("t/1", "1", 3, 3, 1), putEv("t/3", "1", 3, 3, 1)},
		{delEv("t/1", 4), delEv("t/2", 4), delEv("t/3", 4)},
		{putEv("t/end", "1", 5, 5, 1)},
	}
	for i, evs := range want {
		resp := nextResp(t, c, live)
		if resp.Header.GetRevision() != int64(i+2) {
			t.Fatalf("response %s, want header revision %d", clientRespString(resp), i+2)
		}
		wantEvents(t, resp.Events, evs...)
	}
	// Replayed, the history comes in revision order; a response may hold
	// several revisions but never part of one.
	history := cli.Watch(c, "t/", clientv3.WithPrefix(), clientv3.WithRev(2))
	var got []*mvccpb.Event
	for range 4 {
		if len(got) >= 9 {
			break
		}
		resp := nextResp(t, c, history)
		if resp.Err() != nil || len(resp.Events) == 0 {
			t.Fatalf("history response %s", clientRespString(resp))
		}
		if len(got) > 0 && resp.Events[0].Kv.ModRevision <= got[len(got)-1].Kv.ModRevision {
			t.Fatalf("history response %s starts inside or before revision %d of the previous response", clientRespString(resp), got[len(got)-1].Kv.ModRevision)
		}
		got = append(got, resp.Events...)
	}
	var flat []*mvccpb.Event
	for _, evs := range want {
		flat = append(flat, evs...)
	}
	wantEvents(t, got, flat...)
}

// TestWatchRequestProgress checks a progress request: with every watcher of
// the stream in sync the server answers once for the stream, with watch id
// -1, no events and the current revision; on a stream without watchers, or
// with a watcher waiting for a future revision, it does not answer.
func TestWatchRequestProgress(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	put(t, cli, "x", "1")

	w := openRawWatch(t, cli)
	a := w.mustCreate(&pb.WatchCreateRequest{Key: []byte("a")})
	w.mustCreate(&pb.WatchCreateRequest{Key: []byte("b")})
	cur := put(t, cli, "x", "2") // no watcher sees it
	w.progress()
	wantCtrl(t, m, w.recv(), ctrl{watchID: -1, revision: cur})
	// One answer for the stream, not one per watcher: the next response is
	// the event that follows.
	r := put(t, cli, "a", "1")
	if resp := w.recv(); resp.WatchId != a || len(resp.Events) != 1 || resp.Events[0].Kv.ModRevision != r {
		t.Fatalf("after one progress response got %s, want watcher %d's event at %d", respString(resp), a, r)
	}

	// No watchers: no answer, so the created response comes first.
	empty := openRawWatch(t, cli)
	empty.progress()
	id := empty.mustCreate(&pb.WatchCreateRequest{Key: []byte("a")})
	r = put(t, cli, "a", "2")
	if resp := empty.recv(); resp.WatchId != id || len(resp.Events) != 1 || resp.Events[0].Kv.ModRevision != r {
		t.Fatalf("progress request on an empty stream: got %s, want the event at %d", respString(resp), r)
	}

	// A watcher waiting for a future revision is not in sync: no answer.
	// Progress responses and events share one queue, so an answer would
	// arrive before the event.
	unsynced := openRawWatch(t, cli)
	unsynced.mustCreate(&pb.WatchCreateRequest{Key: []byte("a"), StartRevision: r + 100})
	b := unsynced.mustCreate(&pb.WatchCreateRequest{Key: []byte("b")})
	unsynced.progress()
	r = put(t, cli, "b", "1")
	if resp := unsynced.recv(); resp.WatchId != b || len(resp.Events) != 1 || resp.Events[0].Kv.ModRevision != r {
		t.Fatalf("progress request with an unsynced watcher: got %s, want watcher %d's event at %d", respString(resp), b, r)
	}

	// The client broadcasts the stream's answer to every watcher of the
	// stream as a progress notification.
	c := ctx(t)
	w1 := cli.Watch(c, "a")
	w2 := cli.Watch(c, "c", clientv3.WithPrefix())
	cur = put(t, cli, "x", "3")
	if err := cli.RequestProgress(c); err != nil {
		t.Fatal(err)
	}
	for _, wch := range []clientv3.WatchChan{w1, w2} {
		resp := nextResp(t, c, wch)
		if !resp.IsProgressNotify() || resp.Header.GetRevision() != cur {
			t.Fatalf("got %s, want a progress notification at %d", clientRespString(resp), cur)
		}
	}
}

// TestWatchProgressNotifyInterval checks progress_notify with a short
// --watch-progress-notify-interval: a watcher that asked for it gets
// responses with its id, no events and the current revision, again after
// events; a watcher on the same stream that did not ask gets none.
func TestWatchProgressNotifyInterval(t *testing.T) {
	t.Parallel()
	m := startMember(t, withWatchProgressNotifyInterval(100*time.Millisecond))
	cli := m.cli()
	cur := put(t, cli, "x", "1")
	w := openRawWatch(t, cli)
	notified := w.mustCreate(&pb.WatchCreateRequest{Key: []byte("a"), ProgressNotify: true})
	quiet := w.mustCreate(&pb.WatchCreateRequest{Key: []byte("a")})

	progress := 0
	for range 40 {
		resp := w.recv()
		if len(resp.Events) > 0 {
			if resp.Events[0].Kv.ModRevision != cur {
				t.Fatalf("unexpected event response %s", respString(resp))
			}
			continue
		}
		if resp.WatchId != notified {
			t.Fatalf("got %s, want progress notifications only for watcher %d (watcher %d did not ask)", respString(resp), notified, quiet)
		}
		wantCtrl(t, m, resp, ctrl{watchID: notified, revision: cur})
		progress++
		if progress == 2 {
			cur = put(t, cli, "a", "1")
		}
		if progress == 4 {
			break
		}
	}
	if progress != 4 {
		t.Fatalf("%d progress notifications in 40 responses, want 4", progress)
	}

	c := ctx(t)
	wch := cli.Watch(c, "b", clientv3.WithProgressNotify())
	resp := nextResp(t, c, wch)
	if !resp.IsProgressNotify() || resp.Header.GetRevision() != cur {
		t.Fatalf("client watch with progress notify: got %s, want a progress notification at %d", clientRespString(resp), cur)
	}
}

// TestWatchFragment checks fragment=true: a response larger than
// --max-request-bytes plus etcd's 512 KiB of gRPC overhead is cut into
// several responses flagged Fragment, the last one not flagged; each piece
// is filled up to but not past the limit; the pieces together are the whole
// response. Without fragment the same events come in one response, and the
// client reassembles pieces into one response.
func TestWatchFragment(t *testing.T) {
	t.Parallel()
	const maxRequestBytes = 64 * 1024
	const limit = maxRequestBytes + 512*1024
	m := startMember(t, withMaxRequestBytes(maxRequestBytes))
	cli := m.cli()
	c := ctx(t)

	// 200 keys of 8 KiB, six per txn to stay under --max-request-bytes.
	const keys, perTxn = 200, 6
	prevs := make([]*mvccpb.KeyValue, 0, keys)
	for i := 0; i < keys; i += perTxn {
		var ops []clientv3.Op
		var batch []string
		for j := i; j < min(i+perTxn, keys); j++ {
			k, v := fmt.Sprintf("f/%03d", j), strings.Repeat(string(rune('a'+j%26)), 8*1024)
			ops = append(ops, clientv3.OpPut(k, v))
			batch = append(batch, k, v)
		}
		resp, err := cli.Txn(c).Then(ops...).Commit()
		if err != nil {
			t.Fatal(err)
		}
		r := resp.Header.Revision
		for j := 0; j < len(batch); j += 2 {
			prevs = append(prevs, kv(batch[j], batch[j+1], r, r, 1))
		}
	}

	w := openRawWatch(t, cli)
	frag := w.mustCreate(&pb.WatchCreateRequest{Key: []byte("f/"), RangeEnd: []byte("f0"), PrevKv: true, Fragment: true})
	whole := w.mustCreate(&pb.WatchCreateRequest{Key: []byte("f/"), RangeEnd: []byte("f0"), PrevKv: true})
	clientW := cli.Watch(c, "f/", clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithFragment())

	del, err := cli.Delete(c, "f/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	r := del.Header.Revision
	want := make([]*mvccpb.Event, keys)
	for i := range keys {
		want[i] = withPrev(delEv(string(prevs[i].Key), r), prevs[i])
	}

	var pieces []*pb.WatchResponse
	var single *pb.WatchResponse
	for range keys + 2 { // at most one piece per event, and the whole response
		if single != nil && len(pieces) > 0 && !pieces[len(pieces)-1].Fragment {
			break
		}
		resp := w.recv()
		switch resp.WatchId {
		case whole:
			single = resp
		case frag:
			if len(pieces) > 0 && !pieces[len(pieces)-1].Fragment {
				t.Fatalf("fragment after the last one: %s", respString(resp))
			}
			pieces = append(pieces, resp)
		default:
			t.Fatalf("response for unknown watcher: %s", respString(resp))
		}
	}
	if single == nil || single.Fragment || single.Header.GetRevision() != r {
		t.Fatalf("without fragment: got %v, want one response at revision %d", single, r)
	}
	wantEvents(t, single.Events, want...)
	if len(pieces) < 3 {
		t.Fatalf("got %d pieces, want at least 3 for %d events of 8 KiB and a limit of %d bytes", len(pieces), keys, limit)
	}
	var joined []*mvccpb.Event
	for i, p := range pieces {
		if p.Fragment != (i < len(pieces)-1) {
			t.Fatalf("piece %d of %d has Fragment=%v", i, len(pieces), p.Fragment)
		}
		if !proto.Equal(p.Header, single.Header) || p.Created || p.Canceled || p.CompactRevision != 0 {
			t.Fatalf("piece %d: %s, want the header %v and no flags", i, respString(p), single.Header)
		}
		// The server measures a piece with the Fragment flag set.
		sized := proto.Clone(p).(*pb.WatchResponse)
		sized.Fragment = true
		if size := proto.Size(sized); size >= limit && len(p.Events) > 1 {
			t.Fatalf("piece %d is %d bytes with %d events, want below %d", i, size, len(p.Events), limit)
		}
		if i < len(pieces)-1 {
			sized.Events = append(sized.Events, pieces[i+1].Events[0])
			if size := proto.Size(sized); size < limit {
				t.Fatalf("piece %d with the next event is %d bytes, below %d: the piece was cut short", i, size, limit)
			}
		}
		joined = append(joined, p.Events...)
	}
	wantEvents(t, joined, want...)

	resp := nextResp(t, c, clientW)
	if resp.Header.GetRevision() != r {
		t.Fatalf("client response at %d, want %d", resp.Header.GetRevision(), r)
	}
	wantEvents(t, resp.Events, want...)
}

// slowWriteCount is how many 2 KiB puts a test makes while a watcher's
// stream is not read. The unread stream can hold only gRPC's flow-control
// windows (64 KiB on the slow client, about as much queued in the server's
// transport) plus the server's own bounded queue: etcd 3.7 queues 128
// responses per stream, and falls behind after about 190 revisions of 2 KiB;
// keel queues 256 and falls behind after about 490. 1000 revisions exceed
// both by far, so the watcher must fall behind.
const slowWriteCount = 1000

// slowWriter starts a watcher on "s/" on a client of its own with the
// smallest gRPC flow-control windows, never reads it, and writes
// slowWriteCount puts of 2 KiB under "s/" from four goroutines. It returns
// the raw stream, the watcher id, the revision before the writes and the
// key of each revision written. Every write must complete: a watcher
// nobody reads must not hold up writes.
func slowWriter(t *testing.T, m *member) (*rawWatch, int64, int64, map[int64]string) {
	t.Helper()
	slowCli := m.newClient(t, func(c *clientv3.Config) {
		c.DialOptions = append(c.DialOptions, grpc.WithInitialWindowSize(1<<16), grpc.WithInitialConnWindowSize(1<<16))
	})
	w := openRawWatch(t, slowCli)
	id := w.mustCreate(&pb.WatchCreateRequest{Key: []byte("s/"), RangeEnd: []byte("s0")})
	start := rev(t, m.cli())

	const writers = 4
	val := strings.Repeat("v", 2048)
	var mu sync.Mutex
	written := make(map[int64]string, slowWriteCount)
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < slowWriteCount; i += writers {
				k := fmt.Sprintf("s/%04d", i)
				c, cancel := context.WithTimeout(context.Background(), opTimeout)
				resp, err := m.cli().Put(c, k, val)
				cancel()
				if err != nil {
					errs <- fmt.Errorf("put %s while a watcher is not read: %w", k, err)
					return
				}
				mu.Lock()
				written[resp.Header.Revision] = k
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return w, id, start, written
}

// TestWatchSlowWatcherDoesNotBlockWritesOrOtherWatchers checks the main
// guarantee of the watch fan-out: a watcher whose stream nobody reads does
// not hold up writes, nor a watcher on another stream, which gets every
// event.
func TestWatchSlowWatcherDoesNotBlockWritesOrOtherWatchers(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	c := ctx(t)
	other := m.cli().Watch(c, "s/", clientv3.WithPrefix())
	_, _, start, written := slowWriter(t, m)
	next := start + 1
	for range slowWriteCount {
		if next > start+slowWriteCount {
			break
		}
		resp := nextResp(t, c, other)
		if resp.Err() != nil {
			t.Fatalf("other watcher: %s", clientRespString(resp))
		}
		for _, ev := range resp.Events {
			if ev.Kv.ModRevision != next || string(ev.Kv.Key) != written[next] {
				t.Fatalf("other watcher got %s, want the put of %s at %d", evString(ev), written[next], next)
			}
			next++
		}
	}
	if next != start+slowWriteCount+1 {
		t.Fatalf("other watcher got events up to %d, want up to %d", next-1, start+slowWriteCount)
	}
}

// TestWatchSlowWatcherPastCompactionIsCompacted checks that a watcher which
// fell behind and whose position a compaction passed gets, once read, the
// events it still had in flight, in order and without a gap, and then the
// compacted cancel; it must not silently skip the compacted revisions.
func TestWatchSlowWatcherPastCompactionIsCompacted(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	w, id, start, written := slowWriter(t, m)
	compactRev := start + slowWriteCount
	if _, err := m.cli().Compact(ctx(t), compactRev); err != nil {
		t.Fatal(err)
	}
	next := start + 1
	for range slowWriteCount + 1 {
		resp := w.recv()
		if resp.WatchId != id {
			t.Fatalf("response for unknown watcher: %s", respString(resp))
		}
		if resp.CompactRevision != 0 {
			wantCtrl(t, m, resp, ctrl{watchID: id, canceled: true, compactRevision: compactRev})
			if next >= compactRev {
				t.Fatalf("compacted after all events up to %d: the watcher did not fall behind", next-1)
			}
			t.Logf("slow watcher got %d of %d events, then the compacted cancel", next-1-start, slowWriteCount)
			return
		}
		if len(resp.Events) == 0 || resp.Canceled {
			t.Fatalf("unexpected response %s", respString(resp))
		}
		for _, ev := range resp.Events {
			if ev.Kv.ModRevision != next || string(ev.Kv.Key) != written[next] {
				t.Fatalf("slow watcher got %s, want the put of %s at %d", evString(ev), written[next], next)
			}
			next++
		}
	}
	t.Fatalf("slow watcher got every event up to %d and no compacted response: the server buffered %d revisions of 2 KiB for a stream nobody read", next-1, slowWriteCount)
}

// TestWatchResumesAfterRestart checks that a client watch survives a
// restart of the member: the client reconnects and resumes from the
// revision after the last one it delivered, so nothing is lost or repeated.
func TestWatchResumesAfterRestart(t *testing.T) {
	t.Parallel()
	m := startMemberStablePort(t)
	wcli := m.newClient(t)
	c := ctx(t)
	wch := wcli.Watch(c, "r/", clientv3.WithPrefix())
	r1 := put(t, m.cli(), "r/1", "1")
	wantEvents(t, nextResp(t, c, wch).Events, putEv("r/1", "1", r1, r1, 1))

	m.restart(t)
	r2 := put(t, m.cli(), "r/2", "1")
	r3 := put(t, m.cli(), "r/1", "end")
	wantEvents(t, collectUntil(t, c, wch, "r/1", "end", 10), putEv("r/2", "1", r2, r2, 1), putEv("r/1", "end", r1, r3, 2))
}
