// Package harness runs a scenario against fresh keel and etcd servers,
// alternating between them, and collects the results.
package harness

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/keeldb/keel/bench/internal/proc"
	"github.com/keeldb/keel/bench/internal/report"
)

// Named is a benchmark: a Scenario or a ClusterScenario.
type Named interface {
	// Name is the subcommand that runs it, e.g. "watch-fanout".
	Name() string
}

// Scenario is a benchmark of one server, which the harness starts for it.
type Scenario interface {
	Named
	// Run measures srv, a freshly started server with an empty data dir,
	// and records figures and failures in run. It returns an error only
	// when it could not complete; the server may have died. It must stop
	// every goroutine and close every client it started before it
	// returns, and return promptly once ctx is cancelled. It writes
	// progress lines, prefixed with its run's name, to progress.
	Run(ctx context.Context, srv *proc.Process, run *report.Run, progress *Progress) error
}

// ClusterScenario is a benchmark of a multi-member cluster. It starts and
// stops its servers itself (it kills and restarts members), in dir, with
// bin and serverArgs. The rest of Scenario's contract holds: figures and
// failures go to run, an error means it could not complete, every
// goroutine, client and server it started is stopped before it returns,
// and it returns promptly once ctx is cancelled.
type ClusterScenario interface {
	Named
	RunCluster(ctx context.Context, kind proc.Kind, bin, dir string, serverArgs []string, run *report.Run, progress *Progress) error
}

// Options configure a Run.
type Options struct {
	// Servers lists the servers to measure, in the order of the first
	// round; every even round runs them in the reverse order.
	Servers []proc.Kind
	// Rounds is how many times each server is measured.
	Rounds   int
	Binaries proc.Binaries
	// WorkDir holds the servers' data dirs and logs. Every server's data
	// dir is on this one file system.
	WorkDir string
	// ServerArgs are extra flags given to both servers.
	ServerArgs []string
	Progress   *Progress
}

// Run measures sc against each server in opts.Servers, round after round: a
// fresh server process with a fresh data dir for every run, stopped before
// the next one starts, so that two servers never compete for the machine.
// The order of the servers alternates from round to round (etcd, keel;
// keel, etcd; ...), so that neither always runs in the wake of the other
// (its page cache, its data dir's writeback, the machine's heat). Before
// every run it flushes the file systems and waits, at most settleTimeout,
// until the machine is idle (see settle). It stops early, with the runs so
// far, when ctx is cancelled.
func Run(ctx context.Context, sc Named, opts Options) []report.Run {
	var runs []report.Run
	for round := 1; round <= opts.Rounds; round++ {
		for _, kind := range RoundOrder(opts.Servers, round) {
			if ctx.Err() != nil {
				return runs
			}
			settle(ctx, opts.Progress.With(fmt.Sprintf("%s#%d", kind, round)))
			if ctx.Err() != nil {
				return runs
			}
			runs = append(runs, runOne(ctx, sc, opts, kind, round))
		}
	}
	return runs
}

// RoundOrder is the order in which round (counting from 1) runs servers:
// as given in odd rounds, reversed in even ones.
func RoundOrder(servers []proc.Kind, round int) []proc.Kind {
	order := slices.Clone(servers)
	if round%2 == 0 {
		slices.Reverse(order)
	}
	return order
}

func runOne(ctx context.Context, named Named, opts Options, kind proc.Kind, round int) report.Run {
	run := report.Run{Server: string(kind), Round: round}
	name := fmt.Sprintf("%s#%d", kind, round)
	progress := opts.Progress.With(name)
	bin := opts.Binaries.Etcd
	if kind == proc.Keel {
		bin = opts.Binaries.Keel
	}
	dir := filepath.Join(opts.WorkDir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		run.Error = err.Error()
		return run
	}
	var sc Scenario
	switch x := named.(type) {
	case ClusterScenario:
		start := time.Now()
		if err := x.RunCluster(ctx, kind, bin, dir, opts.ServerArgs, &run, progress); err != nil {
			run.Error = err.Error()
		}
		progress.Printf("done in %v", time.Since(start).Round(time.Millisecond))
		return run
	case Scenario:
		sc = x
	default:
		run.Error = fmt.Sprintf("%s is neither a Scenario nor a ClusterScenario", named.Name())
		return run
	}
	dataDir := filepath.Join(dir, "data")
	progress.Printf("starting %s", bin)
	srv, err := proc.Start(ctx, kind, bin, dataDir, filepath.Join(dir, "server.log"), opts.ServerArgs)
	if err != nil {
		run.Error = err.Error()
		return run
	}
	progress.Printf("serving at %s (pid %d, data dir %s)", srv.Endpoint, srv.Pid(), dataDir)
	startUsage, startUsageErr := proc.DiskUsage(dataDir)
	start := time.Now()
	// A server that dies ends the run at once, instead of leaving the
	// load generator to time out request after request.
	sctx, cancel := context.WithCancelCause(ctx)
	watchdog := make(chan struct{})
	go func() {
		defer close(watchdog)
		select {
		case <-srv.Done():
			cancel(fmt.Errorf("%s exited during the run", kind))
		case <-sctx.Done():
		}
	}()
	err = sc.Run(sctx, srv, &run, progress)
	cancel(nil)
	<-watchdog
	if err != nil {
		if cause := context.Cause(sctx); cause != nil && ctx.Err() == nil && cause != context.Canceled {
			err = fmt.Errorf("%w: %v", err, cause)
		}
		run.Error = err.Error()
	}
	if exited, err := srv.Exited(); exited {
		run.Failf("%s exited during the run: %v (server log: %s)", kind, err, srv.LogPath)
	}
	if startUsageErr == nil {
		run.Add("data dir size at start", report.Bytes, float64(startUsage))
	}
	if size, err := proc.DiskUsage(dataDir); err == nil {
		run.Add("data dir size at the end", report.Bytes, float64(size))
	}
	if err := srv.Stop(); err != nil && len(run.Failures) == 0 {
		run.Failf("%v", err)
	}
	progress.Printf("done in %v", time.Since(start).Round(time.Millisecond))
	return run
}

// Progress writes timestamped progress lines. It is safe for concurrent use.
type Progress struct {
	mu     *sync.Mutex
	w      io.Writer
	prefix string
	start  time.Time
}

// NewProgress writes progress lines to w.
func NewProgress(w io.Writer) *Progress {
	return &Progress{mu: new(sync.Mutex), w: w, start: time.Now()}
}

// With returns a Progress that prefixes its lines with name.
func (p *Progress) With(name string) *Progress {
	q := *p
	q.prefix = "[" + name + "] "
	return &q
}

// Printf writes one line.
func (p *Progress) Printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%8.1fs %s%s\n", time.Since(p.start).Seconds(), p.prefix, fmt.Sprintf(format, args...))
}
