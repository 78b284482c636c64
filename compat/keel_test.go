package compat

import (
	"net/url"
	"path/filepath"
	"testing"

	"github.com/keeldb/keel/config"
	"github.com/keeldb/keel/server"
)

// keelConfig is the configuration of the keel member the tests start: keel's
// defaults, which must equal etcd's (max txn ops, max request bytes, ...), and
// loopback URLs.
func keelConfig(t *testing.T) *config.Config {
	t.Helper()
	peer := localURL(freePort(t))
	client := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg := config.Default()
	cfg.Name = memberName
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.ListenClientURLs = []url.URL{client}
	cfg.AdvertiseClientURLs = []url.URL{client}
	cfg.ListenPeerURLs = []url.URL{peer}
	cfg.InitialAdvertisePeerURLs = []url.URL{peer}
	cfg.InitialCluster = memberName + "=" + peer.String()
	return cfg
}

// startKeel starts a one-member keel in this process.
func startKeel(t *testing.T, name string) *target {
	t.Helper()
	return startKeelConfig(t, name, keelConfig(t))
}

// startKeelConfig starts a keel member with cfg in this process.
func startKeelConfig(t *testing.T, name string, cfg *config.Config) *target {
	t.Helper()
	return newTarget(t, name, startKeelServer(t, name, cfg))
}

// startKeelServer starts a keel member with cfg in this process, stopped
// when the test ends, and returns its first client endpoint (host:port)
// without waiting for it to serve.
func startKeelServer(t *testing.T, name string, cfg *config.Config) string {
	t.Helper()
	s, err := server.Start(cfg, serverLogger(t, name))
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(s.Stop)
	urls := s.ClientURLs()
	if len(urls) == 0 {
		t.Fatalf("%s reports no client URLs", name)
	}
	u, err := url.Parse(urls[0])
	if err != nil {
		t.Fatalf("%s client URL %q: %v", name, urls[0], err)
	}
	return u.Host
}
