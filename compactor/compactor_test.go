package compactor

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

type fakeKV struct {
	rev   atomic.Int64
	calls chan int64
	err   atomic.Pointer[error]
}

func newFakeKV() *fakeKV { return &fakeKV{calls: make(chan int64, 100)} }

func (f *fakeKV) Rev() int64 { return f.rev.Load() }

func (f *fakeKV) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	f.calls <- r.Revision
	if e := f.err.Load(); e != nil {
		return nil, *e
	}
	return &pb.CompactionResponse{}, nil
}

func (f *fakeKV) fail(err error) {
	if err == nil {
		f.err.Store(nil)
		return
	}
	f.err.Store(&err)
}

// harness drives a compactor on a fake clock: step waits until the loop is
// blocked on the clock, sets the revision, advances the clock by d and
// waits until the loop blocks again, so every compaction the step causes
// has been called by the time step returns.
type harness struct {
	t     *testing.T
	clock *clockwork.FakeClock
	kv    *fakeKV
	cp    *Compactor
}

func start(t *testing.T, mode string, retention time.Duration) *harness {
	t.Helper()
	h := &harness{t: t, clock: clockwork.NewFakeClock(), kv: newFakeKV()}
	cp, err := New(nil, h.clock, mode, retention, h.kv, h.kv)
	if err != nil {
		t.Fatal(err)
	}
	h.cp = cp
	cp.Run()
	t.Cleanup(cp.Stop)
	h.block()
	return h
}

func (h *harness) block() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.clock.BlockUntilContext(ctx, 1); err != nil {
		h.t.Fatalf("compactor loop never waited on the clock: %v", err)
	}
}

func (h *harness) step(rev int64, d time.Duration) {
	h.t.Helper()
	h.kv.rev.Store(rev)
	h.clock.Advance(d)
	// Advance fired the loop's timer; it blocks again after its work.
	h.block()
}

// compactions returns the revisions compacted since the last call.
func (h *harness) compactions() []int64 {
	var out []int64
	for {
		select {
		case r := <-h.kv.calls:
			out = append(out, r)
		default:
			return out
		}
	}
}

func (h *harness) want(what string, revs ...int64) {
	h.t.Helper()
	got := h.compactions()
	if len(got) != len(revs) {
		h.t.Fatalf("%s: compacted %v, want %v", what, got, revs)
	}
	for i := range got {
		if got[i] != revs[i] {
			h.t.Fatalf("%s: compacted %v, want %v", what, got, revs)
		}
	}
}

// The periodic tests start at revision 100 and set revision 100+n before
// the n-th tick, so the sample taken at tick n is 100+n: the compacted
// revision tells which sample was used.

// tick advances the clock by one sample interval with revision 100+n.
func (h *harness) tick(n int64, sample time.Duration) { h.step(100+n, sample) }

func startAt100(t *testing.T, retention time.Duration) *harness {
	t.Helper()
	h := &harness{t: t, clock: clockwork.NewFakeClock(), kv: newFakeKV()}
	h.kv.rev.Store(100)
	cp, err := New(nil, h.clock, ModePeriodic, retention, h.kv, h.kv)
	if err != nil {
		t.Fatal(err)
	}
	h.cp = cp
	cp.Run()
	t.Cleanup(cp.Stop)
	h.block()
	return h
}

// TestPeriodicHour follows etcd's rule for --auto-compaction-retention=1:
// a sample every 6 minutes, nothing during the first hour, then at one
// hour a compaction at the revision of the start.
func TestPeriodicHour(t *testing.T) {
	h := startAt100(t, time.Hour)
	for n := int64(1); n <= 9; n++ {
		h.tick(n, 6*time.Minute)
		h.want("within the first hour")
	}
	h.tick(10, 6*time.Minute)
	h.want("at one hour", 100)
}

func TestPeriodicCompactsEveryPeriodAtTheOldestSample(t *testing.T) {
	h := startAt100(t, 10*time.Minute) // a sample a minute, 11 kept
	for n := int64(1); n <= 9; n++ {
		h.tick(n, time.Minute)
		h.want("before one period")
	}
	h.tick(10, time.Minute)
	h.want("after one period", 100)
	for n := int64(11); n <= 19; n++ {
		h.tick(n, time.Minute)
		h.want("within the second period")
	}
	h.tick(20, time.Minute) // samples 9..19 kept
	h.want("after two periods", 109)
}

func TestPeriodicRetriesAFailureAtTheNextSample(t *testing.T) {
	h := startAt100(t, 10*time.Minute)
	for n := int64(1); n <= 9; n++ {
		h.tick(n, time.Minute)
	}
	h.want("first period")
	h.kv.fail(errors.New("etcdserver: request timed out"))
	h.tick(10, time.Minute)
	h.want("failed attempt", 100)
	h.kv.fail(nil)
	h.tick(11, time.Minute) // samples 0..10 kept: still the start's
	h.want("retry", 100)
	for n := int64(12); n <= 20; n++ {
		h.tick(n, time.Minute)
	}
	h.want("second period")
	// A revision compacted already counts as done.
	h.kv.fail(rpctypes.ErrGRPCCompacted)
	h.tick(21, time.Minute)
	h.want("compacted already", 110)
	h.kv.fail(nil)
	h.tick(22, time.Minute)
	h.want("after a compacted-already answer")
}

func TestPeriodicLongRetentionCompactsHourly(t *testing.T) {
	h := startAt100(t, 3*time.Hour) // a sample every 6 min, 31 kept
	for n := int64(1); n <= 29; n++ {
		h.tick(n, 6*time.Minute)
	}
	h.want("before three hours")
	h.tick(30, 6*time.Minute)
	h.want("at three hours", 100)
	for n := int64(31); n <= 39; n++ {
		h.tick(n, 6*time.Minute)
	}
	h.want("within the next hour")
	h.tick(40, 6*time.Minute) // samples 9..39 kept
	h.want("one hour later", 109)
}

func TestPausedCompactsNothingUntilResumed(t *testing.T) {
	h := startAt100(t, 10*time.Minute)
	h.cp.Pause()
	for n := int64(1); n <= 15; n++ {
		h.tick(n, time.Minute)
	}
	h.want("paused")
	h.cp.Resume()
	h.tick(16, time.Minute) // samples 5..15 kept
	h.want("resumed", 105)
}

func TestRevisionMode(t *testing.T) {
	h := start(t, ModeRevision, 100)
	h.step(50, RevisionInterval-time.Second)
	h.want("before the interval")
	h.step(50, time.Second)
	h.want("below the retention")
	h.step(1000, RevisionInterval)
	h.want("at 1000", 900)
	h.step(1000, RevisionInterval)
	h.want("same revision again")
	h.cp.Pause()
	h.step(2000, RevisionInterval)
	h.want("paused")
	h.cp.Resume()
	h.kv.fail(errors.New("boom"))
	h.step(2000, RevisionInterval)
	h.want("failing", 1900)
	h.kv.fail(nil)
	h.step(2000, RevisionInterval)
	h.want("retried", 1900)
}

func TestParseRetention(t *testing.T) {
	for _, c := range []struct {
		mode, in string
		want     time.Duration
		err      string
	}{
		{ModePeriodic, "1", time.Hour, ""},
		{ModePeriodic, "0", 0, ""},
		{ModePeriodic, "", 0, ""},
		{ModePeriodic, "30m", 30 * time.Minute, ""},
		{ModePeriodic, "1h30m", 90 * time.Minute, ""},
		{ModeRevision, "1000", 1000, ""},
		{ModeRevision, "5m", 5 * time.Minute, ""}, // etcd reads it as 3e11 revisions
		{ModePeriodic, "abc", 0, `error parsing CompactionRetention: time: invalid duration "abc"`},
		{ModePeriodic, "-1", 0, `error parsing CompactionRetention: time: missing unit in duration "-1"`},
		{"", "1", 0, "--auto-compaction-mode is undefined"},
	} {
		got, err := ParseRetention(c.mode, c.in)
		if c.err != "" {
			if err == nil || err.Error() != c.err {
				t.Errorf("ParseRetention(%q, %q) error %v, want %q", c.mode, c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseRetention(%q, %q) = %v, %v; want %v", c.mode, c.in, got, err, c.want)
		}
	}
}

func TestNewRefuses(t *testing.T) {
	if _, err := New(nil, nil, "hourly", time.Hour, newFakeKV(), newFakeKV()); err == nil || err.Error() != "unsupported compaction mode hourly" {
		t.Errorf("unknown mode: %v", err)
	}
	if _, err := New(nil, nil, ModePeriodic, -time.Minute, newFakeKV(), newFakeKV()); err == nil {
		t.Error("negative retention accepted")
	}
}

func TestStopEndsTheLoop(t *testing.T) {
	h := start(t, ModeRevision, 1)
	h.cp.Stop()
	h.kv.rev.Store(10)
	h.clock.Advance(RevisionInterval)
	h.want("after Stop")
}
