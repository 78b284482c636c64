package crashtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"
)

// target is a member that can be crashed and restarted on what survives.
type target interface {
	// start starts the member (restarting it on the state that survived the
	// last crash) configured as p says, waits until it serves, and returns a
	// store that talks to it.
	start(t *testing.T, p roundPlan) kvStore
	// checkAlive fails the test if the member stopped on its own.
	checkAlive(t *testing.T)
	// crash crashes the member now. Requests still running fail afterwards.
	crash(t *testing.T, p roundPlan)
	// stop shuts the member down cleanly.
	stop(t *testing.T)
	// stats says what the member did since it started (Raft snapshots,
	// compactions), for the log.
	stats() string
	// lateAcks reports whether a response that arrives after crash began
	// may be lost in the crash (power loss), rather than durable (kill -9).
	lateAcks() bool
}

// roundPlan is what the seed decides about one round.
type roundPlan struct {
	round int
	// snapshotCount and catchUp configure Raft snapshots and log compaction.
	snapshotCount, catchUp uint64
	// compact compacts during the load to one of the verified round ends,
	// chosen by compactPick; physical waits for the superseded versions to
	// be removed.
	compact     bool
	physical    bool
	compactPick uint64
	// crashAfter is when the crash comes after the load starts.
	crashAfter time.Duration
	// unsyncedPct is the percentage of unsynced data that a simulated power
	// loss keeps anyway (0: exactly what was synced); cloneSeed drives it.
	unsyncedPct int
	cloneSeed   uint64
}

// loadWorkers is the number of concurrent clients.
const loadWorkers = 6

// Bounds of the random crash moment after the load starts.
const (
	minCrashAfter = 50 * time.Millisecond
	maxCrashAfter = 500 * time.Millisecond
)

func newPlan(rng *rand.Rand, round int) roundPlan {
	p := roundPlan{round: round, snapshotCount: 10000, catchUp: 5000}
	// Small snapshot counts make Raft snapshots and log compaction happen
	// between crashes; round 1 always has them.
	if round == 1 || rng.IntN(2) == 0 {
		p.snapshotCount, p.catchUp = 50, 10
	}
	// Round 0 has no verified revision to compact to; round 2 always
	// compacts.
	p.compact = round == 2 || (round > 0 && rng.IntN(2) == 0)
	p.physical = rng.IntN(2) == 0
	p.compactPick = rng.Uint64()
	p.crashAfter = minCrashAfter + time.Duration(rng.Int64N(int64(maxCrashAfter-minCrashAfter)+1))
	if round%3 == 2 {
		p.unsyncedPct = 1 + rng.IntN(100)
	}
	p.cloneSeed = rng.Uint64()
	return p
}

// loadDrainTimeout bounds how long the load takes to stop after the crash.
const loadDrainTimeout = 2 * opTimeout

// runCrashRounds crashes tgt under load round after round and verifies the
// member after every restart, then shuts it down cleanly, restarts it once
// more and verifies again.
func runCrashRounds(t *testing.T, tgt target) {
	rounds := crashRounds(t)
	seed := crashSeed(t)
	rng := rand.New(rand.NewPCG(seed, 0x6b65656c))
	plans := make([]roundPlan, rounds+1)
	for i := range plans {
		plans[i] = newPlan(rng, i)
	}
	v := newVerifier(t)
	st := tgt.start(t, plans[0])
	for round := range rounds {
		p := plans[round]
		var crashed atomic.Bool
		l := &load{round: round, workers: loadWorkers, seed: seed, lateAcks: tgt.lateAcks(), crashed: &crashed}
		if p.compact {
			l.compactTo = v.compactionChoice(func(n int) int { return int(p.compactPick % uint64(n)) })
			l.physical = p.physical
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan *loadResult, 1)
		go func() { done <- l.run(ctx, st) }()
		timer := time.NewTimer(p.crashAfter)
		select {
		case <-timer.C:
		case res := <-done: // every worker reached its op limit
			done <- res
		}
		timer.Stop()
		tgt.checkAlive(t)
		crashed.Store(true)
		tgt.crash(t, p)
		stats := tgt.stats()
		cancel()
		var res *loadResult
		drain := time.NewTimer(loadDrainTimeout)
		select {
		case res = <-done:
			drain.Stop()
		case <-drain.C:
			t.Fatalf("round %d: the load did not stop within %v of the crash", round, loadDrainTimeout)
		}
		how := fmt.Sprintf("snapshot count %d, compaction to %d", p.snapshotCount, l.compactTo)
		if tgt.lateAcks() {
			how += fmt.Sprintf(", unsynced data kept %d%%", p.unsyncedPct)
		}
		t.Logf("round %d: crashed %v after the load started (%s; before the crash: %s): %s", round, p.crashAfter, how, stats, res.summary())
		st = tgt.start(t, plans[round+1])
		v.verify(st, round, res)
		if t.Failed() {
			t.FailNow()
		}
	}
	tgt.stop(t)
	st = tgt.start(t, plans[rounds])
	v.verify(st, rounds, nil)
	tgt.stop(t)
}
