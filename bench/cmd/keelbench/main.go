// Command keelbench measures keel beside etcd 3.7 in the same run: it builds
// both servers (or takes given binaries), runs each as a child process on
// 127.0.0.1 with identical flags and a fresh data dir, drives it with a load
// generator written on the official client, reads its memory from /proc,
// and prints a table with both servers and the ratio keel/etcd.
//
// Run it from the bench directory:
//
//	cd bench && go run ./cmd/keelbench watch-fanout
//	cd bench && go run ./cmd/keelbench lease-keepalive
//	cd bench && go run ./cmd/keelbench failover
//	cd bench && go run ./cmd/keelbench suite -quick   # all of them, into docs/benchmarks.md
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/keeldb/keel/bench/internal/harness"
	"github.com/keeldb/keel/bench/internal/proc"
	"github.com/keeldb/keel/bench/internal/report"
	"github.com/keeldb/keel/bench/internal/scenario"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// scenarioCmd is a subcommand: its flags, and the scenario they configure.
type scenarioCmd struct {
	name  string
	about string
	// setup defines the scenario's flags on fs and returns a function that
	// builds the scenario once the flags are parsed.
	setup func(fs *flag.FlagSet) func() (harness.Named, error)
	// repeat is the default of -repeat (1 if zero).
	repeat int
	// spread reports each server's min and max beside its median.
	spread bool
}

var scenarios = []scenarioCmd{
	{
		name:  "watch-fanout",
		about: "N watchers on one prefix, one write every millisecond; all events must be delivered",
		setup: func(fs *flag.FlagSet) func() (harness.Named, error) {
			var s scenario.WatchFanout
			fs.IntVar(&s.Watchers, "watchers", 10000, "number of watchers, all on the same prefix")
			fs.IntVar(&s.Conns, "conns", 10, "client connections the watchers are spread over (the watchers of a connection share one watch stream)")
			fs.DurationVar(&s.Duration, "duration", 10*time.Second, "how long the writer writes")
			fs.DurationVar(&s.Interval, "interval", time.Millisecond, "time between two writes")
			fs.IntVar(&s.Inflight, "inflight", 16, "most puts outstanding at once (the writer keeps its schedule while puts are slower than -interval)")
			fs.IntVar(&s.ValueSize, "value-size", 100, "bytes in each written value")
			fs.StringVar(&s.Prefix, "prefix", "/keelbench/watch/", "the watched prefix")
			fs.DurationVar(&s.CreateTimeout, "create-timeout", 5*time.Minute, "longest wait for every watcher to be created")
			fs.DurationVar(&s.DeliverTimeout, "deliver-timeout", 10*time.Minute, "longest wait, after the last write, for every event to be delivered")
			return func() (harness.Named, error) { return s, s.Validate() }
		},
	},
	{
		name:  "lease-keepalive",
		about: "N leases kept alive by one client; none may expire",
		setup: func(fs *flag.FlagSet) func() (harness.Named, error) {
			var s scenario.LeaseKeepalive
			fs.IntVar(&s.Leases, "leases", 10000, "number of leases")
			fs.DurationVar(&s.TTL, "ttl", 10*time.Second, "TTL of each lease (whole seconds); the client renews each lease about every TTL/3")
			fs.DurationVar(&s.Duration, "duration", 30*time.Second, "how long the leases are kept alive")
			fs.IntVar(&s.Inflight, "inflight", 32, "most Grant and TimeToLive requests outstanding at once")
			return func() (harness.Named, error) { return s, s.Validate() }
		},
	},
	{
		name:   "failover",
		about:  "3-member cluster, one client writing; SIGKILL the leader, time until the next acknowledged put",
		repeat: 10,
		spread: true,
		setup: func(fs *flag.FlagSet) func() (harness.Named, error) {
			var s scenario.Failover
			fs.IntVar(&s.Members, "members", 3, "members of the cluster")
			fs.DurationVar(&s.RequestTimeout, "request-timeout", 500*time.Millisecond, "timeout of each put; a put that fails or times out is retried at once")
			fs.DurationVar(&s.Warmup, "warmup", 2*time.Second, "how long the client writes before the leader is killed")
			fs.DurationVar(&s.MaxWait, "max-wait", 30*time.Second, "longest wait, after the kill, for an acknowledged put (the run fails beyond it)")
			return func() (harness.Named, error) { return s, s.Validate() }
		},
	},
}

// common are the flags every scenario takes.
type common struct {
	repeat     int
	keelOnly   bool
	etcdOnly   bool
	etcdBin    string
	keelBin    string
	workDir    string
	keep       bool
	jsonOut    string
	serverArgs string
}

func (c *common) define(fs *flag.FlagSet, repeat int) {
	fs.IntVar(&c.repeat, "repeat", max(repeat, 1), "rounds; each round runs both servers, each on a fresh server (etcd first in odd rounds, keel first in even ones)")
	fs.BoolVar(&c.keelOnly, "keel-only", false, "measure keel only")
	fs.BoolVar(&c.etcdOnly, "etcd-only", false, "measure etcd only")
	fs.StringVar(&c.etcdBin, "etcd-bin", "", "etcd binary to use instead of building etcd v3.7.3 from bench/go.mod")
	fs.StringVar(&c.keelBin, "keel-bin", "", "keel binary to use instead of building ../cmd/keel")
	fs.StringVar(&c.workDir, "workdir", "", "directory for binaries, data dirs and server logs (default: a new temporary directory, removed after a successful run)")
	fs.BoolVar(&c.keep, "keep", false, "keep the work directory after a successful run")
	fs.StringVar(&c.jsonOut, "json", "", "also write the results as JSON to this file")
	fs.StringVar(&c.serverArgs, "server-args", "", "extra flags, space-separated, given to both servers")
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: keelbench <scenario> [flags]\n       keelbench suite [flags]\n\nScenarios:\n")
	for _, s := range scenarios {
		fmt.Fprintf(w, "  %-16s %s\n", s.name, s.about)
	}
	fmt.Fprintf(w, "\n  %-16s %s\n", "suite", "every scenario, one step after another, written up in docs/benchmarks.md with charts")
	fmt.Fprintf(w, "\nRun 'keelbench <scenario> -h' for a scenario's flags.\n")
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "suite" {
		return runSuite(args[1:], stdout, stderr)
	}
	inv, err := parseInvocation(args[0], args[1:], stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errBadFlags):
		return 2 // the flag package has said why
	case errors.Is(err, errUnknownScenario):
		fmt.Fprintf(stderr, "keelbench: %v\n\n", err)
		usage(stderr)
		return 2
	case err != nil:
		fmt.Fprintf(stderr, "keelbench: %v\n", err)
		return 2
	}
	c := &inv.common

	ctx, stop := signalContext()
	defer stop()

	progress := harness.NewProgress(stderr)
	workDir, removeWorkDir, err := makeWorkDir(c.workDir)
	if err != nil {
		fmt.Fprintf(stderr, "keelbench: %v\n", err)
		return 1
	}
	bins := proc.Binaries{Etcd: c.etcdBin, Keel: c.keelBin}
	if c.keelOnly && bins.Etcd == "" {
		bins.Etcd = "-" // not needed; do not build it
	}
	if c.etcdOnly && bins.Keel == "" {
		bins.Keel = "-"
	}
	progress.Printf("work dir %s; building the servers", workDir)
	bins, err = proc.Build(ctx, filepath.Join(workDir, "bin"), bins)
	if err != nil {
		fmt.Fprintf(stderr, "keelbench: %v\n", err)
		return 1
	}

	rep := inv.measure(ctx, bench{
		bins:        bins,
		workDir:     workDir,
		environment: environment(ctx, inv.servers, bins, c.keelBin == ""),
		progress:    progress,
	})
	fmt.Fprintln(stdout)
	if err := rep.WriteText(stdout); err != nil {
		fmt.Fprintf(stderr, "keelbench: %v\n", err)
		return 1
	}
	if c.jsonOut != "" {
		if err := writeJSON(c.jsonOut, &rep); err != nil {
			fmt.Fprintf(stderr, "keelbench: %v\n", err)
			return 1
		}
	}
	if ctx.Err() != nil {
		fmt.Fprintf(stderr, "keelbench: interrupted; work dir kept: %s\n", workDir)
		return 130
	}
	if !rep.OK() {
		fmt.Fprintf(stderr, "keelbench: work dir kept for the server logs: %s\n", workDir)
		return 1
	}
	if c.keep || removeWorkDir == nil {
		fmt.Fprintf(stderr, "keelbench: work dir kept: %s\n", workDir)
	} else {
		removeWorkDir()
	}
	return 0
}

// Errors of parseInvocation: a name no scenario has, and flags the flag
// package rejected (it has written why to the invocation's stderr).
var (
	errUnknownScenario = errors.New("unknown scenario")
	errBadFlags        = errors.New("bad flags")
)

// invocation is a scenario subcommand with its flags parsed.
type invocation struct {
	cmd    *scenarioCmd
	fs     *flag.FlagSet
	common common
	sc     harness.Named
	// servers are the servers to measure, in the order they alternate.
	servers []proc.Kind
}

// parseInvocation parses the flags of the scenario called name (args
// follow the name on the command line). Flag errors and -h output go to
// stderr; -h returns flag.ErrHelp.
func parseInvocation(name string, args []string, stderr io.Writer) (*invocation, error) {
	var cmd *scenarioCmd
	for i := range scenarios {
		if scenarios[i].name == name {
			cmd = &scenarios[i]
		}
	}
	if cmd == nil {
		return nil, fmt.Errorf("%w %q", errUnknownScenario, name)
	}
	inv := &invocation{cmd: cmd, fs: flag.NewFlagSet("keelbench "+cmd.name, flag.ContinueOnError)}
	inv.fs.SetOutput(stderr)
	c := &inv.common
	c.define(inv.fs, cmd.repeat)
	build := cmd.setup(inv.fs)
	if err := inv.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %s: %v", errBadFlags, name, err)
	}
	if inv.fs.NArg() != 0 {
		return nil, fmt.Errorf("%s: unexpected argument %q", name, inv.fs.Arg(0))
	}
	sc, err := build()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	inv.sc = sc
	inv.servers = []proc.Kind{proc.Etcd, proc.Keel}
	switch {
	case c.keelOnly && c.etcdOnly:
		return nil, errors.New("-keel-only and -etcd-only exclude each other")
	case c.keelOnly:
		inv.servers = []proc.Kind{proc.Keel}
	case c.etcdOnly:
		inv.servers = []proc.Kind{proc.Etcd}
	}
	if c.repeat < 1 {
		return nil, errors.New("-repeat must be at least 1")
	}
	return inv, nil
}

// bench is what every scenario of an invocation shares: the built servers,
// the work directory and where progress goes.
type bench struct {
	bins proc.Binaries
	// workDir holds the runs' data dirs and logs, one subdirectory per run.
	workDir     string
	environment [][2]string
	progress    *harness.Progress
}

// measure runs the scenario round after round against fresh servers and
// returns its report. It stops early, with the runs so far, when ctx is
// cancelled. Only the binaries, work dir and environment of b are used;
// the invocation's own -etcd-bin, -keel-bin and -workdir are not looked at.
func (inv *invocation) measure(ctx context.Context, b bench) report.Report {
	rep := report.Report{
		Scenario:    inv.sc.Name(),
		Command:     commandLine(inv.cmd.name, inv.fs),
		Environment: b.environment,
		Spread:      inv.cmd.spread,
	}
	rep.Runs = harness.Run(ctx, inv.sc, harness.Options{
		Servers:    inv.servers,
		Rounds:     inv.common.repeat,
		Binaries:   b.bins,
		WorkDir:    b.workDir,
		ServerArgs: strings.Fields(inv.common.serverArgs),
		Progress:   b.progress,
	})
	return rep
}

// signalContext returns a context that Ctrl-C or SIGTERM cancels; the
// servers are stopped on the way out. A second signal kills keelbench at
// once, and the servers with it (they are started with a parent-death
// signal).
func signalContext() (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	return ctx, stop
}

// makeWorkDir returns dir, created if needed, or a new temporary directory
// together with the function that removes it.
func makeWorkDir(dir string) (string, func(), error) {
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", nil, err
		}
		abs, err := filepath.Abs(dir)
		return abs, nil, err
	}
	tmp, err := os.MkdirTemp("", "keelbench-")
	if err != nil {
		return "", nil, err
	}
	return tmp, func() { os.RemoveAll(tmp) }, nil
}

// commandLine spells out every flag, so that the printed command reproduces
// the measurement even if the defaults change.
func commandLine(name string, fs *flag.FlagSet) string {
	parts := []string{"cd bench && go run ./cmd/keelbench", name}
	fs.VisitAll(func(f *flag.Flag) {
		switch f.Name {
		case "workdir", "keep", "json", "out", "json-dir", "from-json", "list":
			// Where the output goes does not change the measurement.
			return
		}
		v := f.Value.String()
		if v == f.DefValue && (f.Name == "etcd-bin" || f.Name == "keel-bin" || f.Name == "server-args" || f.Name == "keel-only" || f.Name == "etcd-only" || f.Name == "steps") {
			return
		}
		if strings.ContainsAny(v, " \t'\"") || v == "" {
			v = "'" + v + "'"
		}
		parts = append(parts, "-"+f.Name+"="+v)
	})
	return strings.Join(parts, " ")
}

func environment(ctx context.Context, servers []proc.Kind, bins proc.Binaries, keelFromSource bool) [][2]string {
	env := [][2]string{
		{"date", time.Now().UTC().Format(time.RFC3339)},
		{"machine", machine()},
		{"loadgen", fmt.Sprintf("%s, GOMAXPROCS %d, same machine as the server", runtime.Version(), runtime.GOMAXPROCS(0))},
	}
	for _, k := range servers {
		bin := bins.Etcd
		if k == proc.Keel {
			bin = bins.Keel
		}
		v := proc.Version(ctx, bin)
		if k == proc.Keel && keelFromSource {
			if sha := gitRevision(ctx); sha != "" {
				v += ", tree " + sha
			}
		}
		env = append(env, [2]string{string(k), v + " (" + bin + ")"})
	}
	return env
}

// machine describes the CPU, core count, memory and kernel.
func machine() string {
	model := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		first, _, _ := strings.Cut(string(data), "\n")
		if f := strings.Fields(first); len(f) == 3 {
			var kb int64
			fmt.Sscan(f[1], &kb)
			mem = fmt.Sprintf(", %.1f GiB RAM", float64(kb)/(1<<20))
		}
	}
	kernel := ""
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = ", Linux " + strings.TrimSpace(string(data))
	}
	return fmt.Sprintf("%s, %d CPUs%s%s", model, runtime.NumCPU(), mem, kernel)
}

// gitRevision describes the keel source tree: its commit, and whether it
// has uncommitted changes.
func gitRevision(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "git", "-C", "..", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	sha := strings.TrimSpace(string(out))
	if st, err := exec.CommandContext(ctx, "git", "-C", "..", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
		sha += " with uncommitted changes"
	}
	return sha
}

func writeJSON(path string, rep *report.Report) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := rep.WriteJSON(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
