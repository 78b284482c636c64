package compat

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// defaultWatchOps is TestDifferentialWatch's number of operations unless
// -ops says otherwise.
const defaultWatchOps = 3000

const (
	watchStreams    = 3  // watch streams per side; watchers are spread over them
	maxLiveWatchers = 10 // no new watcher is drawn while this many hold their id
)

// TestDifferentialWatch runs TestDifferentialKV's seeded writes (puts,
// deletes, txns, compactions; its reads are skipped) against etcd and keel,
// requiring the same responses, while watchers are opened on both sides with
// the same requests at seeded points: single keys, prefixes, ranges, from-key
// and every key; start revisions 0, past, at and below the compacted
// revision, future and negative; the NOPUT and NODELETE filters; prev_kv;
// client-chosen watch ids. Some are canceled midway.
//
// Per watcher, both sides must deliver the same created and canceled
// responses (field by field, header included, cluster and member id
// excluded) and the same events in the same order (type, key, value,
// revisions, version, lease, prev_kv). How events are split into responses
// is not compared, except that the events of one revision must come in one
// response; an event response's header revision must be at least its last
// event's. See watchHarness for how the run is kept free of timing.
func TestDifferentialWatch(t *testing.T) {
	seed := resolveSeed(t)
	n := resolveOps(t, defaultWatchOps)
	ref, sut := startPair(t)
	t.Logf("seed %d, %d ops, %s vs %s", seed, n, ref.name, sut.name)

	const test = "TestDifferentialWatch"
	g := newGenerator(seed)
	wp := newWatchPlanner(seed)
	h := newWatchHarness(t, test, seed, ref, sut, watchStreams)
	h.total = n
	opOfRev := map[int64]int{}
	h.opOfRev = func(rev int64) int {
		if i, ok := opOfRev[rev]; ok {
			return i
		}
		return -1
	}
	outcomes := map[string]int{}
	run := func(i int, o op) {
		a, b := runBoth(ref, sut, o)
		if !a.equal(b) {
			t.Fatal(mismatchReport(test, ref.name, sut.name, seed, i, h.rerunOps(i), o.kind()+noteSuffix(o), o.request(), a, b, ""))
		}
		before := g.rev
		g.observe(o, a.resp, a.err)
		if g.rev > before {
			opOfRev[g.rev] = i
		}
		outcomes[o.kind()+" "+a.outcome()]++
	}
	h.write = func(i int, txn *pb.TxnRequest, note string) int64 {
		run(i, op{txn: txn, note: note})
		return g.rev
	}

	start := time.Now()
	for i := range n {
		wp.act(i, h, g)
		o := g.next(i)
		if o.rng != nil {
			continue // reads do not concern watchers
		}
		if o.compact != nil {
			h.quiesce(i, "before a compaction")
		}
		run(i, o)
	}
	h.quiesce(n, "at the end")
	t.Logf("%d ops in %v, final revision %d, compacted at %d", n, time.Since(start).Round(time.Millisecond), g.rev, g.compacted)
	logOutcomes(t, outcomes)
	logWatchOutcomes(t, h)
}

// logWatchOutcomes logs, per feature of the watchers (kind, start revision,
// filters, ...), how their watches ended on the reference side, and how many
// events were compared, so that a reader can see what the run covered.
func logWatchOutcomes(t *testing.T, h *watchHarness) {
	out := map[string]int{}
	events := 0
	for _, p := range h.pairs {
		l := h.refConns[p.stream].snapshot(p.ref)
		var end string
		switch {
		case l.failed:
			end = "refused: " + l.items[0].ctrl.CancelReason
		case l.compacted:
			end = "canceled for compaction"
		case l.acked:
			end = "canceled by request"
		default:
			end = "open at the end"
		}
		n := 0
		for _, it := range l.items {
			if it.ev != nil {
				n++
			}
		}
		events += n
		if n > 0 {
			end += ", with events"
		}
		for _, f := range strings.Split(p.note, ", ") {
			out[f+": "+end]++
		}
	}
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(out)) {
		fmt.Fprintf(&b, "\n%6d  %s", out[k], k)
	}
	t.Logf("%d watchers, %d events compared (reference side), per feature:%s", len(h.pairs), events, b.String())
}

// watchPlanner draws the watch actions of TestDifferentialWatch from its own
// random source, so that the KV op sequence stays the generator's. Its view of
// the watchers is the reference side's.
type watchPlanner struct {
	rnd *rand.Rand
}

func newWatchPlanner(seed int64) *watchPlanner {
	return &watchPlanner{rnd: rand.New(rand.NewPCG(uint64(seed), 0x7761746368))}
}

func (w *watchPlanner) pct() int          { return w.rnd.IntN(100) }
func (w *watchPlanner) chance(p int) bool { return w.rnd.IntN(1000) < p } // p per mille

// act performs the watch actions drawn before op i: maybe open a watcher,
// maybe cancel one (after a quiesce), maybe cancel an id nobody holds and
// then open a watcher on the same stream (whose created response must be the
// stream's next response).
func (w *watchPlanner) act(i int, h *watchHarness, g *generator) {
	live := h.liveWatchers()
	if len(live) < maxLiveWatchers && w.chance(40) {
		req, note := w.createReq(g)
		h.open(i, w.rnd.IntN(watchStreams), req, note)
	}
	if len(live) > 0 && w.chance(20) {
		p := live[w.rnd.IntN(len(live))]
		h.quiesce(i, "before a cancel")
		h.cancel(i, p)
	}
	if w.chance(3) {
		stream := w.rnd.IntN(watchStreams)
		id := w.unknownID(h, stream)
		h.cancelUnknown(i, stream, id)
		req, note := w.createReq(g)
		h.open(i, stream, req, note+", after a cancel of an unknown id")
	}
}

// unknownID returns a watch id that no watcher on stream holds: one that was
// canceled, -1, or a large one.
func (w *watchPlanner) unknownID(h *watchHarness, stream int) int64 {
	var done []int64
	for _, p := range h.pairs {
		if p.stream == stream && p.id >= 0 {
			done = append(done, p.id)
		}
	}
	var id int64
	switch p := w.pct(); {
	case p < 50 && len(done) > 0:
		id = done[w.rnd.IntN(len(done))]
	case p < 60:
		id = -1
	default:
		id = 1000 + w.rnd.Int64N(5)
	}
	if h.refConns[stream].holds(id) {
		id = 1 << 40
	}
	return id
}

// createReq draws a watch create request; note names its kind, start revision
// and filters, for reports and the coverage summary.
func (w *watchPlanner) createReq(g *generator) (*pb.WatchCreateRequest, string) {
	r := &pb.WatchCreateRequest{}
	key := w.key()
	switch p := w.pct(); {
	case p < 25:
		r.Key = key
	case p < 50:
		r.Key, r.RangeEnd = key, []byte{0}
		if len(key) > 0 {
			r.RangeEnd = []byte(clientv3.GetPrefixRangeEnd(string(key)))
		}
	case p < 68:
		other := []byte(keySpace[w.rnd.IntN(len(keySpace))])
		if w.pct() < 85 && bytes.Compare(other, key) < 0 {
			key, other = other, key
		}
		r.Key, r.RangeEnd = key, other
	case p < 83:
		r.Key, r.RangeEnd = key, []byte{0}
	case p < 93:
		r.RangeEnd = []byte{0}
		if w.pct() < 50 {
			r.Key = []byte{0}
		}
	case p < 97:
		r.Key, r.RangeEnd = key, append(append([]byte{}, key...), 0)
	default:
		r.Key, r.RangeEnd = key, key
	}
	notes := []string{watchKind(r)}

	switch p := w.pct(); {
	case p < 70:
	case p < 83:
		r.Filters = []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NOPUT}
	case p < 96:
		r.Filters = []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NODELETE}
	case p < 98:
		r.Filters = []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NOPUT, pb.WatchCreateRequest_NODELETE}
	default:
		r.Filters = []pb.WatchCreateRequest_FilterType{7, pb.WatchCreateRequest_NODELETE, pb.WatchCreateRequest_NODELETE}
	}
	if len(r.Filters) > 0 {
		notes = append(notes, fmt.Sprintf("filters %v", r.Filters))
	}
	// A watcher that filters out both puts and deletes receives nothing, so
	// the harness cannot see it catch up from a past start revision, and a
	// compaction would race with it. It starts at 0 or in the future, where
	// it has nothing to catch up.
	silent := quiesceTarget(r, 1, 1) == 0
	switch p := w.pct(); {
	case p < 45 || (silent && p < 80):
		notes = append(notes, "start 0")
	case p < 65 && !silent:
		lo := max(g.compacted, 1)
		r.StartRevision = lo + w.rnd.Int64N(g.rev-lo+1)
		notes = append(notes, "past start")
	case p < 70 && g.compacted > 0:
		r.StartRevision = g.compacted
		notes = append(notes, "start at the compacted revision")
	case p < 80 && g.compacted > 1:
		r.StartRevision = 1 + w.rnd.Int64N(g.compacted-1)
		notes = append(notes, "compacted start")
	case p < 95 || silent:
		r.StartRevision = g.rev + 1 + w.rnd.Int64N(30)
		notes = append(notes, "future start")
	default:
		r.StartRevision = -1 - w.rnd.Int64N(3)
		notes = append(notes, "negative start")
	}

	if r.PrevKv = w.pct() < 40; r.PrevKv {
		notes = append(notes, "prev_kv")
	}
	if w.pct() < 20 {
		r.WatchId = 1 + w.rnd.Int64N(12)
		notes = append(notes, "chosen id")
	}
	return r, strings.Join(notes, ", ")
}

// key returns a key of the key space or a range start, rarely the empty key.
func (w *watchPlanner) key() []byte {
	switch p := w.pct(); {
	case p < 3:
		return []byte{}
	case p < 15:
		return []byte(rangeKeys[w.rnd.IntN(len(rangeKeys))])
	default:
		return []byte(keySpace[w.rnd.IntN(len(keySpace))])
	}
}

// watchKind names the keys a create request watches, as etcd reads it: an
// empty key is "\x00", an empty range end one key, the range end "\x00"
// every key from the key on.
func watchKind(r *pb.WatchCreateRequest) string {
	key := r.Key
	if len(key) == 0 {
		key = []byte{0}
	}
	switch end := r.RangeEnd; {
	case len(end) == 0:
		return "single key"
	case bytes.Equal(end, []byte{0}) && bytes.Equal(key, []byte{0}):
		return "every key"
	case bytes.Equal(end, []byte{0}):
		return "from key"
	case bytes.Compare(end, key) <= 0:
		return "empty or inverted range"
	case string(end) == clientv3.GetPrefixRangeEnd(string(key)):
		return "prefix"
	case bytes.Equal(end, append(append([]byte{}, key...), 0)):
		return "single key as a range"
	default:
		return "range"
	}
}
