package scenario

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keeldb/keel/bench/internal/harness"
	"github.com/keeldb/keel/bench/internal/proc"
	"github.com/keeldb/keel/bench/internal/report"
)

// K8sMixed drives a cluster the way kube-apiserver drives etcd: objects
// under resource prefixes (/registry/pods/...), written with transactions
// that compare the mod revision, read with linearizable gets, listed in
// pages of ListLimit keys, and watched by one watch per prefix with the
// previous value and progress notifications, as apiserver's watch cache
// does.
//
// Clients workers share Conns connections and each runs one request at a
// time; the requests are counted as the KV scenarios count them (see
// windowTally), and the per-server figures are the leader's. Each worker owns a partition of the objects and remembers the mod
// revision of each, so its compare-and-swap writes succeed unless a server
// is wrong: a failed compare (a conflict) fails the run. A worker chooses
// each operation with its own random generator seeded from Seed and its
// index, so both servers get the same sequence of operations (as far as
// each gets within Duration).
//
// Requirement: no request fails, no compare fails, every get returns the
// mod revision the worker last wrote, and every watch delivers exactly the
// acknowledged writes to its prefix, each delete and update with its
// previous value, within watchCatchUp after the load.
type K8sMixed struct {
	// Members of the cluster.
	Members int
	// Clients are the workers; Conns the client connections they share
	// (worker i uses connection i mod Conns, and connection j talks to
	// member j mod Members, counting from the leader: see leaderFirst).
	// The watches have one more connection, to the leader.
	Clients int
	Conns   int
	// Warmup runs the load unmeasured before the Duration that counts.
	Warmup   time.Duration
	Duration time.Duration
	// Resources are the key prefixes of the objects, one watch each.
	// None may be a prefix of another or overlap LeasePrefix.
	Resources []string
	// Objects are created before the load, spread over the resources and
	// the workers; LargeFraction of them carry LargeSize values, the rest
	// SmallSize.
	Objects       int
	LargeFraction float64
	SmallSize     int
	LargeSize     int
	// ListLimit is the page size of a list (apiserver's default is 500).
	ListLimit int
	// Mix weighs the operations (see ParseK8sMix).
	Mix  K8sMix
	Seed uint64
}

// K8sLeasePrefix holds the objects of the "lease-update" operation, one
// per worker, like the node leases kubelets renew every few seconds.
const K8sLeasePrefix = "/registry/leases/kube-node-lease/"

// k8sLeaseSize is the value size of a lease object.
const k8sLeaseSize = 512

// watchCatchUp bounds the wait, after the load, for every watch to deliver
// the last acknowledged write to its prefix.
const watchCatchUp = 60 * time.Second

// lagCapacity is how many revisions after the start of the load keep the
// times of their acknowledgement and watch delivery, for the watch lag.
const lagCapacity = 1 << 20

// DefaultK8sResources are the resource prefixes of -resources by default.
var DefaultK8sResources = []string{
	"/registry/pods/",
	"/registry/configmaps/",
	"/registry/secrets/",
	"/registry/services/specs/",
	"/registry/endpointslices/",
	"/registry/events/",
	"/registry/deployments/",
	"/registry/replicasets/",
}

// k8sOp is one kind of request of the mixed load.
type k8sOp int

const (
	opCreate k8sOp = iota
	opUpdate
	opDelete
	opGet
	opList
	opLeaseUpdate
	numK8sOps
)

// k8sOpNames name the operations in -mix and in the figures.
var k8sOpNames = [numK8sOps]string{"create", "update", "delete", "get", "list", "lease-update"}

func (o k8sOp) String() string { return k8sOpNames[o] }

// isWrite reports whether the operation, when it succeeds, makes one
// revision (and one watch event).
func (o k8sOp) isWrite() bool {
	return o == opCreate || o == opUpdate || o == opDelete || o == opLeaseUpdate
}

// K8sMix is the weight of each operation; an operation is chosen with
// probability weight/sum.
type K8sMix [numK8sOps]int

// DefaultK8sMix is the mix of -mix by default.
const DefaultK8sMix = "update=50,create=10,delete=5,get=25,list=8,lease-update=2"

// ParseK8sMix reads "op=weight,..." with ops create, update, delete, get,
// list and lease-update; an op left out has weight 0.
func ParseK8sMix(s string) (K8sMix, error) {
	var m K8sMix
	seen := map[string]bool{}
	for part := range strings.SplitSeq(s, ",") {
		name, w, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return m, fmt.Errorf("mix %q: %q is not op=weight", s, part)
		}
		i := slices.Index(k8sOpNames[:], name)
		if i < 0 {
			return m, fmt.Errorf("mix %q: unknown op %q (ops: %s)", s, name, strings.Join(k8sOpNames[:], ", "))
		}
		if seen[name] {
			return m, fmt.Errorf("mix %q: %s given twice", s, name)
		}
		seen[name] = true
		n, err := strconv.Atoi(w)
		if err != nil || n < 0 {
			return m, fmt.Errorf("mix %q: weight of %s must be a whole number >= 0", s, name)
		}
		m[i] = n
	}
	if m.total() == 0 {
		return m, fmt.Errorf("mix %q: every weight is 0", s)
	}
	return m, nil
}

func (m K8sMix) total() int {
	t := 0
	for _, w := range m {
		t += w
	}
	return t
}

// String formats the mix as ParseK8sMix reads it.
func (m K8sMix) String() string {
	var parts []string
	for i, w := range m {
		if w > 0 {
			parts = append(parts, k8sOpNames[i]+"="+strconv.Itoa(w))
		}
	}
	return strings.Join(parts, ",")
}

// opPicker draws operations by their weights. Its sequence depends only on
// the mix and the seed, never on what the server answered.
type opPicker struct {
	mix   K8sMix
	total int
	rng   *rand.Rand
}

func newOpPicker(mix K8sMix, seed uint64, worker int) *opPicker {
	return &opPicker{mix: mix, total: mix.total(), rng: rand.New(rand.NewPCG(seed, uint64(worker)))}
}

func (p *opPicker) next() k8sOp {
	n := p.rng.IntN(p.total)
	for i, w := range p.mix {
		if n < w {
			return k8sOp(i)
		}
		n -= w
	}
	panic("unreachable: weights sum to total")
}

// Name implements harness.Named.
func (K8sMixed) Name() string { return "k8s-mixed" }

// Validate checks the parameters.
func (s K8sMixed) Validate() error {
	switch {
	case s.Members < 1:
		return errors.New("-members must be at least 1")
	case s.Clients < 1 || s.Conns < 1:
		return errors.New("-clients and -conns must be at least 1")
	case s.Conns > s.Clients:
		return errors.New("-conns must not exceed -clients")
	case s.Duration <= 0 || s.Warmup < 0:
		return errors.New("-duration must be positive and -warmup not negative")
	case len(s.Resources) == 0:
		return errors.New("-resources must name at least one prefix")
	case s.Objects < 0:
		return errors.New("-objects must not be negative")
	case s.LargeFraction < 0 || s.LargeFraction > 1:
		return errors.New("-large-fraction must be between 0 and 1")
	case s.SmallSize < 1 || s.LargeSize < 1:
		return errors.New("value sizes must be positive")
	case s.ListLimit < 1:
		return errors.New("-list-limit must be at least 1")
	case s.Mix.total() == 0:
		return errors.New("-mix: every weight is 0")
	}
	prefixes := append(slices.Clone(s.Resources), K8sLeasePrefix)
	for i, a := range prefixes {
		if !strings.HasPrefix(a, "/") || !strings.HasSuffix(a, "/") {
			return fmt.Errorf("-resources: %q must start and end with /", a)
		}
		for j, b := range prefixes {
			if i != j && strings.HasPrefix(b, a) {
				return fmt.Errorf("-resources: %q contains %q; each prefix needs its own keys for its watch", a, b)
			}
		}
	}
	return nil
}

// k8sObjectKey names object seq of a worker under a resource prefix, in
// apiserver's layout <prefix><namespace>/<name>.
func k8sObjectKey(prefix string, worker, seq int) string {
	return prefix + "keelbench/w" + strconv.Itoa(worker) + "-o" + strconv.Itoa(seq)
}

// k8sLeaseKey names a worker's lease object; gen counts the keys the worker
// gave up after a failed request.
func k8sLeaseKey(worker, gen int) string {
	key := K8sLeasePrefix + "node-" + strconv.Itoa(worker)
	if gen > 0 {
		key += "-" + strconv.Itoa(gen)
	}
	return key
}

// k8sPartition is the number of the Objects created before the load that
// worker owns: object i belongs to worker i mod clients, as that worker's
// object i div clients.
func k8sPartition(objects, clients, worker int) int {
	n := objects / clients
	if worker < objects%clients {
		n++
	}
	return n
}

// k8sResourceOf is the resource index of a worker's object seq. Adding the
// worker spreads each worker's first objects over different resources.
func k8sResourceOf(worker, seq, resources int) int { return (worker + seq) % resources }

// k8sIsLarge reports whether a worker's object seq has a large value: a
// fixed hash of (seed, worker, seq) below fraction.
func k8sIsLarge(seed uint64, worker, seq int, fraction float64) bool {
	x := seed ^ uint64(worker)<<32 ^ uint64(seq)
	// splitmix64 finaliser
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11)/(1<<53) < fraction
}

// k8sObject is one object as its owning worker last wrote it.
type k8sObject struct {
	key  string
	res  int   // index into the prefixes; len(Resources) is the lease prefix
	rev  int64 // mod revision; 0 before it exists
	size int
}

// k8sShared is what the workers and the watches share during the load.
type k8sShared struct {
	s        *K8sMixed
	prefixes []string // Resources, then K8sLeasePrefix
	startRev int64    // the revision before the load; watches start after it
	// win is the measured part of the load.
	win window
	// ackAt and seenAt hold, for revision startRev+1+i, when its write
	// was acknowledged and when its watch delivered it (UnixNano, 0 if
	// not yet).
	ackAt, seenAt []atomic.Int64
	done          atomic.Int64 // requests completed, for progress lines
}

// k8sWorker runs one client's share of the load. Only its goroutine
// touches it until the load stops.
type k8sWorker struct {
	sh     *k8sShared
	id     int
	cli    *clientv3.Client
	ops    *opPicker
	pick   *rand.Rand // chooses objects and list prefixes
	values *valueGen

	live     []k8sObject
	nextSeq  int
	lease    k8sObject
	leaseGen int
	// cursor is the paginated list in progress, if any.
	cursor *listPager

	tally     [numK8sOps]windowTally
	conflicts int64
	firstConf string
	// mismatches are gets whose mod revision was not the one written.
	mismatches    int64
	firstMismatch string
	listKeys      int64 // keys returned by list pages in the window
	pageKeys      int64 // keys returned by the last list page
	// writes and lastRev count the acknowledged writes and their highest
	// revision per prefix, over the whole load.
	writes, lastRev []int64
}

func newK8sWorker(sh *k8sShared, id int, cli *clientv3.Client, lat *[numK8sOps]*latencies) *k8sWorker {
	w := &k8sWorker{
		sh: sh, id: id, cli: cli,
		ops:     newOpPicker(sh.s.Mix, sh.s.Seed, id),
		pick:    rand.New(rand.NewPCG(sh.s.Seed^0x5eed, uint64(id))),
		values:  newValueGen(sh.s.Seed, uint64(id)),
		writes:  make([]int64, len(sh.prefixes)),
		lastRev: make([]int64, len(sh.prefixes)),
		lease:   k8sObject{key: k8sLeaseKey(id, 0), res: len(sh.s.Resources), size: k8sLeaseSize},
	}
	for op := range numK8sOps {
		w.tally[op].lat = lat[op].shard()
	}
	return w
}

// value is size fresh random bytes.
func (w *k8sWorker) value(size int) string { return w.values.value(size) }

// newObject returns the worker's next object, not yet created.
func (w *k8sWorker) newObject() k8sObject {
	s := w.sh.s
	seq := w.nextSeq
	w.nextSeq++
	size := s.SmallSize
	if k8sIsLarge(s.Seed, w.id, seq, s.LargeFraction) {
		size = s.LargeSize
	}
	res := k8sResourceOf(w.id, seq, len(s.Resources))
	return k8sObject{key: k8sObjectKey(s.Resources[res], w.id, seq), res: res, size: size}
}

// setup creates the worker's share of the objects and its lease object,
// one create transaction at a time, as apiserver creates objects.
func (w *k8sWorker) setup(ctx context.Context, n int) error {
	for range n {
		o := w.newObject()
		ok, rev, err := w.cas(ctx, o, clientv3.OpPut(o.key, w.value(o.size)))
		if err != nil {
			return fmt.Errorf("create %s: %w", o.key, err)
		}
		if !ok {
			return fmt.Errorf("create %s: the key exists already", o.key)
		}
		o.rev = rev
		w.live = append(w.live, o)
	}
	ok, rev, err := w.cas(ctx, w.lease, clientv3.OpPut(w.lease.key, w.value(w.lease.size)))
	if err != nil {
		return fmt.Errorf("create %s: %w", w.lease.key, err)
	}
	if !ok {
		return fmt.Errorf("create %s: the key exists already", w.lease.key)
	}
	w.lease.rev = rev
	return nil
}

// cas runs apiserver's write transaction on o: If(mod revision == o.rev)
// Then(then) Else(Get). On success it returns the new revision; on a failed
// compare, the current mod revision (0 if the key does not exist).
func (w *k8sWorker) cas(ctx context.Context, o k8sObject, then clientv3.Op) (ok bool, rev int64, err error) {
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := w.cli.Txn(rctx).
		If(clientv3.Compare(clientv3.ModRevision(o.key), "=", o.rev)).
		Then(then).
		Else(clientv3.OpGet(o.key)).
		Commit()
	if err != nil {
		return false, 0, err
	}
	if resp.Succeeded {
		return true, resp.Header.Revision, nil
	}
	if len(resp.Responses) == 1 {
		if r := resp.Responses[0].GetResponseRange(); r != nil && len(r.Kvs) > 0 {
			return false, r.Kvs[0].ModRevision, nil
		}
	}
	return false, 0, nil
}

// load runs operations until the window ends or ctx is done; the
// operation in flight at the end of the window completes (so that the
// worker knows whether its write happened) and is not counted.
func (w *k8sWorker) load(ctx context.Context) {
	sh := w.sh
	for ctx.Err() == nil {
		start := time.Now()
		if !start.Before(sh.win.end) {
			return
		}
		op := w.ops.next()
		if (op == opUpdate || op == opDelete || op == opGet) && len(w.live) == 0 {
			op = opCreate
		}
		err := w.do(ctx, op)
		end := time.Now()
		sh.done.Add(1)
		if err != nil {
			err = fmt.Errorf("%s: %w", op, err)
		}
		stopped := ctx.Err() != nil
		if w.tally[op].record(sh.win, start, end, err, stopped) && op == opList {
			w.listKeys += w.pageKeys
		}
		if err != nil && stopped {
			return
		}
	}
}

// do runs one operation.
func (w *k8sWorker) do(ctx context.Context, op k8sOp) error {
	switch op {
	case opCreate:
		o := w.newObject()
		return w.write(ctx, op, -1, o, clientv3.OpPut(o.key, w.value(o.size)))
	case opUpdate:
		i := w.pick.IntN(len(w.live))
		o := w.live[i]
		return w.write(ctx, op, i, o, clientv3.OpPut(o.key, w.value(o.size)))
	case opDelete:
		i := w.pick.IntN(len(w.live))
		o := w.live[i]
		return w.write(ctx, op, i, o, clientv3.OpDelete(o.key))
	case opLeaseUpdate:
		return w.write(ctx, op, -2, w.lease, clientv3.OpPut(w.lease.key, w.value(w.lease.size)))
	case opGet:
		return w.get(ctx, w.live[w.pick.IntN(len(w.live))])
	case opList:
		return w.listPage(ctx)
	}
	return fmt.Errorf("unknown op %d", op)
}

// write runs a compare-and-swap write on o, which is w.live[i] (i == -1: a
// new object; i == -2: the lease object), and updates the model.
func (w *k8sWorker) write(ctx context.Context, op k8sOp, i int, o k8sObject, then clientv3.Op) error {
	ok, rev, err := w.cas(ctx, o, then)
	if err != nil {
		// The write may or may not have happened: give the object up
		// (a lease starts over under a new key).
		switch {
		case i >= 0:
			w.removeLive(i)
		case i == -2:
			w.leaseGen++
			w.lease = k8sObject{key: k8sLeaseKey(w.id, w.leaseGen), res: o.res, size: o.size}
		}
		return err
	}
	if !ok {
		// Cannot happen while the worker alone writes its keys and
		// the server is right. Follow the server, as apiserver does.
		w.conflicts++
		if w.firstConf == "" {
			w.firstConf = fmt.Sprintf("%s %s: expected mod revision %d, the server has %d", op, o.key, o.rev, rev)
		}
		o.rev = rev
		switch {
		case i == -2:
			w.lease.rev = rev
		case i == -1 && rev != 0:
			w.live = append(w.live, o)
		case i >= 0 && rev == 0:
			w.removeLive(i)
		case i >= 0:
			w.live[i] = o
		}
		return nil
	}
	w.acked(o.res, rev)
	o.rev = rev
	switch {
	case op == opDelete:
		w.removeLive(i)
	case i == -2:
		w.lease = o
	case i == -1:
		w.live = append(w.live, o)
	default:
		w.live[i] = o
	}
	return nil
}

// acked records an acknowledged write at rev to prefix res.
func (w *k8sWorker) acked(res int, rev int64) {
	w.writes[res]++
	w.lastRev[res] = max(w.lastRev[res], rev)
	if i := rev - w.sh.startRev - 1; i >= 0 && i < int64(len(w.sh.ackAt)) {
		w.sh.ackAt[i].Store(time.Now().UnixNano())
	}
}

func (w *k8sWorker) removeLive(i int) {
	last := len(w.live) - 1
	w.live[i] = w.live[last]
	w.live = w.live[:last]
}

// get reads o linearizably and checks its mod revision.
func (w *k8sWorker) get(ctx context.Context, o k8sObject) error {
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := w.cli.Get(rctx, o.key)
	if err != nil {
		return err
	}
	var got int64
	if len(resp.Kvs) == 1 {
		got = resp.Kvs[0].ModRevision
	}
	if got != o.rev {
		w.mismatches++
		if w.firstMismatch == "" {
			w.firstMismatch = fmt.Sprintf("get %s: mod revision %d, last written at %d", o.key, got, o.rev)
		}
	}
	return nil
}

// listPage reads one page of a paginated list: the first page of a
// random resource at the current revision, or the next page of the list in
// progress at its first page's revision, as apiserver continues a list.
func (w *k8sWorker) listPage(ctx context.Context) error {
	s := w.sh.s
	if w.cursor == nil {
		w.cursor = newListPager(s.Resources[w.pick.IntN(len(s.Resources))], s.ListLimit)
	}
	n, _, err := w.cursor.page(ctx, w.cli)
	w.pageKeys = int64(n)
	if err != nil || w.cursor.done {
		w.cursor = nil
	}
	return err
}

// k8sWatch is the watch of one prefix. Its goroutine writes it; the
// coordinator reads the atomics, and the rest once the goroutine is done.
type k8sWatch struct {
	prefix   string
	last     atomic.Int64 // revision of the last event received
	events   atomic.Int64
	progress int64 // progress notifications
	// revs is the mod revision of every key under the prefix that exists,
	// as of the last event received: the setup's writes, then the events.
	revs map[string]int64
	// disorder counts events not after the previous one; badPrev counts
	// events whose previous value (WithPrevKV) is not the key's value as
	// of the watch's previous event on it, firstBadPrev describes the
	// first.
	disorder, badPrev int64
	firstBadPrev      string
	err               error
}

// checkPrev checks the previous value of ev against revs and updates revs.
// A create comes without a previous value; an update or a delete comes
// with the key's value at the revision of the watch's last event on it.
func (wt *k8sWatch) checkPrev(ev *clientv3.Event) {
	key, rev := string(ev.Kv.Key), ev.Kv.ModRevision
	want, exists := wt.revs[key]
	var bad string
	switch {
	case ev.IsCreate() && ev.PrevKv != nil:
		bad = fmt.Sprintf("create of %s at %d came with a previous value", key, rev)
	case ev.IsCreate():
	case ev.PrevKv == nil:
		bad = fmt.Sprintf("%s of %s at %d came without its previous value", strings.ToLower(ev.Type.String()), key, rev)
	case string(ev.PrevKv.Key) != key:
		bad = fmt.Sprintf("event on %s at %d came with the previous value of %s", key, rev, ev.PrevKv.Key)
	case !exists:
		bad = fmt.Sprintf("event on %s at %d came with a previous value at %d, but the key did not exist", key, rev, ev.PrevKv.ModRevision)
	case ev.PrevKv.ModRevision != want:
		bad = fmt.Sprintf("event on %s at %d came with a previous value at %d, the key's last write at %d", key, rev, ev.PrevKv.ModRevision, want)
	}
	if bad != "" {
		wt.badPrev++
		if wt.firstBadPrev == "" {
			wt.firstBadPrev = bad
		}
	}
	if ev.Type == mvccpb.DELETE {
		delete(wt.revs, key)
	} else {
		wt.revs[key] = rev
	}
}

func (wt *k8sWatch) consume(sh *k8sShared, wch clientv3.WatchChan) {
	last := sh.startRev
	for wr := range wch {
		if err := wr.Err(); err != nil {
			if wt.err == nil {
				wt.err = err
			}
			continue
		}
		if wr.IsProgressNotify() {
			wt.progress++
			continue
		}
		now := time.Now().UnixNano()
		for _, ev := range wr.Events {
			rev := ev.Kv.ModRevision
			if rev <= last {
				wt.disorder++
			}
			last = rev
			wt.checkPrev(ev)
			if i := rev - sh.startRev - 1; i >= 0 && i < int64(len(sh.seenAt)) {
				sh.seenAt[i].Store(now)
			}
		}
		wt.events.Add(int64(len(wr.Events)))
		wt.last.Store(last)
	}
}

// RunCluster implements harness.ClusterScenario.
func (s K8sMixed) RunCluster(ctx context.Context, kind proc.Kind, bin, dir string, serverArgs []string, run *report.Run, progress *harness.Progress) (err error) {
	c, err := startBenchCluster(ctx, kind, bin, dir, s.Members, serverArgs, progress)
	if err != nil {
		return err
	}
	defer c.stop(&err)
	// A member that dies ends the run at once, instead of leaving the
	// load to time out request after request.
	ctx, cancel := context.WithCancelCause(ctx)
	var watchdogs sync.WaitGroup
	defer func() {
		cancel(nil)
		watchdogs.Wait()
	}()
	for _, m := range c.Members {
		done := m.Done()
		watchdogs.Go(func() {
			select {
			case <-done:
				cancel(fmt.Errorf("%s %s exited during the run (server log: %s)", kind, m.Name, m.LogPath))
			case <-ctx.Done():
			}
		})
	}
	defer func() {
		if cause := context.Cause(ctx); err != nil && cause != nil && !errors.Is(cause, context.Canceled) {
			err = fmt.Errorf("%w: %v", err, cause)
		}
	}()

	mem := c.leaderMemoryLog()
	defer mem.finish(run, &err)
	if err := mem.begin(ctx); err != nil {
		return err
	}

	// The load's connections, then the watches' (to the leader).
	conns, err := c.dialSpread(s.Conns, c.leaderFirst())
	if err != nil {
		return err
	}
	defer closeAll(conns)
	c.addLeaderShare(run, s.Conns, false)
	watchCli, err := c.dial(c.leader.Endpoint)
	if err != nil {
		return fmt.Errorf("watch client: %w", err)
	}
	defer watchCli.Close()

	sh := &k8sShared{s: &s, prefixes: append(slices.Clone(s.Resources), K8sLeasePrefix)}
	var lat [numK8sOps]*latencies
	for op := range lat {
		lat[op] = &latencies{}
	}
	workers := make([]*k8sWorker, s.Clients)
	for i := range workers {
		workers[i] = newK8sWorker(sh, i, conns[i%s.Conns], &lat)
	}

	// Set up: every worker creates its objects, unmeasured.
	progress.Printf("creating %d objects under %d prefixes and %d lease objects", s.Objects, len(s.Resources), s.Clients)
	setupStart := time.Now()
	errs := make([]error, s.Clients)
	var wg sync.WaitGroup
	for i, w := range workers {
		wg.Go(func() { errs[i] = w.setup(ctx, k8sPartition(s.Objects, s.Clients, i)) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("set up: %w", err)
	}
	run.AddDuration("setup: objects created in", time.Since(setupStart))
	progress.Printf("set up in %v", time.Since(setupStart).Round(time.Millisecond))
	if err := mem.read(ctx, "after setup"); err != nil {
		return err
	}

	rctx, rcancel := context.WithTimeout(ctx, requestTimeout)
	resp, err := watchCli.Get(rctx, "/", clientv3.WithCountOnly())
	rcancel()
	if err != nil {
		return fmt.Errorf("read the start revision: %w", err)
	}
	sh.startRev = resp.Header.Revision
	sh.ackAt = make([]atomic.Int64, lagCapacity)
	sh.seenAt = make([]atomic.Int64, lagCapacity)

	// Watch every prefix from the start revision on, knowing the objects
	// the setup wrote.
	watches := make([]*k8sWatch, len(sh.prefixes))
	for i, p := range sh.prefixes {
		watches[i] = &k8sWatch{prefix: p, revs: map[string]int64{}}
		watches[i].last.Store(sh.startRev)
	}
	for _, w := range workers {
		for _, o := range w.live {
			watches[o.res].revs[o.key] = o.rev
		}
		watches[w.lease.res].revs[w.lease.key] = w.lease.rev
	}
	wctx, wcancel := context.WithCancel(ctx)
	var consumers sync.WaitGroup
	defer func() {
		wcancel()
		if !waitGroupTimeout(&consumers, drainTimeout) {
			progress.Printf("watch channels still open %v after cancelling them", drainTimeout)
		}
	}()
	for i, wt := range watches {
		wch := watchCli.Watch(wctx, sh.prefixes[i], clientv3.WithPrefix(), clientv3.WithRev(sh.startRev+1), clientv3.WithPrevKV(), clientv3.WithProgressNotify())
		consumers.Go(func() { wt.consume(sh, wch) })
	}

	// Load: warm-up, then the measured window.
	progress.Printf("load: %d clients over %d connections, %v warm-up then %v measured, mix %s", s.Clients, s.Conns, s.Warmup, s.Duration, s.Mix)
	sh.win = newWindow(time.Now(), s.Warmup, s.Duration)
	mem.startSampling()
	load := startLoad(ctx, len(workers), func(ctx context.Context, i int) { workers[i].load(ctx) })
	stopProgress := every(progressInterval, func() { progress.Printf("%d requests", sh.done.Load()) })
	cpu, err := measureLoad(ctx, c, sh.win, load, nil, progress)
	stopProgress()
	if err != nil {
		return err
	}
	loadEnd := time.Now()
	if err := mem.stopSampling(); err != nil {
		return err
	}

	// Watches: wait for the last acknowledged write to each prefix.
	target := make([]int64, len(sh.prefixes))
	writes := make([]int64, len(sh.prefixes))
	for _, w := range workers {
		for i := range target {
			target[i] = max(target[i], w.lastRev[i])
			writes[i] += w.writes[i]
		}
	}
	caughtUp, err := waitWatches(ctx, watches, target)
	if err != nil {
		return err
	}
	if caughtUp {
		run.AddMillis("watch catch-up after the load", time.Since(loadEnd))
	} else {
		run.AddMissing("watch catch-up after the load", report.Millis)
	}
	if err := mem.read(ctx, "after load"); err != nil {
		return err
	}
	wcancel()
	if !waitGroupTimeout(&consumers, drainTimeout) {
		return fmt.Errorf("watch channels still open %v after cancelling them", drainTimeout)
	}

	s.addFigures(run, sh, workers, &lat, watches, target, writes)
	if err := cpu.addTo(run, "in the measured window"); err != nil {
		return err
	}
	if err := c.addLeaderDataDirFigures(run, "at the end"); err != nil {
		return err
	}
	c.failIfExited(run)
	return nil
}

// waitWatches polls until every watch has delivered its target revision,
// for at most watchCatchUp, and reports whether they all did.
func waitWatches(ctx context.Context, watches []*k8sWatch, target []int64) (bool, error) {
	deadline := time.Now().Add(watchCatchUp)
	for {
		all := true
		for i, wt := range watches {
			all = all && wt.last.Load() >= target[i]
		}
		if all {
			return true, nil
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// addFigures records the figures of a finished load and fails the run
// where it did not meet the requirement.
func (s K8sMixed) addFigures(run *report.Run, sh *k8sShared, workers []*k8sWorker, lat *[numK8sOps]*latencies, watches []*k8sWatch, target, writes []int64) {
	var (
		ops                  [numK8sOps]windowTally
		total                windowTally
		conflicts            int64
		mismatches, listKeys int64
		firstConf, firstMism string
	)
	for _, w := range workers {
		for op := range numK8sOps {
			ops[op].add(&w.tally[op])
			total.add(&w.tally[op])
		}
		conflicts += w.conflicts
		mismatches += w.mismatches
		listKeys += w.listKeys
		if firstConf == "" {
			firstConf = w.firstConf
		}
		if firstMism == "" {
			firstMism = w.firstMismatch
		}
	}
	var all []time.Duration
	sorted := make([][]time.Duration, numK8sOps)
	for op := range numK8sOps {
		sorted[op] = lat[op].merge()
		all = append(all, sorted[op]...)
	}
	slices.Sort(all)
	win := sh.win
	run.Add("mixed throughput", report.Rate, win.rate(total.ok))
	addLatencyFigures(run, "mixed", all)
	run.Add("mixed requests ok", report.Count, float64(total.ok))
	run.Add("mixed requests failed", report.Count, float64(total.failed))
	for op := range numK8sOps {
		if s.Mix[op] == 0 {
			continue
		}
		name := k8sOp(op).String()
		run.Add(name+" throughput", report.Rate, win.rate(ops[op].ok))
		addLatencyFigures(run, name, sorted[op])
		run.Add(name+" requests ok", report.Count, float64(ops[op].ok))
		run.Add(name+" requests failed", report.Count, float64(ops[op].failed))
	}
	if s.Mix[opList] > 0 {
		run.Add("list keys returned throughput", report.Rate, win.rate(listKeys))
	}
	run.Add("compare conflicts", report.Count, float64(conflicts))
	run.Add("get mod revision mismatches", report.Count, float64(mismatches))
	if total.failed > 0 {
		run.Failf("%d requests failed during the load; the first: %v", total.failed, total.firstErr)
	}
	if conflicts > 0 {
		run.Failf("%d compare conflicts on keys only one client writes; the first: %s", conflicts, firstConf)
	}
	if mismatches > 0 {
		run.Failf("%d linearizable gets did not return the last acknowledged write; the first: %s", mismatches, firstMism)
	}
	allFails := total.failed

	// Watches.
	var events, expected, progressN int64
	for i, wt := range watches {
		n := wt.events.Load()
		events += n
		expected += writes[i]
		progressN += wt.progress
		switch {
		case wt.err != nil:
			run.Failf("watch of %s: %v", wt.prefix, wt.err)
		case wt.last.Load() < target[i]:
			run.Failf("watch of %s: last event at revision %d, the last write to it at %d, %v after the load", wt.prefix, wt.last.Load(), target[i], watchCatchUp)
		case allFails == 0 && n != writes[i]:
			// With no failed request, every write is known and
			// acknowledged: the events are exactly the writes.
			run.Failf("watch of %s: %d events for %d acknowledged writes", wt.prefix, n, writes[i])
		}
		if wt.disorder > 0 {
			run.Failf("watch of %s: %d events not after the previous one", wt.prefix, wt.disorder)
		}
		if wt.badPrev > 0 {
			run.Failf("watch of %s: %d events with a wrong previous value (WithPrevKV); the first: %s", wt.prefix, wt.badPrev, wt.firstBadPrev)
		}
	}
	run.Add("watch events delivered", report.Count, float64(events))
	run.Add("watch events expected (acknowledged writes)", report.Count, float64(expected))
	run.Add("watch progress notifications", report.Count, float64(progressN))
	var lags []time.Duration
	ws, we := win.start.UnixNano(), win.end.UnixNano()
	for i := range sh.ackAt {
		a, r := sh.ackAt[i].Load(), sh.seenAt[i].Load()
		if a < ws || a > we || r == 0 {
			continue
		}
		// The event can reach the watch before the response reaches
		// the writer; that is no lag.
		lags = append(lags, time.Duration(max(0, r-a)))
	}
	slices.Sort(lags)
	for _, p := range Percentiles {
		name := "watch lag " + p.Label
		if len(lags) == 0 {
			run.AddMissing(name, report.Millis)
			continue
		}
		run.AddMillis(name, percentile(lags, p.P))
	}
}
