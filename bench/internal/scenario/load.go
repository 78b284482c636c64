package scenario

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keeldb/keel/bench/internal/harness"
)

// window is the measured span of a load: [start, end).
type window struct{ start, end time.Time }

// newWindow is the window of a load started at t0: warmup, then d.
func newWindow(t0 time.Time, warmup, d time.Duration) window {
	return window{start: t0.Add(warmup), end: t0.Add(warmup + d)}
}

// contains reports whether t falls within the window.
func (w window) contains(t time.Time) bool { return !t.Before(w.start) && t.Before(w.end) }

// rate is n events per second of the window.
func (w window) rate(n int64) float64 { return float64(n) / w.end.Sub(w.start).Seconds() }

// windowTally counts one worker's requests (of one kind) by the rule every
// load scenario shares:
//   - a request that succeeds counts as ok, with its latency, when it
//     completes inside the window; one that completes in the warm-up or
//     after the end is not counted;
//   - a request that fails counts as failed wherever it falls, warm-up
//     included: a failure anywhere makes the run unsound;
//   - a request cut short because the load was stopped counts not at all.
//
// Only the worker's goroutine uses it until the load has stopped.
type windowTally struct {
	lat        *latencyShard
	ok, failed int64
	firstErr   error
}

// record tallies one request sent at sent that completed at done with err.
// stopped says the load was stopped before the request completed: its
// error is the stop's, not the server's. It reports whether the request
// counted as ok.
func (t *windowTally) record(win window, sent, done time.Time, err error, stopped bool) bool {
	switch {
	case err != nil && stopped:
	case err != nil:
		t.failed++
		if t.firstErr == nil {
			t.firstErr = err
		}
	case win.contains(done):
		t.ok++
		if t.lat != nil {
			t.lat.add(done.Sub(sent))
		}
		return true
	}
	return false
}

// add adds o's counts to t and keeps t's first error, or else o's.
func (t *windowTally) add(o *windowTally) {
	t.ok += o.ok
	t.failed += o.failed
	if t.firstErr == nil {
		t.firstErr = o.firstErr
	}
}

// loadGroup is the workers of a load. done is closed once every worker
// has returned.
type loadGroup struct {
	cancel context.CancelFunc
	done   <-chan struct{}
}

// startLoad runs work(ctx, i) for i in [0, n), each on its own goroutine.
// A worker returns by itself when its load is over, or soon after ctx is
// done.
func startLoad(ctx context.Context, n int, work func(ctx context.Context, i int)) *loadGroup {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { work(ctx, i) })
	}
	return &loadGroup{cancel: cancel, done: waitDone(&wg)}
}

// wait lets the workers finish their last requests and return by
// themselves, for at most requestTimeout (each request's bound), then
// stops them. It fails if they have not returned drainTimeout later.
func (g *loadGroup) wait() error {
	select {
	case <-g.done:
		g.cancel()
		return nil
	case <-time.After(requestTimeout):
	}
	return g.stop()
}

// stop cancels the workers and waits for them at most drainTimeout.
func (g *loadGroup) stop() error {
	g.cancel()
	select {
	case <-g.done:
		return nil
	case <-time.After(drainTimeout):
		return fmt.Errorf("the load's workers did not stop within %v", drainTimeout)
	}
}

// errLoadStoppedEarly says the workers of a load returned before its
// window ended.
var errLoadStoppedEarly = errors.New("the clients stopped before the end of the load")

// waitUntil waits until t. It fails with ctx's error when ctx is done
// first, and with errLoadStoppedEarly when loadDone is closed first (a nil
// loadDone is never closed).
func waitUntil(ctx context.Context, t time.Time, loadDone <-chan struct{}) error {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-loadDone:
		// The workers stop at the end of the window, so they may be
		// done just as the timer fires.
		if !time.Now().Before(t) {
			return nil
		}
		return errLoadStoppedEarly
	}
}

// measureLoad measures load's window with measureWindow and then lets the
// load finish (loadGroup.wait); when the window cannot be measured it
// stops the load instead and returns why.
func measureLoad(ctx context.Context, c *benchCluster, win window, load *loadGroup, atStart func(), progress *harness.Progress) (clusterCPUUse, error) {
	used, err := measureWindow(ctx, c, win, load.done, atStart)
	if err != nil {
		if serr := load.stop(); serr != nil {
			progress.Printf("%v", serr)
		}
		return clusterCPUUse{}, err
	}
	return used, load.wait()
}

// measureWindow waits for the window of a load the caller has started and
// returns the CPU the cluster used over it: it waits until win.start,
// starts the meters, calls atStart (if set), waits until win.end and reads
// them. loadDone is the load's done channel (see waitUntil).
func measureWindow(ctx context.Context, c *benchCluster, win window, loadDone <-chan struct{}, atStart func()) (clusterCPUUse, error) {
	if err := waitUntil(ctx, win.start, loadDone); err != nil {
		return clusterCPUUse{}, err
	}
	meter, err := c.startCPU()
	if err != nil {
		return clusterCPUUse{}, err
	}
	if atStart != nil {
		atStart()
	}
	if err := waitUntil(ctx, win.end, loadDone); err != nil {
		return clusterCPUUse{}, err
	}
	return meter.stop(), nil
}

// every calls f every interval, on its own goroutine, until the returned
// stop is called; stop waits for a call in progress to return.
func every(interval time.Duration, f func()) (stop func()) {
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				f()
			}
		}
	})
	return func() {
		close(quit)
		wg.Wait()
	}
}

// runPool calls do(ctx, g, i) for every i in [0, n) from workers
// goroutines, each call on goroutine g (0 <= g < workers) so that do can
// keep per-goroutine state in a slice indexed by g. The first call to fail
// cancels the others; a call that fails after that, or after ctx is done,
// is not counted as a failure. Every call must return soon after its ctx
// is done.
//
// runPool returns how many calls failed and the first failure, or ctx's
// error if ctx ended the pool first, or nil when every call succeeded. It
// also fails if the goroutines do not return within requestTimeout plus
// drainTimeout of the pool's cancellation.
func runPool(ctx context.Context, n, workers int, do func(ctx context.Context, g, i int) error) (failures int64, err error) {
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next     atomic.Int64
		failed   atomic.Int64
		once     sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	for g := range min(workers, n) {
		wg.Go(func() {
			for pctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := do(pctx, g, i); err != nil {
					if pctx.Err() != nil {
						return // stopped by another call's failure or by ctx
					}
					failed.Add(1)
					once.Do(func() {
						firstErr = err
						cancel()
					})
					return
				}
			}
		})
	}
	done := waitDone(&wg)
	select {
	case <-done:
	case <-pctx.Done():
		select {
		case <-done:
		case <-time.After(requestTimeout + drainTimeout):
			return failed.Load(), fmt.Errorf("the pool's goroutines did not stop within %v of its cancellation", requestTimeout+drainTimeout)
		}
	}
	if f := failed.Load(); f > 0 {
		return f, firstErr
	}
	return 0, ctx.Err()
}

// loadTimeout bounds a phase that writes or reads n keys: one minute plus
// 0.5 ms per key, about 9 minutes for a million keys.
func loadTimeout(n int) time.Duration {
	return time.Minute + time.Duration(n)*500*time.Microsecond
}

// valueGen makes values of fresh random bytes, so that no server gains by
// compressing them, and no two values are alike. Its sequence depends only
// on its seed and stream. One goroutine uses it at a time.
type valueGen struct {
	rng *rand.ChaCha8
	buf []byte
}

// newValueGen returns a generator; give every goroutine its own stream.
func newValueGen(seed, stream uint64) *valueGen {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[0:], seed)
	binary.LittleEndian.PutUint64(key[8:], stream)
	return &valueGen{rng: rand.NewChaCha8(key)}
}

// value is size fresh random bytes.
func (g *valueGen) value(size int) string {
	if cap(g.buf) < size {
		g.buf = make([]byte, size)
	}
	b := g.buf[:size]
	g.rng.Read(b)
	return string(b)
}
