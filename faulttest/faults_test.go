package faulttest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ciSeeds is how many seeded runs TestLinearizableUnderFaults makes by
// default (seeds 1..ciSeeds).
const ciSeeds = 20

// maxSoakRuns bounds a soak whatever its duration.
const maxSoakRuns = 100000

// TestLinearizableUnderFaults runs seeded fault-injection runs against a
// cluster and checks each run's history for linearizability, acknowledged
// writes and equal member hashes.
//
//	KEEL_FAULT_TARGET=etcd   run against etcd (KEEL_FAULT_ETCD, default /tmp/etcd)
//	KEEL_FAULT_SEED=n        run seed n only
//	KEEL_SOAK=30m            run random seeds until 30 minutes have passed
//	                         (with go test -timeout 0 or a timeout above it);
//	                         every seed is logged, the first failure stops it
//
// By default it runs seeds 1..20 (about five minutes on two cores). A
// failure names the seed, the plan and the faults done, and keeps the
// members' logs (and, for a violation, porcupine's visualization) in a
// directory it names.
func TestLinearizableUnderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("fault-injection runs take minutes; skipped in -short mode")
	}
	tgt := faultTarget(t)
	run := func(seed uint64) bool {
		return t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { runFaults(t, tgt, seed) })
	}
	if s := os.Getenv("KEEL_FAULT_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("KEEL_FAULT_SEED=%q: %v", s, err)
		}
		run(seed)
		return
	}
	if s := os.Getenv("KEEL_SOAK"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("KEEL_SOAK=%q: %v", s, err)
		}
		end := time.Now().Add(d)
		for i := 0; i < maxSoakRuns && time.Now().Before(end); i++ {
			seed := rand.Uint64() >> 1
			t.Logf("soak run %d: seed %d (rerun with KEEL_FAULT_SEED=%d)", i+1, seed, seed)
			if !run(seed) {
				return
			}
		}
		return
	}
	for seed := uint64(1); seed <= ciSeeds; seed++ {
		run(seed)
	}
}

// runPlan is what a seed decides before the run starts.
type runPlan struct {
	seed    uint64
	opts    clusterOpts
	clients int
	faults  []nemesis
}

func planRun(seed uint64) runPlan {
	rnd := rand.New(rand.NewPCG(seed, 0xfa017))
	p := runPlan{seed: seed, opts: clusterOpts{size: 3}, clients: 6}
	if seed%5 == 0 {
		p.opts.size = 5
	}
	if rnd.IntN(2) == 0 {
		// Small enough that a member down for a second needs a snapshot.
		p.opts.snapshotCount, p.opts.catchUp = 200, 20
	}
	replaced := false
	for n := 2 + rnd.IntN(3); len(p.faults) < n; {
		f := nemeses[rnd.IntN(len(nemeses))]
		if f.name == "replace-member" {
			if replaced {
				continue
			}
			replaced = true
		}
		p.faults = append(p.faults, f)
	}
	return p
}

func (p runPlan) String() string {
	var fs []string
	for _, f := range p.faults {
		fs = append(fs, f.name)
	}
	snap := "default snapshots"
	if p.opts.snapshotCount > 0 {
		snap = fmt.Sprintf("snapshot-count %d, catch-up %d", p.opts.snapshotCount, p.opts.catchUp)
	}
	return fmt.Sprintf("seed %d: %d members, %s, %d clients, faults %s", p.seed, p.opts.size, snap, p.clients, strings.Join(fs, ", "))
}

// Phases of a run.
const (
	warmup    = time.Second
	faultGap  = 500 * time.Millisecond
	afterHeal = time.Second
	minLoad   = 8 * time.Second  // the load runs at least this long
	runBudget = 90 * time.Second // everything after the cluster is up
)

func runFaults(t *testing.T, tgt target, seed uint64) {
	plan := planRun(seed)
	t.Logf("%s (target %s)", plan, tgt.name)
	dir := artifactDir(t, fmt.Sprintf("seed%d", seed))
	var done []string // what the faults did
	var c *cluster
	fail := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if c != nil {
			if bad := c.unexpectedExits(); len(bad) > 0 {
				msg += "\nand members died:\n" + strings.Join(bad, "\n")
			}
		}
		t.Fatalf("%s (target %s)\nfaults done: %s\nartifacts: %s\n%s", plan, tgt.name, strings.Join(done, "; "), dir, msg)
	}

	c = startCluster(t, tgt, dir, seed, plan.opts)
	ctx, cancel := context.WithTimeout(context.Background(), runBudget)
	defer cancel()

	clis := make([]*clientv3.Client, plan.clients)
	for i := range clis {
		cli, err := c.client(c.member[i%len(c.member)])
		if err != nil {
			fail("client %d: %v", i, err)
		}
		defer cli.Close()
		clis[i] = cli
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	recsCh := make(chan []record, 1)
	loadStart := time.Now()
	go func() { recsCh <- runWorkload(loadCtx, clis, seed) }()

	rnd := rand.New(rand.NewPCG(seed, 0x6e3e))
	pauseCtx(ctx, warmup)
	var faultErr error
	for _, f := range plan.faults {
		desc, err := f.run(ctx, c, rnd)
		done = append(done, desc)
		t.Logf("fault: %s", desc)
		if err != nil {
			faultErr = fmt.Errorf("%s: %w", f.name, err)
			break
		}
		pauseCtx(ctx, faultGap)
	}
	c.healAll()
	pauseCtx(ctx, max(afterHeal, minLoad-time.Since(loadStart)))
	stopLoad()
	recs := <-recsCh
	if faultErr != nil {
		fail("fault failed: %v", faultErr)
	}

	for _, m := range c.member {
		if err := c.waitReady(m, readyTimeout); err != nil {
			fail("after healing: %v", err)
		}
	}
	rev, err := c.converge(ctx)
	if err != nil {
		fail("after healing: %v", err)
	}
	for _, m := range c.member {
		if m.proxy.Frames() == 0 {
			fail("no peer traffic went through %s's proxy: partitions and delays had no effect", m.name)
		}
	}
	if bad := c.unexpectedExits(); len(bad) > 0 {
		fail("%s", strings.Join(bad, "\n"))
	}
	if err := c.checkHashes(ctx, rev); err != nil {
		fail("%v", err)
	}
	var h *kvHistory
	err = c.withClient(c.member[0], func(cli *clientv3.Client) error {
		var err error
		h, err = readHistory(ctx, cli, rev)
		return err
	})
	if err != nil {
		fail("read the history: %v", err)
	}
	ops, problems := resolve(recs, h)
	if len(problems) > 0 {
		if len(problems) > 20 {
			problems = append(problems[:20], fmt.Sprintf("... and %d more", len(problems)-20))
		}
		fail("the store's history contradicts the clients:\n%s", strings.Join(problems, "\n"))
	}
	checkStart := time.Now()
	if err := checkLinearizable(ops, dir); err != nil {
		fail("%v", err)
	}
	t.Logf("%s; checked in %v", summarize(recs, len(ops), rev), time.Since(checkStart).Round(time.Millisecond))
	if tgt.grpcPeers {
		t.Logf("peer streams by method: %v", c.net.Opened())
	}
}

// summarize counts what the workload did.
func summarize(recs []record, checked int, rev int64) string {
	var ok, failed int
	for _, r := range recs {
		if r.err == nil {
			ok++
		} else {
			failed++
		}
	}
	return fmt.Sprintf("%d calls (%d failed), %d checked operations, final revision %d", ok+failed, failed, checked, rev)
}

// healAll removes every fault: proxy rules, stopped processes, and members
// left down (restarted on their data dirs).
func (c *cluster) healAll() {
	c.t.Helper()
	c.net.Heal()
	for _, m := range c.member {
		c.pause(m, false)
		c.mu.Lock()
		down := m.proc == nil || m.proc.exited()
		c.mu.Unlock()
		if down {
			c.restart(m)
		}
	}
}

// converge waits until every member reports the same revision and applied
// index, and returns the revision.
func (c *cluster) converge(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, convergeTimeout)
	defer cancel()
	var last string
	for attempt := 0; attempt < 300; attempt++ {
		var revs, applied []int64
		var errs []string
		for _, m := range c.member {
			st, err := c.status(ctx, m)
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", m.name, err))
				continue
			}
			revs = append(revs, st.Header.Revision)
			applied = append(applied, int64(st.RaftAppliedIndex))
		}
		if len(errs) == 0 && allEqual(revs) && allEqual(applied) {
			return revs[0], nil
		}
		last = fmt.Sprintf("revisions %v, applied indexes %v, errors %v", revs, applied, errs)
		if !pauseCtx(ctx, 200*time.Millisecond) {
			break
		}
	}
	return 0, fmt.Errorf("members did not converge within %v: %s", convergeTimeout, last)
}

func allEqual(v []int64) bool {
	for _, x := range v {
		if x != v[0] {
			return false
		}
	}
	return true
}

// checkHashes compares every member's HashKV at rev.
func (c *cluster) checkHashes(ctx context.Context, rev int64) error {
	var lines []string
	var first string
	differ := false
	for _, m := range c.member {
		err := c.withClient(m, func(cli *clientv3.Client) error {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			resp, err := cli.HashKV(cctx, m.clientURL(), rev)
			if err != nil {
				return err
			}
			s := fmt.Sprintf("hash %d, compact revision %d", resp.Hash, resp.CompactRevision)
			if first == "" {
				first = s
			} else if s != first {
				differ = true
			}
			lines = append(lines, fmt.Sprintf("%s: %s (hash revision %d)", m.name, s, resp.HashRevision))
			return nil
		})
		if err != nil {
			return fmt.Errorf("HashKV(%d) on %s: %w", rev, m.name, err)
		}
	}
	if differ {
		return fmt.Errorf("members' HashKV at revision %d differ:\n%s", rev, strings.Join(lines, "\n"))
	}
	return nil
}
