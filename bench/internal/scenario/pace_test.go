package scenario

import (
	"context"
	"testing"
	"time"
)

// TestPacerHandsOutDueTimesOnTheRate: requests already due when the pacer
// starts are all handed out at once, each with the time it was due.
func TestPacerHandsOutDueTimesOnTheRate(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now().Add(-time.Second)
	p := startPacer(ctx, 100, start)
	for i := range 100 {
		at, ok := p.next(ctx)
		if !ok {
			t.Fatal("pacer stopped")
		}
		if want := start.Add(time.Duration(i) * 10 * time.Millisecond); !at.Equal(want) {
			t.Fatalf("request %d due at %v, want %v", i, at.Sub(start), want.Sub(start))
		}
	}
	if p.dropped.Load() != 0 {
		t.Fatalf("%d dropped with the backlog empty", p.dropped.Load())
	}
}

// TestPacerDropsBeyondTheBacklog: with no client taking them, due
// requests beyond the backlog are counted as dropped.
func TestPacerDropsBeyondTheBacklog(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := startPacer(ctx, 10, time.Now().Add(-(pacerBacklog+5)*time.Second))
	deadline := time.Now().Add(10 * time.Second)
	for p.dropped.Load() < 5 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if d := p.dropped.Load(); d < 5 || len(p.due) != 10*pacerBacklog {
		t.Fatalf("dropped %d with %d waiting, want at least 5 and %d", d, len(p.due), 10*pacerBacklog)
	}
}
