package compat

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

var (
	flagSeed = flag.Int64("seed", 0,
		"seed of the differential tests' operation sequences (0: from the clock; env KEEL_COMPAT_SEED)")
	flagOps = flag.Int("ops", 0,
		"number of operations each differential test runs (0: the test's default; env KEEL_COMPAT_OPS)")
	flagSelfCheck = flag.Bool("selfcheck", false,
		"compare etcd with a second etcd instead of keel, to check the harness itself (env KEEL_COMPAT_SELFCHECK=1)")
	flagLogs = flag.Bool("serverlogs", false,
		"send the servers' logs to the test log (env KEEL_COMPAT_LOGS=1)")
)

// memberName is the name of every member the tests start, on both sides, so
// that outputs that show the member name compare equal.
const memberName = "compat"

// Per-operation and start-up bounds. They only stop a hung test; no assertion
// depends on them.
const (
	startTimeout = 60 * time.Second
	opTimeout    = 60 * time.Second
)

// Large enough for every request the differential test sends, including those
// meant to exceed the server's gRPC receive limit (so that the server, not the
// client, rejects them).
const clientMaxSendBytes = 16 << 20

// target is one server under test, reached through the official client.
type target struct {
	name     string // "etcd", "keel", "etcd2"
	client   *clientv3.Client
	endpoint string // host:port of the client URL, for etcdctl --endpoints
	kv       pb.KVClient
	watch    pb.WatchClient
	lease    pb.LeaseClient
}

func selfCheck() bool {
	return *flagSelfCheck || envBool("KEEL_COMPAT_SELFCHECK")
}

func serverLogs() bool {
	return *flagLogs || envBool("KEEL_COMPAT_LOGS")
}

func envBool(name string) bool {
	v, err := strconv.ParseBool(os.Getenv(name))
	return err == nil && v
}

// serverLogger is a quiet logger unless -serverlogs is given.
func serverLogger(t *testing.T, name string) *zap.Logger {
	if !serverLogs() {
		return zap.NewNop()
	}
	return zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)).Named(name)
}

// startPair starts the two sides of a differential test: real etcd as the
// reference, and keel (or a second etcd when the self-check is selected).
// Both are stopped when the test ends.
func startPair(t *testing.T) (ref, sut *target) {
	t.Helper()
	ref = startEtcd(t, "etcd")
	if selfCheck() {
		t.Log("self-check: comparing etcd with a second etcd")
		return ref, startEtcd(t, "etcd2")
	}
	if viaProxy() {
		return ref, startKeelBehindProxy(t, "keel")
	}
	return ref, startKeel(t, "keel")
}

// freePort asks the OS for a free port on 127.0.0.1. It is used only where a
// URL must be known before the server starts (peer URLs, which are part of the
// member's identity); client listeners bind port 0 where the server allows it.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatalf("release free port: %v", err)
	}
	return port
}

func localURL(port int) url.URL {
	return url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
}

// startEtcd starts a one-member etcd in this process.
func startEtcd(t *testing.T, name string) *target {
	t.Helper()
	return startEtcdAdvertising(t, name, nil)
}

// startEtcdAdvertising is startEtcd with the peer URL to advertise, if not
// nil, instead of the one it listens on.
func startEtcdAdvertising(t *testing.T, name string, advertisePeer *url.URL) *target {
	t.Helper()
	return startEtcdWith(t, name, func(cfg *embed.Config) {
		if advertisePeer != nil {
			cfg.AdvertisePeerUrls = []url.URL{*advertisePeer}
			cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
		}
	})
}

// startEtcdWith starts a one-member etcd in this process, its configuration
// changed by edit before the start.
func startEtcdWith(t *testing.T, name string, edit func(*embed.Config)) *target {
	t.Helper()
	cfg := etcdConfig(t, name)
	edit(cfg)
	e := startEmbedEtcd(t, name, cfg)
	return newTarget(t, name, e.Clients[0].Addr().String())
}

// etcdConfig is the configuration of the etcd member named name the tests
// start: etcd's defaults and loopback URLs.
func etcdConfig(t *testing.T, name string) *embed.Config {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name = memberName
	cfg.Dir = filepath.Join(t.TempDir(), "data")
	peer := localURL(freePort(t))
	client := localURL(freePort(t))
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	cfg.ListenClientUrls = []url.URL{client}
	cfg.AdvertiseClientUrls = []url.URL{client}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// Durability is not under test; fsync only slows the reference down.
	cfg.UnsafeNoFsync = true
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(serverLogger(t, name))
	return cfg
}

// startEmbedEtcd starts etcd with cfg in this process and waits until it is
// ready; it is closed when the test ends.
func startEmbedEtcd(t *testing.T, name string, cfg *embed.Config) *embed.Etcd {
	t.Helper()
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		t.Fatalf("%s failed while starting: %v", name, err)
	case <-time.After(startTimeout):
		t.Fatalf("%s not ready after %v", name, startTimeout)
	}
	return e
}

// newTarget connects the official client to endpoint (host:port) and waits
// until the member answers a linearizable read.
func newTarget(t *testing.T, name, endpoint string) *target {
	t.Helper()
	return newTargetTLS(t, name, endpoint, nil)
}

// newTargetTLS is newTarget for a member whose client port serves TLS, the
// client's configuration tlsCfg (nil for plain text).
func newTargetTLS(t *testing.T, name, endpoint string, tlsCfg *tls.Config) *target {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:          []string{endpoint},
		DialTimeout:        startTimeout,
		MaxCallSendMsgSize: clientMaxSendBytes,
		Logger:             zap.NewNop(),
		TLS:                tlsCfg,
	})
	if err != nil {
		t.Fatalf("client for %s at %s: %v", name, endpoint, err)
	}
	t.Cleanup(func() { _ = cli.Close() })

	conn := cli.ActiveConnection()
	tg := &target{
		name: name, client: cli, endpoint: endpoint,
		kv: pb.NewKVClient(conn), watch: pb.NewWatchClient(conn), lease: pb.NewLeaseClient(conn),
	}
	// A fresh member may still be electing itself; poll until a
	// linearizable read succeeds.
	deadline := time.Now().Add(startTimeout)
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := tg.kv.Range(ctx, &pb.RangeRequest{Key: []byte("compat-probe")})
		cancel()
		if err == nil {
			return tg
		}
		if time.Now().After(deadline) || attempt >= 1000 {
			t.Fatalf("%s at %s does not serve reads: %v", name, endpoint, err)
		}
		time.Sleep(50 * time.Millisecond) // retry interval between polls, not a wait for a condition
	}
}

func (tg *target) String() string { return fmt.Sprintf("%s(%s)", tg.name, tg.endpoint) }
