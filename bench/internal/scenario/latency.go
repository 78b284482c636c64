package scenario

import (
	"math"
	"slices"
	"sync"
	"time"

	"github.com/keeldb/keel/bench/internal/report"
)

// Percentiles are the latency percentiles every load scenario reports, in
// the order they appear in the report and the charts. The chart code finds
// them by their figure names: "<op> latency p50" and so on.
var Percentiles = []struct {
	Label string
	P     float64
}{
	{"p50", 0.50},
	{"p90", 0.90},
	{"p99", 0.99},
	{"p99.9", 0.999},
	{"max", 1},
}

// percentile returns the p-th percentile (0 < p <= 1) of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// latencies collects request latencies from many goroutines. Each worker
// records into its own shard (no contention on the hot path); merge sorts
// them all once the load has stopped.
type latencies struct {
	mu     sync.Mutex
	shards []*latencyShard
}

// latencyShard is one worker's samples; only that worker appends to it.
type latencyShard struct{ samples []time.Duration }

// shard returns a new shard for one worker.
func (l *latencies) shard() *latencyShard {
	s := &latencyShard{samples: make([]time.Duration, 0, 1024)}
	l.mu.Lock()
	l.shards = append(l.shards, s)
	l.mu.Unlock()
	return s
}

// add records one request's latency.
func (s *latencyShard) add(d time.Duration) { s.samples = append(s.samples, d) }

// merge returns every sample, sorted. Call it only after every worker has
// stopped recording.
func (l *latencies) merge() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.shards {
		n += len(s.samples)
	}
	all := make([]time.Duration, 0, n)
	for _, s := range l.shards {
		all = append(all, s.samples...)
	}
	slices.Sort(all)
	return all
}

// addLatencyFigures records "<op> latency p50" ... "<op> latency max" in
// milliseconds from sorted samples; with no samples they are missing.
func addLatencyFigures(run *report.Run, op string, sorted []time.Duration) {
	for _, p := range Percentiles {
		name := op + " latency " + p.Label
		if len(sorted) == 0 {
			run.AddMissing(name, report.Millis)
			continue
		}
		run.AddMillis(name, percentile(sorted, p.P))
	}
}
