package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/keeldb/keel/bench/internal/docs"
	"github.com/keeldb/keel/bench/internal/harness"
	"github.com/keeldb/keel/bench/internal/proc"
)

// suiteStep is one step of the suite: a scenario with fixed arguments, the
// figures its chart shows and the targets of issue 5 it is checked against.
type suiteStep struct {
	label    string
	scenario string
	args     []string
	chart    docs.Chart
	// perThousand are figures derived per 1,000 requests for its table.
	perThousand []docs.PerThousand
	// targets leave Step empty: it is the step's label.
	targets []docs.Target
}

// The headline ratios keel/etcd that issue 5 asks for.
const (
	writeTarget       = 1.5 // write throughput at 100 and 1000 clients
	singleWriteTarget = 1.0 // write throughput at 1 client
	readTarget        = 1.2
	rssTarget         = 0.5 // RSS (and RssAnon) with 1,000,000 keys
	restartTarget     = 0.5
	p99Target         = 1.0 // write p99 latency
)

// suiteSteps returns the steps of the full suite, or of the quick one:
// the same scenarios with shorter runs, a tenth of the keys and fewer
// 3-member steps, to finish in under 10 minutes on a small machine.
func suiteSteps(quick bool) []suiteStep {
	// load are the duration flags of the closed-loop load steps.
	load := []string{"-duration=10s", "-warmup=1s"}
	if quick {
		load = []string{"-duration=3s", "-warmup=500ms"}
	}
	var steps []suiteStep
	kv := func(label, scenario string, args []string, targets ...docs.Target) {
		op := scenario
		steps = append(steps, suiteStep{
			label:    label,
			scenario: scenario,
			args:     append(args, load...),
			chart: docs.Chart{
				Throughput: op + " throughput",
				Latency:    op,
				Figures:    []string{"server CPU load", "server RSS peak sampled during load"},
				Overview:   true,
			},
			perThousand: []docs.PerThousand{
				{Name: "server CPU per 1,000 requests", Figure: "server CPU load", Per: op + " requests ok"},
				{Name: "cluster CPU per 1,000 requests", Figure: "cluster CPU load", Per: op + " requests ok"},
			},
			targets: targets,
		})
	}
	writes := func(goal, op string, throughput float64) []docs.Target {
		return []docs.Target{
			{Goal: goal + ": throughput", Figure: op + " throughput", Bound: throughput},
			{Goal: goal + ": p99 latency", Figure: op + " latency p99", AtMost: true, Bound: p99Target},
		}
	}
	puts := []struct {
		label         string
		clients, conn int
		bound         float64
	}{
		{"1 client / 1 conn", 1, 1, singleWriteTarget},
		{"100 clients / 10 conns", 100, 10, writeTarget},
		{"1000 clients / 100 conns", 1000, 100, writeTarget},
	}
	for _, members := range []int{1, 3} {
		for _, p := range puts {
			if quick && members == 3 && p.clients != 100 {
				continue
			}
			label, goal := "put, "+p.label, fmt.Sprintf("writes, %d clients", p.clients)
			if p.clients == 1 {
				goal = "writes, 1 client"
			}
			if members > 1 {
				label += fmt.Sprintf(", %d members", members)
				goal += fmt.Sprintf(", %d members", members)
			}
			args := []string{fmt.Sprintf("-members=%d", members), fmt.Sprintf("-clients=%d", p.clients), fmt.Sprintf("-conns=%d", p.conn)}
			kv(label, "put", args, writes(goal, "put", p.bound)...)
		}
	}
	kv("range, linearizable", "range", []string{"-consistency=l", "-clients=100", "-conns=10"},
		docs.Target{Goal: "reads, linearizable: throughput", Figure: "range throughput", Bound: readTarget})
	kv("range, serializable", "range", []string{"-consistency=s", "-clients=100", "-conns=10"},
		docs.Target{Goal: "reads, serializable: throughput", Figure: "range throughput", Bound: readTarget})
	kv("txn-put", "txn-put", []string{"-clients=100", "-conns=10"}, writes("writes in txns, 100 clients", "txn-put", writeTarget)...)
	// The cost of security: the same loads over TLS with client
	// certificates, and with auth on (simple tokens). No target of issue 5
	// covers them; compare each with its plain step above.
	kv("put, 100 clients / 10 conns, TLS", "put", []string{"-clients=100", "-conns=10", "-tls"})
	kv("put, 100 clients / 10 conns, auth", "put", []string{"-clients=100", "-conns=10", "-auth"})
	kv("range, serializable, auth", "range", []string{"-consistency=s", "-clients=100", "-conns=10", "-auth"})

	// One full list per run: etcd counts the rest of the range for every
	// page, so a paginated list of 1,000,000 keys takes it minutes.
	keys, datasetArgs := "1,000,000", []string{"-keys=1000000", "-list-rounds=1"}
	if quick {
		keys, datasetArgs = "100,000", []string{"-keys=100000", "-list-rounds=1"}
	}
	steps = append(steps, suiteStep{
		label:    "dataset, " + keys + " keys",
		scenario: "dataset",
		args:     datasetArgs,
		chart: docs.Chart{
			Throughput: "load throughput",
			Latency:    "list page",
			Figures: []string{
				"server RSS after loading the keys", "data dir size after loading the keys", "restart until /health ok",
				"list throughput", "snapshot saved per second", "snapshot restored per second",
			},
		},
		targets: []docs.Target{
			{Goal: "RSS with " + keys + " keys", Figure: "server RSS after loading the keys", AtMost: true, Bound: rssTarget},
			{
				Goal: "RssAnon with " + keys + " keys", Figure: "server RssAnon after loading the keys", AtMost: true, Bound: rssTarget,
				Note: "VmRSS (the RSS row) counts etcd's resident pages of its bbolt file, which etcd maps into memory, " +
					"while keel's Pebble reads its files through the kernel's page cache, which no process's RSS counts. " +
					"RssAnon, the anonymous memory (heap, stacks, caches the process allocated), leaves file pages out for both: " +
					"it is the like-for-like comparison.",
			},
			{Goal: "restart with " + keys + " keys", Figure: "restart until /health ok", AtMost: true, Bound: restartTarget},
		},
	})

	mixed := append([]string(nil), load...)
	if quick {
		mixed = append(mixed, "-objects=5000")
	}
	steps = append(steps, suiteStep{
		label:    "k8s-mixed",
		scenario: "k8s-mixed",
		args:     mixed,
		chart: docs.Chart{
			Throughput: "mixed throughput",
			Latency:    "mixed",
			Figures:    []string{"server CPU in the measured window", "server RSS peak sampled during load"},
			Overview:   true,
		},
	})

	watchers, watchArgs := "10,000", []string{"-watchers=10000", "-duration=10s"}
	if quick {
		watchers, watchArgs = "2,000", []string{"-watchers=2000", "-duration=3s"}
	}
	steps = append(steps, suiteStep{
		label:    "watch fan-out, " + watchers + " watchers",
		scenario: "watch-fanout",
		args:     watchArgs,
		chart: docs.Chart{
			Throughput: "delivery rate (first write to last delivery)",
			Latency:    "put",
			Figures:    []string{"delivery time after the last write", "server CPU from first write to last delivery", "server RSS peak sampled during load"},
			Overview:   true,
		},
	})

	leaseArgs := []string{"-leases=10000", "-duration=30s"}
	if quick {
		leaseArgs = []string{"-leases=10000", "-duration=10s"}
	}
	steps = append(steps, suiteStep{
		label:    "lease keep-alive, 10,000 leases",
		scenario: "lease-keepalive",
		args:     leaseArgs,
		chart: docs.Chart{
			Throughput: "keepalive responses per second",
			Figures:    []string{"grant rate", "server CPU while keeping alive", "server VmHWM (peak RSS since start)"},
		},
	})

	// Defragment under a write load: 200,000 keys of 1 KiB, half deleted
	// and compacted, so that etcd's defragmentation takes seconds.
	defragArgs := []string{"-keys=200000", "-before=10s", "-after=10s"}
	if quick {
		defragArgs = []string{"-keys=50000", "-warmup=1s", "-before=3s", "-after=3s"}
	}
	// Twice: a closed loop that saturates the server (a defrag's CPU then
	// slows every put), and a paced load of 1,500 puts a second, well under
	// both servers' capacity on the reference machine, as a cluster's
	// steady traffic is.
	for _, paced := range []bool{false, true} {
		label, args := "defrag under write load", defragArgs
		if paced {
			label, args = "defrag under a paced write load (1,500/s)", append(slices.Clone(defragArgs), "-rate=1500")
		}
		steps = append(steps, suiteStep{
			label:    label,
			scenario: "defrag",
			args:     args,
			chart: docs.Chart{
				Throughput: "put during defrag throughput",
				Latency:    "put during defrag",
				Figures:    []string{"defrag duration", "p99 during defrag / p99 before", "put before defrag latency p99", "db size after defrag"},
			},
		})
	}

	failoverArgs := []string{"-members=3", "-repeat=10"}
	if quick {
		failoverArgs = []string{"-members=3", "-warmup=1s"}
	}
	steps = append(steps, suiteStep{
		label:    "failover, 3 members",
		scenario: "failover",
		args:     failoverArgs,
		chart: docs.Chart{
			Figures: []string{"failover: kill to next acknowledged put", "failover: kill to new leader seen (polled)", "killed member: restart until serving"},
		},
	})
	return steps
}

// suiteFlags are the flags of the suite subcommand.
type suiteFlags struct {
	quick      bool
	steps      string
	out        string
	jsonDir    string
	fromJSON   string
	list       bool
	repeat     int
	etcdBin    string
	keelBin    string
	workDir    string
	keep       bool
	serverArgs string
	overrides  overrides
}

func (f *suiteFlags) define(fs *flag.FlagSet) {
	fs.BoolVar(&f.quick, "quick", false, "the quick suite: shorter runs and 100,000 keys instead of 1,000,000 (under 10 minutes)")
	fs.StringVar(&f.steps, "steps", "", "run only the steps whose label or scenario matches this regular expression (-list shows them)")
	fs.StringVar(&f.out, "out", "../docs/benchmarks.md", "the document to write; its charts go into the directory beside it named like it without .md")
	fs.StringVar(&f.jsonDir, "json-dir", "", "also write each step's results as JSON into this directory, as each step ends (the whole suite goes to suite.json beside the charts in any case, and here too)")
	fs.StringVar(&f.fromJSON, "from-json", "", "run nothing: write the document again from the suite.json of an earlier run (e.g. ../docs/benchmarks/suite.json)")
	fs.BoolVar(&f.list, "list", false, "run nothing: print the steps and the command of each")
	fs.IntVar(&f.repeat, "repeat", 3, "rounds of every step (each round runs both servers, etcd first in odd rounds, keel first in even ones); a step's own -repeat wins (failover)")
	fs.StringVar(&f.etcdBin, "etcd-bin", "", "etcd binary to use instead of building etcd v3.7.3 from bench/go.mod")
	fs.StringVar(&f.keelBin, "keel-bin", "", "keel binary to use instead of building ../cmd/keel")
	fs.StringVar(&f.workDir, "workdir", "", "directory for binaries, data dirs and server logs (default: a new temporary directory; a step's runs are removed once it succeeded)")
	fs.BoolVar(&f.keep, "keep", false, "keep every step's data dirs and logs")
	fs.StringVar(&f.serverArgs, "server-args", "", "extra flags, space-separated, given to both servers in every step")
	fs.Var(&f.overrides, "override", "extra flags for every step of one scenario, as 'scenario: flags', e.g. 'lease-keepalive: -leases=1000 -duration=3s'; they come after (so win over) the step's own; repeatable")
}

// overrides are extra flags per scenario, from repeated -override flags.
type overrides struct {
	given []string // as given, for the command line
	flags map[string][]string
}

func (o *overrides) String() string {
	if o == nil {
		return ""
	}
	return strings.Join(o.given, "; ")
}

func (o *overrides) Set(v string) error {
	name, flags, ok := strings.Cut(v, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" {
		return errors.New("want scenario: flags")
	}
	if !slices.ContainsFunc(scenarios, func(c scenarioCmd) bool { return c.name == name }) {
		return fmt.Errorf("no scenario %q", name)
	}
	if o.flags == nil {
		o.flags = map[string][]string{}
	}
	o.flags[name] = append(o.flags[name], strings.Fields(flags)...)
	o.given = append(o.given, strings.TrimSpace(v))
	return nil
}

// stepArgs are the flags a step's scenario is invoked with: the suite's,
// the step's own, then the -override ones; a later flag wins.
func (f *suiteFlags) stepArgs(st suiteStep) []string {
	own := append(slices.Clone(st.args), f.overrides.flags[st.scenario]...)
	var args []string
	if !slices.ContainsFunc(own, func(a string) bool { return strings.HasPrefix(a, "-repeat=") }) {
		args = append(args, fmt.Sprintf("-repeat=%d", f.repeat))
	}
	if f.serverArgs != "" {
		args = append(args, "-server-args="+f.serverArgs)
	}
	return append(args, own...)
}

// runSuite runs the suite subcommand: every selected step in order, each
// through the same path as its own subcommand, with the servers built
// once. A step that fails is written up with its failures and the suite
// goes on; the exit status is 1 if any step failed, 130 if interrupted
// (the document is then not written).
func runSuite(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keelbench suite", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f suiteFlags
	f.define(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "keelbench suite: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if f.fromJSON != "" {
		return rewriteDoc(f.fromJSON, f.out, stderr)
	}
	if f.repeat < 1 {
		fmt.Fprintln(stderr, "keelbench suite: -repeat must be at least 1")
		return 2
	}
	steps, err := selectSteps(suiteSteps(f.quick), f.steps)
	if err != nil {
		fmt.Fprintf(stderr, "keelbench suite: %v\n", err)
		return 2
	}
	if f.list {
		for _, st := range steps {
			fmt.Fprintf(stdout, "%-42s keelbench %s %s\n", st.label, st.scenario, strings.Join(f.stepArgs(st), " "))
		}
		return 0
	}

	// Check every step's flags before anything is built or run; a step
	// whose flags are rejected is reported as not run.
	invs := make([]*invocation, len(steps))
	parseErrs := make([]string, len(steps))
	for i, st := range steps {
		var msg bytes.Buffer
		inv, err := parseInvocation(st.scenario, f.stepArgs(st), &msg)
		if err != nil {
			parseErrs[i] = strings.TrimSpace(fmt.Sprintf("%v\n%s", err, msg.String()))
			fmt.Fprintf(stderr, "keelbench suite: step %q will not run: %s\n", st.label, parseErrs[i])
			continue
		}
		invs[i] = inv
	}

	ctx, stop := signalContext()
	defer stop()
	start := time.Now()
	progress := harness.NewProgress(stderr)
	workDir, removeWorkDir, err := makeWorkDir(f.workDir)
	if err != nil {
		fmt.Fprintf(stderr, "keelbench suite: %v\n", err)
		return 1
	}
	progress.Printf("work dir %s; building the servers", workDir)
	bins, err := proc.Build(ctx, filepath.Join(workDir, "bin"), proc.Binaries{Etcd: f.etcdBin, Keel: f.keelBin})
	if err != nil {
		fmt.Fprintf(stderr, "keelbench suite: %v\n", err)
		return 1
	}
	env := environment(ctx, []proc.Kind{proc.Etcd, proc.Keel}, bins, f.keelBin == "")
	mode := "full"
	if f.quick {
		mode = "quick"
	}
	suite := docs.Suite{Command: commandLine("suite", fs), Mode: mode, Environment: env}
	for i, st := range steps {
		for _, t := range st.targets {
			t.Step = st.label
			suite.Targets = append(suite.Targets, t)
		}
		step := docs.Step{Label: st.label, Chart: st.chart, PerThousand: st.perThousand}
		inv := invs[i]
		if inv == nil {
			step.Err = parseErrs[i]
			suite.Steps = append(suite.Steps, step)
			continue
		}
		if ctx.Err() != nil {
			break
		}
		progress.Printf("step %d/%d: %s (keelbench %s %s)", i+1, len(steps), st.label, st.scenario, strings.Join(f.stepArgs(st), " "))
		stepDir := filepath.Join(workDir, fmt.Sprintf("%02d-%s", i+1, docs.Slug(st.label)))
		t0 := time.Now()
		step.Report = inv.measure(ctx, bench{bins: bins, workDir: stepDir, environment: env, progress: progress})
		step.Elapsed = time.Since(t0)
		if ctx.Err() != nil {
			break // the step is incomplete: leave it out
		}
		suite.Steps = append(suite.Steps, step)
		fmt.Fprintf(stdout, "\n=== %s (%s)\n", st.label, step.Elapsed.Round(time.Second))
		if err := step.Report.WriteText(stdout); err != nil {
			fmt.Fprintf(stderr, "keelbench suite: %v\n", err)
		}
		if f.jsonDir != "" {
			if err := writeJSONFile(filepath.Join(f.jsonDir, fmt.Sprintf("%02d-%s.json", i+1, docs.Slug(st.label))), &step.Report); err != nil {
				fmt.Fprintf(stderr, "keelbench suite: %v\n", err)
			}
		}
		if step.OK() && !f.keep {
			os.RemoveAll(stepDir)
		}
		progress.Printf("step %d/%d: %s done in %v, %s", i+1, len(steps), st.label, step.Elapsed.Round(time.Second), okText(step.OK()))
	}
	suite.Elapsed = time.Since(start)

	if f.jsonDir != "" {
		if err := writeJSONFile(filepath.Join(f.jsonDir, "suite.json"), &suite); err != nil {
			fmt.Fprintf(stderr, "keelbench suite: %v\n", err)
		}
	}
	if ctx.Err() != nil {
		fmt.Fprintf(stderr, "keelbench suite: interrupted; %s not written; work dir kept: %s\n", f.out, workDir)
		return 130
	}
	if err := docs.Write(f.out, &suite); err != nil {
		fmt.Fprintf(stderr, "keelbench suite: %v\n", err)
		return 1
	}
	progress.Printf("suite done in %v; wrote %s and its charts", suite.Elapsed.Round(time.Second), f.out)
	for _, st := range suite.Steps {
		fmt.Fprintf(stderr, "  %-40s %s\n", st.Label, okText(st.OK()))
	}
	// Keep the work dir when a run failed: it holds the server logs.
	runFailed := slices.ContainsFunc(suite.Steps, func(st docs.Step) bool { return st.Err == "" && !st.OK() })
	switch {
	case runFailed:
		fmt.Fprintf(stderr, "keelbench suite: work dir kept for the server logs: %s\n", workDir)
	case f.keep || removeWorkDir == nil:
		fmt.Fprintf(stderr, "keelbench suite: work dir kept: %s\n", workDir)
	default:
		removeWorkDir()
	}
	if !suite.OK() {
		fmt.Fprintln(stderr, "keelbench suite: some steps FAILED or did not run")
		return 1
	}
	return 0
}

// selectSteps returns the steps whose label or scenario matches expr, all
// of them when expr is empty.
func selectSteps(steps []suiteStep, expr string) ([]suiteStep, error) {
	if expr == "" {
		return steps, nil
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("-steps: %w", err)
	}
	var out []suiteStep
	for _, st := range steps {
		if re.MatchString(st.label) || re.MatchString(st.scenario) {
			out = append(out, st)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-steps %q matches no step (see -list)", expr)
	}
	return out, nil
}

// rewriteDoc writes the document at out from a suite that an earlier
// run saved.
func rewriteDoc(from, out string, stderr io.Writer) int {
	suite, err := docs.Read(from)
	if err != nil {
		fmt.Fprintf(stderr, "keelbench suite: %v\n", err)
		return 1
	}
	if err := docs.Write(out, suite); err != nil {
		fmt.Fprintf(stderr, "keelbench suite: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "keelbench suite: wrote %s from %s\n", out, from)
	return 0
}

// writeJSONFile writes v as indented JSON to path, creating its directory.
func writeJSONFile(path string, v any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

func okText(ok bool) string {
	if ok {
		return "ok"
	}
	return "FAILED"
}
