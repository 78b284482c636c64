package scenario

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keeldb/keel/bench/internal/harness"
	"github.com/keeldb/keel/bench/internal/proc"
	"github.com/keeldb/keel/bench/internal/report"
)

// Defrag measures what a Maintenance.Defragment does to a write load. Each
// run starts a fresh cluster of Members members (started like put's) and
// makes space to reclaim: it writes Keys keys of ValueSize random bytes,
// PrefillBatch puts per txn, deletes every other one of them (DeleteBatch
// deletes per txn, so the freed space is spread over the whole database),
// and compacts the key space at the current revision, waiting until the
// compaction is physically done. Then Clients goroutines over Conns
// connections put keys (LoadKeySpace of them, LoadValueSize bytes) without
// pause, one request at a time each, and every request's completion time,
// latency and error is recorded. After Warmup comes the "before" window
// (Before long); then the leader is sent Maintenance.Defragment and the
// "during" window lasts from the call until it returns; the "after"
// window (After long) follows, and the load stops.
//
// A request belongs to the window in which it completes, except that every
// request in flight at some moment of the defragmentation belongs to
// "during" (see tallyDefrag). Requirement: no
// request failed, anywhere (warm-up included), and the defragmentation
// succeeded. The latency during the defragmentation is reported, as is its
// ratio to the latency before, but it is not a requirement: etcd's
// defragmentation stops writes until it is done.
type Defrag struct {
	Members      int
	Keys         int
	ValueSize    int
	PrefillBatch int
	DeleteBatch  int
	// SkipDelete keeps every prefilled key (nothing to reclaim but the
	// compacted history of the load's own writes).
	SkipDelete bool

	Clients int
	Conns   int
	// Rate, when positive, paces the load: Rate puts a second in all,
	// each due at a fixed time and taken by the next free client, its
	// latency counted from when it was due (so a stalled server is charged
	// for the requests it kept waiting). Zero: closed loop, every client
	// puts again as soon as its last put returns.
	Rate          int
	LoadKeySpace  int
	LoadValueSize int
	Warmup        time.Duration
	Before        time.Duration
	After         time.Duration
	// DefragTimeout bounds the Defragment call.
	DefragTimeout time.Duration
	// CPUProfile, when positive, saves two CPU profiles of the leader of
	// that length: the last CPUProfile of the before window to
	// <run dir>/cpu-before.pprof and the first CPUProfile from the
	// Defragment call to <run dir>/cpu-defrag.pprof (the members start with
	// --enable-pprof).
	CPUProfile time.Duration
}

// Name implements harness.Named.
func (Defrag) Name() string { return "defrag" }

// Validate checks the parameters.
func (s Defrag) Validate() error {
	switch {
	case s.Members < 1:
		return errors.New("-members must be at least 1")
	case s.Keys < 0:
		return errors.New("-keys must not be negative")
	case s.ValueSize < 0 || s.LoadValueSize < 0:
		return errors.New("-val-size and -load-val-size must not be negative")
	case s.PrefillBatch < 1 || s.DeleteBatch < 1:
		return errors.New("-prefill-batch and -delete-batch must be at least 1")
	case s.Conns < 1 || s.Clients < s.Conns:
		return errors.New("-conns must be at least 1 and -clients at least -conns")
	case s.LoadKeySpace < 1:
		return errors.New("-load-key-space must be at least 1")
	case s.Rate < 0:
		return errors.New("-rate must not be negative")
	case s.Warmup < 0 || s.Before <= 0 || s.After <= 0:
		return errors.New("-warmup must not be negative, -before and -after must be positive")
	case s.DefragTimeout <= 0:
		return errors.New("-defrag-timeout must be positive")
	case s.CPUProfile < 0 || s.CPUProfile > s.Before || s.CPUProfile%time.Second != 0:
		return errors.New("-cpuprofile must be whole seconds, at most -before")
	}
	return nil
}

// Keys of the scenario: the prefilled ones, half of them deleted, and the
// ones the load writes. Both are zero-padded so they sort by number.
func defragFillKey(i int) string { return fmt.Sprintf("defrag/fill/%09d", i) }
func defragLoadKey(n uint64) string {
	return fmt.Sprintf("defrag/load/%09d", n)
}

// defragWindows are the names of the windows of a defrag run, in order;
// the figures are "put <window> ...".
var defragWindows = []string{"before defrag", "during defrag", "after defrag"}

// defragSample is one request of the load: when it completed, how long it
// took (so it was sent at done-lat) and its error.
type defragSample struct {
	done time.Time
	lat  time.Duration
	err  error
}

// defragTally sorts the samples of a load into the windows bounded by
// bounds (len(windows)+1 instants: window i is [bounds[i], bounds[i+1])).
// A request belongs to the window in which it completed, except that one
// in flight at any moment of the middle window (the defragmentation)
// belongs to it: a put that a stalled server holds until the end of the
// defragmentation completes just after the Defragment call returns, and
// must count as delayed by it. A sample outside every window counts only
// if it failed.
type defragTally struct {
	ok      []int64
	failed  []int64
	lats    [][]time.Duration
	outside int64 // failed requests outside every window (warm-up, tail)
	total   int64 // failed requests anywhere
	first   error
}

func tallyDefrag(samples [][]defragSample, bounds []time.Time) defragTally {
	n := len(bounds) - 1
	t := defragTally{ok: make([]int64, n), failed: make([]int64, n), lats: make([][]time.Duration, n)}
	for _, shard := range samples {
		for _, s := range shard {
			w := -1
			for i := range n {
				if !s.done.Before(bounds[i]) && s.done.Before(bounds[i+1]) {
					w = i
					break
				}
			}
			if mid := n / 2; n%2 == 1 && s.done.Add(-s.lat).Before(bounds[mid+1]) && !s.done.Before(bounds[mid]) {
				w = mid // in flight during the middle window
			}
			switch {
			case s.err != nil:
				t.total++
				if t.first == nil {
					t.first = s.err
				}
				if w < 0 {
					t.outside++
				} else {
					t.failed[w]++
				}
			case w >= 0:
				t.ok[w]++
				t.lats[w] = append(t.lats[w], s.lat)
			}
		}
	}
	for i := range t.lats {
		slices.Sort(t.lats[i])
	}
	return t
}

// RunCluster implements harness.ClusterScenario.
func (s Defrag) RunCluster(ctx context.Context, kind proc.Kind, bin, dir string, serverArgs []string, run *report.Run, progress *harness.Progress) (err error) {
	args := slices.Clone(serverArgs)
	if s.CPUProfile > 0 {
		args = append(args, "--enable-pprof")
	}
	c, err := startBenchCluster(ctx, kind, bin, dir, s.Members, args, progress)
	if err != nil {
		return err
	}
	defer c.stop(&err)
	leader := c.leader

	mem := c.leaderMemoryLog()
	defer mem.finish(run, &err)
	if err := mem.begin(ctx); err != nil {
		return err
	}
	clis, err := c.dialSpread(s.Conns, c.leaderFirst())
	if err != nil {
		return err
	}
	defer closeAll(clis)
	admin, err := c.dial(leader.Endpoint)
	if err != nil {
		return err
	}
	defer admin.Close()

	if err := s.makeGarbage(ctx, clis, admin, run, progress); err != nil {
		return err
	}
	if err := mem.read(ctx, "before the load"); err != nil {
		return err
	}
	before, err := dbStatus(ctx, admin, leader.Endpoint)
	if err != nil {
		return err
	}
	run.Add("db size before defrag", report.Bytes, float64(before.DbSize))
	run.Add("db size in use before defrag", report.Bytes, float64(before.DbSizeInUse))
	if err := c.addLeaderDataDirFigures(run, "before defrag"); err != nil {
		return err
	}
	progress.Printf("db size %s, in use %s", mib(before.DbSize), mib(before.DbSizeInUse))

	// The load: every worker puts until stopped, recording every request.
	var (
		seq     atomic.Uint64
		samples = make([][]defragSample, s.Clients)
		space   = uint64(s.LoadKeySpace)
	)
	lctx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	mem.startSampling()
	t0 := time.Now()
	var due *pacer
	if s.Rate > 0 {
		due = startPacer(lctx, s.Rate, t0)
	}
	load := startLoad(lctx, s.Clients, func(ctx context.Context, i int) {
		cli := clis[i%len(clis)]
		values := newValueGen(kvValueSeed, uint64(i))
		shard := make([]defragSample, 0, 4096)
		defer func() { samples[i] = shard }()
		for ctx.Err() == nil {
			sent := time.Now()
			if due != nil {
				var ok bool
				if sent, ok = due.next(ctx); !ok {
					return
				}
			}
			n := seq.Add(1) - 1
			rctx, cancel := context.WithTimeout(ctx, requestTimeout)
			_, err := cli.Put(rctx, defragLoadKey(n%space), values.value(s.LoadValueSize))
			done := time.Now()
			cancel()
			if err != nil && ctx.Err() != nil {
				return // stopped, not failed
			}
			shard = append(shard, defragSample{done: done, lat: done.Sub(sent), err: err})
		}
	})
	progress.Printf("put: %d clients on %d connections, warm-up %v, before %v, defrag, after %v", s.Clients, s.Conns, s.Warmup, s.Before, s.After)

	stopEarly := func(err error) error {
		stopLoad()
		if serr := load.stop(); serr != nil {
			progress.Printf("%v", serr)
		}
		return err
	}
	beforeStart := t0.Add(s.Warmup)
	defragStart := beforeStart.Add(s.Before)
	profile := func(name string) <-chan profileResult {
		r := make(chan profileResult, 1)
		secs := int(s.CPUProfile / time.Second)
		go func() {
			r <- fetchProfile(ctx, c.HTTPClient(), fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", leader.Endpoint, secs), filepath.Join(dir, name), s.CPUProfile+requestTimeout)
		}()
		return r
	}
	var profBefore, profDefrag <-chan profileResult
	if s.CPUProfile > 0 {
		if err := waitUntil(ctx, defragStart.Add(-s.CPUProfile), load.done); err != nil {
			return stopEarly(err)
		}
		profBefore = profile("cpu-before.pprof")
	}
	if err := waitUntil(ctx, defragStart, load.done); err != nil {
		return stopEarly(err)
	}
	if profBefore != nil {
		// The profile ends with the window; wait for it, so the two do not
		// overlap (the server serves one CPU profile at a time).
		progress.Printf("CPU profile before the defrag: %s", <-profBefore)
		profDefrag = profile("cpu-defrag.pprof")
	}
	meter, err := startCPU(leader.Pid())
	if err != nil {
		return stopEarly(err)
	}
	progress.Printf("defragmenting %s", leader.Name)
	dctx, cancel := context.WithTimeout(ctx, s.DefragTimeout)
	defragStart = time.Now()
	_, derr := admin.Defragment(dctx, leader.Endpoint)
	defragEnd := time.Now()
	cancel()
	used := meter.stop()
	took := defragEnd.Sub(defragStart)
	progress.Printf("defragment returned after %v: %v", took.Round(time.Millisecond), derr)
	if derr != nil {
		run.Failf("Maintenance.Defragment of %s failed after %v: %v", leader.Name, took.Round(time.Millisecond), derr)
	}
	afterEnd := defragEnd.Add(s.After)
	if err := waitUntil(ctx, afterEnd, load.done); err != nil {
		return stopEarly(err)
	}
	stopLoad()
	if err := load.stop(); err != nil {
		return err
	}
	if due != nil {
		run.Add("put target rate", report.Rate, float64(s.Rate))
		if d := due.dropped.Load(); d > 0 {
			run.Failf("%d paced puts were never sent: %d s of them waited for a free client", d, pacerBacklog)
		}
	}
	if profDefrag != nil {
		progress.Printf("CPU profile from the defrag call: %s", <-profDefrag)
	}
	if err := mem.stopSampling(); err != nil {
		return err
	}

	bounds := []time.Time{beforeStart, defragStart, defragEnd, afterEnd}
	t := tallyDefrag(samples, bounds)
	run.AddDuration("defrag duration", took)
	for i, w := range defragWindows {
		span := bounds[i+1].Sub(bounds[i])
		op := "put " + w
		rate := 0.0
		if span > 0 {
			rate = float64(t.ok[i]) / span.Seconds()
		}
		run.Add(op+" throughput", report.Rate, rate)
		addLatencyFigures(run, op, t.lats[i])
		run.Add(op+" requests ok", report.Count, float64(t.ok[i]))
		run.Add(op+" requests failed", report.Count, float64(t.failed[i]))
		progress.Printf("%s: %d ok in %v (%.0f/s), p50 %v, p99 %v, max %v, %d failed", op, t.ok[i], span.Round(time.Millisecond), rate,
			percentile(t.lats[i], 0.5).Round(time.Microsecond), percentile(t.lats[i], 0.99).Round(time.Microsecond), percentile(t.lats[i], 1).Round(time.Microsecond), t.failed[i])
	}
	run.Add("put requests failed outside the windows", report.Count, float64(t.outside))
	if t.total > 0 {
		run.Failf("%d put requests failed; the first: %v", t.total, t.first)
	}
	p99b, p99d := percentile(t.lats[0], 0.99), percentile(t.lats[1], 0.99)
	if len(t.lats[0]) > 0 && len(t.lats[1]) > 0 && p99b > 0 {
		r := float64(p99d) / float64(p99b)
		run.Add("p99 during defrag / p99 before", report.Count, r)
		run.Add("max during defrag / p99 before", report.Count, float64(percentile(t.lats[1], 1))/float64(p99b))
		run.AddBool("p99 during defrag within 2x of before", r <= 2)
	} else {
		run.AddMissing("p99 during defrag / p99 before", report.Count)
		run.AddMissing("max during defrag / p99 before", report.Count)
		run.AddMissing("p99 during defrag within 2x of before", report.Bool)
	}
	if err := used.addTo(run, "during defrag"); err != nil {
		return err
	}

	after, err := dbStatus(ctx, admin, leader.Endpoint)
	if err != nil {
		return err
	}
	run.Add("db size after defrag", report.Bytes, float64(after.DbSize))
	run.Add("db size in use after defrag", report.Bytes, float64(after.DbSizeInUse))
	progress.Printf("db size %s, in use %s", mib(after.DbSize), mib(after.DbSizeInUse))
	if err := c.addLeaderDataDirFigures(run, "after defrag"); err != nil {
		return err
	}
	c.failIfExited(run)
	return mem.read(ctx, "after load")
}

// dbStatus asks endpoint for its status.
func dbStatus(ctx context.Context, cli *clientv3.Client, endpoint string) (*clientv3.StatusResponse, error) {
	sctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	st, err := cli.Status(sctx, endpoint)
	if err != nil {
		return nil, fmt.Errorf("status of %s: %w", endpoint, err)
	}
	return st, nil
}

// makeGarbage prefills the keys, deletes every other one and compacts, so
// that the database holds space a defragmentation can reclaim. It is not
// part of the comparison but is reported (prefill time).
func (s Defrag) makeGarbage(ctx context.Context, clis []*clientv3.Client, admin *clientv3.Client, run *report.Run, progress *harness.Progress) error {
	const inflight = 16
	start := time.Now()
	progress.Printf("prefilling %d keys of %d bytes, %d per txn", s.Keys, s.ValueSize, s.PrefillBatch)
	pctx, cancel := context.WithTimeout(ctx, loadTimeout(s.Keys))
	defer cancel()
	values := make([]*valueGen, inflight)
	for g := range values {
		values[g] = newValueGen(kvValueSeed+1, uint64(g))
	}
	batches := (s.Keys + s.PrefillBatch - 1) / s.PrefillBatch
	if _, err := runPool(pctx, batches, inflight, func(ctx context.Context, g, b int) error {
		var ops []clientv3.Op
		for i := b * s.PrefillBatch; i < min(s.Keys, (b+1)*s.PrefillBatch); i++ {
			ops = append(ops, clientv3.OpPut(defragFillKey(i), values[g].value(s.ValueSize)))
		}
		rctx, rcancel := context.WithTimeout(ctx, requestTimeout)
		defer rcancel()
		if _, err := clis[g%len(clis)].Txn(rctx).Then(ops...).Commit(); err != nil {
			return fmt.Errorf("prefill batch %d: %w", b, err)
		}
		return nil
	}); err != nil {
		return err
	}
	run.AddDuration("prefill time", time.Since(start))
	progress.Printf("prefilled in %v", time.Since(start).Round(time.Millisecond))

	if !s.SkipDelete {
		start = time.Now()
		odd := s.Keys / 2 // keys 1, 3, 5, ...
		batches = (odd + s.DeleteBatch - 1) / s.DeleteBatch
		if _, err := runPool(pctx, batches, inflight, func(ctx context.Context, g, b int) error {
			var ops []clientv3.Op
			for j := b * s.DeleteBatch; j < min(odd, (b+1)*s.DeleteBatch); j++ {
				ops = append(ops, clientv3.OpDelete(defragFillKey(2*j+1)))
			}
			rctx, rcancel := context.WithTimeout(ctx, requestTimeout)
			defer rcancel()
			if _, err := clis[g%len(clis)].Txn(rctx).Then(ops...).Commit(); err != nil {
				return fmt.Errorf("delete batch %d: %w", b, err)
			}
			return nil
		}); err != nil {
			return err
		}
		progress.Printf("deleted %d keys in %v", odd, time.Since(start).Round(time.Millisecond))
	}

	start = time.Now()
	rctx, rcancel := context.WithTimeout(ctx, loadTimeout(s.Keys))
	defer rcancel()
	resp, err := admin.Get(rctx, "defrag/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return fmt.Errorf("count the keys: %w", err)
	}
	if want := int64(s.Keys - s.Keys/2); !s.SkipDelete && resp.Count != want {
		return fmt.Errorf("%d keys after deleting half, want %d", resp.Count, want)
	}
	if _, err := admin.Compact(rctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		return fmt.Errorf("compact at revision %d: %w", resp.Header.Revision, err)
	}
	run.AddDuration("compaction time", time.Since(start))
	progress.Printf("compacted at revision %d in %v", resp.Header.Revision, time.Since(start).Round(time.Millisecond))
	return nil
}
