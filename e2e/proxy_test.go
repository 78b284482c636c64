package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keeldb/keel/internal/keelbin"
)

// TestGRPCProxyInFrontOfAThreeMemberCluster runs `keel grpc-proxy start` as
// a process in front of three member processes, as an operator does for a
// cluster with many clients: keelctl and the official client work through
// it, its watchers keep their events when a member stops, and it logs why
// it stops on SIGTERM and exits 0.
func TestGRPCProxyInFrontOfAThreeMemberCluster(t *testing.T) {
	dir := t.TempDir()
	specs := clusterSpecs(t, dir, "proxy-e2e", "m1", "m2", "m3")
	ps := startAll(t, specs)
	defer stopAll(t, ps[1:])

	port := freePorts(t, 1)[0]
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	logPath := filepath.Join(dir, "proxy.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(keelbin.Path(t), "grpc-proxy", "start",
		"--endpoints", strings.Join(endpoints(specs), ","), "--listen-addr", addr, "--advertise-client-url", addr,
		"--data-dir", filepath.Join(dir, "proxy"))
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("proxy log:\n%s", b)
		}
	}()

	// Ready when its own health check passes through it.
	hc := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(readyTimeout)
	for {
		resp, err := hc.Get("http://" + addr + "/proxy/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy not healthy within %v: %v", readyTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	if code, out, errOut := keelctl("--endpoints", addr, "put", "greeting", "hello"); code != 0 || strings.TrimSpace(out) != "OK" {
		t.Fatalf("keelctl put through the proxy: %d %q %q", code, out, errOut)
	}
	if code, out, _ := keelctl("--endpoints", addr, "get", "greeting", "--print-value-only"); code != 0 || strings.TrimSpace(out) != "hello" {
		t.Fatalf("keelctl get through the proxy: %d %q", code, out)
	}

	cli := newClient(t, addr)
	wctx := ctx(t)
	w := cli.Watch(wctx, "greeting", clientv3.WithCreatedNotify())
	<-w
	ps[0].stop(t) // one member goes; the proxy's client moves on
	direct := newClient(t, endpoints(specs[1:])...)
	// If it led, a put proposed before the others elect a new leader is
	// lost with it and times out, in etcd as in keel. A linearizable read
	// succeeds once a leader reaches the remaining quorum.
	deadline = time.Now().Add(readyTimeout)
	for {
		rctx, cancel := context.WithTimeout(ctx(t), 2*time.Second)
		_, err := direct.Get(rctx, "greeting")
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no leader among the remaining members within %v: %v", readyTimeout, err)
		}
	}
	for i := range 3 {
		if _, err := direct.Put(ctx(t), "greeting", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	for got := 0; got < 3; {
		select {
		case wr, ok := <-w:
			if !ok || wr.Canceled {
				t.Fatalf("watch through the proxy ended: %v", wr.Err())
			}
			for _, e := range wr.Events {
				if string(e.Kv.Value) != fmt.Sprint(got) {
					t.Fatalf("event %d: %s", got, e.Kv.Value)
				}
				got++
			}
		case <-wctx.Done():
			t.Fatalf("%d of 3 events through the proxy", got)
		}
	}

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Fatalf("proxy exit after SIGTERM: %v", err)
		}
	case <-time.After(stopTimeout):
		t.Fatal("proxy did not stop after SIGTERM")
	}
	b, _ := os.ReadFile(logPath)
	if !strings.Contains(string(b), "received signal; shutting down gRPC proxy") {
		t.Fatalf("the proxy's log does not say why it stopped:\n%s", b)
	}
}
