package server

import (
	"net/url"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"

	"github.com/keeldb/keel/config"
)

// TestUnsupportedPeerSchemesAreRefused checks that a unix:// or unixs://
// peer URL is refused with a clear error instead of listening on TCP (keel
// has no unix sockets) or failing without a certificate.
func TestUnsupportedPeerSchemesAreRefused(t *testing.T) {
	for _, scheme := range []string{"unix", "unixs"} {
		t.Run(scheme, func(t *testing.T) {
			cfg := testConfig(t, "/data")
			u := cfg.ListenPeerURLs[0]
			u.Scheme = scheme
			cfg.ListenPeerURLs = []url.URL{u}
			cfg.PeerTLS = config.TLS{AutoTLS: true}
			_, err := Start(cfg, zap.NewNop(), WithFS(vfs.NewMem()))
			if err == nil || !strings.Contains(err.Error(), scheme+"://") || !strings.Contains(err.Error(), "not supported") {
				t.Fatalf("Start with peer URL %s: %v, want an error saying the scheme is not supported", u.String(), err)
			}
		})
	}
}

// TestMixedPeerSchemesOnOneAddressAreRefused checks that http:// and
// https:// peer URLs on one address do not share a listener (which would
// let plaintext peer traffic through): as in etcd, each peer URL binds its
// own listener, so the second fails.
func TestMixedPeerSchemesOnOneAddressAreRefused(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	u := cfg.ListenPeerURLs[0]
	secure := u
	secure.Scheme = "https"
	cfg.ListenPeerURLs = []url.URL{u, secure}
	cfg.PeerTLS = config.TLS{AutoTLS: true}
	s, err := Start(cfg, zap.NewNop())
	if err == nil {
		s.Stop()
		t.Fatal("started with http and https peer URLs on one address")
	}
	if !strings.Contains(err.Error(), u.Host) {
		t.Errorf("error %v does not name the address %s", err, u.Host)
	}
}
