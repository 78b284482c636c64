package server

import (
	"net/url"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"
)

func TestHTTPSMetricsURLNeedsClientCertificates(t *testing.T) {
	cfg := testConfig(t, "/data")
	cfg.ListenMetricsURLs = []url.URL{{Scheme: "https", Host: "127.0.0.1:0"}}
	s, err := Start(cfg, zap.NewNop(), WithFS(vfs.NewMem()))
	if err == nil {
		s.Stop()
		t.Fatal("started with an https metrics URL and no client certificates")
	}
	if want := "client TLS key/cert (--cert-file, --key-file) must be provided for metrics secure url"; err.Error() != want {
		t.Errorf("error %q, want etcd's %q", err, want)
	}
}

func TestMetricsURLRefusesOtherSchemes(t *testing.T) {
	cfg := testConfig(t, "/data")
	cfg.ListenMetricsURLs = []url.URL{{Scheme: "unix", Host: "127.0.0.1:0"}}
	s, err := Start(cfg, zap.NewNop(), WithFS(vfs.NewMem()))
	if err == nil {
		s.Stop()
		t.Fatal("started with a unix metrics URL")
	}
	if !strings.Contains(err.Error(), "listen-metrics-urls") {
		t.Errorf("error %q does not name the flag", err)
	}
}
