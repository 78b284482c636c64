package proxymain

import (
	"net"
	"slices"
	"strconv"
	"testing"

	"github.com/keeldb/keel/discovery"
	"github.com/keeldb/keel/internal/dnstest"
	"github.com/keeldb/keel/internal/keeltest"
)

// TestDiscoverySRVFindsTheCluster: --discovery-srv replaces --endpoints
// with the _etcd-client._tcp records (http kept with --insecure-discovery),
// and the proxy serves through them.
func TestDiscoverySRVFindsTheCluster(t *testing.T) {
	m := keeltest.Start(t)
	dns := dnstest.Start(t)
	old := srvResolver
	srvResolver = func() *net.Resolver { return discovery.NewResolver(dns.Addr) }
	t.Cleanup(func() { srvResolver = old })
	_, port, err := net.SplitHostPort(m.HostPort())
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	dns.AddSRV("_etcd-client._tcp.keel.test.", "localhost.", uint16(p))
	dns.AddA("localhost.", "127.0.0.1")

	s := startFor(t, m, func(f *Flags) {
		f.Endpoints = []string{"127.0.0.1:1"} // nothing listens: the records must win
		f.DiscoverySRV = "keel.test"
		f.InsecureDiscovery = true
	})
	if want := []string{"http://localhost.:" + port}; !slices.Equal(s.f.Endpoints, want) {
		t.Fatalf("endpoints %q, want %q", s.f.Endpoints, want)
	}
	cli := proxyClient(t, s, nil)
	if _, err := cli.Put(ctxFor(t), "k", "v"); err != nil {
		t.Fatalf("put through the discovered cluster: %v", err)
	}

	// Without --insecure-discovery the http record is dropped and
	// --endpoints stays, as etcd's proxy does.
	s2 := startFor(t, m, func(f *Flags) {
		f.DiscoverySRV = "keel.test"
	})
	if want := []string{m.HostPort()}; !slices.Equal(s2.f.Endpoints, want) {
		t.Fatalf("endpoints without --insecure-discovery %q, want %q", s2.f.Endpoints, want)
	}

	// No records at all: the start fails, as etcd's exits.
	f := defaults(t)
	f.DiscoverySRV = "nothing.test"
	f.DataDir = t.TempDir()
	f.ListenAddr = "127.0.0.1:0"
	if s3, err := Start(f, nil); err == nil {
		s3.Stop()
		t.Fatal("a domain without records started")
	}
}
