package compat

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keeldb/keel/config"
)

// Golden tests of keelctl: every command line runs twice, once with the
// official etcdctl against one server and once with keelctl against a twin
// server that has seen exactly the same command lines, and the two runs must
// print the same thing and exit with the same code.
//
// The twins are started with the same name, advertised peer URL and cluster
// token, so their member and cluster IDs are equal and every header matches
// byte for byte (protobuf output included). The advertised peer URL is never
// listened on or dialled: a one-member cluster does not talk to peers, and
// the real peer listener is on a free port.
//
// What is compared, after normalising (see normalise):
//   - the exit code;
//   - standard output, byte for byte;
//   - standard error line by line, where a JSON log line is compared by its
//     level and message only (timestamps, callers and stack traces differ),
//     the usage text cobra prints after a flag error is dropped (help texts
//     are keel's own words), and "etcdctl" reads "keelctl".

// ctlTwinAdvertisePeerURL is the peer URL both twins advertise. Nothing
// listens on it; it only makes the twins' IDs equal.
const ctlTwinAdvertisePeerURL = "http://127.0.0.1:2380"

var flagCtlServer = flag.String("ctlserver", "", "keel or etcd: the servers of the keelctl golden tests (default keel; env KEEL_COMPAT_CTLSERVER)")

func ctlServer() string {
	if *flagCtlServer != "" {
		return *flagCtlServer
	}
	return os.Getenv("KEEL_COMPAT_CTLSERVER")
}

var keelctlBuild struct {
	once sync.Once
	path string
	err  error
}

// buildKeelctl builds ../cmd/keelctl (through the replace directive) into the
// same directory as etcdctl.
func buildKeelctl(t *testing.T) string {
	t.Helper()
	dir := filepath.Dir(buildEtcdctl(t))
	keelctlBuild.once.Do(func() {
		goTool, err := findGoTool()
		if err != nil {
			keelctlBuild.err = err
			return
		}
		out := filepath.Join(dir, "keelctl")
		ctx, cancel := context.WithTimeout(context.Background(), etcdctlBuildTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, goTool, "build", "-o", out, "github.com/keeldb/keel/cmd/keelctl")
		if msg, err := cmd.CombinedOutput(); err != nil {
			keelctlBuild.err = fmt.Errorf("go build keelctl: %v\n%s", err, msg)
			return
		}
		keelctlBuild.path = out
	})
	if keelctlBuild.err != nil {
		t.Fatal(keelctlBuild.err)
	}
	return keelctlBuild.path
}

// ctlTwins is a pair of servers, one for etcdctl and one for keelctl, driven
// through the same command lines.
type ctlTwins struct {
	t                *testing.T
	etcdctl, keelctl string
	// etcdctlEP and keelctlEP are the client endpoints (host:port) of the
	// server etcdctl talks to and of the one keelctl talks to.
	etcdctlEP, keelctlEP string
	// ids map each masked value, per side, to its placeholder; see twinStep.Mask.
	ids [2]map[string]string
	// dir is a scratch directory, the same path in both runs' command lines.
	dir string
}

// newCtlTwins starts two fresh one-member keel servers (etcd servers with
// -ctlserver=etcd). With -selfcheck, etcdctl runs on both sides, which proves
// the cases and their masks deterministic, independently of keelctl.
func newCtlTwins(t *testing.T) *ctlTwins {
	t.Helper()
	return newCtlTwinsWith(t, startCtlTwinKeel, startCtlTwinEtcd)
}

// twinStarter starts one twin server named name and returns its client
// endpoint (host:port).
type twinStarter func(t *testing.T, name string) string

// newCtlTwinsWith is newCtlTwins with the functions that start a keel twin
// and an etcd twin (-ctlserver=etcd), for twins configured otherwise (TLS).
func newCtlTwinsWith(t *testing.T, keel, etcd twinStarter) *ctlTwins {
	t.Helper()
	tw := &ctlTwins{t: t, etcdctl: buildEtcdctl(t), keelctl: buildKeelctl(t), dir: t.TempDir()}
	if selfCheck() {
		tw.keelctl = tw.etcdctl
	}
	tw.ids = [2]map[string]string{{}, {}}
	start := keel
	if ctlServer() == "etcd" {
		start = etcd
	}
	tw.etcdctlEP, tw.keelctlEP = start(t, "twin-a"), start(t, "twin-b")
	return tw
}

func startCtlTwinKeel(t *testing.T, name string) string {
	t.Helper()
	return startKeelConfig(t, name, ctlTwinKeelConfig(t)).endpoint
}

// ctlTwinKeelConfig is the configuration of a keel twin.
func ctlTwinKeelConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg := keelConfig(t)
	cfg.InitialAdvertisePeerURLs = []url.URL{ctlTwinPeerURL(t)}
	cfg.InitialCluster = memberName + "=" + ctlTwinAdvertisePeerURL
	return cfg
}

func startCtlTwinEtcd(t *testing.T, name string) string {
	t.Helper()
	adv := ctlTwinPeerURL(t)
	return startEtcdAdvertising(t, name, &adv).endpoint
}

func ctlTwinPeerURL(t *testing.T) url.URL {
	t.Helper()
	u, err := url.Parse(ctlTwinAdvertisePeerURL)
	if err != nil {
		t.Fatal(err)
	}
	return *u
}

// twinStep is one command line, run by both CLIs.
type twinStep struct {
	// Args follow the global --endpoints flag, which the harness adds unless
	// NoEndpoints is set. "{dir}" in an argument is replaced by a scratch
	// directory (the same path on both sides), "{endpoint}" by the side's
	// endpoint.
	Args        []string
	NoEndpoints bool
	// Stdin is given on standard input.
	Stdin string
	// Env adds NAME=value variables ("{endpoint}" is replaced by the side's
	// endpoint). ETCDCTL_* variables of the test's own environment are
	// removed on both sides.
	Env []string
	// Mask lists patterns whose matches differ between runs for reasons
	// that are not keelctl's (lease IDs, TTLs, timings). Each distinct match
	// becomes a placeholder numbered by first appearance on its side, per
	// pattern, so equal values stay equal and different ones different.
	// A pattern with a capture group masks only the group.
	Mask []*regexp.Regexp
	// Timeout bounds the run (default etcdctlTimeout); a command still
	// running then is killed and reported as such, which fails the step
	// unless Killed is set (for watch and friends, which run until stopped).
	Timeout time.Duration
	Killed  bool
	// SameSecond runs the step on both sides within one second of the
	// clock: member add derives the new member's ID from the peer URLs and
	// the second it runs in, so two adds a second apart give the twins
	// different IDs (and orders in member list).
	SameSecond bool
	// Explains lets keelctl name the cause of an error where etcdctl does
	// not: each standard error line of keelctl must either equal etcdctl's
	// or start with it and contain, after it, every one of these words (the
	// cause, as issue 7 asks). With -selfcheck (etcdctl on both sides) the
	// lines are equal; otherwise at least one line must be extended.
	Explains []string
}

// startOfFreshSecond waits, if less than half a second is left in the
// current second, for the next one to begin, so that a pair of short runs
// fits in one second. It waits less than a second.
func startOfFreshSecond() {
	if ns := time.Now().Nanosecond(); ns > 500_000_000 {
		time.Sleep(time.Duration(1_000_000_000-ns) + time.Millisecond)
	}
}

// twinRun is one CLI's run of a step.
type twinRun struct {
	stdout, stderr string
	code           int
	killed         bool
}

// run runs steps in order: each with etcdctl, then with keelctl, and
// compares the two. The first difference fails the test.
func (tw *ctlTwins) run(steps ...twinStep) {
	tw.t.Helper()
	for i, st := range steps {
		if st.SameSecond {
			startOfFreshSecond()
		}
		want := tw.exec(0, st)
		got := tw.exec(1, st)
		if diff := compareStepRuns(want, got, st.Explains, !selfCheck()); diff != "" {
			tw.t.Fatalf("step %d: %s\n%s\netcdctl printed:\n--- stdout\n%s--- stderr\n%s--- exit %d\nkeelctl printed:\n--- stdout\n%s--- stderr\n%s--- exit %d",
				i, strings.Join(st.Args, " "), diff, want.stdout, want.stderr, want.code, got.stdout, got.stderr, got.code)
		}
	}
}

// exec runs st with etcdctl (side 0) or keelctl (side 1) and normalises the
// output.
func (tw *ctlTwins) exec(side int, st twinStep) twinRun {
	tw.t.Helper()
	bin, ep := tw.etcdctl, tw.etcdctlEP
	if side == 1 {
		bin, ep = tw.keelctl, tw.keelctlEP
	}
	var args []string
	if !st.NoEndpoints {
		args = append(args, "--endpoints="+ep)
	}
	for _, a := range st.Args {
		a = strings.ReplaceAll(a, "{dir}", tw.dir)
		args = append(args, strings.ReplaceAll(a, "{endpoint}", ep))
	}
	timeout := st.Timeout
	if timeout == 0 {
		timeout = etcdctlTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = dropPrefix(os.Environ(), "ETCDCTL_")
	for _, kv := range st.Env {
		cmd.Env = append(cmd.Env, strings.ReplaceAll(kv, "{endpoint}", ep))
	}
	cmd.Stdin = strings.NewReader(st.Stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := twinRun{code: cmd.ProcessState.ExitCode(), killed: ctx.Err() != nil}
	if err != nil && cmd.ProcessState == nil {
		tw.t.Fatalf("run %s: %v", bin, err)
	}
	if r.killed && !st.Killed {
		tw.t.Fatalf("%s %s did not finish within %v\nstdout:\n%s\nstderr:\n%s", filepath.Base(bin), strings.Join(args, " "), timeout, stdout.String(), stderr.String())
	}
	r.stdout = tw.normalise(side, st, stdout.String(), ep)
	r.stderr = normaliseStderr(tw.normalise(side, st, stderr.String(), ep))
	return r
}

// normalise masks what legitimately differs between the two runs: the
// endpoint, the program's name, and st's patterns.
func (tw *ctlTwins) normalise(side int, st twinStep, s, ep string) string {
	s = strings.ReplaceAll(s, ep, "<endpoint>")
	s = strings.ReplaceAll(s, "etcdctl", "keelctl")
	for pi, re := range st.Mask {
		s = re.ReplaceAllStringFunc(s, func(m string) string {
			sub := re.FindStringSubmatchIndex(m)
			lo, hi := 0, len(m)
			if len(sub) >= 4 && sub[2] >= 0 {
				lo, hi = sub[2], sub[3]
			}
			key := fmt.Sprintf("%d:%s", pi, m[lo:hi])
			ph, ok := tw.ids[side][key]
			if !ok {
				ph = fmt.Sprintf("<%d.%d>", pi, countPrefix(tw.ids[side], fmt.Sprintf("%d:", pi)))
				tw.ids[side][key] = ph
			}
			return m[:lo] + ph + m[hi:]
		})
	}
	return s
}

func countPrefix(m map[string]string, prefix string) int {
	n := 0
	for k := range m {
		if strings.HasPrefix(k, prefix) {
			n++
		}
	}
	return n
}

// normaliseStderr keeps, of a JSON log line, its level and message; drops the
// usage text after a flag error; keeps every other line as it is.
func normaliseStderr(s string) string {
	var out []string
	lines := strings.Split(s, "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		var entry struct{ Level, Msg string }
		if strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), &entry) == nil && entry.Msg != "" {
			out = append(out, "log "+entry.Level+": "+entry.Msg)
			continue
		}
		if strings.HasPrefix(line, "Usage:") {
			break // the rest is the command's usage, in keel's own words
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

// compareCtlRuns says how got differs from want, or "" if it does not.
func compareCtlRuns(want, got twinRun) string { return compareStepRuns(want, got, nil, false) }

// compareStepRuns is compareCtlRuns for a step whose error lines keelctl may
// extend with the cause words explains (see twinStep.Explains);
// mustExplain requires it to.
func compareStepRuns(want, got twinRun, explains []string, mustExplain bool) string {
	var d []string
	if want.code != got.code {
		d = append(d, fmt.Sprintf("exit code: etcdctl %d, keelctl %d", want.code, got.code))
	}
	if want.stdout != got.stdout {
		d = append(d, "stdout differs:\n"+lineDiff(want.stdout, got.stdout))
	}
	if len(explains) > 0 {
		if diff := compareExplained(want.stderr, got.stderr, explains, mustExplain); diff != "" {
			d = append(d, "stderr differs:\n"+diff)
		}
	} else if want.stderr != got.stderr {
		d = append(d, "stderr differs:\n"+lineDiff(want.stderr, got.stderr))
	}
	return strings.Join(d, "\n")
}

// compareExplained compares standard error line by line, letting a line of
// got extend want's with an explanation containing every one of words.
func compareExplained(want, got string, words []string, mustExplain bool) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	if len(wl) != len(gl) {
		return lineDiff(want, got)
	}
	explained := false
	for i := range wl {
		if wl[i] == gl[i] {
			continue
		}
		rest, ok := strings.CutPrefix(gl[i], wl[i])
		if !ok {
			return fmt.Sprintf("line %d: keelctl's does not start with etcdctl's\netcdctl: %q\nkeelctl: %q", i+1, wl[i], gl[i])
		}
		for _, w := range words {
			if !strings.Contains(rest, w) {
				return fmt.Sprintf("line %d: keelctl's explanation %q lacks %q", i+1, rest, w)
			}
		}
		explained = true
	}
	if mustExplain && !explained {
		return fmt.Sprintf("keelctl named no cause (want a line extended with %q)", words)
	}
	return ""
}

// lineDiff names the first line where a and b differ.
func lineDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < max(len(al), len(bl)); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("  line %d:\n    etcdctl: %q\n    keelctl: %q", i+1, x, y)
		}
	}
	return "  (same lines; different line endings)"
}

// deadEndpoint is a loopback endpoint nobody listens on: port 1 is
// privileged and never bound by the tests, so a dial is refused at once.
const deadEndpoint = "127.0.0.1:1"

// Patterns for Mask.
var (
	maskLeaseHex = regexp.MustCompile(`\b[0-9a-f]{16}\b`)
	maskTook     = regexp.MustCompile(`took (\S+)`)
)
