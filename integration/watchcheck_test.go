package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"
)

// The watch checker: concurrent writers and many watchers, and a proof of
// etcd's watch guarantees for every watcher against the writers' own log.
//
// The writers' responses are the truth: the revision of every put, the
// previous key-value pairs of every delete, which branch of every txn ran.
// Replaying them in revision order (a model of the key space) gives every
// event with every field, create revision and version included. Then, per
// watcher:
//
//   - ordered: revisions never go down inside a response and strictly go
//     up from one response to the next;
//   - atomic: no revision is split across two responses;
//   - unique: no (revision, key) twice;
//   - reliable: exactly the model's events in the watcher's range from its
//     start revision on, field by field: no gap, nothing extra;
//   - resumable: a watcher canceled mid-run and resumed from the revision
//     after the last one it saw gets, over all its pieces, exactly what an
//     uninterrupted watcher of the same range and start got.

// watchCheckSeedEnv fixes the writers' random choices, to rerun a failure.
const watchCheckSeedEnv = "KEEL_WATCHCHECK_SEED"

const (
	wcWriters      = 4
	wcOpsPerWriter = 100
	// wcDeadline bounds the whole check: writes, watchers, final reads.
	wcDeadline = 45 * time.Second
	// wcMaxResps bounds the responses one watcher reads.
	wcMaxResps = 5000
	// wcEnd is the value the final txn writes to every key: a watcher is
	// done when it sees it.
	wcEnd = "end"
)

// wcKeys is the key space: three groups of four keys under "wc/".
var wcKeys = func() []string {
	var ks []string
	for _, g := range []string{"a", "b", "c"} {
		for i := range 4 {
			ks = append(ks, fmt.Sprintf("wc/%s/%d", g, i))
		}
	}
	return ks
}()

// wcOp is one change the writers' log records: a put of key=value, or the
// delete of key whose value before was prev (as the server reported it).
type wcOp struct {
	del   bool
	key   string
	value string
	prev  *mvccpb.KeyValue // for deletes
}

// wcChange is everything one revision changed, in the order the server
// applied it.
type wcChange struct {
	rev int64
	ops []wcOp
	by  string // which write, for reports
}

// wcLog collects the writers' changes.
type wcLog struct {
	mu      sync.Mutex
	changes []wcChange
}

func (l *wcLog) add(c wcChange) {
	if len(c.ops) == 0 {
		return // the write changed nothing and took no revision
	}
	l.mu.Lock()
	l.changes = append(l.changes, c)
	l.mu.Unlock()
}

// revs returns the revisions logged so far.
func (l *wcLog) revs() []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]int64, len(l.changes))
	for i, c := range l.changes {
		out[i] = c.rev
	}
	return out
}

// wcEvent is one event of the model: the event with all fields and the
// key-value pair before it (nil for a create).
type wcEvent struct {
	ev   *mvccpb.Event
	prev *mvccpb.KeyValue
}

// wcModel replays the log in revision order. It checks the log itself
// (revisions from first to last exactly once; a delete's previous value is
// the model's) and returns every event in order.
func wcModel(changes []wcChange, first int64) ([]wcEvent, []string) {
	var problems []string
	slices.SortFunc(changes, func(a, b wcChange) int { return int(a.rev - b.rev) })
	state := map[string]*mvccpb.KeyValue{}
	var out []wcEvent
	for i, c := range changes {
		if c.rev != first+int64(i) {
			problems = append(problems, fmt.Sprintf("writers' log: change #%d (%s) has revision %d, want %d: revisions must be consecutive and unique", i, c.by, c.rev, first+int64(i)))
			break
		}
		for _, op := range c.ops {
			prev := state[op.key]
			if op.del {
				if prev == nil || kvString(prev) != kvString(op.prev) {
					problems = append(problems, fmt.Sprintf("writers' log: %s at %d deleted %s, but the model holds %v", c.by, c.rev, kvString(op.prev), prev))
				}
				out = append(out, wcEvent{ev: delEv(op.key, c.rev), prev: prev})
				delete(state, op.key)
				continue
			}
			ev := putEv(op.key, op.value, c.rev, c.rev, 1)
			if prev != nil {
				ev.Kv.CreateRevision, ev.Kv.Version = prev.CreateRevision, prev.Version+1
			}
			out = append(out, wcEvent{ev: ev, prev: prev})
			state[op.key] = ev.Kv
		}
	}
	return out, problems
}

// wcWriter runs one writer's ops and logs what each changed.
func wcWriter(c context.Context, cli *clientv3.Client, id int, rng *rand.Rand, log *wcLog, done *atomic.Int64, onDone func(int64)) error {
	pick := func(n int) []string { // n distinct keys
		idx := rng.Perm(len(wcKeys))[:n]
		out := make([]string, n)
		for i, j := range idx {
			out[i] = wcKeys[j]
		}
		return out
	}
	for op := range wcOpsPerWriter {
		by := fmt.Sprintf("writer %d op %d", id, op)
		val := fmt.Sprintf("w%d-%d", id, op)
		oc, cancel := context.WithTimeout(c, opTimeout)
		var err error
		switch p := rng.IntN(100); {
		case p < 40:
			k := pick(1)[0]
			var resp *clientv3.PutResponse
			if resp, err = cli.Put(oc, k, val); err == nil {
				log.add(wcChange{rev: resp.Header.Revision, by: by + " put " + k, ops: []wcOp{{key: k, value: val}}})
			}
		case p < 65:
			k := pick(1)[0]
			opts := []clientv3.OpOption{clientv3.WithPrevKV()}
			what := " delete " + k
			if p >= 55 {
				k = k[:len("wc/a/")]
				opts = append(opts, clientv3.WithPrefix())
				what = " delete prefix " + k
			}
			var resp *clientv3.DeleteResponse
			if resp, err = cli.Delete(oc, k, opts...); err == nil {
				ch := wcChange{rev: resp.Header.Revision, by: by + what}
				for _, kv := range resp.PrevKvs {
					ch.ops = append(ch.ops, wcOp{del: true, key: string(kv.Key), prev: kv})
				}
				log.add(ch)
			}
		default:
			ks := pick(5)
			thenOps := []clientv3.Op{clientv3.OpPut(ks[1], val), clientv3.OpDelete(ks[3], clientv3.WithPrevKV()), clientv3.OpPut(ks[2], val)}
			elseOps := []clientv3.Op{clientv3.OpDelete(ks[4], clientv3.WithPrevKV()), clientv3.OpPut(ks[0], val)}
			var resp *clientv3.TxnResponse
			resp, err = cli.Txn(oc).If(clientv3.Compare(clientv3.Value(ks[0]), ">", "w2")).Then(thenOps...).Else(elseOps...).Commit()
			if err == nil {
				ch := wcChange{rev: resp.Header.Revision, by: fmt.Sprintf("%s txn %v succeeded=%v", by, ks, resp.Succeeded)}
				branch := elseOps
				if resp.Succeeded {
					branch = thenOps
				}
				if len(resp.Responses) != len(branch) {
					err = fmt.Errorf("%s: %d op responses for %d ops", ch.by, len(resp.Responses), len(branch))
					break
				}
				for i, o := range branch {
					switch {
					case o.IsPut():
						ch.ops = append(ch.ops, wcOp{key: string(o.KeyBytes()), value: string(o.ValueBytes())})
					case o.IsDelete():
						for _, kv := range resp.Responses[i].GetResponseDeleteRange().PrevKvs {
							ch.ops = append(ch.ops, wcOp{del: true, key: string(kv.Key), prev: kv})
						}
					}
				}
				log.add(ch)
			}
		}
		cancel()
		if err != nil {
			// The outcome of a failed write is unknown: the log would not
			// be the truth any more.
			return fmt.Errorf("%s: %w", by, err)
		}
		onDone(done.Add(1))
	}
	return nil
}

// wcSpec describes one watcher of the check.
type wcSpec struct {
	name string
	key  string
	end  string // "" one key, "\x00" every key from key on, else [key, end)
	// start: 0 watches from creation; otherwise the start revision.
	start    int64
	prevKV   bool
	noDelete bool
	// resumeAfter: cancel the watch after it has seen this many events in
	// total and resume it from the revision after the last one seen (at
	// most once per response).
	resumeAfter []int
	// holdFinal makes the final txn wait until the watcher has resumed
	// once, for a watcher created so late that its first response might
	// otherwise already hold the final revision. Such a watcher must
	// resume at least once, any other resumable one exactly as often as
	// resumeAfter says.
	holdFinal bool
	// twin names the uninterrupted watcher of the same range, start and
	// options that a resumable watcher is compared with.
	twin string
	// stream separates the watcher's gRPC stream from the client's other
	// watchers (the client multiplexes watchers of equal metadata).
	stream string
}

func (s wcSpec) contains(key string) bool {
	switch s.end {
	case "":
		return key == s.key
	case "\x00":
		return key >= s.key
	default:
		return key >= s.key && key < s.end
	}
}

func (s wcSpec) opts() []clientv3.OpOption {
	var o []clientv3.OpOption
	switch s.end {
	case "":
	case "\x00":
		o = append(o, clientv3.WithFromKey())
	default:
		o = append(o, clientv3.WithRange(s.end))
	}
	if s.prevKV {
		o = append(o, clientv3.WithPrevKV())
	}
	if s.noDelete {
		o = append(o, clientv3.WithFilterDelete())
	}
	return o
}

// wcResp is one response a watcher received.
type wcResp struct {
	header int64
	events []*mvccpb.Event
	piece  int // which incarnation of a resumed watcher received it
}

// wcWatcher runs one watcher and records what it receives. Its fields are
// written by its own goroutine only, and read after that goroutine ends.
type wcWatcher struct {
	spec wcSpec
	cli  *clientv3.Client
	// from and to bound the revision the watcher's first event may have:
	// exactly start for an explicit start revision; for a watcher from
	// creation, after the revision read before creating it and at most
	// the created response's revision + 1 (etcd reads the revision for the
	// created response after registering the watcher, so a concurrent
	// write may fall in between).
	from, to int64
	resps    []wcResp
	events   int
	err      error
	// resumed is closed when the watcher resumes the first time, or ends.
	resumed     chan struct{}
	resumedOnce sync.Once
}

func newWCWatcher(s wcSpec, cli *clientv3.Client) *wcWatcher {
	return &wcWatcher{spec: s, cli: cli, resumed: make(chan struct{})}
}

func (w *wcWatcher) signalResumed() { w.resumedOnce.Do(func() { close(w.resumed) }) }

// open creates the watch at rev (0: from now, with the created response).
func (w *wcWatcher) open(c context.Context, rev int64) (clientv3.WatchChan, context.CancelFunc, error) {
	if w.spec.stream != "" {
		c = metadata.AppendToOutgoingContext(c, "keel-watchcheck-stream", w.spec.stream)
	}
	wc, cancel := context.WithCancel(c)
	opts := w.spec.opts()
	if rev != 0 {
		return w.cli.Watch(wc, w.spec.key, append(opts, clientv3.WithRev(rev))...), cancel, nil
	}
	before, err := w.cli.Get(wc, "wc-probe")
	if err != nil {
		cancel()
		return nil, nil, err
	}
	wch := w.cli.Watch(wc, w.spec.key, append(opts, clientv3.WithCreatedNotify())...)
	select {
	case resp, ok := <-wch:
		if !ok || !resp.Created || resp.Err() != nil {
			cancel()
			return nil, nil, fmt.Errorf("want the created response, got %s (channel open %v)", clientRespString(resp), ok)
		}
		w.from, w.to = before.Header.Revision+1, resp.Header.Revision+1
	case <-c.Done():
		cancel()
		return nil, nil, fmt.Errorf("no created response: %w", c.Err())
	}
	return wch, cancel, nil
}

// start opens the watcher; see open.
func (w *wcWatcher) start(c context.Context) (clientv3.WatchChan, context.CancelFunc, error) {
	if w.spec.start != 0 {
		w.from, w.to = w.spec.start, w.spec.start
	}
	return w.open(c, w.spec.start)
}

// run reads wch until the watcher sees the final txn, resuming it where
// the spec says so.
func (w *wcWatcher) run(c context.Context, wch clientv3.WatchChan, cancel context.CancelFunc) {
	defer func() { cancel() }()
	defer w.signalResumed()
	piece := 0
	var last int64
	for range wcMaxResps {
		var resp clientv3.WatchResponse
		var ok bool
		select {
		case resp, ok = <-wch:
		case <-c.Done():
			w.err = fmt.Errorf("gave up waiting for the final revision after %d events (last revision %d): %w", w.events, last, c.Err())
			return
		}
		if !ok {
			w.err = fmt.Errorf("channel closed after %d events (last revision %d)", w.events, last)
			return
		}
		if err := resp.Err(); err != nil || resp.Created || len(resp.Events) == 0 {
			w.err = fmt.Errorf("unexpected response after %d events: %s", w.events, clientRespString(resp))
			return
		}
		w.resps = append(w.resps, wcResp{header: resp.Header.GetRevision(), events: resp.Events, piece: piece})
		w.events += len(resp.Events)
		last = resp.Events[len(resp.Events)-1].Kv.ModRevision
		for _, ev := range resp.Events {
			if string(ev.Kv.Value) == wcEnd {
				return
			}
		}
		if piece < len(w.spec.resumeAfter) && w.events >= w.spec.resumeAfter[piece] {
			cancel()
			piece++
			var err error
			if wch, cancel, err = w.open(c, last+1); err != nil {
				w.err = fmt.Errorf("resume from %d: %w", last+1, err)
				return
			}
			w.signalResumed()
		}
	}
	w.err = fmt.Errorf("no final revision in %d responses", wcMaxResps)
}

// check proves the guarantees for one watcher against the model's events
// and returns the violations, each naming the watcher and the revision.
func (w *wcWatcher) check(model []wcEvent) []string {
	var problems []string
	report := func(format string, args ...any) {
		if len(problems) < 12 {
			problems = append(problems, fmt.Sprintf("%s: ", w.spec.name)+fmt.Sprintf(format, args...))
		}
	}
	if w.err != nil {
		report("%v", w.err)
	}

	// ordered, atomic, unique; and the header is at least the revision of
	// the events it carries.
	var got []*mvccpb.Event
	var prevLast int64
	seen := map[string]int{}
	for i, r := range w.resps {
		first := r.events[0].Kv.ModRevision
		if i > 0 {
			switch {
			case first == prevLast:
				report("atomic: revision %d split across responses %d and %d", first, i-1, i)
			case first < prevLast:
				report("ordered: response %d starts at revision %d, after response %d ended at %d", i, first, i-1, prevLast)
			}
		}
		for j, ev := range r.events {
			rv := ev.Kv.ModRevision
			if j > 0 && rv < r.events[j-1].Kv.ModRevision {
				report("ordered: response %d goes from revision %d down to %d", i, r.events[j-1].Kv.ModRevision, rv)
			}
			id := fmt.Sprintf("%d %q", rv, ev.Kv.Key)
			if n, dup := seen[id]; dup {
				report("unique: revision %d key %q in responses %d and %d", rv, ev.Kv.Key, n, i)
			}
			seen[id] = i
		}
		prevLast = r.events[len(r.events)-1].Kv.ModRevision
		if r.header < prevLast {
			report("response %d has header revision %d below its event at %d", i, r.header, prevLast)
		}
		got = append(got, r.events...)
	}

	// reliable: the watcher's start is fixed by the spec, or (from
	// creation) the first event's revision within [from, to].
	start := w.to
	if len(got) > 0 && w.from < w.to {
		start = min(max(got[0].Kv.ModRevision, w.from), w.to)
	}
	var want []*mvccpb.Event
	for _, e := range model {
		if e.ev.Kv.ModRevision < start || !w.spec.contains(string(e.ev.Kv.Key)) {
			continue
		}
		if w.spec.noDelete && e.ev.Type == mvccpb.DELETE {
			continue
		}
		ev := &mvccpb.Event{Type: e.ev.Type, Kv: e.ev.Kv}
		// etcd gives no previous value for a put that creates the key.
		if w.spec.prevKV && e.prev != nil {
			ev.PrevKv = e.prev
		}
		want = append(want, ev)
	}
	for i := 0; i < max(len(got), len(want)); i++ {
		var g, wt *mvccpb.Event
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			wt = want[i]
		}
		if evString(g) == evString(wt) {
			continue
		}
		switch {
		case g == nil:
			report("reliable: missing %d events from revision %d on: first %s", len(want)-i, wt.Kv.ModRevision, evString(wt))
		case wt == nil:
			report("reliable: %d extra events after the last expected one: first %s", len(got)-i, evString(g))
		default:
			report("reliable: event #%d (start revision %d):\n    got  %s\n    want %s", i, start, evString(g), evString(wt))
		}
		break
	}
	return problems
}

// TestWatchCheckerConcurrentWritesAndWatchers runs the watch checker:
// writers putting, deleting (single keys and prefixes) and committing txns
// on overlapping keys, while watchers of single keys, prefixes, ranges and
// old revisions, some created mid-run and some canceled and resumed,
// record every response; then every watcher is checked against the log.
func TestWatchCheckerConcurrentWritesAndWatchers(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(watchCheckSeedEnv); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", watchCheckSeedEnv, s, err)
		}
		seed = v
	}
	m := startMember(t)
	clis := []*clientv3.Client{m.cli(), m.newClient(t), m.newClient(t)}
	c, cancel := context.WithTimeout(context.Background(), wcDeadline)
	defer cancel()

	put(t, m.cli(), "before-the-check", "1")
	first := rev(t, m.cli()) + 1 // the first revision the writers make

	const total = wcWriters * wcOpsPerWriter
	before := []wcSpec{
		{name: "key wc/a/0 from creation", key: "wc/a/0"},
		{name: "key wc/b/1 from the first write", key: "wc/b/1", start: first, stream: "s1"},
		{name: "prefix wc/a/ from creation", key: "wc/a/", end: "wc/a0"},
		{name: "prefix wc/ with prev_kv", key: "wc/", end: "wc0", prevKV: true, stream: "s1"},
		{name: "range [wc/a/2, wc/b/2)", key: "wc/a/2", end: "wc/b/2", start: first},
		{name: "from key wc/b/", key: "wc/b/", end: "\x00", stream: "s2"},
		{name: "prefix wc/ without deletes", key: "wc/", end: "wc0", noDelete: true},
		{name: "prefix wc/ from the first write", key: "wc/", end: "wc0", start: first, stream: "s2"},
		{name: "prefix wc/ resumed three times", key: "wc/", end: "wc0", start: first, resumeAfter: []int{40, 150, 300}, twin: "prefix wc/ from the first write"},
		{name: "key wc/c/2 with prev_kv", key: "wc/c/2", prevKV: true, start: first, stream: "s3"},
		{name: "key wc/c/2 with prev_kv resumed twice", key: "wc/c/2", prevKV: true, start: first, resumeAfter: []int{5, 15}, twin: "key wc/c/2 with prev_kv"},
	}
	var watchers []*wcWatcher
	var wg sync.WaitGroup
	launch := func(w *wcWatcher, wch clientv3.WatchChan, stop context.CancelFunc) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if wch == nil {
				var err error
				if wch, stop, err = w.start(c); err != nil {
					w.err = err
					w.signalResumed()
					return
				}
			}
			w.run(c, wch, stop)
		}()
	}
	for i, s := range before {
		w := newWCWatcher(s, clis[i%len(clis)])
		wch, stop, err := w.start(c)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		watchers = append(watchers, w)
		launch(w, wch, stop)
	}

	// Mid-run watchers start when a third and two thirds of the ops are
	// done, some from revisions long past.
	log := &wcLog{}
	rng := rand.New(rand.NewPCG(seed, 0))
	third, twoThirds := make(chan struct{}), make(chan struct{})
	var done atomic.Int64
	onDone := func(n int64) {
		switch n {
		case total / 3:
			close(third)
		case 2 * total / 3:
			close(twoThirds)
		}
	}
	var wwg sync.WaitGroup
	werrs := make(chan error, wcWriters)
	for i := range wcWriters {
		wrng := rand.New(rand.NewPCG(seed, uint64(i+1)))
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			if err := wcWriter(c, clis[i%len(clis)], i, wrng, log, &done, onDone); err != nil {
				werrs <- err
			}
		}()
	}
	var mid []wcSpec
	waitFor := func(ch chan struct{}) bool {
		select {
		case <-ch:
			return true
		case err := <-werrs:
			t.Errorf("writer: %v", err)
		case <-c.Done():
			t.Errorf("writers too slow: %v", c.Err())
		}
		return false
	}
	ok := waitFor(third)
	if ok {
		revs := log.revs()
		past := revs[rng.IntN(len(revs))]
		mid = append(mid,
			wcSpec{name: "prefix wc/ from the first write, created mid-run", key: "wc/", end: "wc0", start: first, stream: "s4"},
			wcSpec{name: fmt.Sprintf("key wc/c/1 from past revision %d", past), key: "wc/c/1", start: past},
			wcSpec{name: fmt.Sprintf("prefix wc/b/ with prev_kv from past revision %d", past), key: "wc/b/", end: "wc/b0", prevKV: true, start: past, stream: "s4"},
			wcSpec{name: "prefix wc/ from creation, created mid-run", key: "wc/", end: "wc0"},
		)
		for i, s := range mid {
			w := newWCWatcher(s, clis[i%len(clis)])
			watchers = append(watchers, w)
			launch(w, nil, nil)
		}
	}
	if ok && waitFor(twoThirds) {
		s := wcSpec{name: "prefix wc/ from the first write, created late, resumed twice", key: "wc/", end: "wc0", start: first,
			resumeAfter: []int{1, 2}, holdFinal: true, twin: "prefix wc/ from the first write", stream: "s5"}
		w := newWCWatcher(s, clis[1])
		watchers = append(watchers, w)
		launch(w, nil, nil)
	}
	wwg.Wait()
	close(werrs)
	for err := range werrs {
		t.Errorf("writer: %v", err)
	}
	if t.Failed() {
		cancel()
		wg.Wait()
		t.FailNow()
	}

	for _, w := range watchers {
		if !w.spec.holdFinal {
			continue
		}
		select {
		case <-w.resumed:
		case <-c.Done():
			cancel()
			wg.Wait()
			t.Fatalf("%s: no first response to resume after: %v", w.spec.name, c.Err())
		}
	}

	// The final txn writes every key: every watcher sees it and stops.
	var ops []clientv3.Op
	var final []wcOp
	for _, k := range wcKeys {
		ops = append(ops, clientv3.OpPut(k, wcEnd))
		final = append(final, wcOp{key: k, value: wcEnd})
	}
	resp, err := m.cli().Txn(c).Then(ops...).Commit()
	if err != nil {
		t.Fatalf("final txn: %v", err)
	}
	log.add(wcChange{rev: resp.Header.Revision, by: "final txn", ops: final})
	wg.Wait()

	model, problems := wcModel(log.changes, first)
	if len(problems) > 0 {
		t.Fatalf("seed %d: the writers' log is not a consistent history, so it cannot judge the watchers:\n%s", seed, strings.Join(problems, "\n"))
	}
	byName := map[string]*wcWatcher{}
	for _, w := range watchers {
		byName[w.spec.name] = w
	}
	var all []string
	checked := 0
	for _, w := range watchers {
		p := w.check(model)
		checked += w.events
		if w.spec.twin != "" && w.err == nil {
			twin := byName[w.spec.twin]
			if twin == nil || twin.spec.key != w.spec.key || twin.spec.end != w.spec.end || twin.spec.start != w.spec.start || twin.spec.prevKV != w.spec.prevKV {
				t.Fatalf("%s: twin %q does not watch the same", w.spec.name, w.spec.twin)
			}
			p = append(p, resumedMatchesTwin(w, twin)...)
		}
		all = append(all, p...)
	}
	t.Logf("seed %d: %d writes over revisions %d..%d, %d watchers, %d events checked", seed, len(log.changes), first, resp.Header.Revision, len(watchers), checked)
	if len(all) > 0 {
		t.Fatalf("seed %d (rerun with %s=%d): watch guarantees violated:\n%s", seed, watchCheckSeedEnv, seed, strings.Join(all, "\n"))
	}
}

// resumedMatchesTwin checks resumability: the events of all pieces of a
// resumed watcher, concatenated, are those of its uninterrupted twin.
func resumedMatchesTwin(w, twin *wcWatcher) []string {
	var a, b []*mvccpb.Event
	pieces := 0
	for _, r := range w.resps {
		a = append(a, r.events...)
		pieces = max(pieces, r.piece+1)
	}
	for _, r := range twin.resps {
		b = append(b, r.events...)
	}
	if resumes := pieces - 1; resumes != len(w.spec.resumeAfter) && !(w.spec.holdFinal && resumes > 0) {
		return []string{fmt.Sprintf("%s: resumed %d times, want %d (too few events to resume at %v)", w.spec.name, pieces-1, len(w.spec.resumeAfter), w.spec.resumeAfter)}
	}
	for i := 0; i < max(len(a), len(b)); i++ {
		var x, y *mvccpb.Event
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if evString(x) != evString(y) {
			return []string{fmt.Sprintf("%s: resumable: event #%d differs from the uninterrupted %q:\n    resumed       %s\n    uninterrupted %s", w.spec.name, i, twin.spec.name, evString(x), evString(y))}
		}
	}
	return nil
}

// TestWatchCheckerCatchesViolations feeds the checker recorded responses
// with one planted fault each and requires it to name the violated
// guarantee, so that a passing check means something.
func TestWatchCheckerCatchesViolations(t *testing.T) {
	t.Parallel()
	changes := []wcChange{
		{rev: 2, ops: []wcOp{{key: "a", value: "1"}}},
		{rev: 3, ops: []wcOp{{key: "b", value: "1"}, {key: "c", value: "1"}}},
		{rev: 4, ops: []wcOp{{del: true, key: "a", prev: kv("a", "1", 2, 2, 1)}}},
		{rev: 5, ops: []wcOp{{key: "a", value: "end"}}},
	}
	model, problems := wcModel(changes, 2)
	if len(problems) > 0 {
		t.Fatalf("model of a consistent log: %v", problems)
	}
	ev := func(i int) *mvccpb.Event { return model[i].ev }
	good := func() []wcResp {
		return []wcResp{
			{header: 2, events: []*mvccpb.Event{ev(0)}},
			{header: 3, events: []*mvccpb.Event{ev(1), ev(2)}},
			{header: 4, events: []*mvccpb.Event{ev(3)}},
			{header: 5, events: []*mvccpb.Event{ev(4)}},
		}
	}
	spec := wcSpec{name: "all", key: "", end: "\x00", start: 2}
	check := func(resps []wcResp) string {
		w := &wcWatcher{spec: spec, from: 2, to: 2, resps: resps}
		return strings.Join(w.check(model), "\n")
	}
	if p := check(good()); p != "" {
		t.Fatalf("faultless record reported: %s", p)
	}
	wrongValue := kv("a", "other", 5, 5, 1)
	faults := []struct {
		name, want string
		resps      func() []wcResp
	}{
		{"gap", "reliable: event #3", func() []wcResp { r := good(); return append(r[:2], r[3]) }},
		{"missing tail", "reliable: missing 1 events from revision 5", func() []wcResp { return good()[:3] }},
		{"extra", "reliable: 1 extra events", func() []wcResp {
			return append(good(), wcResp{header: 6, events: []*mvccpb.Event{putEv("a", "x", 5, 6, 2)}})
		}},
		{"duplicate", "unique: revision 2", func() []wcResp { r := good(); return append(r[:1], append([]wcResp{r[0]}, r[1:]...)...) }},
		{"split revision", "atomic: revision 3 split", func() []wcResp {
			r := good()
			return []wcResp{r[0], {header: 3, events: []*mvccpb.Event{ev(1)}}, {header: 3, events: []*mvccpb.Event{ev(2)}}, r[2], r[3]}
		}},
		{"reordered", "ordered: response 1 starts at revision 2, after response 0 ended at 3", func() []wcResp { r := good(); r[0], r[1] = r[1], r[0]; return r }},
		{"reordered inside", "ordered: response 0 goes from revision 3 down to 2", func() []wcResp {
			r := good()
			return []wcResp{{header: 3, events: []*mvccpb.Event{ev(1), ev(0)}}, r[2], r[3]}
		}},
		{"wrong value", "reliable: event #4", func() []wcResp {
			r := good()
			r[3].events = []*mvccpb.Event{{Type: mvccpb.PUT, Kv: wrongValue}}
			return r
		}},
		{"header below events", "header revision 2 below its event at 3", func() []wcResp { r := good(); r[1].header = 2; return r }},
	}
	for _, f := range faults {
		if p := check(f.resps()); !strings.Contains(p, f.want) {
			t.Errorf("%s: checker reported %q, want it to contain %q", f.name, p, f.want)
		}
	}

	// Resumable: pieces that skip an event differ from the twin.
	twin := &wcWatcher{spec: spec, resps: good()}
	resumed := &wcWatcher{spec: wcSpec{name: "resumed", resumeAfter: []int{1}}, resps: good()}
	resumed.resps[2].piece, resumed.resps[3].piece = 1, 1
	if p := resumedMatchesTwin(resumed, twin); p != nil {
		t.Fatalf("faultless resume reported: %v", p)
	}
	resumed.resps = append(resumed.resps[:2], resumed.resps[3])
	if p := strings.Join(resumedMatchesTwin(resumed, twin), ""); !strings.Contains(p, "resumable: event #3") {
		t.Errorf("resume with a gap: checker reported %q", p)
	}

	// The log itself: a revision missing from the writers' log.
	if _, p := wcModel([]wcChange{changes[0], changes[2]}, 2); len(p) == 0 {
		t.Errorf("a log with a gap at revision 3 passed the model")
	}
}
