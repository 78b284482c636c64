package scenario

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/keeldb/keel/bench/internal/harness"
	"github.com/keeldb/keel/bench/internal/proc"
	"github.com/keeldb/keel/bench/internal/report"
)

// Failover measures how long a cluster cannot take writes after its leader
// dies. A fresh cluster of Members members runs with one client, connected
// to every member, that writes continuously: one put at a time, each
// bounded by RequestTimeout, retried at once when it fails. After Warmup,
// the leader is found and SIGKILLed; the figure is the time from the kill
// to the first acknowledged put that was sent after the killed process was
// gone (so a put the old leader acknowledged while dying does not count).
// The killed member is then restarted from its data dir and must serve
// again. Each run is one kill on a fresh cluster.
type Failover struct {
	Members        int
	RequestTimeout time.Duration
	// Warmup is how long the client writes before the kill.
	Warmup time.Duration
	// MaxWait bounds the wait for the first put acknowledged after the
	// kill; a run that waits longer fails.
	MaxWait time.Duration
}

// Name implements harness.Named.
func (Failover) Name() string { return "failover" }

// Validate checks the parameters.
func (s Failover) Validate() error {
	switch {
	case s.Members < 3:
		return errors.New("-members must be at least 3 (a cluster that survives the loss of its leader)")
	case s.RequestTimeout <= 0 || s.Warmup <= 0 || s.MaxWait <= 0:
		return errors.New("-request-timeout, -warmup and -max-wait must be positive")
	}
	return nil
}

// leaderPoll spaces the status polls that see the new leader. It is the
// resolution of the "new leader seen" figure, not of the failover time,
// which comes from the writer itself.
const leaderPoll = 20 * time.Millisecond

// retryPause is the pause before retrying a put that failed at once (a
// broken connection), so that the writer does not spin. A put that timed
// out is retried without a pause.
const retryPause = 5 * time.Millisecond

// failoverWriter puts keys one at a time until stopped and reports the
// first acknowledgement of a put sent after a given instant.
type failoverWriter struct {
	cli     *clientv3.Client
	timeout time.Duration

	mu sync.Mutex
	// after is the instant from which a put counts as sent after the
	// kill; zero until the kill.
	after    time.Time
	first    chan time.Time // receives the first qualifying ack time, once
	sentOne  bool
	latency  []time.Duration // acknowledged puts before the kill
	failures int             // failed puts sent after the kill, before the first ack
	lastErr  error
}

func (w *failoverWriter) run(ctx context.Context) {
	for i := 0; ctx.Err() == nil; i++ {
		sent := time.Now()
		rctx, cancel := context.WithTimeout(ctx, w.timeout)
		_, err := w.cli.Put(rctx, "/keelbench/failover/"+strconv.Itoa(i%1000), strconv.Itoa(i))
		cancel()
		acked := time.Now()
		w.mu.Lock()
		switch {
		case w.after.IsZero():
			if err == nil {
				w.latency = append(w.latency, acked.Sub(sent))
			}
		case err == nil && !sent.Before(w.after) && !w.sentOne:
			w.sentOne = true
			w.first <- acked
		case err != nil && !w.sentOne:
			w.failures++
			w.lastErr = err
		}
		w.mu.Unlock()
		if err != nil && acked.Sub(sent) < retryPause {
			select {
			case <-ctx.Done():
			case <-time.After(retryPause):
			}
		}
	}
}

// RunCluster implements harness.ClusterScenario.
func (s Failover) RunCluster(ctx context.Context, kind proc.Kind, bin, dir string, serverArgs []string, run *report.Run, progress *harness.Progress) (err error) {
	progress.Printf("starting a %d-member cluster", s.Members)
	c, err := proc.StartCluster(ctx, kind, bin, dir, s.Members, serverArgs)
	if err != nil {
		return err
	}
	defer func() {
		if serr := c.Stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	progress.Printf("serving at %v", c.Endpoints())

	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: proc.DialTimeout, Logger: zap.NewNop()})
	if err != nil {
		return fmt.Errorf("connect client: %w", err)
	}
	defer cli.Close()

	w := &failoverWriter{cli: cli, timeout: s.RequestTimeout, first: make(chan time.Time, 1)}
	wctx, wcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { w.run(wctx) })
	defer func() {
		wcancel()
		wg.Wait()
	}()

	select {
	case <-time.After(s.Warmup):
	case <-ctx.Done():
		return ctx.Err()
	}
	w.mu.Lock()
	warm := slices.Clone(w.latency)
	w.mu.Unlock()
	if len(warm) == 0 {
		return fmt.Errorf("no put acknowledged in the %v warm-up", s.Warmup)
	}

	leader, leaderID, err := findLeader(ctx, c)
	if err != nil {
		return err
	}
	var survivors []*proc.Member
	for _, m := range c.Members {
		if m != leader {
			survivors = append(survivors, m)
		}
	}
	progress.Printf("killing the leader %s (%x, pid %d) after %d puts", leader.Name, leaderID, leader.Pid(), len(warm))
	killed := time.Now()
	if err := leader.Kill(); err != nil {
		return err
	}
	gone := time.Now()
	w.mu.Lock()
	w.after = gone
	w.mu.Unlock()

	// Watch for the new leader beside the writer.
	lctx, lcancel := context.WithCancel(ctx)
	newLeader := make(chan time.Time, 1)
	var lwg sync.WaitGroup
	lwg.Go(func() { watchNewLeader(lctx, survivors, leaderID, newLeader) })

	var acked time.Time
	select {
	case acked = <-w.first:
	case <-time.After(s.MaxWait):
	case <-ctx.Done():
	}
	var elected time.Time
	if !acked.IsZero() {
		// The put went through a leader, which a survivor has seen or
		// is about to see; wait for the poller's answer a little.
		select {
		case elected = <-newLeader:
		case <-time.After(s.MaxWait):
		case <-ctx.Done():
		}
	}
	lcancel()
	lwg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	w.mu.Lock()
	failures, lastErr := w.failures, w.lastErr
	w.mu.Unlock()

	slices.Sort(warm)
	run.Add("puts acknowledged before the kill", report.Count, float64(len(warm)))
	run.AddMillis("put latency p50 before the kill", warm[len(warm)/2])
	run.AddMillis("kill: SIGKILL until the process was reaped", gone.Sub(killed))
	if acked.IsZero() {
		run.AddMissing("failover: kill to next acknowledged put", report.Millis)
		run.Failf("no put acknowledged within %v of killing the leader (%d failed; last error: %v)", s.MaxWait, failures, lastErr)
	} else {
		run.AddMillis("failover: kill to next acknowledged put", acked.Sub(killed))
		progress.Printf("first put acknowledged %v after the kill", acked.Sub(killed).Round(time.Millisecond))
	}
	if elected.IsZero() {
		run.AddMissing("failover: kill to new leader seen (polled)", report.Millis)
	} else {
		run.AddMillis("failover: kill to new leader seen (polled)", elected.Sub(killed))
	}
	run.Add("puts failed or timed out during the failover", report.Count, float64(failures))
	if acked.IsZero() {
		return nil
	}

	// Bring the killed member back from its data dir.
	restart := time.Now()
	if err := leader.Restart(ctx, c.PeerURLs()); err != nil {
		run.Failf("the killed member did not serve again after a restart: %v", err)
		return nil
	}
	run.AddDuration("killed member: restart until serving", time.Since(restart))
	return nil
}

// findLeader asks every member for its status and returns the member all
// agree leads, polling until they agree, for at most requestTimeout.
func findLeader(ctx context.Context, c *proc.Cluster) (*proc.Member, uint64, error) {
	cli, err := clientv3.New(c.ClientConfig(c.Endpoints()...))
	if err != nil {
		return nil, 0, fmt.Errorf("connect status client: %w", err)
	}
	defer cli.Close()
	deadline := time.Now().Add(requestTimeout)
	for {
		var (
			leaders = map[uint64]bool{}
			byID    = map[uint64]*proc.Member{}
			lastErr error
		)
		for _, m := range c.Members {
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			st, err := cli.Status(sctx, m.Endpoint)
			cancel()
			if err != nil {
				lastErr = err
				continue
			}
			leaders[st.Leader] = true
			byID[st.Header.MemberId] = m
		}
		if len(leaders) == 1 && len(byID) == len(c.Members) {
			for id := range leaders {
				if m := byID[id]; m != nil && id != 0 {
					return m, id, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return nil, 0, fmt.Errorf("the members do not agree on a leader after %v (leaders %v, last error %v)", requestTimeout, leaders, lastErr)
		}
		select {
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-time.After(leaderPoll):
		}
	}
}

// watchNewLeader polls the survivors' status until one reports a leader
// other than old, and sends the time it saw it.
func watchNewLeader(ctx context.Context, survivors []*proc.Member, old uint64, seen chan<- time.Time) {
	var eps []string
	for _, m := range survivors {
		eps = append(eps, m.Endpoint)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: proc.DialTimeout, Logger: zap.NewNop()})
	if err != nil {
		return
	}
	defer cli.Close()
	for ctx.Err() == nil {
		for _, ep := range eps {
			sctx, cancel := context.WithTimeout(ctx, leaderPoll*5)
			st, err := cli.Status(sctx, ep)
			cancel()
			if err == nil && st.Leader != 0 && st.Leader != old {
				seen <- time.Now()
				return
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(leaderPoll):
		}
	}
}
