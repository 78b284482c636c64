package ctl

import (
	"bytes"
	"errors"
	"net"
	"slices"
	"testing"

	"github.com/spf13/pflag"
)

// fakeSRV answers SRV lookups from records, keyed by "_service._proto.name";
// a missing key is a lookup error.
func fakeSRV(records map[string][]*net.SRV) func(service, proto, name string) (string, []*net.SRV, error) {
	return func(service, proto, name string) (string, []*net.SRV, error) {
		key := "_" + service + "._" + proto + "." + name
		rs, ok := records[key]
		if !ok {
			return "", nil, errors.New("no " + key)
		}
		return key, rs, nil
	}
}

func TestDiscoveredEndpoints(t *testing.T) {
	both := map[string][]*net.SRV{
		"_etcd-client-ssl._tcp.example.com": {{Target: "a.example.com.", Port: 2379}},
		"_etcd-client._tcp.example.com":     {{Target: "b.example.com.", Port: 2380}},
	}
	httpOnly := map[string][]*net.SRV{
		"_etcd-client-x._tcp.example.com": {{Target: "b.example.com.", Port: 2380}},
	}
	for _, tc := range []struct {
		name     string
		records  map[string][]*net.SRV
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
			err: "dns lookup errors: no _etcd-client-ssl._tcp.example.com and no _etcd-client._tcp.example.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func(old func(string, string, string) (string, []*net.SRV, error)) { lookupSRV = old }(lookupSRV)
			lookupSRV = fakeSRV(tc.records)
			var stderr bytes.Buffer
			g := &globals{discoverySRV: "example.com", discoverySRVName: tc.srvName, insecureDiscovery: tc.insecure,
				stdio: Stdio{Err: &stderr}}
			eps, err := g.discoveredEndpoints()
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
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
	defer func(old func(string, string, string) (string, []*net.SRV, error)) { lookupSRV = old }(lookupSRV)
	lookupSRV = fakeSRV(map[string][]*net.SRV{
		"_etcd-client._tcp.example.com": {{Target: "b.example.com.", Port: 2380}},
	})
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
