package harness

import (
	"context"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/keeldb/keel/bench/internal/proc"
)

func TestEvenRoundsRunTheServersInReverse(t *testing.T) {
	servers := []proc.Kind{proc.Etcd, proc.Keel}
	for round, want := range map[int][]proc.Kind{
		1: {proc.Etcd, proc.Keel},
		2: {proc.Keel, proc.Etcd},
		3: {proc.Etcd, proc.Keel},
	} {
		if got := RoundOrder(servers, round); !slices.Equal(got, want) {
			t.Errorf("round %d runs %v, want %v", round, got, want)
		}
	}
	if !slices.Equal(servers, []proc.Kind{proc.Etcd, proc.Keel}) {
		t.Errorf("RoundOrder changed its argument to %v", servers)
	}
}

func TestCPULineLeavesIdleIOWaitAndGuestOutOfBusy(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice
	busy, total, err := parseCPULine("cpu  10 1 5 100 4 2 3 0 7 7")
	if err != nil {
		t.Fatal(err)
	}
	if busy != 21 || total != 125 {
		t.Errorf("busy, total = %d, %d; want 21, 125", busy, total)
	}
	if _, _, err := parseCPULine("cpu0 1 2 3 4"); err == nil {
		t.Error("a per-CPU line is accepted as the aggregate")
	}
}

func TestSettleIsBoundedAndStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	settle(ctx, NewProgress(io.Discard))
	if d := time.Since(start); d > time.Second {
		t.Errorf("settle took %v after its context was cancelled", d)
	}
	if _, err := machineBusy(context.Background(), 10*time.Millisecond); err != nil {
		t.Errorf("machineBusy: %v", err)
	}
}
