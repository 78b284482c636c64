package ctl

import (
	"bytes"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/keeldb/keel/discovery"
	"github.com/keeldb/keel/internal/dnstest"
)

// withSRV serves records (SRV name -> "target:port" entries) from a DNS
// server on loopback for the rest of the test.
func withSRV(t *testing.T, records map[string][]string) {
	t.Helper()
	dns := dnstest.Start(t)
	for name, targets := range records {
		for _, tp := range targets {
			host, port, _ := net.SplitHostPort(tp)
			p, _ := strconv.Atoi(port)
			dns.AddSRV(name, host, uint16(p))
		}
	}
	old := srvResolver
	srvResolver = func() *net.Resolver { return discovery.NewResolver(dns.Addr) }
	t.Cleanup(func() { srvResolver = old })
}

func TestDiscoveredEndpoints(t *testing.T) {
	both := map[string][]string{
		"_etcd-client-ssl._tcp.example.com.": {"a.example.com.:2379"},
		"_etcd-client._tcp.example.com.":     {"b.example.com.:2380"},
	}
	httpOnly := map[string][]string{
		"_etcd-client-x._tcp.example.com.": {"b.example.com.:2380"},
	}
	for _, tc := range []struct {
		name     string
		records  map[string][]string
		srvName  string
		insecure bool
		want     []string
		stderr   string
		err      string
	}{
		{name: "both", records: both, insecure: true,
			want: []string{"https://a.example.com.:2379", "http://b.example.com.:2380"}},
		{name: "secure only", records: both,
			want:   []string{"https://a.example.com.:2379"},
			stderr: "ignoring discovered insecure endpoint \"http://b.example.com.:2380\"\n"},
		{name: "service name, nothing secure", records: httpOnly, srvName: "x",
			stderr: "ignoring discovered insecure endpoint \"http://b.example.com.:2380\"\n"},
		{name: "no records", records: nil, insecure: true,
			err: "dns lookup errors: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			withSRV(t, tc.records)
			var stderr bytes.Buffer
			g := &globals{discoverySRV: "example.com", discoverySRVName: tc.srvName, insecureDiscovery: tc.insecure,
				stdio: Stdio{Err: &stderr}}
			eps, err := g.discoveredEndpoints()
			if tc.err != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(eps, tc.want) {
				t.Errorf("endpoints %q, want %q", eps, tc.want)
			}
			if stderr.String() != tc.stderr {
				t.Errorf("stderr %q, want %q", stderr.String(), tc.stderr)
			}
		})
	}
}

// TestDiscoveryWinsOverEndpoints: the discovered endpoints replace
// --endpoints, which count only when discovery keeps none.
func TestDiscoveryWinsOverEndpoints(t *testing.T) {
	withSRV(t, map[string][]string{"_etcd-client._tcp.example.com.": {"b.example.com.:2380"}})
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--endpoints=x:1", "-d", "example.com"}, []string{"http://b.example.com.:2380"}},
		{[]string{"--endpoints=x:1, y:2", "-d", "example.com", "--insecure-discovery=false"}, []string{"x:1", "y:2"}},
	} {
		var out bytes.Buffer
		g := &globals{stdio: Stdio{Out: &out, Err: &out}}
		fs := pflag.NewFlagSet("keelctl", pflag.ContinueOnError)
		g.register(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		spec, err := g.clientSpec()
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if !slices.Equal(spec.Endpoints, tc.want) {
			t.Errorf("%q: endpoints %q, want %q", tc.args, spec.Endpoints, tc.want)
		}
	}
}
