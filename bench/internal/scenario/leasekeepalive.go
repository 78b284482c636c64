package scenario

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keeldb/keel/bench/internal/harness"
	"github.com/keeldb/keel/bench/internal/proc"
	"github.com/keeldb/keel/bench/internal/report"
)

// LeaseKeepalive grants Leases leases of TTL and keeps all of them alive from
// ONE client for Duration. The client library sends every lease's
// keepalives on the client's single LeaseKeepAlive stream, each lease about
// every TTL/3. The requirement: no lease expires, checked with TimeToLive at
// the end, while the keepalives still run.
type LeaseKeepalive struct {
	Leases   int
	TTL      time.Duration
	Duration time.Duration
	// Inflight bounds the concurrent Grant and TimeToLive requests.
	Inflight int
}

// Name implements harness.Scenario.
func (LeaseKeepalive) Name() string { return "lease-keepalive" }

// Validate checks the parameters.
func (s LeaseKeepalive) Validate() error {
	switch {
	case s.Leases < 1 || s.Inflight < 1:
		return errors.New("-leases and -inflight must be at least 1")
	case s.TTL < time.Second || s.TTL%time.Second != 0:
		return errors.New("-ttl must be a whole number of seconds, at least 1s")
	case s.Duration <= 0:
		return errors.New("-duration must be positive")
	}
	return nil
}

// Run implements harness.Scenario.
func (s LeaseKeepalive) Run(ctx context.Context, srv *proc.Process, run *report.Run, progress *harness.Progress) (err error) {
	pid := srv.Pid()
	mem := newMemoryLog(srv)
	defer mem.finish(run, &err)
	if err := mem.begin(ctx); err != nil {
		return err
	}
	cli, err := srv.Client()
	if err != nil {
		return fmt.Errorf("connect client: %w", err)
	}
	defer cli.Close()

	// Grant.
	progress.Printf("granting %d leases of %v", s.Leases, s.TTL)
	ids := make([]clientv3.LeaseID, s.Leases)
	grantStart := time.Now()
	failed, firstErr := s.each(ctx, func(ctx context.Context, i int) error {
		resp, err := cli.Grant(ctx, int64(s.TTL/time.Second))
		if err != nil {
			return err
		}
		ids[i] = resp.ID
		return nil
	}, "granted", progress)
	grantTime := time.Since(grantStart)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if failed != 0 {
		return fmt.Errorf("%d of %d grants failed; first error: %w", failed, s.Leases, firstErr)
	}
	run.Add("leases granted", report.Count, float64(s.Leases))
	run.AddDuration("grant time", grantTime)
	run.Add("grant rate", report.Rate, float64(s.Leases)/grantTime.Seconds())
	if err := mem.read(ctx, "after grant"); err != nil {
		return err
	}

	// Keep alive.
	mem.startSampling()
	cpu, err := startCPU(pid)
	if err != nil {
		return err
	}
	kctx, kcancel := context.WithCancel(ctx)
	var (
		drains    sync.WaitGroup
		responses atomic.Int64
		closed    atomic.Int64 // keepalive channels closed while still wanted
	)
	defer func() {
		kcancel()
		if !waitGroupTimeout(&drains, drainTimeout) {
			progress.Printf("keepalive channels still open %v after cancelling them", drainTimeout)
		}
	}()
	progress.Printf("keeping %d leases alive from one client for %v", s.Leases, s.Duration)
	kaStart := time.Now()
	for _, id := range ids {
		ch, err := cli.KeepAlive(kctx, id)
		if err != nil {
			return fmt.Errorf("keep lease %x alive: %w", id, err)
		}
		drains.Go(func() {
			for range ch {
				responses.Add(1)
			}
			// The client closes the channel when the lease expired or
			// was revoked, or when kctx ends.
			if kctx.Err() == nil {
				closed.Add(1)
			}
		})
	}
	end := time.NewTimer(s.Duration)
	tick := time.NewTicker(progressInterval)
wait:
	for {
		select {
		case <-end.C:
			break wait
		case <-ctx.Done():
			break wait
		case <-tick.C:
			m, _ := proc.ReadMemory(pid)
			progress.Printf("keepalive responses %d (%.0f/s), channels closed early %d, server RSS %s",
				responses.Load(), float64(responses.Load())/time.Since(kaStart).Seconds(), closed.Load(), mib(m.RSS))
		}
	}
	end.Stop()
	tick.Stop()
	kaTime := time.Since(kaStart)
	n := responses.Load()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	run.Add("keepalive responses", report.Count, float64(n))
	run.Add("keepalive responses per second", report.Rate, float64(n)/kaTime.Seconds())
	// The client sends a lease's first keepalive at once, then the next
	// one TTL/3 after each response, checked every 500ms: so the rate is
	// near leases/(TTL/3), above it in a short run (the first round
	// is sent at once), below it in a long one (the 500ms check).
	run.Add("nominal keepalive rate: leases/(TTL/3)", report.Rate, float64(s.Leases)/(s.TTL.Seconds()/3))
	cpuUsed := cpu.stop()

	// Check every lease while the keepalives still run.
	progress.Printf("checking %d leases with TimeToLive", s.Leases)
	var (
		mu     sync.Mutex
		minTTL = int64(-1)
		lost   int
	)
	failed, firstErr = s.each(ctx, func(ctx context.Context, i int) error {
		resp, err := cli.TimeToLive(ctx, ids[i])
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if resp.TTL <= 0 {
			lost++
		} else if minTTL < 0 || resp.TTL < minTTL {
			minTTL = resp.TTL
		}
		return nil
	}, "checked", progress)
	if err := mem.stopSampling(); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if failed != 0 {
		run.Failf("%d of %d TimeToLive requests failed; first error: %v", failed, s.Leases, firstErr)
	}
	run.Add("leases expired (TimeToLive at the end)", report.Count, float64(lost))
	run.Add("keepalive channels closed early", report.Count, float64(closed.Load()))
	if minTTL >= 0 {
		run.Add("lowest remaining TTL at the end", report.Seconds, float64(minTTL))
	} else {
		run.AddMissing("lowest remaining TTL at the end", report.Seconds)
	}
	if lost != 0 {
		run.Failf("%d of %d leases expired while kept alive", lost, s.Leases)
	}
	if c := closed.Load(); c != 0 {
		run.Failf("the client closed %d keepalive channels: their leases were lost", c)
	}
	if err := cpuUsed.addTo(run, "while keeping alive"); err != nil {
		return err
	}
	return mem.read(ctx, "at the end")
}

// each calls f for every lease index with at most Inflight calls at once,
// each bounded by requestTimeout, and returns how many failed and the first
// error.
func (s LeaseKeepalive) each(ctx context.Context, f func(ctx context.Context, i int) error, verb string, progress *harness.Progress) (failed int, firstErr error) {
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		done atomic.Int64
	)
	sem := make(chan struct{}, s.Inflight)
	last := time.Now()
loop:
	for i := range s.Leases {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break loop
		}
		wg.Go(func() {
			defer func() { <-sem }()
			rctx, cancel := context.WithTimeout(ctx, requestTimeout)
			err := f(rctx, i)
			cancel()
			done.Add(1)
			if err != nil {
				mu.Lock()
				failed++
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		})
		if time.Since(last) >= progressInterval {
			last = time.Now()
			progress.Printf("%s %d/%d", verb, done.Load(), s.Leases)
		}
	}
	wg.Wait()
	return failed, firstErr
}
