package faulttest

import (
	"os"
	"testing"

	"github.com/keeldb/keel/internal/keelbin"
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
	keelbin.Cleanup()
	os.Exit(code)
}

// faultTarget is the server that KEEL_FAULT_TARGET names: keel (the
// default, built from this tree once per test binary) or etcd (the binary
// in KEEL_FAULT_ETCD, default /tmp/etcd).
func faultTarget(t *testing.T) target {
	t.Helper()
	switch v := os.Getenv("KEEL_FAULT_TARGET"); v {
	case "", "keel":
		return target{name: "keel", bin: keelbin.Path(t), grpcPeers: true}
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
