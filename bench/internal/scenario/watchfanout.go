package scenario

import (
	"context"
	"errors"
	"fmt"
	"slices"
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

// WatchFanout puts Watchers watchers on one prefix, spread over Conns client
// connections, then has one writer put a key under the prefix every
// Interval for Duration, and waits until every watcher has received every
// event. The requirement: all events delivered, in order, to every watcher.
//
// The watchers of one connection share one gRPC watch stream, as the client
// library arranges for watches made with the same context. The writer has a
// connection of its own, so its puts do not queue behind watch traffic.
type WatchFanout struct {
	Watchers int
	Conns    int
	Duration time.Duration
	// Interval between two writes. The writes follow a fixed schedule
	// (write i is due at start + i*Interval), with up to Inflight puts
	// outstanding, so a slow put delays the schedule only when Inflight
	// puts are outstanding, and the schedule catches up afterwards.
	Interval  time.Duration
	Inflight  int
	ValueSize int
	Prefix    string
	// CreateTimeout bounds the wait for every watcher to be created.
	CreateTimeout time.Duration
	// DeliverTimeout bounds the wait, after the last write, for every
	// event to be delivered.
	DeliverTimeout time.Duration
}

// Name implements harness.Scenario.
func (WatchFanout) Name() string { return "watch-fanout" }

// Validate checks the parameters.
func (s WatchFanout) Validate() error {
	switch {
	case s.Watchers < 1 || s.Conns < 1 || s.Inflight < 1:
		return errors.New("-watchers, -conns and -inflight must be at least 1")
	case s.Interval <= 0 || s.Duration < s.Interval:
		return errors.New("-interval must be positive and -duration at least one interval")
	case s.ValueSize < 0:
		return errors.New("-value-size must not be negative")
	case s.Prefix == "":
		return errors.New("-prefix must not be empty")
	case s.CreateTimeout <= 0 || s.DeliverTimeout <= 0:
		return errors.New("-create-timeout and -deliver-timeout must be positive")
	}
	return nil
}

// fanoutWatcher is one watcher's view of the stream. The consuming goroutine
// writes it; the coordinator reads the atomics.
type fanoutWatcher struct {
	// last is the revision of the last event received, or the start
	// revision before any.
	last atomic.Int64
	// events counts the events received.
	events atomic.Int64
	// bad counts events that were not the next revision (a gap, a
	// duplicate or a reordering) or were not puts.
	bad atomic.Int64
	// done is set once, by whichever of the consumer and the coordinator
	// first sees last reach the target revision.
	done atomic.Bool
	// err is the first watch error (cancellation, compaction); guarded by
	// fanoutState.mu.
	err error
}

// fanoutState is shared by the watchers and the coordinator.
type fanoutState struct {
	watchers []fanoutWatcher

	created    atomic.Int64
	createdAll chan struct{} // closed when every watcher is created

	delivered atomic.Int64
	// responses counts the watch responses that carried events.
	responses atomic.Int64
	// target is the revision every watcher must reach; 0 until the last
	// write is acknowledged and the final revision is known.
	target  atomic.Int64
	nDone   atomic.Int64
	allDone chan struct{} // closed when every watcher reached target
	doneAt  atomic.Int64  // UnixNano when allDone closed

	mu      sync.Mutex
	nErrors int
	// failed is closed at the first watch error.
	failed chan struct{}
}

// recordError keeps w's first error and signals failed.
func (st *fanoutState) recordError(w *fanoutWatcher, err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if w.err != nil {
		return
	}
	w.err = err
	st.nErrors++
	if st.nErrors == 1 {
		close(st.failed)
	}
}

// markDone counts w as complete if it has reached the target. Both the
// consumer (after it stores last) and the coordinator (after it stores
// target) call it, so whichever acts second sees the other's store.
func (st *fanoutState) markDone(w *fanoutWatcher) {
	t := st.target.Load()
	if t == 0 || w.last.Load() < t || !w.done.CompareAndSwap(false, true) {
		return
	}
	if st.nDone.Add(1) == int64(len(st.watchers)) {
		st.doneAt.Store(time.Now().UnixNano())
		close(st.allDone)
	}
}

func (st *fanoutState) consume(w *fanoutWatcher, wch clientv3.WatchChan) {
	createdSeen := false
	last := w.last.Load()
	for wr := range wch {
		if wr.Created && !createdSeen {
			createdSeen = true
			if st.created.Add(1) == int64(len(st.watchers)) {
				close(st.createdAll)
			}
		}
		if err := wr.Err(); err != nil {
			st.recordError(w, err)
			continue
		}
		if len(wr.Events) == 0 {
			continue
		}
		var bad int64
		for _, ev := range wr.Events {
			if ev.Type != mvccpb.PUT || ev.Kv.ModRevision != last+1 {
				bad++
			}
			last = ev.Kv.ModRevision
		}
		if bad != 0 {
			w.bad.Add(bad)
		}
		w.events.Add(int64(len(wr.Events)))
		st.delivered.Add(int64(len(wr.Events)))
		st.responses.Add(1)
		w.last.Store(last)
		st.markDone(w)
	}
	if !createdSeen {
		st.recordError(w, errors.New("the watch channel closed before the server confirmed the watcher"))
	}
}

// Run implements harness.Scenario.
func (s WatchFanout) Run(ctx context.Context, srv *proc.Process, run *report.Run, progress *harness.Progress) (err error) {
	pid := srv.Pid()
	mem := newMemoryLog(srv)
	defer mem.finish(run, &err)
	if err := mem.begin(ctx); err != nil {
		return err
	}

	clients := make([]*clientv3.Client, s.Conns+1)
	defer closeAll(clients)
	for i := range clients {
		c, err := srv.Client()
		if err != nil {
			return fmt.Errorf("connect client %d: %w", i, err)
		}
		clients[i] = c
	}
	writer, watchClients := clients[0], clients[1:]

	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	resp, err := writer.Get(rctx, s.Prefix, clientv3.WithCountOnly())
	cancel()
	if err != nil {
		return fmt.Errorf("read the start revision: %w", err)
	}
	startRev := resp.Header.Revision

	// Create the watchers. Starting them at startRev+1 makes "every
	// event" exact even for a watcher whose creation a server delays.
	st := &fanoutState{
		watchers:   make([]fanoutWatcher, s.Watchers),
		createdAll: make(chan struct{}),
		allDone:    make(chan struct{}),
		failed:     make(chan struct{}),
	}
	wctx, wcancel := context.WithCancel(ctx)
	var consumers sync.WaitGroup
	defer func() {
		wcancel()
		if !waitGroupTimeout(&consumers, drainTimeout) {
			progress.Printf("watch channels still open %v after cancelling them", drainTimeout)
		}
	}()
	createStart := time.Now()
	progress.Printf("creating %d watchers on %q over %d connections", s.Watchers, s.Prefix, s.Conns)
	for i := range st.watchers {
		w := &st.watchers[i]
		w.last.Store(startRev)
		wch := watchClients[i%s.Conns].Watch(wctx, s.Prefix, clientv3.WithPrefix(), clientv3.WithRev(startRev+1), clientv3.WithCreatedNotify())
		consumers.Go(func() { st.consume(w, wch) })
	}
	if err := s.waitCreated(ctx, st, progress); err != nil {
		return err
	}
	run.AddDuration("watchers created in", time.Since(createStart))
	progress.Printf("%d watchers created in %v", s.Watchers, time.Since(createStart).Round(time.Millisecond))
	if err := mem.read(ctx, "with watchers, before writes"); err != nil {
		return err
	}

	// Write.
	mem.startSampling()
	cpu, err := startCPU(pid)
	if err != nil {
		return err
	}
	w := s.write(ctx, pid, writer, st, progress)
	run.Add("writes planned", report.Count, float64(w.planned))
	run.Add("writes done", report.Count, float64(w.ok))
	run.Add("write errors", report.Count, float64(w.failed))
	if w.ok > 0 {
		run.Add("write rate", report.Rate, float64(w.ok)/w.lastAck.Sub(w.start).Seconds())
		run.AddDuration("write schedule overrun", max(0, w.lastAck.Sub(w.start)-s.Duration))
		run.AddMillis("put latency p50", percentile(w.latencies, 0.50))
		run.AddMillis("put latency p99", percentile(w.latencies, 0.99))
		run.AddMillis("put latency max", percentile(w.latencies, 1))
	}
	if w.failed > 0 && ctx.Err() == nil {
		run.Failf("%d of %d puts failed; first error: %v", w.failed, w.planned, w.firstErr)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}

	// The final revision fixes what every watcher must receive: nothing
	// but the writer writes, so it is every revision after startRev.
	rctx, cancel = context.WithTimeout(ctx, requestTimeout)
	resp, err = writer.Get(rctx, s.Prefix, clientv3.WithCountOnly())
	cancel()
	if err != nil {
		return fmt.Errorf("read the final revision: %w", err)
	}
	finalRev := resp.Header.Revision
	perWatcher := finalRev - startRev
	if perWatcher != w.ok {
		run.Failf("the revision advanced by %d during the writes but %d puts succeeded", perWatcher, w.ok)
	}
	expected := perWatcher * int64(s.Watchers)
	run.Add("events expected", report.Count, float64(expected))

	// Wait for delivery.
	st.target.Store(finalRev)
	for i := range st.watchers {
		st.markDone(&st.watchers[i])
	}
	delivered := s.waitDelivered(ctx, pid, st, expected, w.lastAck, progress)
	if err := mem.stopSampling(); err != nil {
		return err
	}
	cpuUsed := cpu.stop()

	run.Add("events delivered", report.Count, float64(st.delivered.Load()))
	run.AddBool("all events delivered", delivered)
	run.Add("watch responses carrying events", report.Count, float64(st.responses.Load()))
	var bad int64
	for i := range st.watchers {
		bad += st.watchers[i].bad.Load()
	}
	run.Add("events out of order, duplicated or after a gap", report.Count, float64(bad))
	st.mu.Lock()
	nErrors := st.nErrors
	var firstWatchErr error
	for i := range st.watchers {
		if st.watchers[i].err != nil {
			firstWatchErr = st.watchers[i].err
			break
		}
	}
	st.mu.Unlock()
	run.Add("watchers that got an error", report.Count, float64(nErrors))
	if delivered {
		doneAt := time.Unix(0, st.doneAt.Load())
		run.AddDuration("delivery time after the last write", max(0, doneAt.Sub(w.lastAck)))
		run.Add("delivery rate (first write to last delivery)", report.Rate, float64(expected)/doneAt.Sub(w.start).Seconds())
	} else {
		run.AddMissing("delivery time after the last write", report.Seconds)
		run.AddMissing("delivery rate (first write to last delivery)", report.Rate)
		run.Failf("%d of %d events delivered (%d of %d watchers complete) %v after the last write",
			st.delivered.Load(), expected, st.nDone.Load(), s.Watchers, time.Since(w.lastAck).Round(time.Millisecond))
	}
	if bad != 0 {
		run.Failf("%d events arrived out of order, twice or after a gap", bad)
	}
	if nErrors != 0 {
		run.Failf("%d watchers got an error; first: %v", nErrors, firstWatchErr)
	}
	if err := cpuUsed.addTo(run, "from first write to last delivery"); err != nil {
		return err
	}
	return mem.read(ctx, "after delivery")
}

func (s WatchFanout) waitCreated(ctx context.Context, st *fanoutState, progress *harness.Progress) error {
	deadline := time.NewTimer(s.CreateTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(progressInterval)
	defer tick.Stop()
	for {
		select {
		case <-st.createdAll:
			return nil
		case <-st.failed:
			st.mu.Lock()
			defer st.mu.Unlock()
			for i := range st.watchers {
				if err := st.watchers[i].err; err != nil {
					return fmt.Errorf("%d of %d watchers created, then a watch failed: %w", st.created.Load(), s.Watchers, err)
				}
			}
			return errors.New("a watch failed")
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("%d of %d watchers created after %v", st.created.Load(), s.Watchers, s.CreateTimeout)
		case <-tick.C:
			progress.Printf("%d of %d watchers created", st.created.Load(), s.Watchers)
		}
	}
}

// writeResult describes the write phase.
type writeResult struct {
	planned, ok, failed int64
	firstErr            error
	start, lastAck      time.Time
	// latencies of the successful puts, sorted.
	latencies []time.Duration
}

func (s WatchFanout) write(ctx context.Context, pid int, cli *clientv3.Client, st *fanoutState, progress *harness.Progress) writeResult {
	n := int64(s.Duration / s.Interval)
	value := strings.Repeat("v", s.ValueSize)
	res := writeResult{planned: n}
	var (
		mu      sync.Mutex
		puts    sync.WaitGroup
		ok      atomic.Int64
		lastAck time.Time
	)
	sem := make(chan struct{}, s.Inflight)
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	lastProgress := time.Now()
	res.start = time.Now()
	progress.Printf("writing %d keys, one every %v", n, s.Interval)
schedule:
	for i := range n {
		if d := time.Until(res.start.Add(time.Duration(i) * s.Interval)); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
				break schedule
			}
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break schedule
		}
		key := fmt.Sprintf("%s%08d", s.Prefix, i)
		puts.Go(func() {
			defer func() { <-sem }()
			pctx, cancel := context.WithTimeout(ctx, requestTimeout)
			sent := time.Now()
			_, err := cli.Put(pctx, key, value)
			cancel()
			now := time.Now()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.failed++
				if res.firstErr == nil {
					res.firstErr = err
				}
				return
			}
			ok.Add(1)
			res.latencies = append(res.latencies, now.Sub(sent))
			if now.After(lastAck) {
				lastAck = now
			}
		})
		if time.Since(lastProgress) >= progressInterval {
			lastProgress = time.Now()
			m, _ := proc.ReadMemory(pid)
			progress.Printf("writes %d/%d acknowledged, events delivered %d, server RSS %s", ok.Load(), n, st.delivered.Load(), mib(m.RSS))
		}
	}
	puts.Wait()
	slices.Sort(res.latencies)
	res.ok = ok.Load()
	res.lastAck = lastAck
	if res.ok == 0 {
		res.lastAck = time.Now()
	}
	progress.Printf("writes done: %d ok, %d failed, in %v", res.ok, res.failed, res.lastAck.Sub(res.start).Round(time.Millisecond))
	return res
}

// waitDelivered waits until every watcher has reached the target revision,
// for at most DeliverTimeout after the last write.
func (s WatchFanout) waitDelivered(ctx context.Context, pid int, st *fanoutState, expected int64, lastWrite time.Time, progress *harness.Progress) bool {
	deadline := time.NewTimer(time.Until(lastWrite.Add(s.DeliverTimeout)))
	defer deadline.Stop()
	tick := time.NewTicker(progressInterval)
	defer tick.Stop()
	for {
		select {
		case <-st.allDone:
			progress.Printf("all %d events delivered %v after the last write", expected,
				time.Unix(0, st.doneAt.Load()).Sub(lastWrite).Round(time.Millisecond))
			return true
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return false
		case <-tick.C:
			m, _ := proc.ReadMemory(pid)
			progress.Printf("events delivered %d/%d (%.1f%%), watchers complete %d/%d, server RSS %s",
				st.delivered.Load(), expected, 100*float64(st.delivered.Load())/float64(max(expected, 1)), st.nDone.Load(), s.Watchers, mib(m.RSS))
		}
	}
}
