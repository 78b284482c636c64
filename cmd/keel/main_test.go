package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBadCommandLineFailsBeforeWritingAnything checks that an unknown flag,
// a bad value or a stray argument is reported with a clear error and a
// usage exit status, and that no data dir is created.
func TestBadCommandLineFailsBeforeWritingAnything(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  []string
		code int
		want string
	}{
		{"unknown flag", []string{"--no-such-flag"}, nil, 2, "flag provided but not defined: -no-such-flag"},
		{"bad value", []string{"--snapshot-count=many"}, nil, 2, `invalid value "many" for flag -snapshot-count`},
		{"bad value from the environment", nil, []string{"ETCD_SNAPSHOT_COUNT=many"}, 1, `invalid value "many" for ETCD_SNAPSHOT_COUNT`},
		{"positional argument", []string{"extra"}, nil, 1, `"extra" is not a valid flag`},
		{"bad URL", []string{"--listen-client-urls=localhost:2379", "--advertise-client-urls=http://localhost:2379"}, nil, 2, "URL scheme must be http, https, unix, or unixs"},
		{"election timeout too short", []string{"--heartbeat-interval=100", "--election-timeout=200"}, nil, 1, "should be at least as 5 times as"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"--data-dir", dir}, tt.args...), tt.env, &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit status %d, want %d (stderr %q)", code, tt.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr %q does not say %q", stderr.String(), tt.want)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("the data dir exists after a bad command line (stat: %v)", err)
			}
		})
	}
}

func TestVersionAndHelp(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"--version"}, nil, &out, &errb); code != 0 || !strings.Contains(out.String(), "etcd API Version: 3.7.3") {
		t.Errorf("--version: %d %q %q", code, out.String(), errb.String())
	}
	out.Reset()
	if code := run([]string{"--help"}, nil, &out, &errb); code != 0 || !strings.Contains(out.String(), "--listen-client-urls") {
		t.Errorf("--help: %d, %d bytes", code, out.Len())
	}
}

// TestLifecycleLogsAndSignalShutdown runs the keel binary, waits for etcd's
// "ready to serve client requests", stops it with SIGTERM and checks the
// lifecycle messages operators grep for and a clean exit.
func TestLifecycleLogsAndSignalShutdown(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(t.TempDir(), "keel")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	peer := freePort(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--name", "m1", "--data-dir", filepath.Join(dir, "m1.keel"),
		"--listen-client-urls", "http://127.0.0.1:0", "--advertise-client-urls", "http://127.0.0.1:0",
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "m1="+peer)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	var msgs []string
	lines := bufio.NewScanner(stderr)
	lines.Buffer(make([]byte, 1<<20), 1<<20)
	next := func() (map[string]any, bool) {
		if !lines.Scan() {
			return nil, false
		}
		var rec map[string]any
		if err := json.Unmarshal(lines.Bytes(), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q", lines.Text())
		}
		for _, k := range []string{"level", "ts", "caller", "msg"} {
			if _, ok := rec[k]; !ok {
				t.Fatalf("log line without %q: %q", k, lines.Text())
			}
		}
		msgs = append(msgs, rec["msg"].(string))
		return rec, true
	}
	for {
		rec, ok := next()
		if !ok {
			t.Fatalf("keel exited before serving; logs: %q", msgs)
		}
		if rec["msg"] == "ready to serve client requests" {
			break
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for {
		if _, ok := next(); !ok {
			break
		}
	}
	io.Copy(io.Discard, stderr)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("keel did not exit cleanly on SIGTERM: %v", err)
	}
	for _, want := range []string{
		"published local member to cluster through raft",
		"ready to serve client requests",
		"received signal; shutting down",
		"closed etcd server",
	} {
		found := false
		for _, m := range msgs {
			found = found || m == want
		}
		if !found {
			t.Errorf("no %q in the logs: %q", want, msgs)
		}
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "http://" + l.Addr().String()
}
