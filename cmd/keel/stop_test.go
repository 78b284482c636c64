package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/keeldb/keel/internal/keelbin"
	"github.com/keeldb/keel/internal/keeltest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	keelbin.Cleanup()
	os.Exit(code)
}

// keelBinary is cmd/keel built once per test binary (internal/keelbin).
func keelBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	return keelbin.Path(t)
}

// logRecords reads a JSON-lines log file.
func logRecords(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q", sc.Text())
		}
		out = append(out, rec)
	}
	return out
}

func findLog(recs []map[string]any, msg string) map[string]any {
	for _, r := range recs {
		if r["msg"] == msg {
			return r
		}
	}
	return nil
}

// TestFileLogSystemdNotifyAndStopReason runs keel with its logs going to a
// file and $NOTIFY_SOCKET set, as systemd runs a Type=notify unit: keel
// sends READY=1 once it serves, logs to the file (not stderr) and, stopped
// with SIGINT, logs the signal's name.
func TestFileLogSystemdNotifyAndStopReason(t *testing.T) {
	bin := keelBinary(t)
	sockDir, err := os.MkdirTemp("", "kn")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	sockPath := filepath.Join(sockDir, "notify")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()

	dir := t.TempDir()
	logFile := filepath.Join(dir, "keel.log")
	peer := freePort(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--name", "m1", "--data-dir", filepath.Join(dir, "m1.keel"),
		"--listen-client-urls", "http://127.0.0.1:0", "--advertise-client-urls", "http://127.0.0.1:0",
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "m1="+peer,
		"--log-outputs", logFile)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "NOTIFY_SOCKET=" + sockPath}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	notify.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 256)
	n, err := notify.Read(buf)
	if err != nil {
		t.Fatalf("no sd_notify message: %v", err)
	}
	if string(buf[:n]) != "READY=1" {
		t.Fatalf("sd_notify sent %q, want READY=1", buf[:n])
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGINT: %v (stderr %q)", err, stderr.String())
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr is not a log output but got %q", stderr.String())
	}
	recs := logRecords(t, logFile)
	for _, msg := range []string{"ready to serve client requests", "notifying init daemon", "successfully notified init daemon", "closed etcd server"} {
		if findLog(recs, msg) == nil {
			t.Errorf("no %q in the log file", msg)
		}
	}
	if r := findLog(recs, "received signal; shutting down"); r == nil || r["signal"] != "interrupt" {
		t.Errorf("stop reason: %v", r)
	}
}

// TestFailedStartLogsItsReason: a member that cannot start (its client
// port is taken) logs why, in its log output, and exits with status 1.
func TestFailedStartLogsItsReason(t *testing.T) {
	bin := keelBinary(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	logFile := filepath.Join(dir, "keel.log")
	peer := freePort(t)
	client := "http://" + busy.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--name", "m1", "--data-dir", filepath.Join(dir, "m1.keel"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "m1="+peer,
		"--log-outputs", logFile)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v, want status 1", err)
	}
	r := findLog(logRecords(t, logFile), "failed to start keel server; exiting")
	if r == nil || !strings.Contains(r["error"].(string), "address already in use") || r["level"] != "error" {
		t.Fatalf("start failure logged as %v", r)
	}
}

// TestRemovedMemberLogsWhyItStops: a member removed from its cluster stops
// by itself, says so, and exits with status 0 so that systemd does not
// restart it.
func TestRemovedMemberLogsWhyItStops(t *testing.T) {
	c := keeltest.StartCluster(t, 3)
	srv := c.Members[2].Server
	core, logs := observer.New(zapcore.InfoLevel)
	done := make(chan int, 1)
	go func() { done <- waitForStop(srv, make(chan os.Signal), zap.New(core)) }()
	defer srv.Stop() // then waitForStop returns, whatever happens
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Strict reconfiguration checks refuse the removal ("unhealthy
	// cluster") until the members have been connected for a while: retry.
	for {
		_, err := c.Members[0].Client.MemberRemove(ctx, srv.MemberID())
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "unhealthy cluster") || ctx.Err() != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // retry interval, bounded by ctx
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit status %d, want 0", code)
		}
	case <-ctx.Done():
		t.Fatal("the removed member did not stop")
	}
	if logs.FilterMessage("member was removed from the cluster; exiting").Len() != 1 {
		t.Errorf("stop reason not logged: %v", logs.All())
	}
}
