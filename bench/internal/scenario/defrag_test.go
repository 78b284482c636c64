package scenario

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func TestDefragTallySortsRequestsIntoTheWindowTheyCompleteIn(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	bounds := []time.Time{at(1), at(2), at(3), at(4)}
	boom := errors.New("boom")
	samples := [][]defragSample{
		{
			{done: at(0.5), lat: time.Second},                 // warm-up: not counted
			{done: at(0.5), lat: time.Millisecond, err: boom}, // warm-up failure: counted
			{done: at(1), lat: 2 * time.Millisecond},          // before (start is inside)
			{done: at(1.9), lat: 4 * time.Millisecond},        // before
		},
		{
			{done: at(2), lat: 900 * time.Millisecond},            // during (start is inside)
			{done: at(2.5), lat: 5 * time.Millisecond, err: boom}, // during, failed
			{done: at(3.01), lat: 3 * time.Millisecond},           // after: sent after the defrag
			{done: at(3), lat: 3 * time.Millisecond},              // completed after, sent during: during
			{done: at(3.2), lat: 3 * time.Second},                 // sent before, held through: during
			{done: at(4), lat: time.Millisecond},                  // tail: not counted
			{done: at(4.5), lat: time.Millisecond, err: boom},     // tail failure: counted
		},
	}
	tl := tallyDefrag(samples, bounds)
	if got, want := tl.ok, []int64{2, 3, 1}; !slices.Equal(got, want) {
		t.Errorf("ok = %v, want %v", got, want)
	}
	if got, want := tl.failed, []int64{0, 1, 0}; !slices.Equal(got, want) {
		t.Errorf("failed = %v, want %v", got, want)
	}
	if tl.outside != 2 || tl.total != 3 || tl.first == nil {
		t.Errorf("outside %d, total %d, first %v; want 2, 3, an error", tl.outside, tl.total, tl.first)
	}
	if got := tl.lats[0]; len(got) != 2 || got[0] != 2*time.Millisecond || got[1] != 4*time.Millisecond {
		t.Errorf("before latencies %v, want sorted [2ms 4ms]", got)
	}
	if got := tl.lats[1]; len(got) != 3 || got[0] != 3*time.Millisecond || got[1] != 900*time.Millisecond || got[2] != 3*time.Second {
		t.Errorf("during latencies %v, want [3ms 900ms 3s]", got)
	}
}

func TestDefragValidateRejectsBadFlags(t *testing.T) {
	good := Defrag{Members: 1, Keys: 10, ValueSize: 1, PrefillBatch: 1, DeleteBatch: 1, Clients: 2, Conns: 1,
		LoadKeySpace: 1, LoadValueSize: 1, Before: time.Second, After: time.Second, DefragTimeout: time.Second}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid parameters rejected: %v", err)
	}
	for name, mut := range map[string]func(*Defrag){
		"members":  func(s *Defrag) { s.Members = 0 },
		"conns":    func(s *Defrag) { s.Conns = 3 },
		"batch":    func(s *Defrag) { s.PrefillBatch = 0 },
		"before":   func(s *Defrag) { s.Before = 0 },
		"space":    func(s *Defrag) { s.LoadKeySpace = 0 },
		"timeout":  func(s *Defrag) { s.DefragTimeout = 0 },
		"negative": func(s *Defrag) { s.Keys = -1 },
	} {
		s := good
		mut(&s)
		if s.Validate() == nil {
			t.Errorf("%s: invalid parameters accepted", name)
		}
	}
}

func TestDefragKeysSortByNumber(t *testing.T) {
	if !(defragFillKey(9) < defragFillKey(10)) || !(defragLoadKey(99) < defragLoadKey(100)) {
		t.Error("keys do not sort by number")
	}
}
