package compat

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// bgStep is a command that runs until stopped, as watch does. Its Stdin is
// written at once and standard input is kept open; once Done holds for its
// standard output (or after Timeout), it is stopped: by closing standard
// input when CloseStdin is set (watch -i ends at end of input), otherwise by
// killing it.
type bgStep struct {
	twinStep
	Done       func(stdout string) bool
	CloseStdin bool
}

// lockedBuffer is a buffer written by os/exec while the test polls it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// runBackground runs each step with etcdctl, then keelctl, as run does.
func (tw *ctlTwins) runBackground(steps ...bgStep) {
	tw.t.Helper()
	for i, st := range steps {
		want := tw.execUntil(0, st)
		got := tw.execUntil(1, st)
		if diff := compareCtlRuns(want, got); diff != "" {
			tw.t.Fatalf("step %d: %s\n%s\netcdctl printed:\n--- stdout\n%s--- stderr\n%s--- exit %d\nkeelctl printed:\n--- stdout\n%s--- stderr\n%s--- exit %d",
				i, strings.Join(st.Args, " "), diff, want.stdout, want.stderr, want.code, got.stdout, got.stderr, got.code)
		}
	}
}

func (tw *ctlTwins) execUntil(side int, st bgStep) twinRun {
	tw.t.Helper()
	bin, ep := tw.etcdctl, tw.etcdctlEP
	if side == 1 {
		bin, ep = tw.keelctl, tw.keelctlEP
	}
	args := []string{"--endpoints=" + ep}
	for _, a := range st.Args {
		args = append(args, strings.ReplaceAll(a, "{dir}", tw.dir))
	}
	timeout := st.Timeout
	if timeout == 0 {
		timeout = etcdctlTimeout
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = dropPrefix(os.Environ(), "ETCDCTL_")
	for _, kv := range st.Env {
		cmd.Env = append(cmd.Env, strings.ReplaceAll(kv, "{endpoint}", ep))
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tw.t.Fatal(err)
	}
	var stdout, stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		tw.t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }() //nolint:errcheck // the exit code is read below
	io.WriteString(stdin, st.Stdin)           //nolint:errcheck // a command may exit before reading
	deadline := time.Now().Add(timeout)
	done, exitedEarly := false, false
	for !done && !exitedEarly && time.Now().Before(deadline) {
		select {
		case <-exited:
			exitedEarly = true
		case <-time.After(10 * time.Millisecond):
			done = st.Done(stdout.String())
		}
	}
	if done {
		settle(&stdout, deadline)
	}
	if !done && !exitedEarly && side == 0 {
		tw.t.Fatalf("%s %s: output not complete within %v\nstdout:\n%s\nstderr:\n%s", filepath.Base(bin), strings.Join(args, " "), timeout, stdout.String(), stderr.String())
	}
	if st.CloseStdin {
		stdin.Close()
	} else {
		cmd.Process.Kill() //nolint:errcheck // it may have exited
	}
	ctx, cancel := context.WithTimeout(context.Background(), etcdctlTimeout)
	defer cancel()
	select {
	case <-exited:
	case <-ctx.Done():
		cmd.Process.Kill() //nolint:errcheck // it may have exited
		<-exited
		tw.t.Fatalf("%s %s did not exit after its input closed\nstdout:\n%s", filepath.Base(bin), strings.Join(args, " "), stdout.String())
	}
	r := twinRun{code: cmd.ProcessState.ExitCode()}
	r.stdout = tw.normalise(side, st.twinStep, stdout.String(), ep)
	r.stderr = normaliseStderr(tw.normalise(side, st.twinStep, stderr.String(), ep))
	return r
}

// settle waits until out has stopped growing for a moment (or until
// deadline): Done may hold in the middle of a record, when the key's line of
// a fields-format event is printed and the lines after it are not yet.
func settle(out *lockedBuffer, deadline time.Time) {
	const quiet = 100 * time.Millisecond
	last, since := out.String(), time.Now()
	for time.Since(since) < quiet && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		if cur := out.String(); cur != last {
			last, since = cur, time.Now()
		}
	}
}

// untilCount is done once s appears n times in the output.
func untilCount(s string, n int) func(string) bool {
	return func(out string) bool { return strings.Count(out, s) >= n }
}

// watchAll is a watch step in every format, done once key (the last
// event's, say) appears in the output: as is, in base64 (json) or in \x
// escapes (--hex).
func watchAll(key string, args ...string) []bgStep {
	var steps []bgStep
	for _, st := range withFormats(args...) {
		steps = append(steps, bgStep{twinStep: st, Done: keyDone(key)})
	}
	return steps
}

// keyDone is done once key appears in the output, in any format.
func keyDone(key string) func(string) bool {
	var hexKey strings.Builder
	for _, c := range []byte(key) {
		fmt.Fprintf(&hexKey, "\\x%02x", c)
	}
	b64 := base64.StdEncoding.EncodeToString([]byte(key))
	return func(out string) bool {
		return strings.Contains(out, key) || strings.Contains(out, b64) || strings.Contains(out, hexKey.String())
	}
}

// untilExit waits for the command to end by itself.
func untilExit(string) bool { return false }

// now is done at once: for commands whose output does not depend on when
// they are stopped.
func now(string) bool { return true }

func bg(done func(string) bool, args ...string) bgStep {
	return bgStep{twinStep: twinStep{Args: args}, Done: done}
}

func watchSetup() []twinStep {
	return []twinStep{
		line("put", "a", "1"),
		line("put", "ab", "2"),
		line("put", "b", "3"),
		line("put", "a", "4"),
		line("del", "ab"),
		line("put", "q", "x\"y\nz"),
		line("put", "zlast", "end"),
	}
}

func TestCtlWatch(t *testing.T) {
	tw := newCtlTwins(t)
	tw.run(watchSetup()...)
	var all []bgStep
	for _, parts := range [][]bgStep{
		watchAll("zlast", "watch", "", "--prefix", "--rev", "1"),
		watchAll("zlast", "watch", "a", "zzz", "--rev", "1"),
		watchAll("zlast", "watch", "a", "zzz", "--rev", "2", "--prev-kv"),
		watchAll("zlast", "watch", "z", "--prefix", "--rev", "1"),
		watchAll("zlast", "watch", "a", "zzz", "--rev", "1", "--hex", "--prev-kv"),
	} {
		all = append(all, parts...)
	}
	tw.runBackground(all...)
	tw.runBackground(
		bg(untilCount("zlast", 1), "watch", "a", "zzzz", "--rev", "1", "--prev-kv", "--progress-notify"),
		bg(untilCount("PUT", 4), "watch", "a", "--rev", "1", "--", "sh", "-c", "echo \"$ETCD_WATCH_REVISION $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE\""),
		bg(untilCount("DELETE", 1), "watch", "ab", "--rev", "1", "-w", "json", "--", "sh", "-c", "echo $ETCD_WATCH_EVENT_TYPE"),
		bg(untilCount("ran", 4), "watch", "--prefix", "a", "--rev", "1", "--", "echo", "ran"),
		// etcdctl's quirk: the keys end at the last "echo", so "echo" is
		// the range end
		bg(untilCount("echo a", 5), "watch", "--rev", "1", "a", "--", "echo", "echo", "a"),
		bgStep{twinStep: twinStep{Args: []string{"watch", "--rev", "1", "--", "sh", "-c", "echo env $ETCD_WATCH_KEY"}, Env: []string{"ETCDCTL_WATCH_KEY=a", "ETCDCTL_WATCH_RANGE_END=b"}}, Done: untilCount("env", 4)},
		bgStep{twinStep: twinStep{Args: []string{"watch", "--rev", "1", "--prefix"}, Env: []string{"ETCDCTL_WATCH_KEY=z"}}, Done: untilCount("zlast", 1)},
		// the command fails
		bg(untilExit, "watch", "zlast", "--rev", "1", "--", "false"),
		bg(untilExit, "watch", "zlast", "--rev", "1", "--", "/nonexistent/cmd"),
		// table is no format of watch: the first event ends it
		bg(untilExit, "watch", "zlast", "--rev", "1", "-w", "table"),
	)
	tw.run(
		// compacted: the watch is canceled by the server
		line("compaction", "5"),
		line("watch", "a", "--rev", "2"),
		line("watch", "a", "--rev", "2", "-w", "json"),
		line("watch", "a", "--rev", "2", "-w", "fields"),
		line("watch", "a", "--rev", "2", "-w", "protobuf"),
		// mistakes
		line("watch"),
		line("watch", "--rev", "1"),
		line("watch", "a", "--"),
		line("watch", "a", "b", "--prefix"),
		line("watch", "a", "--rev", "x"),
		line("watch", "a", "--bogus"),
		line("watch", "a", "--from-key"),
		line("watch", "a", "-w", "yaml"),
		twinStep{Args: []string{"watch", "a"}, Env: []string{"ETCDCTL_WATCH_KEY=a"}},
		twinStep{Args: []string{"watch", "a", "--", "echo"}, Env: []string{"ETCDCTL_WATCH_KEY=a"}},
		twinStep{Args: []string{"watch"}, Env: []string{"ETCDCTL_WATCH_RANGE_END=b"}},
	)
}

func TestCtlWatchInteractive(t *testing.T) {
	tw := newCtlTwins(t)
	tw.run(watchSetup()...)
	in := func(done func(string) bool, stdin string, args ...string) bgStep {
		return bgStep{twinStep: twinStep{Args: args, Stdin: stdin}, Done: done, CloseStdin: true}
	}
	tw.runBackground(
		in(keyDone("zlast"), "watch zlast --rev 1\n", "watch", "-i"),
		in(keyDone("zlast"), "watch zlast --rev 1\n", "watch", "-i", "-w", "json"),
		in(keyDone("zlast"), "watch zlast --rev 1 --prev-kv\n", "watch", "-i", "-w", "fields"),
		in(keyDone("zlast"), "watch zlast --rev 1\n", "watch", "-i", "-w", "protobuf"),
		// the command line's flags do not apply to the lines
		in(keyDone("zlast"), "watch zlast --rev 7\n", "watch", "-i", "--prev-kv", "--rev", "1", "ignored"),
		in(untilCount("ran", 1), "watch \"zlast\" --rev 1 -- sh -c 'echo ran $ETCD_WATCH_KEY'\n", "watch", "-i"),
		// "progress" is not tested: etcd answers it only once the new
		// watch is synced, so whether it prints depends on timing.
		in(untilCount("env", 1), "watch --rev 7 -- echo env\n", "watch", "-i").withEnv("ETCDCTL_WATCH_KEY=zlast"),
		// mistakes that do not end the watch
		in(now, "\nwatch\nbogus k\nwatch a b --prefix\n", "watch", "-i"),
		in(now, "", "watch", "-i"),
		in(now, "watch a", "watch", "-i"),
		// mistakes that end it
		in(now, "watch a --\n", "watch", "-i"),
		in(now, "watch --rev 1\n", "watch", "-i"),
		in(now, "watch a --bogus\n", "watch", "-i"),
		in(now, "watch a -w json\n", "watch", "-i"),
		in(now, "watch \"\\z\"\n", "watch", "-i"),
		in(now, "watch a\n", "watch", "-i").withEnv("ETCDCTL_WATCH_KEY=zlast"),
		in(now, "watch a\n", "watch", "-i", "-w", "yaml"),
		// the failing command ends keelctl, not the end of input
		in(untilExit, "watch zlast --rev 1 -- false\n", "watch", "-i"),
	)
}

func (st bgStep) withEnv(env ...string) bgStep {
	st.Env = append(st.Env, env...)
	return st
}
