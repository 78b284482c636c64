package discovery

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/keeldb/keel/internal/dnstest"
)

func peerURLs(t *testing.T, ss ...string) []url.URL {
	t.Helper()
	var out []url.URL
	for _, s := range ss {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, *u)
	}
	return out
}

// zone is keel.test with three hosts on 127.0.0.1.
func zone(t *testing.T) *dnstest.Server {
	dns := dnstest.Start(t)
	for _, h := range []string{"m1", "m2", "m3"} {
		dns.AddA(h+".keel.test.", "127.0.0.1")
	}
	return dns
}

func TestSRVClusterNamesThisMemberByAddress(t *testing.T) {
	dns := zone(t)
	for i, h := range []string{"m1", "m2", "m3"} {
		dns.AddSRV("_etcd-server._tcp.keel.test.", h+".keel.test.", uint16(12380+i))
	}
	got, err := SRVCluster(context.Background(), NewResolver(dns.Addr), nil, "infra2", "keel.test", "",
		peerURLs(t, "http://127.0.0.1:12381"))
	// The https service does not exist: reported, yet not a failure.
	if err == nil || !strings.Contains(err.Error(), "error querying DNS SRV records for _etcd-server-ssl ") {
		t.Errorf("error = %v, want the https lookup's failure", err)
	}
	want := []string{"0=http://m1.keel.test:12380", "infra2=http://m2.keel.test:12381", "1=http://m3.keel.test:12382"}
	if !slices.Equal(got, want) {
		t.Errorf("cluster = %q, want %q", got, want)
	}
}

func TestSRVClusterHTTPSFirstWithSuffix(t *testing.T) {
	dns := zone(t)
	dns.AddSRV("_etcd-server-ssl-prod._tcp.keel.test.", "m1.keel.test.", 2380)
	dns.AddSRV("_etcd-server-prod._tcp.keel.test.", "m2.keel.test.", 2381)
	dns.AddSRV("_etcd-server-prod._tcp.keel.test.", "m3.keel.test.", 2382)
	// Records without the suffix are not read.
	dns.AddSRV("_etcd-server._tcp.keel.test.", "m3.keel.test.", 2399)
	got, err := SRVCluster(context.Background(), NewResolver(dns.Addr), nil, "a", "keel.test", "prod",
		peerURLs(t, "https://127.0.0.1:2380"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a=https://m1.keel.test:2380", "0=http://m2.keel.test:2381", "1=http://m3.keel.test:2382"}
	if !slices.Equal(got, want) {
		t.Errorf("cluster = %q, want %q", got, want)
	}
}

func TestSRVClusterSchemeMismatch(t *testing.T) {
	dns := zone(t)
	dns.AddSRV("_etcd-server-ssl._tcp.keel.test.", "m1.keel.test.", 2380)
	got, err := SRVCluster(context.Background(), NewResolver(dns.Addr), nil, "a", "keel.test", "",
		peerURLs(t, "http://127.0.0.1:2380"))
	if len(got) != 0 {
		t.Errorf("cluster = %q, want none", got)
	}
	want := "error querying DNS SRV records for _etcd-server-ssl bootstrap at https://m1.keel.test:2380 from DNS for etcd-server-ssl has scheme mismatch with expected peer http://127.0.0.1:2380"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error = %v, want it to contain %q", err, want)
	}
}

func TestSRVClusterSkipsUnresolvableTargets(t *testing.T) {
	dns := zone(t)
	dns.AddSRV("_etcd-server._tcp.keel.test.", "gone.keel.test.", 2380)
	dns.AddSRV("_etcd-server._tcp.keel.test.", "m2.keel.test.", 2381)
	got, _ := SRVCluster(context.Background(), NewResolver(dns.Addr), nil, "b", "keel.test", "",
		peerURLs(t, "http://127.0.0.1:2381"))
	if want := []string{"b=http://m2.keel.test:2381"}; !slices.Equal(got, want) {
		t.Errorf("cluster = %q, want %q", got, want)
	}

	// With every target unresolvable, the service's error is the last
	// target's.
	dns2 := zone(t)
	dns2.AddSRV("_etcd-server._tcp.keel.test.", "gone.keel.test.", 2380)
	got, err := SRVCluster(context.Background(), NewResolver(dns2.Addr), nil, "b", "keel.test", "",
		peerURLs(t, "http://127.0.0.1:2381"))
	if len(got) != 0 || err == nil || !strings.Contains(err.Error(), "error querying DNS SRV records for _etcd-server lookup gone.keel.test") {
		t.Errorf("cluster %q, error %v", got, err)
	}
}

func TestSRVClusterNoRecords(t *testing.T) {
	dns := zone(t)
	got, err := SRVCluster(context.Background(), NewResolver(dns.Addr), nil, "a", "keel.test", "",
		peerURLs(t, "http://127.0.0.1:2380"))
	if len(got) != 0 || err == nil {
		t.Fatalf("cluster %q, error %v: want none and an error", got, err)
	}
	for _, s := range []string{"_etcd-server-ssl ", "_etcd-server "} {
		if !strings.Contains(err.Error(), "error querying DNS SRV records for "+s) {
			t.Errorf("error %q does not report %s", err, s)
		}
	}
	if n := dns.Queries("_etcd-server._tcp.keel.test."); n == 0 {
		t.Error("the test DNS server was not asked")
	}
}

func TestSRVService(t *testing.T) {
	for _, tc := range []struct{ base, suffix, scheme, want string }{
		{"etcd-server", "", "http", "etcd-server"},
		{"etcd-server", "", "https", "etcd-server-ssl"},
		{"etcd-client", "x", "https", "etcd-client-ssl-x"},
		{"etcd-client", "x", "http", "etcd-client-x"},
	} {
		if got := SRVService(tc.base, tc.suffix, tc.scheme); got != tc.want {
			t.Errorf("SRVService%q = %q, want %q", fmt.Sprint(tc.base, tc.suffix, tc.scheme), got, tc.want)
		}
	}
}
