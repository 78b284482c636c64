package faulttest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// target is the server under test.
type target struct {
	name string
	bin  string
	// grpcPeers: the peer traffic is keel's gRPC transport, whose streams
	// name their pairs, so the proxies can cut and delay single links.
	grpcPeers bool
}

func TestMain(m *testing.M) {
	code := m.Run()
	build.mu.Lock()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	build.mu.Unlock()
	os.Exit(code)
}

// faultTarget is the server that KEEL_FAULT_TARGET names: keel (the
// default, built from this tree once per test binary) or etcd (the binary
// in KEEL_FAULT_ETCD, default /tmp/etcd).
func faultTarget(t *testing.T) target {
	t.Helper()
	switch v := os.Getenv("KEEL_FAULT_TARGET"); v {
	case "", "keel":
		return target{name: "keel", bin: keelBinary(t), grpcPeers: true}
	case "etcd":
		bin := os.Getenv("KEEL_FAULT_ETCD")
		if bin == "" {
			bin = "/tmp/etcd"
		}
		if _, err := os.Stat(bin); err != nil {
			t.Skipf("KEEL_FAULT_TARGET=etcd but no etcd binary at %s (set KEEL_FAULT_ETCD): %v", bin, err)
		}
		return target{name: "etcd", bin: bin}
	default:
		t.Fatalf("KEEL_FAULT_TARGET=%q: want keel or etcd", v)
		return target{}
	}
}

// build holds the keel binary, built once per test binary into a directory
// that TestMain removes.
var build struct {
	mu   sync.Mutex
	done bool
	dir  string
	bin  string
	err  error
}

const buildTimeout = 5 * time.Minute

func keelBinary(t *testing.T) string {
	t.Helper()
	build.mu.Lock()
	defer build.mu.Unlock()
	if !build.done {
		build.done = true
		build.bin, build.err = buildKeel()
	}
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.bin
}

func buildKeel() (string, error) {
	dir, err := os.MkdirTemp("", "keel-faulttest-")
	if err != nil {
		return "", err
	}
	build.dir = dir
	bin := filepath.Join(dir, "keel")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "github.com/keeldb/keel/cmd/keel")
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool(), args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %v: %v\n%s", args, err, out)
	}
	return bin, nil
}

// goTool finds the go command that runs these tests.
func goTool() string {
	if goroot := os.Getenv("GOROOT"); goroot != "" {
		if p := filepath.Join(goroot, "bin", "go"); fileExists(p) {
			return p
		}
	}
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// artifactDir is a directory for a run's logs and visualization that
// survives the test when it fails (t.TempDir would not).
func artifactDir(t *testing.T, name string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "keel-fault-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs and artifacts kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}
