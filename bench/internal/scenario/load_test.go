package scenario

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestWindowTallyCountsRequestsThatCompleteWithinIt(t *testing.T) {
	t0 := time.Now()
	win := newWindow(t0, time.Second, 2*time.Second)
	var lat latencies
	tally := windowTally{lat: lat.shard()}
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	boom := errors.New("boom")

	record := func(sent, done time.Duration, err error, stopped bool) bool {
		return tally.record(win, at(sent), at(done), err, stopped)
	}
	counted := []bool{
		record(0, 500*time.Millisecond, nil, false),                                    // warm-up
		record(900*time.Millisecond, time.Second, nil, false),                          // completes at the start: counts
		record(2*time.Second, 2100*time.Millisecond, nil, false),                       // inside
		record(2900*time.Millisecond, 3*time.Second, nil, false),                       // completes at the end: not counted
		record(2*time.Second, 2*time.Second, boom, false),                              // a failure
		record(500*time.Millisecond, 600*time.Millisecond, errors.New("early"), false), // a failure in the warm-up
		record(2*time.Second, 3100*time.Millisecond, boom, true),                       // cut short by the stop
	}
	want := []bool{false, true, true, false, false, false, false}
	for i := range want {
		if counted[i] != want[i] {
			t.Errorf("request %d counted = %v, want %v", i, counted[i], want[i])
		}
	}
	if tally.ok != 2 {
		t.Errorf("ok = %d, want 2", tally.ok)
	}
	if tally.failed != 2 {
		t.Errorf("failed = %d, want 2", tally.failed)
	}
	if tally.firstErr != boom {
		t.Errorf("first error %v, want boom", tally.firstErr)
	}
	got := lat.merge()
	if len(got) != 2 || got[0] != 100*time.Millisecond || got[1] != 100*time.Millisecond {
		t.Errorf("latencies %v, want [100ms 100ms]", got)
	}
	if r := win.rate(10); r != 5 {
		t.Errorf("rate of 10 in a 2 s window = %v, want 5", r)
	}

	var sum windowTally
	sum.add(&windowTally{ok: 1, failed: 1, firstErr: errors.New("first")})
	sum.add(&tally)
	if sum.ok != 3 || sum.failed != 3 || sum.firstErr.Error() != "first" {
		t.Errorf("sum = %+v, want 3 ok, 3 failed, the first error first", sum)
	}
}

func TestWaitUntilAcceptsALoadThatStoppedAtTheEnd(t *testing.T) {
	done := make(chan struct{})
	close(done)
	// The load is done and the time has come: both are ready, and the
	// wait must not report an early stop whichever it sees first.
	for range 100 {
		if err := waitUntil(context.Background(), time.Now().Add(-time.Millisecond), done); err != nil {
			t.Fatalf("waitUntil a past time with the load done = %v, want nil", err)
		}
	}
	if err := waitUntil(context.Background(), time.Now().Add(time.Minute), done); !errors.Is(err, errLoadStoppedEarly) {
		t.Fatalf("waitUntil a minute from now with the load done = %v, want errLoadStoppedEarly", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := waitUntil(ctx, time.Now().Add(time.Minute), nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("waitUntil with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestRunPoolCallsEveryIndexOnce(t *testing.T) {
	const n, workers = 1000, 7
	var seen [n]atomic.Int32
	var badG atomic.Bool
	failures, err := runPool(context.Background(), n, workers, func(_ context.Context, g, i int) error {
		if g < 0 || g >= workers {
			badG.Store(true)
		}
		seen[i].Add(1)
		return nil
	})
	if failures != 0 || err != nil {
		t.Fatalf("runPool = %d, %v; want 0, nil", failures, err)
	}
	if badG.Load() {
		t.Error("a call ran on a goroutine number out of range")
	}
	for i := range seen {
		if c := seen[i].Load(); c != 1 {
			t.Fatalf("index %d called %d times, want once", i, c)
		}
	}
}

func TestRunPoolStopsAtTheFirstFailure(t *testing.T) {
	boom := errors.New("boom")
	var calls atomic.Int64
	failures, err := runPool(context.Background(), 1_000_000, 4, func(ctx context.Context, _, i int) error {
		calls.Add(1)
		if i == 10 {
			return boom
		}
		if i > 10 {
			// The others fail only because they were cancelled.
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	})
	if failures != 1 || !errors.Is(err, boom) {
		t.Fatalf("runPool = %d, %v; want 1, boom", failures, err)
	}
	if c := calls.Load(); c > 20 {
		t.Fatalf("%d calls after a failure at call 10", c)
	}
}

func TestRunPoolReturnsTheContextsError(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	failures, err := runPool(ctx, 10, 2, func(ctx context.Context, _, _ int) error { return ctx.Err() })
	if failures != 0 || !errors.Is(err, context.Canceled) {
		t.Fatalf("runPool with a cancelled context = %d, %v; want 0, context.Canceled", failures, err)
	}
}

func TestValueGenIsFreshAndDeterministic(t *testing.T) {
	a, b := newValueGen(1, 2), newValueGen(1, 2)
	x, y := a.value(300), a.value(300)
	if len(x) != 300 || x == y {
		t.Fatalf("values of %d bytes, equal %v; want 300 bytes, different", len(x), x == y)
	}
	if b.value(300) != x {
		t.Fatal("two generators of the same seed and stream differ")
	}
	if newValueGen(1, 3).value(300) == x {
		t.Fatal("two streams give the same value")
	}
	if v := a.value(10); len(v) != 10 {
		t.Fatalf("value(10) has %d bytes", len(v))
	}
}

func TestEveryStopsAndWaits(t *testing.T) {
	var n atomic.Int64
	calls := make(chan struct{}, 1)
	stop := every(time.Millisecond, func() {
		n.Add(1)
		select {
		case calls <- struct{}{}:
		default:
		}
	})
	for range 3 {
		select {
		case <-calls:
		case <-time.After(10 * time.Second):
			stop()
			t.Fatal("no call within 10 s")
		}
	}
	stop()
	got := n.Load()
	select {
	case <-calls: // one sent before stop returned
	default:
	}
	if after := n.Load(); after != got {
		t.Fatalf("calls after stop: %d then %d", got, after)
	}
}
