package compat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"
)

// bgTimeout bounds every wait on a background CLI: for its output, for its
// exit after a signal.
const bgTimeout = 20 * time.Second

// maskKeyB64 is a key in json, base64 encoded: lock and elect keys end with
// the lease ID.
var maskKeyB64 = regexp.MustCompile(`"key":"([^"]*)"`)

// concMasks are the masks of lock and elect: the lease IDs in their keys.
func concMasks() []*regexp.Regexp { return leaseMasks(maskKeyB64) }

// cstep is a lock or elect step run to its end.
func cstep(args ...string) twinStep { return twinStep{Args: args, Mask: concMasks()} }

// bgProc is a CLI running in the background on one side.
type bgProc struct {
	cmd            *exec.Cmd
	mu             sync.Mutex
	stdout, stderr bytes.Buffer
	done           chan struct{}
}

func (b *bgProc) Write(p []byte) (int, error) { // standard output
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stdout.Write(p)
}

type bgStderr struct{ b *bgProc }

func (e bgStderr) Write(p []byte) (int, error) {
	e.b.mu.Lock()
	defer e.b.mu.Unlock()
	return e.b.stderr.Write(p)
}

func (b *bgProc) output() (stdout, stderr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stdout.String(), b.stderr.String()
}

func (b *bgProc) exited() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// bgPair is one step running in the background with both CLIs, each on its
// server, to be compared once both are stopped.
type bgPair struct {
	tw *ctlTwins
	st twinStep
	p  [2]*bgProc
}

// startBG starts st in the background with etcdctl and keelctl. Both are
// killed at the end of the test if still running.
func (tw *ctlTwins) startBG(st twinStep) *bgPair {
	tw.t.Helper()
	return tw.startBGArgs(st, [2][]string{st.Args, st.Args})
}

// startBGArgs is startBG with each side's own arguments in place of st's.
func (tw *ctlTwins) startBGArgs(st twinStep, args [2][]string) *bgPair {
	tw.t.Helper()
	bp := &bgPair{tw: tw, st: st}
	for side := range bp.p {
		bin, ep := tw.etcdctl, tw.etcdctlEP
		if side == 1 {
			bin, ep = tw.keelctl, tw.keelctlEP
		}
		b := &bgProc{done: make(chan struct{})}
		b.cmd = exec.Command(bin, append([]string{"--endpoints=" + ep}, args[side]...)...)
		b.cmd.Env = dropPrefix(os.Environ(), "ETCDCTL_")
		b.cmd.Stdout, b.cmd.Stderr = b, bgStderr{b}
		if err := b.cmd.Start(); err != nil {
			tw.t.Fatalf("start %s: %v", bin, err)
		}
		go func() {
			_ = b.cmd.Wait() // the exit status is read from ProcessState
			close(b.done)
		}()
		tw.t.Cleanup(func() {
			if !b.exited() {
				_ = b.cmd.Process.Kill()
				<-b.done
			}
		})
		bp.p[side] = b
	}
	return bp
}

// waitLines waits until each side has printed at least n lines (n messages
// for protobuf), failing the test if one exits first or bgTimeout passes.
func (bp *bgPair) waitLines(n int) {
	bp.tw.t.Helper()
	for side, b := range bp.p {
		deadline := time.Now().Add(bgTimeout)
		for {
			out, errOut := b.output()
			if bp.count(out) >= n {
				break
			}
			if b.exited() || time.Now().After(deadline) {
				bp.tw.t.Fatalf("%s: side %d printed %q %q, not %d lines, exited %v", strings.Join(bp.st.Args, " "), side, out, errOut, n, b.exited())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// count is the number of lines in out, or of messages in protobuf.
func (bp *bgPair) count(out string) int {
	if !bp.protobuf() {
		return strings.Count(out, "\n")
	}
	if out == "" || proto.Unmarshal([]byte(out), &pb.RangeResponse{}) != nil {
		return 0
	}
	return 1
}

func (bp *bgPair) protobuf() bool { return slices.Contains(bp.st.Args, "protobuf") }

// stop sends sig to both sides, waits for them to exit, and compares what
// they printed and their exit codes.
func (bp *bgPair) stop(sig syscall.Signal) {
	bp.tw.t.Helper()
	for _, b := range bp.p {
		_ = b.cmd.Process.Signal(sig)
	}
	bp.wait()
}

// wait waits for both sides to exit by themselves and compares them.
func (bp *bgPair) wait() {
	bp.tw.t.Helper()
	var runs [2]twinRun
	for side, b := range bp.p {
		select {
		case <-b.done:
		case <-time.After(bgTimeout):
			_ = b.cmd.Process.Kill()
			<-b.done
			out, errOut := b.output()
			bp.tw.t.Fatalf("%s: side %d still running after %v: %q %q", strings.Join(bp.st.Args, " "), side, bgTimeout, out, errOut)
		}
		runs[side] = bp.result(side)
	}
	if diff := compareCtlRuns(runs[0], runs[1]); diff != "" {
		bp.tw.t.Fatalf("%s (in the background)\n%s\netcdctl printed:\n--- stdout\n%s--- stderr\n%s--- exit %d\nkeelctl printed:\n--- stdout\n%s--- stderr\n%s--- exit %d",
			strings.Join(bp.st.Args, " "), diff, runs[0].stdout, runs[0].stderr, runs[0].code, runs[1].stdout, runs[1].stderr, runs[1].code)
	}
}

// result is side's run, normalised as tw.exec does. A protobuf message is
// compared as its json, where the masks can find the lease IDs.
func (bp *bgPair) result(side int) twinRun {
	bp.tw.t.Helper()
	b := bp.p[side]
	ep := bp.tw.etcdctlEP
	if side == 1 {
		ep = bp.tw.keelctlEP
	}
	out, errOut := b.output()
	if bp.protobuf() && out != "" {
		var r pb.RangeResponse
		if err := proto.Unmarshal([]byte(out), &r); err != nil {
			bp.tw.t.Fatalf("side %d: protobuf output %q: %v", side, out, err)
		}
		j, err := json.Marshal(&r)
		if err != nil {
			bp.tw.t.Fatal(err)
		}
		out = string(j)
	}
	return twinRun{
		stdout: bp.tw.normalise(side, bp.st, out, ep),
		stderr: normaliseStderr(bp.tw.normalise(side, bp.st, errOut, ep)),
		code:   b.cmd.ProcessState.ExitCode(),
	}
}

// waitKeys waits until each side's server holds n keys under prefix: a
// lock or elect started in the background has queued up once its key is
// there, which orders it before the next one.
func (tw *ctlTwins) waitKeys(prefix string, n int) {
	tw.t.Helper()
	want := fmt.Sprintf("\"Count\" : %d\n", n)
	for side := range 2 {
		deadline := time.Now().Add(bgTimeout)
		for {
			r := tw.exec(side, twinStep{Args: []string{"get", prefix, "--prefix", "--count-only", "-w", "fields"}})
			if strings.Contains(r.stdout, want) {
				break
			}
			if time.Now().After(deadline) {
				tw.t.Fatalf("side %d: not %d keys under %q after %v:\n%s", side, n, prefix, bgTimeout, r.stdout)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// holderLease is a lease ID in what lock or elect prints in the simple format.
var holderLease = regexp.MustCompile(`/([0-9a-f]{16})\n`)

// revokeHolder revokes, on each side, the lease of the session that holds
// what bp took, as printed by bp, and compares the two revokes.
func (bp *bgPair) revokeHolder() {
	bp.tw.t.Helper()
	var runs [2]twinRun
	for side, b := range bp.p {
		out, _ := b.output()
		m := holderLease.FindStringSubmatch(out)
		if m == nil {
			bp.tw.t.Fatalf("side %d: no lease in %q", side, out)
		}
		runs[side] = bp.tw.exec(side, twinStep{Args: []string{"lease", "revoke", m[1]}, Mask: concMasks()})
	}
	if diff := compareCtlRuns(runs[0], runs[1]); diff != "" {
		bp.tw.t.Fatalf("lease revoke of %s: %s", strings.Join(bp.st.Args, " "), diff)
	}
}

// holdFormats are the formats in which lock and elect hold what they took
// until stopped; table is refused once taken.
var holdFormats = []string{"simple", "json", "fields", "protobuf"}

func TestCtlLock(t *testing.T) {
	tw := newCtlTwins(t)
	// Held until interrupted or terminated, in every format.
	for i, f := range holdFormats {
		bp := tw.startBG(cstep("lock", "l1", "-w", f))
		bp.waitLines(1)
		bp.stop([]syscall.Signal{syscall.SIGINT, syscall.SIGTERM}[i%2])
	}
	bp := tw.startBG(cstep("lock", "l1", "-w", "fields", "--hex", "--ttl", "3"))
	bp.waitLines(2)
	bp.stop(syscall.SIGINT)

	// A second locker waits for the first; interrupted while waiting, it
	// fails.
	first := tw.startBG(cstep("lock", "l2"))
	first.waitLines(2)
	second := tw.startBG(cstep("lock", "l2", "-w", "json"))
	tw.waitKeys("l2/", 2)
	third := tw.startBG(cstep("lock", "l2"))
	tw.waitKeys("l2/", 3)
	first.stop(syscall.SIGINT)
	second.waitLines(1)
	tw.run(cstep("get", "l2", "--prefix", "--keys-only"))
	third.stop(syscall.SIGINT)
	second.stop(syscall.SIGINT)
	tw.run(cstep("get", "l2", "--prefix", "--keys-only"))

	// Interrupted while its command runs, lock waits for the command.
	bp = tw.startBG(cstep("lock", "l5", "--", "sh", "-c", "echo started; sleep 1; echo done"))
	bp.waitLines(1)
	bp.stop(syscall.SIGINT)

	// A lock whose session's lease is revoked is lost.
	bp = tw.startBG(cstep("lock", "l6", "--ttl", "3"))
	bp.waitLines(2)
	bp.revokeHolder()
	bp.wait()

	tw.run(
		// A command run holding the lock, then unlocking.
		cstep("lock", "l3", "--", "sh", "-c", `echo "$ETCD_LOCK_KEY $ETCD_LOCK_REV"; echo to stderr >&2`),
		cstep("lock", "l3", "echo", "hello"),
		cstep("lock", "l3", "true"),
		cstep("lock", "l3", "false"),
		cstep("lock", "l3", "--", "sh", "-c", "exit 7"),
		cstep("lock", "l3", "/nonexistent/command"),
		cstep("lock", "--ttl", "0", "l3", "true"),
		cstep("get", "l3", "--prefix"),
		// Mistakes.
		cstep("lock"),
		cstep("lock", "--ttl", "x", "l4"),
		cstep("lock", "l4", "-w", "yaml"),
		cstep("lock", "-w", "yaml"),
		cstep("lock", "l4", "sh", "-c", "true"),
		// Refused once locked: the lock stays held until its session
		// expires, as etcdctl leaves it.
		cstep("lock", "table", "-w", "table"),
		cstep("get", "table", "--prefix", "--keys-only"),
	)
}

func TestCtlElect(t *testing.T) {
	tw := newCtlTwins(t)
	for i, f := range holdFormats {
		bp := tw.startBG(cstep("elect", "e1", "p1", "-w", f))
		bp.waitLines(1)
		bp.stop([]syscall.Signal{syscall.SIGINT, syscall.SIGTERM}[i%2])
	}

	// An observer sees each leader in turn; a second candidate waits for
	// the first to resign; interrupted while waiting, a candidate fails.
	observer := tw.startBG(cstep("elect", "e2", "-l"))
	first := tw.startBG(cstep("elect", "e2", "first"))
	first.waitLines(2)
	observer.waitLines(2)
	second := tw.startBG(cstep("elect", "e2", "second"))
	tw.waitKeys("e2/", 2)
	third := tw.startBG(cstep("elect", "e2", "third", "-w", "json"))
	tw.waitKeys("e2/", 3)
	tw.run(cstep("get", "e2", "--prefix"))
	first.stop(syscall.SIGINT)
	second.waitLines(2)
	observer.waitLines(4)
	third.stop(syscall.SIGINT)
	// The observer stops while it only watches the leader: stopped during
	// the request that follows a resignation, the client library may log
	// the cancelled request, or not.
	observer.stop(syscall.SIGINT)
	second.stop(syscall.SIGTERM)
	tw.run(cstep("get", "e2", "--prefix"))

	// An observer prints the current leader at once, in every format.
	leader := tw.startBG(cstep("elect", "e3", "leading"))
	leader.waitLines(2)
	// (--hex in simple escapes the lease ID beyond masking.)
	for _, args := range [][]string{{"simple"}, {"json"}, {"fields"}, {"fields", "--hex"}, {"protobuf"}} {
		bp := tw.startBG(cstep(append([]string{"elect", "e3", "-l", "-w"}, args...)...))
		bp.waitLines(1)
		bp.stop(syscall.SIGINT)
	}
	tw.run(cstep("elect", "e3", "-l", "-w", "table"))
	leader.stop(syscall.SIGINT)

	tw.run(
		cstep("elect"),
		cstep("elect", "e4"),
		cstep("elect", "e4", "p", "-l"),
		cstep("elect", "e4", "p", "q"),
		cstep("elect", "e4", "p", "-w", "yaml"),
		cstep("elect", "e4", "-w", "yaml"),
		cstep("elect", "e4", "p", "--bogus"),
		// Refused once elected: the leader stays until its session
		// expires, as etcdctl leaves it.
		cstep("elect", "table", "p", "-w", "table"),
		cstep("get", "table", "--prefix"),
	)
}
