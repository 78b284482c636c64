package config

import (
	"reflect"
	"testing"
)

func TestInitialClusterMap(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    map[string]string // name -> URLs joined by ","
		wantErr string
	}{
		{in: "", want: map[string]string{}},
		{in: "default=http://localhost:2380", want: map[string]string{"default": "http://localhost:2380"}},
		{in: "a=http://10.0.0.1:2380,b=http://10.0.0.2:2380,a=http://10.0.0.1:2381,,",
			want: map[string]string{"a": "http://10.0.0.1:2380,http://10.0.0.1:2381", "b": "http://10.0.0.2:2380"}},
		// URLs of a member are sorted, as etcd sorts them.
		{in: "a=https://10.0.0.9:2380,a=http://10.0.0.9:2380", want: map[string]string{"a": "http://10.0.0.9:2380,https://10.0.0.9:2380"}},
		{in: "a=http://127.0.0.1:0", want: map[string]string{"a": "http://127.0.0.1:0"}},
		{in: "a=unix://localhost:1", want: map[string]string{"a": "unix://localhost:1"}},
		{in: "garbage", wantErr: "URL scheme must be http, https, unix, or unixs: "},
		{in: "a=10.0.0.1:2380", wantErr: `parse "10.0.0.1:2380": first path segment in URL cannot contain colon`},
		{in: "a=http://10.0.0.1", wantErr: `URL address does not have the form "host:port": http://10.0.0.1`},
		{in: "a=http://10.0.0.1:2380/x", wantErr: "URL must not contain a path: http://10.0.0.1:2380/x"},
	} {
		m, err := (&Config{InitialCluster: tc.in}).InitialClusterMap()
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		got := make(map[string]string, len(m))
		for name, us := range m {
			got[name] = urlsText(us)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: got %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestVerifyBootstrap(t *testing.T) {
	peer := []string{"--listen-peer-urls", "http://127.0.0.1:23801", "--initial-advertise-peer-urls", "http://127.0.0.1:23801"}
	with := func(extra ...string) []string { return append(append([]string{}, peer...), extra...) }
	for _, tc := range []struct {
		name string
		args []string
		want string // "" for success
	}{
		{name: "defaults", args: nil},
		{name: "name alone", args: []string{"--name", "n1"}},
		{name: "name and port 0", args: []string{"--name", "n1", "--listen-peer-urls", "http://127.0.0.1:0", "--initial-advertise-peer-urls", "http://127.0.0.1:0"}},
		{name: "three members", args: with("--name", "n2", "--initial-cluster", "n1=http://127.0.0.1:23800,n2=http://127.0.0.1:23801,n3=http://127.0.0.1:23802")},
		{name: "several urls in any order", args: []string{"--name", "n1", "--initial-advertise-peer-urls", "http://127.0.0.1:2,http://127.0.0.1:1",
			"--initial-cluster", "n1=http://127.0.0.1:1,n1=http://127.0.0.1:2"}},
		{name: "same IPv6 written twice ways", args: []string{"--name", "n1", "--initial-advertise-peer-urls", "http://[::1]:2380",
			"--initial-cluster", "n1=http://[0:0::1]:2380"}},
		{name: "existing cluster does not compare urls", args: with("--name", "n1", "--initial-cluster-state", "existing",
			"--initial-cluster", "n0=http://127.0.0.1:9,n1=http://127.0.0.1:9999")},

		// The messages below are what etcd 3.7.3 prints at bootstrap for
		// the same flags.
		{name: "default name with other peer urls", args: peer,
			want: `--initial-cluster has default=http://localhost:2380 but missing from --initial-advertise-peer-urls=http://127.0.0.1:23801 (resolved urls: "http://127.0.0.1:23801" != "http://localhost:2380")`},
		{name: "cluster url differs", args: with("--initial-cluster", "default=http://127.0.0.1:9999"),
			want: `--initial-cluster has default=http://127.0.0.1:9999 but missing from --initial-advertise-peer-urls=http://127.0.0.1:23801 (resolved urls: "http://127.0.0.1:23801" != "http://127.0.0.1:9999")`},
		{name: "name missing", args: with("--initial-cluster", "other=http://127.0.0.1:23801"),
			want: `couldn't find local name "default" in the initial cluster configuration`},
		{name: "name missing when joining", args: with("--name", "n1", "--initial-cluster-state", "existing", "--initial-cluster", "n0=http://127.0.0.1:9"),
			want: `couldn't find local name "n1" in the initial cluster configuration`},
		{name: "empty cluster", args: []string{"--name", "n1", "--initial-cluster", ""},
			want: `couldn't find local name "n1" in the initial cluster configuration`},
		{name: "advertised url missing from cluster", args: []string{"--initial-advertise-peer-urls", "http://127.0.0.1:23801,http://127.0.0.1:23802",
			"--initial-cluster", "default=http://127.0.0.1:23801"},
			want: "--initial-advertise-peer-urls has http://127.0.0.1:23802 but missing from --initial-cluster=default=http://127.0.0.1:23801,default=http://127.0.0.1:23802"},
		{name: "duplicate url", args: with("--initial-cluster", "default=http://127.0.0.1:23801,x=http://127.0.0.1:23801"),
			want: "initial cluster default=http://127.0.0.1:23801,x=http://127.0.0.1:23801 has duplicate url"},
		{name: "duplicate url when joining", args: with("--name", "n1", "--initial-cluster-state", "existing",
			"--initial-cluster", "n1=http://127.0.0.1:9,n2=http://127.0.0.1:9"),
			want: "initial cluster n1=http://127.0.0.1:9,n2=http://127.0.0.1:9 has duplicate url"},
		// Not compared with etcd, which would resolve the name by DNS.
		{name: "host name against IP", args: []string{"--name", "n1", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
			"--initial-cluster", "n1=http://node1.example:2380"},
			want: `--initial-cluster has n1=http://node1.example:2380 but missing from --initial-advertise-peer-urls=http://127.0.0.1:2380 (resolved urls: "http://127.0.0.1:2380" != "http://node1.example:2380")`},
		{name: "same url listed twice", args: []string{"--name", "n1", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
			"--initial-cluster", "n1=http://127.0.0.1:2380,n1=http://127.0.0.1:2380"},
			want: `failed to resolve http://127.0.0.1:2380 to match --initial-cluster=n1=http://127.0.0.1:2380 (len(["http://127.0.0.1:2380"]) != len(["http://127.0.0.1:2380" "http://127.0.0.1:2380"]))`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := parseOK(t, tc.args)
			err := c.VerifyBootstrap()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("VerifyBootstrap: %v", err)
			case tc.want != "" && (err == nil || err.Error() != tc.want):
				t.Errorf("VerifyBootstrap:\n got %v\nwant %s", err, tc.want)
			}
		})
	}
}

func TestVerifyBootstrapBadCluster(t *testing.T) {
	// A Config built by hand rather than by Parse.
	c := Default()
	c.InitialCluster = "nonsense"
	want := "error setting up initial cluster: URL scheme must be http, https, unix, or unixs: "
	if err := c.VerifyBootstrap(); err == nil || err.Error() != want {
		t.Errorf("got %v, want %q", err, want)
	}
}
