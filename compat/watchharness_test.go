package compat

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"
)

// watcherPair is one watcher opened with the same request, on the stream of
// the same index, on both sides.
type watcherPair struct {
	n        int // creation order, for reports
	stream   int
	op       int // index of the op before which it was opened
	req      *pb.WatchCreateRequest
	note     string
	ref, sut *watchLog
	id       int64 // the reference's watch id; -1 until created, or if refused
	checked  int   // leading items compared equal so far
}

// watchHarness opens watchers on both sides, brings them to a known revision
// and compares what they received.
//
// Everything a watcher receives must be a function of the op sequence, not of
// timing, or two etcds would disagree. The harness arranges that:
//   - it sends one create or cancel at a time and waits for its answer, so
//     header revisions of created and cancel responses are the revision of
//     the last write;
//   - before a compaction and before a cancel it quiesces: it writes
//     sentinel keys inside every open watcher's range and waits until every
//     watcher has received them (or has been canceled for compaction). A
//     compaction then never races with a watcher catching up from the past
//     (which would cancel it or not, by timing), nor with etcd's lookup of
//     prev_kv, and a cancel never races with events in flight.
//
// Only the test goroutine calls its methods.
type watchHarness struct {
	t                  *testing.T
	test               string
	seed               int64
	ref, sut           *target
	refConns, sutConns []*watchConn
	pairs              []*watcherPair
	// total is the test's number of ops; a check after the last op (at
	// index total) is replayed by running total ops.
	total int

	// normSut, if set, returns a copy of a message from the sut side in the
	// reference's terms (its lease IDs); it is applied before comparing.
	normSut func(proto.Message) proto.Message
	// opOfRev names the op that wrote a revision, for reports; -1 if none.
	opOfRev func(rev int64) int
	// write sends a txn to both sides, compares the answers (failing the
	// test on a difference) and returns the reference's header revision.
	write func(i int, txn *pb.TxnRequest, note string) int64
}

// newWatchHarness opens streams watch streams on each side; they are closed
// when the test ends.
func newWatchHarness(t *testing.T, test string, seed int64, ref, sut *target, streams int) *watchHarness {
	t.Helper()
	h := &watchHarness{t: t, test: test, seed: seed, ref: ref, sut: sut, opOfRev: func(int64) int { return -1 }}
	t.Cleanup(func() {
		for _, c := range append(h.refConns, h.sutConns...) {
			c.close()
		}
	})
	for i := range streams {
		rc, err := openWatchConn(ref, i)
		if err != nil {
			t.Fatal(err)
		}
		h.refConns = append(h.refConns, rc)
		sc, err := openWatchConn(sut, i)
		if err != nil {
			t.Fatal(err)
		}
		h.sutConns = append(h.sutConns, sc)
	}
	return h
}

// open creates a watcher on stream with req, before op i, waits for both
// created responses and compares them.
func (h *watchHarness) open(i, stream int, req *pb.WatchCreateRequest, note string) *watcherPair {
	h.t.Helper()
	p := &watcherPair{n: len(h.pairs), stream: stream, op: i, req: proto.Clone(req).(*pb.WatchCreateRequest), note: note, id: -1}
	h.pairs = append(h.pairs, p)
	var err error
	if p.ref, err = h.refConns[stream].create(req); err != nil {
		h.t.Fatal(err)
	}
	if p.sut, err = h.sutConns[stream].create(req); err != nil {
		h.t.Fatal(h.report(i, p, "sending the create failed: "+err.Error()))
	}
	deadline := time.Now().Add(watchWait)
	h.waitBoth(i, p, deadline, "the created response", func(l *watchLog) bool { return l.created })
	if created := h.refConns[stream].snapshot(p.ref); !created.failed {
		p.id = created.items[0].ctrl.WatchId
	}
	h.compare(i, p, "after the create", 1)
	h.checkOrphans(i, stream)
	return p
}

// cancel cancels p on both sides and waits for both acknowledgements. The
// caller quiesces first, so that no event is in flight.
func (h *watchHarness) cancel(i int, p *watcherPair) {
	h.t.Helper()
	id := p.id
	if err := h.refConns[p.stream].cancel(id); err != nil {
		h.t.Fatal(err)
	}
	if err := h.sutConns[p.stream].cancel(id); err != nil {
		h.t.Fatal(h.report(i, p, "sending the cancel failed: "+err.Error()))
	}
	deadline := time.Now().Add(watchWait)
	h.waitBoth(i, p, deadline, "the cancel acknowledgement", func(l *watchLog) bool { return l.acked })
	h.compare(i, p, "after the cancel", -1)
	h.checkOrphans(i, p.stream)
}

// cancelUnknown sends a cancel for a watch id no watcher on stream holds.
// etcd does not answer it; an answer is found as an orphan by a later check.
func (h *watchHarness) cancelUnknown(i, stream int, id int64) {
	h.t.Helper()
	if err := h.refConns[stream].cancel(id); err != nil {
		h.t.Fatal(err)
	}
	if err := h.sutConns[stream].cancel(id); err != nil {
		h.t.Fatalf("%s: %v\n%s", h.sut.name, err, rerunCommand(h.test, h.seed, h.rerunOps(i)))
	}
}

// live reports whether the reference side's watcher still holds its id. The
// caller holds the reference stream's lock.
func (p *watcherPair) live() bool {
	return p.ref.created && !p.ref.failed && !p.ref.acked
}

// liveWatchers returns the watchers that hold their id on the reference side.
func (h *watchHarness) liveWatchers() []*watcherPair {
	var ps []*watcherPair
	for _, p := range h.pairs {
		c := h.refConns[p.stream]
		c.mu.Lock()
		if p.live() {
			ps = append(ps, p)
		}
		c.mu.Unlock()
	}
	return ps
}

// quiesce brings every live watcher to the current revision before op i:
// one txn puts a sentinel key inside each live watcher's range, a second
// deletes them, and each watcher is waited for until it has received the
// last of the two it does not filter out (or has been canceled for
// compaction). Then every watcher is compared. why says what the quiesce is
// for, in reports.
func (h *watchHarness) quiesce(i int, why string) {
	h.t.Helper()
	live := h.liveWatchers()
	if len(live) > 0 {
		var keys [][]byte
		for _, p := range live {
			keys = append(keys, sentinelKey(p.req))
		}
		slices.SortFunc(keys, bytes.Compare)
		keys = slices.CompactFunc(keys, bytes.Equal)
		puts, dels := &pb.TxnRequest{}, &pb.TxnRequest{}
		for _, k := range keys {
			puts.Success = append(puts.Success, &pb.RequestOp{Request: &pb.RequestOp_RequestPut{
				RequestPut: &pb.PutRequest{Key: k, Value: []byte("sentinel")}}})
			dels.Success = append(dels.Success, &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{
				RequestDeleteRange: &pb.DeleteRangeRequest{Key: k}}})
		}
		r1 := h.write(i, puts, "sentinel puts, "+why)
		r2 := h.write(i, dels, "sentinel deletes, "+why)
		deadline := time.Now().Add(watchWait)
		for _, p := range live {
			target := quiesceTarget(p.req, r1, r2)
			if target == 0 {
				continue
			}
			h.waitBoth(i, p, deadline, fmt.Sprintf("the events up to revision %d", target), func(l *watchLog) bool {
				return l.compacted || l.acked || l.lastRev >= target
			})
		}
	}
	for s := range h.refConns {
		h.checkOrphans(i, s)
	}
	for _, p := range h.pairs {
		h.compare(i, p, why, -1)
	}
}

// sentinelKey is a key inside the watcher's range: its key, where etcd reads
// an empty key as "\x00".
func sentinelKey(req *pb.WatchCreateRequest) []byte {
	if len(req.Key) == 0 {
		return []byte{0}
	}
	return req.Key
}

// quiesceTarget is the revision a watcher of req must reach once the sentinel
// put at revision put and the sentinel delete at revision del are done: the
// later of the two that its filters and start revision let through; 0 if
// neither.
func quiesceTarget(req *pb.WatchCreateRequest, put, del int64) int64 {
	noPut := slices.Contains(req.Filters, pb.WatchCreateRequest_NOPUT)
	noDelete := slices.Contains(req.Filters, pb.WatchCreateRequest_NODELETE)
	var target int64
	if !noPut && put >= req.StartRevision {
		target = put
	}
	if !noDelete && del >= req.StartRevision {
		target = del
	}
	return target
}

// waitBoth waits until cond holds for p on both sides. The reference side
// not getting there is a failure of the harness (or of etcd); the sut side
// not getting there is reported with what each side received.
func (h *watchHarness) waitBoth(i int, p *watcherPair, deadline time.Time, what string, cond func(*watchLog) bool) {
	h.t.Helper()
	if err := h.refConns[p.stream].waitUntil(deadline, func() bool { return cond(p.ref) }); err != nil {
		h.t.Fatal(h.report(i, p, fmt.Sprintf("%s did not deliver %s: %v", h.ref.name, what, err)))
	}
	if err := h.sutConns[p.stream].waitUntil(deadline, func() bool { return cond(p.sut) }); err != nil {
		h.t.Fatal(h.report(i, p, fmt.Sprintf("%s did not deliver %s within %v: %v", h.sut.name, what, watchWait, err)))
	}
}

// compare compares what p received on both sides beyond what was compared
// before, up to upto items in all (-1: all), and fails the test on the first
// difference, on a different number of items, or on a broken response rule.
func (h *watchHarness) compare(i int, p *watcherPair, why string, upto int) {
	h.t.Helper()
	a := h.refConns[p.stream].snapshot(p.ref)
	b := h.sutConns[p.stream].snapshot(p.sut)
	for _, s := range []struct {
		name string
		l    watchLog
	}{{h.ref.name, a}, {h.sut.name, b}} {
		if len(s.l.problems) > 0 {
			h.t.Fatal(h.report(i, p, fmt.Sprintf("%s: %s broke a rule of watch responses:\n  %s",
				why, s.name, strings.Join(s.l.problems, "\n  "))))
		}
	}
	na, nb := len(a.items), len(b.items)
	if upto >= 0 {
		na, nb = min(na, upto), min(nb, upto)
	}
	for k := p.checked; k < min(na, nb); k++ {
		if !h.itemEqual(a.items[k], b.items[k]) {
			h.t.Fatal(h.reportItems(i, p, why, k, a.items, b.items))
		}
	}
	if na != nb {
		h.t.Fatal(h.reportItems(i, p, why, min(na, nb), a.items, b.items))
	}
	p.checked = na
}

func (h *watchHarness) itemEqual(a, b watchItem) bool {
	norm := h.normSut
	if norm == nil {
		norm = func(m proto.Message) proto.Message { return m }
	}
	switch {
	case a.ctrl != nil && b.ctrl != nil:
		return newResult(a.ctrl, nil).equal(newResult(norm(b.ctrl), nil))
	case a.ev != nil && b.ev != nil:
		return proto.Equal(a.ev, norm(b.ev))
	}
	return false
}

// checkOrphans fails the test if either side sent, on stream, a response that
// belongs to no watcher.
func (h *watchHarness) checkOrphans(i, stream int) {
	h.t.Helper()
	for _, c := range []*watchConn{h.refConns[stream], h.sutConns[stream]} {
		if o := c.takeOrphans(); len(o) > 0 {
			var b strings.Builder
			for _, r := range o[:min(len(o), 5)] {
				fmt.Fprintf(&b, "\n  %s", oneLine(r))
			}
			h.t.Fatalf("%s sent %d responses on watch stream %d that belong to no watcher (checked before op %d of seed %d):%s\n%s",
				c.side, len(o), stream, i, h.seed, b.String(), rerunCommand(h.test, h.seed, h.rerunOps(i)))
		}
	}
}

// describe says which watcher p is, for reports.
func (h *watchHarness) describe(p *watcherPair) string {
	note := ""
	if p.note != "" {
		note = " (" + p.note + ")"
	}
	return fmt.Sprintf("watcher %d%s on stream %d, opened before op %d, %s's watch id %d; create request: %s",
		p.n, note, p.stream, p.op, h.ref.name, p.id, oneLine(p.req))
}

func (h *watchHarness) report(i int, p *watcherPair, msg string) string {
	a := h.refConns[p.stream].snapshot(p.ref)
	b := h.sutConns[p.stream].snapshot(p.sut)
	return fmt.Sprintf("%s (op %d of seed %d)\n%s\n\n%s received:%s\n\n%s received:%s\n\n%s",
		msg, i, h.seed, h.describe(p),
		h.ref.name, formatItems(a.items, 0, len(a.items)),
		h.sut.name, formatItems(b.items, 0, len(b.items)),
		rerunCommand(h.test, h.seed, h.rerunOps(i)))
}

// reportItems describes the first difference, at item k, between what a
// watcher received on the two sides.
func (h *watchHarness) reportItems(i int, p *watcherPair, why string, k int, a, b []watchItem) string {
	itemAt := func(items []watchItem) string {
		if k < len(items) {
			return items[k].String()
		}
		return "(nothing)"
	}
	where := ""
	if k < len(a) && a[k].ev != nil {
		rev := a[k].ev.GetKv().GetModRevision()
		where = fmt.Sprintf(", revision %d", rev)
		if op := h.opOfRev(rev); op >= 0 {
			where += fmt.Sprintf(" (written by op %d)", op)
		}
	}
	lo, hi := max(0, k-3), k+4
	return fmt.Sprintf("%s and %s differ on a watcher, checked before op %d of seed %d (%s).\n%s\n\n"+
		"first difference at item %d%s (%d items on %s, %d on %s):\n  %s: %s\n  %s: %s\n\n"+
		"%s's items %d..:%s\n\n%s's items %d..:%s\n\n%s",
		h.ref.name, h.sut.name, i, h.seed, why, h.describe(p),
		k, where, len(a), h.ref.name, len(b), h.sut.name,
		h.ref.name, itemAt(a), h.sut.name, itemAt(b),
		h.ref.name, lo, formatItems(a, lo, hi), h.sut.name, lo, formatItems(b, lo, hi),
		rerunCommand(h.test, h.seed, h.rerunOps(i)))
}

// formatItems lists items[lo:hi] (clipped), one per line.
func formatItems(items []watchItem, lo, hi int) string {
	const maxLines = 40
	hi = min(hi, len(items), lo+maxLines)
	if lo >= hi {
		return " (none)"
	}
	var b strings.Builder
	for k := lo; k < hi; k++ {
		fmt.Fprintf(&b, "\n  %d: %s", k, items[k])
	}
	if hi < len(items) {
		fmt.Fprintf(&b, "\n  ... %d more", len(items)-hi)
	}
	return b.String()
}

// rerunOps is the number of ops that replays a failure found before op i.
func (h *watchHarness) rerunOps(i int) int {
	if h.total > 0 {
		return min(i+1, h.total)
	}
	return i + 1
}
