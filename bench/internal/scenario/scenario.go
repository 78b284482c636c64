// Package scenario holds the benchmarks keelbench runs. Each drives a server
// through the official client (go.etcd.io/etcd/client/v3) only, so keel and
// etcd are measured by exactly the same code.
package scenario

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keeldb/keel/bench/internal/proc"
	"github.com/keeldb/keel/bench/internal/report"
)

// Bounds on single requests and on waiting for goroutines the scenarios
// start, so that a hung server fails a run instead of hanging it.
const (
	requestTimeout = 30 * time.Second
	drainTimeout   = 30 * time.Second
	// sampleInterval spaces the memory samples taken during load.
	sampleInterval = 100 * time.Millisecond
	// progressInterval spaces the progress lines.
	progressInterval = 2 * time.Second
)

// MiB formats bytes as mebibytes for progress lines.
func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// memoryLog collects the server's memory at the phases of a run, so that
// the figures can be reported together, in a fixed order, at the end.
type memoryLog struct {
	pid      int
	endpoint string
	http     *http.Client
	phases   []string
	mem      []proc.Memory
	metrics  []proc.GoMetrics
	// The peaks sampled during the load phase.
	peakRSS, peakAnon int64
	sampled           bool
	sampler           *proc.Sampler
	// peakAt is how many phases were read before the sampled peaks; the
	// peaks are reported after them.
	peakAt int
}

// newMemoryLog returns a memory log of the server srv.
func newMemoryLog(srv *proc.Process) *memoryLog {
	return &memoryLog{pid: srv.Pid(), endpoint: srv.Endpoint, http: http.DefaultClient}
}

// newMemoryLogOf returns a memory log of the server process pid, whose
// client URL is endpoint (for its /metrics, asked with client): one member
// of a cluster.
func newMemoryLogOf(pid int, endpoint string, client *http.Client) *memoryLog {
	return &memoryLog{pid: pid, endpoint: endpoint, http: client}
}

// begin records the idle server's memory and resets the load generator's
// peak, before a scenario loads the server.
func (l *memoryLog) begin(ctx context.Context) error {
	if err := l.read(ctx, "idle"); err != nil {
		return err
	}
	resetLoadgenPeak()
	return nil
}

// finish stops sampling, if it runs, and adds every figure to run; a
// sampling error becomes *errp unless that already holds one. Scenarios
// defer it right after newMemoryLog.
func (l *memoryLog) finish(run *report.Run, errp *error) {
	if err := l.stopSampling(); err != nil && *errp == nil {
		*errp = err
	}
	l.addTo(run)
}

// read records the server's memory now, and the Go runtime figures from its
// /metrics endpoint when it has one.
func (l *memoryLog) read(ctx context.Context, phase string) error {
	m, err := proc.ReadMemory(l.pid)
	if err != nil {
		return fmt.Errorf("read server memory %s: %w", phase, err)
	}
	l.phases = append(l.phases, phase)
	l.mem = append(l.mem, m)
	l.metrics = append(l.metrics, proc.ReadGoMetrics(ctx, l.http, l.endpoint))
	return nil
}

// startSampling samples the server's memory until stopSampling.
func (l *memoryLog) startSampling() {
	l.sampler = proc.StartSampler(l.pid, sampleInterval)
}

// stopSampling stops the sampler, if it runs, and keeps its peaks.
func (l *memoryLog) stopSampling() error {
	if l.sampler == nil {
		return nil
	}
	rss, anon, err := l.sampler.Stop()
	l.sampler = nil
	if err != nil {
		return fmt.Errorf("sample server memory: %w", err)
	}
	l.peakRSS, l.peakAnon, l.sampled = rss, anon, true
	l.peakAt = len(l.phases)
	return nil
}

// addTo records the figures in run: resident memory at each phase, its
// peaks, the anonymous part of it, then the Go heap and goroutines.
func (l *memoryLog) addTo(run *report.Run) {
	if len(l.mem) == 0 {
		return
	}
	l.addPhases(run, "server RSS", l.peakRSS, func(m proc.Memory) int64 { return m.RSS })
	// VmHWM covers the whole life of the process, start-up included; the
	// sampled peak covers the load phase only and can differ from it by
	// the kernel's RSS counter slack. Both are reported.
	run.Add("server VmHWM (peak RSS since start)", report.Bytes, float64(l.mem[len(l.mem)-1].HWM))
	l.addPhases(run, "server RssAnon", l.peakAnon, func(m proc.Memory) int64 { return m.Anon })
	for i, p := range l.phases {
		if g := l.metrics[i]; g.Valid {
			run.Add("server Go heap in use "+p, report.Bytes, g.HeapInuse)
		} else {
			run.AddMissing("server Go heap in use "+p, report.Bytes)
		}
	}
	for i, p := range l.phases {
		if g := l.metrics[i]; g.Valid {
			run.Add("server goroutines "+p, report.Count, g.Goroutines)
		} else {
			run.AddMissing("server goroutines "+p, report.Count)
		}
	}
	if self, err := proc.ReadMemory(os.Getpid()); err == nil {
		run.Add("load generator VmHWM during the run", report.Bytes, float64(self.HWM))
	}
}

// addPhases records "<name> <phase>" for every phase read, with the
// sampled peak, if any, as "<name> peak sampled during load" in its place
// among them.
func (l *memoryLog) addPhases(run *report.Run, name string, peak int64, value func(proc.Memory) int64) {
	for i, p := range l.phases {
		if l.sampled && i == l.peakAt {
			run.Add(name+" peak sampled during load", report.Bytes, float64(peak))
		}
		run.Add(name+" "+p, report.Bytes, float64(value(l.mem[i])))
	}
	if l.sampled && l.peakAt == len(l.phases) {
		run.Add(name+" peak sampled during load", report.Bytes, float64(peak))
	}
}

// resetLoadgenPeak restarts this process's VmHWM from its current RSS, so
// that the load generator's peak reported for a run is that run's, not the
// previous runs'. Without the kernel's support the peak stays cumulative.
func resetLoadgenPeak() {
	runtime.GC()
	debug.FreeOSMemory()
	proc.ResetPeak(os.Getpid())
}

// cpuMeter measures the CPU time the server and the load generator (this
// process) use over a phase. Both share the machine, so the load
// generator's share says how much of the machine the server could not have.
type cpuMeter struct {
	pid              int
	server0, client0 time.Duration
}

func startCPU(pid int) (*cpuMeter, error) {
	s, err := proc.ReadCPU(pid)
	if err != nil {
		return nil, err
	}
	c, err := proc.ReadCPU(os.Getpid())
	if err != nil {
		return nil, err
	}
	return &cpuMeter{pid: pid, server0: s, client0: c}, nil
}

// cpuUse is the CPU time used over a phase.
type cpuUse struct {
	server, loadgen time.Duration
	err             error
}

// stop reads the CPU time used since startCPU.
func (m *cpuMeter) stop() cpuUse {
	s, err := proc.ReadCPU(m.pid)
	if err != nil {
		return cpuUse{err: err}
	}
	c, err := proc.ReadCPU(os.Getpid())
	if err != nil {
		return cpuUse{err: err}
	}
	return cpuUse{server: s - m.server0, loadgen: c - m.client0}
}

// addTo records the CPU times, or returns why they could not be read.
func (u cpuUse) addTo(run *report.Run, phase string) error {
	if u.err != nil {
		return fmt.Errorf("read CPU time: %w", u.err)
	}
	run.AddDuration("server CPU "+phase, u.server)
	run.AddDuration("load generator CPU "+phase, u.loadgen)
	return nil
}

// closeAll closes clients; a benchmark's clients are closed before its
// server stops.
func closeAll(clients []*clientv3.Client) {
	for _, c := range clients {
		if c != nil {
			c.Close()
		}
	}
}

// waitGroupTimeout waits for wg at most d and reports whether it finished.
func waitGroupTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := waitDone(wg)
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// waitDone returns a channel closed once wg's goroutines have all returned.
func waitDone(wg *sync.WaitGroup) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	return done
}
