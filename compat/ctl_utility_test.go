package compat

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// maskCtlVersion masks the CLI's own version: etcdctl prints etcd's, keelctl
// keel's. The "API version" line is compared as it is.
var maskCtlVersion = []*regexp.Regexp{regexp.MustCompile(`(?m)^keelctl version: (\S+)$`)}

func TestCtlVersion(t *testing.T) {
	tw := newCtlTwins(t)
	tw.run(
		twinStep{Args: []string{"version"}, Mask: maskCtlVersion},
		twinStep{Args: []string{"version", "extra", "args"}, Mask: maskCtlVersion},
		twinStep{Args: []string{"version", "-w", "json"}, Mask: maskCtlVersion},
		twinStep{Args: []string{"version", "-w", "yaml", "--hex"}, Mask: maskCtlVersion},
		twinStep{Args: []string{"version"}, NoEndpoints: true, Env: []string{"ETCDCTL_FOO=1"}, Mask: maskCtlVersion},
		twinStep{Args: []string{"version", "--bogus"}, Mask: maskCtlVersion},
	)
}

// mirrorTwins are a destination server per side of tw, for make-mirror:
// etcdctl mirrors to dest[0], keelctl to dest[1].
type mirrorTwins struct {
	tw      *ctlTwins
	dest    [2]string
	clients [2]*clientv3.Client
}

func newMirrorTwins(t *testing.T, tw *ctlTwins) *mirrorTwins {
	t.Helper()
	start := startCtlTwinKeel
	if ctlServer() == "etcd" {
		start = startCtlTwinEtcd
	}
	m := &mirrorTwins{tw: tw}
	for i, name := range []string{"dest-a", "dest-b"} {
		m.dest[i] = start(t, name)
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{m.dest[i]}, DialTimeout: startTimeout, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		m.clients[i] = c
	}
	return m
}

// bgRun is a CLI run in the background, until stopped.
type bgRun struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	args           []string
}

// start runs "<cli> --endpoints=<source> args... <destination>" on each
// side, in the background.
func (m *mirrorTwins) start(args ...string) [2]*bgRun {
	m.tw.t.Helper()
	var runs [2]*bgRun
	for side, bin := range []string{m.tw.etcdctl, m.tw.keelctl} {
		ep := m.tw.etcdctlEP
		if side == 1 {
			ep = m.tw.keelctlEP
		}
		r := &bgRun{args: append(append([]string{"--endpoints=" + ep}, args...), m.dest[side])}
		r.cmd = exec.Command(bin, r.args...)
		r.cmd.Env = dropPrefix(os.Environ(), "ETCDCTL_")
		r.cmd.Stdout, r.cmd.Stderr = &r.stdout, &r.stderr
		if err := r.cmd.Start(); err != nil {
			m.tw.t.Fatal(err)
		}
		m.tw.t.Cleanup(func() { _ = r.cmd.Process.Kill(); _ = r.cmd.Wait() })
		runs[side] = r
	}
	return runs
}

// waitFor polls both destinations until key exists in each (bounded).
func (m *mirrorTwins) waitFor(key string) {
	m.tw.t.Helper()
	for side, c := range m.clients {
		deadline := time.Now().Add(15 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			resp, err := c.Get(ctx, key, clientv3.WithCountOnly())
			cancel()
			if err == nil && resp.Count == 1 {
				break
			}
			if time.Now().After(deadline) {
				m.tw.t.Fatalf("destination %d: %q not mirrored within 15s", side, key)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// stop kills both runs and compares their output, then the destinations'
// key-value pairs (keys and values only: revisions are the destination's).
func (m *mirrorTwins) stop(runs [2]*bgRun, want []string) {
	m.tw.t.Helper()
	var out [2]string
	for side, r := range runs {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		ep := m.tw.etcdctlEP
		if side == 1 {
			ep = m.tw.keelctlEP
		}
		st := twinStep{}
		stdout := m.tw.normalise(side, st, strings.ReplaceAll(r.stdout.String(), m.dest[side], "<dest>"), ep)
		stderr := normaliseStderr(m.tw.normalise(side, st, strings.ReplaceAll(r.stderr.String(), m.dest[side], "<dest>"), ep))
		out[side] = "--- stdout\n" + stdout + "--- stderr\n" + stderr
	}
	if out[0] != out[1] {
		m.tw.t.Fatalf("make-mirror %v: outputs differ\netcdctl:\n%s\nkeelctl:\n%s", runs[1].args, out[0], out[1])
	}
	var kvs [2][]string
	for side, c := range m.clients {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := c.Get(ctx, "", clientv3.WithFromKey())
		cancel()
		if err != nil {
			m.tw.t.Fatal(err)
		}
		for _, kv := range resp.Kvs {
			kvs[side] = append(kvs[side], string(kv.Key)+"="+string(kv.Value))
		}
	}
	if !slices.Equal(kvs[0], kvs[1]) {
		m.tw.t.Fatalf("destinations differ:\netcdctl's: %q\nkeelctl's: %q", kvs[0], kvs[1])
	}
	if want != nil && !slices.Equal(kvs[1], want) {
		m.tw.t.Fatalf("destination holds %q, want %q", kvs[1], want)
	}
}

// TestCtlMakeMirror mirrors keys written before and while make-mirror runs,
// with each prefix option, and checks the destinations hold the same keys;
// then the mistakes.
func TestCtlMakeMirror(t *testing.T) {
	tw := newCtlTwins(t)
	m := newMirrorTwins(t, tw)
	tw.run(line("put", "a/1", "one"), line("put", "a/2", "two"), line("put", "b/1", "other"))

	// --prefix with --dest-prefix: the existing keys, then the changes.
	runs := m.start("make-mirror", "--prefix", "a/", "--dest-prefix", "m1/")
	m.waitFor("m1/2")
	tw.run(line("put", "a/3", "three"), line("del", "a/1"), line("put", "b/2", "not mirrored"),
		line("put", "a/end1", "x"))
	m.waitFor("m1/end1")
	m.stop(runs, []string{"m1/2=two", "m1/3=three", "m1/end1=x"})

	// --no-dest-prefix, and a small --max-txn-ops.
	runs = m.start("make-mirror", "--prefix", "a/", "--no-dest-prefix", "--max-txn-ops", "1")
	m.waitFor("end1")
	tw.run(line("put", "a/4", "four"), line("put", "a/end2", "y"))
	m.waitFor("end2")
	m.stop(runs, nil)

	// --rev: only the changes from that revision; without --dest-prefix the
	// prefix is cut (etcdctl defaults it to --prefix only when copying).
	tw.run(line("put", "a/5", "five"))
	runs = m.start("make-mirror", "--prefix", "a/", "--rev", "2")
	m.waitFor("end2")
	tw.run(line("put", "a/end3", "z"))
	m.waitFor("end3")
	m.stop(runs, nil)

	// Everything, to the destination's root.
	runs = m.start("make-mirror")
	m.waitFor("b/2")
	tw.run(line("del", "a/", "--prefix"), line("put", "c/end4", "w"))
	m.waitFor("c/end4")
	m.stop(runs, nil)

	tw.run(
		line("make-mirror"),
		line("make-mirror", "x", "y"),
		line("make-mirror", "--dest-prefix", "x", "--no-dest-prefix", deadEndpoint),
		line("make-mirror", "-w", "yaml", deadEndpoint),
		line("make-mirror", "--dest-cert", "/nonexistent/c.pem", deadEndpoint),
		line("make-mirror", "--dest-cacert", "/nonexistent/ca.pem", deadEndpoint),
		line("make-mirror", "--max-txn-ops", "-1", deadEndpoint),
		line("make-mirror", "--rev", "x", deadEndpoint),
	)
}

// Masks for check perf: the measures, and the progress bar on standard
// error (its frames depend on timing). The verdicts are made neutral by
// perfVerdicts first.
var maskCheckPerf = []*regexp.Regexp{
	regexp.MustCompile(`(\d+) writes/s`),
	regexp.MustCompile(`(?m)^slowest: (\d+\.\d+)s`),
	regexp.MustCompile(`(?m)^stddev: (\d+\.\d+)s`),
	regexp.MustCompile(`(?m)^\d+ / \d+ \[.*$`),
}

// perfVerdictLines are check perf's measure lines in both wordings, and the
// neutral line each becomes.
var perfVerdictLines = []struct {
	re      *regexp.Regexp
	neutral string
}{
	{regexp.MustCompile(`(?m)^(?:PASS: Throughput is|FAIL: Throughput too low:) `), "throughput: "},
	{regexp.MustCompile(`(?m)^(?:PASS: Slowest request took|Slowest request took too long:) `), "slowest: "},
	{regexp.MustCompile(`(?m)^(?:PASS: Stddev is|Stddev too high:) `), "stddev: "},
}

// perfVerdicts makes check perf's output independent of the machine's
// speed: whether a measure passes depends on it (two cores give etcd about
// 130 writes/s, under the 135 the "s" load asks for), so each measure line
// loses its PASS or FAIL wording. What stays checked is that the verdict
// agrees with the lines and the exit code: PASS and 0 when every measure
// passed, FAIL and 1 otherwise.
func perfVerdicts(stdout string, exit int) (string, error) {
	failed := strings.Contains(stdout, "FAIL: ")
	for _, l := range perfVerdictLines[1:] {
		failed = failed || (l.re.MatchString(stdout) && !strings.Contains(l.re.FindString(stdout), "PASS"))
	}
	want, wantExit := "PASS\n", 0
	if failed {
		want, wantExit = "FAIL\n", 1
	}
	if !strings.HasSuffix(stdout, want) || exit != wantExit {
		return "", fmt.Errorf("the verdict does not follow the measures (exit %d, want %q and exit %d):\n%s", exit, want, wantExit, stdout)
	}
	for _, l := range perfVerdictLines {
		stdout = l.re.ReplaceAllLiteralString(stdout, l.neutral)
	}
	return strings.TrimSuffix(stdout, want) + "verdict\n", nil
}

// TestCtlCheckPerf runs check perf --load s on each side, interrupted once
// keys are being written (every preset runs 60 s; an interrupt ends the load
// early and still prints the verdict, as etcdctl), compares the outputs with
// the measures masked, and checks the keys were deleted. Then the mistakes.
func TestCtlCheckPerf(t *testing.T) {
	tw := newCtlTwins(t)
	var outs [2]string
	for side, bin := range []string{tw.etcdctl, tw.keelctl} {
		ep := tw.etcdctlEP
		if side == 1 {
			ep = tw.keelctlEP
		}
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: startTimeout, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cmd := exec.Command(bin, "--endpoints="+ep, "check", "perf", "--load", "s", "--prefix", "/perf/", "--auto-compact")
		cmd.Env = dropPrefix(os.Environ(), "ETCDCTL_")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		waitCount(t, c, "/perf/", 200)
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s check perf did not end within 30s of the interrupt", bin)
		}
		if n := countPrefix2(t, c, "/perf/"); n != 0 {
			t.Fatalf("%s left %d keys under /perf/", bin, n)
		}
		st := twinStep{Mask: maskCheckPerf}
		// The compaction revision depends on how many keys were written.
		out := regexp.MustCompile(`revision \d+`).ReplaceAllString(stdout.String(), "revision N")
		out, err = perfVerdicts(out, cmd.ProcessState.ExitCode())
		if err != nil {
			t.Fatalf("%s check perf: %v", bin, err)
		}
		outs[side] = fmt.Sprintf("--- stdout\n%s--- stderr\n%s",
			tw.normalise(side, st, out, ep), normaliseStderr(tw.normalise(side, st, stderr.String(), ep)))
	}
	if outs[0] != outs[1] {
		t.Fatalf("check perf differs\netcdctl:\n%s\nkeelctl:\n%s", outs[0], outs[1])
	}
	tw.run(
		line("put", "/etcdctl-check-perf/x", "y"),
		line("check", "perf"),
		line("del", "/etcdctl-check-perf/x"),
		line("check", "perf", "--load", "x"),
		line("check", "perf", "--load", "xLarge", "-w", "yaml"),
		line("check", "perf", "--bogus"),
	)
}

// TestCtlCheckDatascale: keel has no /metrics, so against keel the check
// ends before writing anything; against etcd servers (-ctlserver=etcd),
// which serve /metrics on the client URL, it runs the whole s load and is
// compared with the measure and the progress bar masked.
func TestCtlCheckDatascale(t *testing.T) {
	tw := newCtlTwins(t)
	mask := []*regexp.Regexp{regexp.MustCompile(`used : (\S+) MB`), regexp.MustCompile(`(?m)^\d+ / \d+ \[.*$`)}
	tw.run(
		twinStep{Args: []string{"check", "datascale", "--prefix", "/ds/", "--auto-compact", "--auto-defrag"}, Mask: mask, Timeout: 5 * time.Minute},
		line("get", "/ds/", "--prefix", "--count-only", "-w", "fields"),
		line("put", "/etcdctl-check-datascale/x", "y"),
		line("check", "datascale"),
		line("check", "datascale", "--load", "x"),
		line("check", "datascale", "-w", "yaml"),
	)
}

// waitCount polls until at least n keys have prefix (bounded).
func waitCount(t *testing.T, c *clientv3.Client, prefix string, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for countPrefix2(t, c, prefix) < n {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d keys under %q after 30s", n, prefix)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func countPrefix2(t *testing.T, c *clientv3.Client, prefix string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

// TestPerfVerdictsKeepsTheVerdictHonest checks the neutraliser itself: the
// two wordings of a measure compare equal, and a verdict that disagrees with
// its measures or its exit code fails.
func TestPerfVerdictsKeepsTheVerdictHonest(t *testing.T) {
	pass := "PASS: Throughput is 151 writes/s\nPASS: Slowest request took 0.040620s\nPASS: Stddev is 0.005260s\nPASS\n"
	slow := "FAIL: Throughput too low: 130 writes/s\nSlowest request took too long: 0.640620s\nPASS: Stddev is 0.005260s\nFAIL\n"
	a, err := perfVerdicts(pass, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := perfVerdicts(slow, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := "throughput: 151 writes/s\nslowest: 0.040620s\nstddev: 0.005260s\nverdict\n"
	if a != want {
		t.Fatalf("neutral form of a pass:\n%s\nwant:\n%s", a, want)
	}
	if want := "throughput: 130 writes/s\nslowest: 0.640620s\nstddev: 0.005260s\nverdict\n"; b != want {
		t.Fatalf("neutral form of a failure:\n%s\nwant:\n%s", b, want)
	}
	for _, c := range []struct {
		out  string
		exit int
	}{
		{pass, 1},
		{slow, 0},
		{strings.Replace(slow, "FAIL\n", "PASS\n", 1), 0},
		{strings.Replace(pass, "PASS: Stddev is", "Stddev too high:", 1), 0},
	} {
		if _, err := perfVerdicts(c.out, c.exit); err == nil {
			t.Errorf("perfVerdicts accepted exit %d with:\n%s", c.exit, c.out)
		}
	}
}
