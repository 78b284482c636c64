package config

import (
	"errors"
	"io"
	"net/url"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// parseOK parses and fails the test on an error or an action other than run.
func parseOK(t *testing.T, args []string, env ...string) *Config {
	t.Helper()
	c, a, err := Parse(args, env)
	if err != nil {
		t.Fatalf("Parse(%q, %q): %v", args, env, err)
	}
	if a != ActionRun || c == nil {
		t.Fatalf("Parse(%q, %q) = %v, %v; want a Config and ActionRun", args, env, c, a)
	}
	return c
}

// parseErr parses and returns the error text, failing the test when there is
// no error.
func parseErr(t *testing.T, args []string, env ...string) string {
	t.Helper()
	c, a, err := Parse(args, env)
	if err == nil {
		t.Fatalf("Parse(%q, %q) = %+v, %v; want an error", args, env, c, a)
	}
	if c != nil {
		t.Errorf("Parse(%q, %q) returned a Config with its error", args, env)
	}
	return err.Error()
}

func urls(t *testing.T, ss ...string) []url.URL {
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

func urlsText(us []url.URL) string { return strings.Join(urlStrings(us), ",") }

// client is a valid pair of client URL flags, for tests that set other URLs.
var client = []string{"--listen-client-urls", "http://127.0.0.1:0", "--advertise-client-urls", "http://127.0.0.1:0"}

// etcdDiscoveryDefaults are etcd 3.7's defaults of the --discovery-* flags.
var etcdDiscoveryDefaults = Discovery{DialTimeout: 2 * time.Second, RequestTimeout: 5 * time.Second,
	KeepAliveTime: 2 * time.Second, KeepAliveTimeout: 6 * time.Second, InsecureTransport: true}

func TestDefaultsMatchEtcd(t *testing.T) {
	want := &Config{
		Name:                     "default",
		DataDir:                  "default.keel", // etcd: default.etcd
		ListenClientURLs:         urls(t, "http://localhost:2379"),
		AdvertiseClientURLs:      urls(t, "http://localhost:2379"),
		ListenPeerURLs:           urls(t, "http://localhost:2380"),
		InitialAdvertisePeerURLs: urls(t, "http://localhost:2380"),
		InitialCluster:           "default=http://localhost:2380",
		InitialClusterState:      "new",
		InitialClusterToken:      "etcd-cluster",
		StrictReconfigCheck:      true,
		SnapshotCount:            10000,
		SnapshotCatchUpEntries:   5000,
		MaxTxnOps:                128,
		MaxRequestBytes:          1572864,
		HeartbeatInterval:        100 * time.Millisecond,
		ElectionTimeout:          1000 * time.Millisecond,
		AutoCompactionMode:       "periodic",
		AutoCompactionRetention:  "0",
		AuthToken:                "simple",
		BcryptCost:               10,
		AuthTokenTTL:             300 * time.Second,
		LogLevel:                 "info",
		LogOutputs:               []string{"default"},
		LogFormat:                "json",
		SelfSignedCertValidity:   1,
		TLSMinVersion:            "TLS1.2",
		CompactHashCheckTime:     time.Minute,
		Discovery:                etcdDiscoveryDefaults,
		EnableGRPCGateway:        true,
		Metrics:                  "basic",
	}
	if got := Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("Default() =\n%+v\nwant\n%+v", got, want)
	}
}

func TestParseWithoutFlagsIsDefault(t *testing.T) {
	got := parseOK(t, nil)
	// etcd warns about the default name on every start that keeps it.
	wantNotices := []Notice{{Msg: msgDefaultName, Key: "--name", Value: "default"}}
	if !reflect.DeepEqual(got.Notices, wantNotices) {
		t.Errorf("Notices = %+v, want %+v", got.Notices, wantNotices)
	}
	got.Notices = nil
	if !reflect.DeepEqual(got, Default()) {
		t.Errorf("Parse(nil, nil) =\n%+v\nwant Default()\n%+v", got, Default())
	}
}

func TestDefaultReturnsFreshCopies(t *testing.T) {
	a := Default()
	a.ListenClientURLs[0].Host = "changed:1"
	a.LogOutputs[0] = "changed"
	if b := Default(); b.ListenClientURLs[0].Host != "localhost:2379" || b.LogOutputs[0] != "default" {
		t.Errorf("Default() shares state between calls: %+v", b)
	}
}

func TestFlagForms(t *testing.T) {
	for _, args := range [][]string{
		{"--name", "n1"},
		{"--name=n1"},
		{"-name", "n1"},
		{"-name=n1"},
	} {
		if c := parseOK(t, args); c.Name != "n1" {
			t.Errorf("%q: Name = %q, want n1", args, c.Name)
		}
	}
}

func TestAllImplementedFlags(t *testing.T) {
	c := parseOK(t, []string{
		"--name", "n1",
		"--data-dir", "/var/lib/keel",
		"--listen-client-urls", "http://127.0.0.1:0",
		"--advertise-client-urls", "http://10.0.0.1:0",
		"--listen-peer-urls", "http://0.0.0.0:2380",
		"--initial-advertise-peer-urls", "http://10.0.0.1:2380",
		"--initial-cluster", "n1=http://10.0.0.1:2380,n2=http://10.0.0.2:2380",
		"--initial-cluster-state", "existing",
		"--initial-cluster-token", "tok",
		"--strict-reconfig-check=false",
		"--snapshot-count", "7",
		"--snapshot-catchup-entries", "3",
		"--auto-compaction-mode", "revision",
		"--auto-compaction-retention", "1000",
		"--max-txn-ops", "9",
		"--max-request-bytes", "1024",
		"--heartbeat-interval", "50",
		"--election-timeout", "500",
		"--log-level", "debug",
		"--log-outputs", "stdout",
		"--log-format", "console",
		"--cert-file", "c.crt", "--key-file", "c.key",
		"--client-cert-file", "cc.crt", "--client-key-file", "cc.key",
		"--trusted-ca-file", "ca.crt", "--client-cert-auth",
		"--client-crl-file", "c.crl", "--client-cert-allowed-hostname", "h1,h2",
		"--auto-tls",
		"--peer-cert-file", "p.crt", "--peer-key-file", "p.key",
		"--peer-client-cert-file", "pc.crt", "--peer-client-key-file", "pc.key",
		"--peer-trusted-ca-file", "pca.crt", "--peer-client-cert-auth",
		"--peer-crl-file", "p.crl", "--peer-cert-allowed-cn", "m1,m2",
		"--peer-skip-client-san-verification", "--peer-auto-tls",
		"--self-signed-cert-validity", "3",
		"--cipher-suites", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
		"--tls-min-version", "TLS1.2", "--tls-max-version", "TLS1.3",
		"--auth-token", "jwt,sign-method=RS256",
		"--bcrypt-cost", "4",
		"--auth-token-ttl", "7",
		"--feature-gates", "InitialCorruptCheck=true,CompactHashCheck=true",
		"--corrupt-check-time", "3m",
		"--compact-hash-check-time", "30s",
		"--enable-grpc-gateway=false",
		"--metrics", "extensive",
		"--listen-metrics-urls", "http://127.0.0.1:0",
	})
	want := &Config{
		Name:                     "n1",
		DataDir:                  "/var/lib/keel",
		ListenClientURLs:         urls(t, "http://127.0.0.1:0"),
		AdvertiseClientURLs:      urls(t, "http://10.0.0.1:0"),
		ListenPeerURLs:           urls(t, "http://0.0.0.0:2380"),
		InitialAdvertisePeerURLs: urls(t, "http://10.0.0.1:2380"),
		InitialCluster:           "n1=http://10.0.0.1:2380,n2=http://10.0.0.2:2380",
		InitialClusterState:      "existing",
		InitialClusterToken:      "tok",
		SnapshotCount:            7,
		SnapshotCatchUpEntries:   3,
		MaxTxnOps:                9,
		MaxRequestBytes:          1024,
		HeartbeatInterval:        50 * time.Millisecond,
		ElectionTimeout:          500 * time.Millisecond,
		AutoCompactionMode:       "revision",
		AutoCompactionRetention:  "1000",
		AuthToken:                "jwt,sign-method=RS256",
		BcryptCost:               4,
		AuthTokenTTL:             7 * time.Second,
		LogLevel:                 "debug",
		LogOutputs:               []string{"stdout"},
		LogFormat:                "console",
		ClientTLS: TLS{CertFile: "c.crt", KeyFile: "c.key", ClientCertFile: "cc.crt", ClientKeyFile: "cc.key",
			TrustedCAFile: "ca.crt", ClientCertAuth: true, CRLFile: "c.crl", AllowedHostnames: []string{"h1", "h2"}, AutoTLS: true},
		PeerTLS: TLS{CertFile: "p.crt", KeyFile: "p.key", ClientCertFile: "pc.crt", ClientKeyFile: "pc.key",
			TrustedCAFile: "pca.crt", ClientCertAuth: true, CRLFile: "p.crl", AllowedCNs: []string{"m1", "m2"},
			SkipClientSANVerify: true, AutoTLS: true},
		SelfSignedCertValidity: 3,
		CipherSuites:           []string{"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"},
		TLSMinVersion:          "TLS1.2",
		TLSMaxVersion:          "TLS1.3",
		InitialCorruptCheck:    true,
		CorruptCheckTime:       3 * time.Minute,
		CompactHashCheck:       true,
		CompactHashCheckTime:   30 * time.Second,
		FeatureGates:           map[string]bool{"InitialCorruptCheck": true, "CompactHashCheck": true},
		Discovery:              etcdDiscoveryDefaults,
		Metrics:                "extensive",
		ListenMetricsURLs:      urls(t, "http://127.0.0.1:0"),
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got\n%+v\nwant\n%+v", c, want)
	}
}

func TestBareBooleanFlags(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		action  Action
		wantErr string
	}{
		{args: []string{"--version"}, action: ActionVersion},
		{args: []string{"-version"}, action: ActionVersion},
		{args: []string{"--version=true"}, action: ActionVersion},
		{args: []string{"--version=1"}, action: ActionVersion},
		{args: []string{"--version=false"}, action: ActionRun},
		// A bool flag never consumes the next argument (etcd: same text).
		{args: []string{"--version", "false"}, wantErr: `"false" is not a valid flag`},
		{args: []string{"--auto-tls", "false"}, wantErr: `"false" is not a valid flag`},
		{args: []string{"--auto-tls=maybe"}, wantErr: `invalid boolean value "maybe" for -auto-tls: parse error`},
	} {
		c, a, err := Parse(tc.args, nil)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("%q: err = %v, want %q", tc.args, err, tc.wantErr)
			}
			continue
		}
		if err != nil || a != tc.action || (a == ActionRun) != (c != nil) {
			t.Errorf("%q: got %v, %v, %v; want action %v", tc.args, c != nil, a, err, tc.action)
		}
	}

	// The value of a bare bool is "true"; an explicit false is kept as given.
	for args, want := range map[string]string{"--memory-mlock": "true", "--memory-mlock=false": "false", "-memory-mlock=T": "T"} {
		c := parseOK(t, []string{args})
		if n := findNotice(c, "--memory-mlock"); n == nil || n.Value != want {
			t.Errorf("%s: notice %+v, want value %q", args, n, want)
		}
	}
}

func TestLastFlagWins(t *testing.T) {
	c := parseOK(t, []string{
		"--name", "a", "--name=b",
		"--listen-client-urls", "http://127.0.0.1:1,http://127.0.0.1:2", "--listen-client-urls", "http://127.0.0.1:3",
		"--advertise-client-urls", "http://127.0.0.1:3",
		"--log-outputs", "stderr", "--log-outputs", "stdout",
		"--snapshot-count", "1", "--snapshot-count", "2",
		"--initial-cluster-state", "existing", "--initial-cluster-state", "new",
	})
	if c.Name != "b" || urlsText(c.ListenClientURLs) != "http://127.0.0.1:3" ||
		!reflect.DeepEqual(c.LogOutputs, []string{"stdout"}) || c.SnapshotCount != 2 || c.InitialClusterState != "new" {
		t.Errorf("last flag did not win: %+v", c)
	}
}

func TestHelpAndVersionActions(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  []string
		want Action
	}{
		{args: []string{"-h"}, want: ActionHelp},
		{args: []string{"-help"}, want: ActionHelp},
		{args: []string{"--help"}, want: ActionHelp},
		{args: []string{"--h"}, want: ActionHelp},
		{args: []string{"--name", "x", "--help"}, want: ActionHelp},
		// Go's flag package stops at -h: what follows is not parsed.
		{args: []string{"--help", "--no-such-flag"}, want: ActionHelp},
		{args: []string{"--version"}, want: ActionVersion},
		// etcd prints the version before it reads the environment or a
		// config file, and before it validates anything.
		{args: []string{"--version"}, env: []string{"ETCD_SNAPSHOT_COUNT=abc", "ETCD_NAME=x"}, want: ActionVersion},
		{args: []string{"--version", "--config-file", "etcd.yaml"}, want: ActionVersion},
		{args: []string{"--version", "--heartbeat-interval", "0"}, want: ActionVersion},
		{args: []string{"--version", "--name", "x"}, env: []string{"ETCD_NAME=y"}, want: ActionVersion},
	} {
		c, a, err := Parse(tc.args, tc.env)
		if err != nil || a != tc.want || c != nil {
			t.Errorf("Parse(%q, %q) = %v, %v, %v; want nil, %v, nil", tc.args, tc.env, c, a, err, tc.want)
		}
	}
	// Flags before -h are parsed: a bad one is still an error.
	if got := parseErr(t, []string{"--no-such-flag", "--help"}); got != "flag provided but not defined: -no-such-flag" {
		t.Errorf("got %q", got)
	}
	// Positional arguments are checked before --version (etcd order).
	if got := parseErr(t, []string{"--version", "extra"}); got != `"extra" is not a valid flag` {
		t.Errorf("got %q", got)
	}
}

func TestCommandLineErrors(t *testing.T) {
	// Each message is the one etcd 3.7.3 prints for the same command line.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--nosuch"}, "flag provided but not defined: -nosuch"},
		{[]string{"-nosuch=1"}, "flag provided but not defined: -nosuch"},
		// In etcd's help text but not a flag of etcd 3.7.
		{[]string{"--discovery", "x"}, "flag provided but not defined: -discovery"},
		{[]string{"--experimental-initial-corrupt-check"}, "flag provided but not defined: -experimental-initial-corrupt-check"},
		{[]string{"--name"}, "flag needs an argument: -name"},
		{[]string{"foo"}, `"foo" is not a valid flag`},
		{[]string{"--name", "n1", "foo", "--name", "n2"}, `"foo" is not a valid flag`},
		{[]string{"--", "--name", "n1"}, `"--name" is not a valid flag`},
		{[]string{"--snapshot-count=abc"}, `invalid value "abc" for flag -snapshot-count: parse error`},
		{[]string{"--snapshot-count=-1"}, `invalid value "-1" for flag -snapshot-count: parse error`},
		{[]string{"--snapshot-count=99999999999999999999"}, `invalid value "99999999999999999999" for flag -snapshot-count: value out of range`},
		{[]string{"--heartbeat-interval", "1.5"}, `invalid value "1.5" for flag -heartbeat-interval: parse error`},
		{[]string{"--quota-backend-bytes", "lots"}, `invalid value "lots" for flag -quota-backend-bytes: parse error`},
		{[]string{"--grpc-keepalive-timeout", "5"}, `invalid value "5" for flag -grpc-keepalive-timeout: parse error`},
		{[]string{"--max-concurrent-streams", "5000000000"}, `invalid value "5000000000" for flag -max-concurrent-streams: strconv.ParseUint: parsing "5000000000": value out of range`},
		{[]string{"--feature-gates=Foo=true"}, `invalid value "Foo=true" for flag -feature-gates: unrecognized feature gate: Foo`},
		{[]string{"--feature-gates=Foo"}, `invalid value "Foo" for flag -feature-gates: missing bool value for Foo`},
		{[]string{"--feature-gates=Foo=maybe"}, `invalid value "Foo=maybe" for flag -feature-gates: invalid value of Foo=maybe, err: strconv.ParseBool: parsing "maybe": invalid syntax`},
		{[]string{"--initial-cluster-state=x"}, `invalid value "x" for flag -initial-cluster-state: invalid value`},
		{[]string{"--discovery-fallback=x"}, `invalid value "x" for flag -discovery-fallback: invalid value`},
		{[]string{"--v2-deprecation=x"}, `invalid value "x" for flag -v2-deprecation: invalid value "x"`},
		{[]string{"--listen-peer-urls", "http://127.0.0.1:2380/x"}, `invalid value "http://127.0.0.1:2380/x" for flag -listen-peer-urls: URL must not contain a path: http://127.0.0.1:2380/x`},
		{[]string{"--listen-peer-urls", "ftp://127.0.0.1:2380"}, `invalid value "ftp://127.0.0.1:2380" for flag -listen-peer-urls: URL scheme must be http, https, unix, or unixs: ftp://127.0.0.1:2380`},
		{[]string{"--listen-peer-urls", "http://127.0.0.1"}, `invalid value "http://127.0.0.1" for flag -listen-peer-urls: URL address does not have the form "host:port": http://127.0.0.1`},
		{[]string{"--listen-peer-urls", "%zz"}, `invalid value "%zz" for flag -listen-peer-urls: parse "%zz": invalid URL escape "%zz"`},
		{[]string{"--advertise-client-urls", "http://a:1,127.0.0.1:2"}, `invalid value "http://a:1,127.0.0.1:2" for flag -advertise-client-urls: parse "127.0.0.1:2": first path segment in URL cannot contain colon`},
		{[]string{"--cors", ""}, `invalid value "" for flag -cors: URL scheme must be http, https, unix, or unixs: `},
		{[]string{"--cors", "http://example.com"}, `invalid value "http://example.com" for flag -cors: URL address does not have the form "host:port": http://example.com`},
	} {
		if got := parseErr(t, tc.args); got != tc.want {
			t.Errorf("Parse(%q):\n got %s\nwant %s", tc.args, got, tc.want)
		}
	}
}

func TestSyntaxErrorsAreMarked(t *testing.T) {
	// etcd exits 2 on what the flag package rejects, 1 on everything else.
	for _, tc := range []struct {
		args   []string
		env    []string
		syntax bool
	}{
		{[]string{"--nosuch"}, nil, true},
		{[]string{"--name"}, nil, true},
		{[]string{"--snapshot-count=x"}, nil, true},
		{[]string{"--auto-tls=x"}, nil, true},
		{[]string{"foo"}, nil, false},
		{nil, []string{"ETCD_SNAPSHOT_COUNT=x"}, false},
		{[]string{"--heartbeat-interval=0"}, nil, false},
	} {
		_, _, err := Parse(tc.args, tc.env)
		var se *SyntaxError
		if err == nil || errors.As(err, &se) != tc.syntax {
			t.Errorf("%q %q: err %v, SyntaxError %v, want %v", tc.args, tc.env, err, se != nil, tc.syntax)
		}
	}
}

func TestDataDirFollowsName(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  []string
		want string
	}{
		{nil, nil, "default.keel"},
		{[]string{"--name", "n1"}, nil, "n1.keel"},
		{nil, []string{"ETCD_NAME=n2"}, "n2.keel"},
		{[]string{"--name", "n1", "--data-dir", "/data"}, nil, "/data"},
		{[]string{"--name", "n1", "--data-dir", ""}, nil, "n1.keel"},
		{[]string{"--name", "n1"}, []string{"ETCD_DATA_DIR=/env"}, "/env"},
	} {
		if c := parseOK(t, tc.args, tc.env...); c.DataDir != tc.want {
			t.Errorf("%q %q: DataDir = %q, want %q", tc.args, tc.env, c.DataDir, tc.want)
		}
	}
}

func TestInitialClusterDefault(t *testing.T) {
	// etcd rewrites a default --initial-cluster from --name and
	// --initial-advertise-peer-urls, but only when the name is not the
	// default one.
	for _, tc := range []struct {
		args []string
		env  []string
		want string
	}{
		{nil, nil, "default=http://localhost:2380"},
		{[]string{"--name", "n1"}, nil, "n1=http://localhost:2380"},
		{nil, []string{"ETCD_NAME=n1"}, "n1=http://localhost:2380"},
		{[]string{"--name", "n1", "--initial-advertise-peer-urls", "http://10.0.0.2:2380,http://10.0.0.1:2380"}, nil,
			"n1=http://10.0.0.1:2380,n1=http://10.0.0.2:2380"},
		{[]string{"--name", "n1", "--initial-advertise-peer-urls", "http://127.0.0.1:0"}, nil, "n1=http://127.0.0.1:0"},
		// Default name: the default cluster stays, and VerifyBootstrap
		// later reports the mismatch, as etcd does at bootstrap.
		{[]string{"--initial-advertise-peer-urls", "http://10.0.0.1:2380"}, nil, "default=http://localhost:2380"},
		{[]string{"--name", "n1", "--initial-cluster", "a=http://10.0.0.1:2380"}, nil, "a=http://10.0.0.1:2380"},
		{[]string{"--name", "n1"}, []string{"ETCD_INITIAL_CLUSTER=a=http://10.0.0.1:2380"}, "a=http://10.0.0.1:2380"},
		// etcd compares the value with its default, not whether it was set.
		{[]string{"--name", "n1", "--initial-cluster", "default=http://localhost:2380"}, nil, "n1=http://localhost:2380"},
		{[]string{"--name", "n1", "--initial-cluster", ""}, nil, ""},
		// An empty variable is not used.
		{[]string{"--name", "n1"}, []string{"ETCD_INITIAL_CLUSTER="}, "n1=http://localhost:2380"},
		{[]string{"--name", ""}, nil, "default=http://localhost:2380"},
	} {
		if c := parseOK(t, tc.args, tc.env...); c.InitialCluster != tc.want {
			t.Errorf("%q %q: InitialCluster = %q, want %q", tc.args, tc.env, c.InitialCluster, tc.want)
		}
	}
}

func TestURLLists(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  string
	}{
		// Sorted and de-duplicated, as etcd does.
		{"http://127.0.0.1:2,http://127.0.0.1:1", "http://127.0.0.1:1,http://127.0.0.1:2"},
		{"http://127.0.0.1:1,http://127.0.0.1:1", "http://127.0.0.1:1"},
		{" http://127.0.0.1:1 , https://127.0.0.1:2", "http://127.0.0.1:1,https://127.0.0.1:2"},
		{"http://127.0.0.1:0", "http://127.0.0.1:0"},
		{"http://[::1]:0", "http://[::1]:0"},
		{"http://localhost:0", "http://localhost:0"},
		{"unix://localhost:1234", "unix://localhost:1234"},
		{"unixs:/var/run/keel.sock", "unixs:/var/run/keel.sock"},
		// An empty value is accepted and keeps the previous list (etcd).
		{"", "http://localhost:2380"},
	} {
		c := parseOK(t, []string{"--listen-peer-urls", tc.value, "--peer-auto-tls"})
		if got := urlsText(c.ListenPeerURLs); got != tc.want {
			t.Errorf("--listen-peer-urls %q: got %q, want %q", tc.value, got, tc.want)
		}
	}
}

func TestListenClientURLsNeedAdvertiseClientURLs(t *testing.T) {
	want := "--advertise-client-urls is required when --listen-client-urls is set explicitly"
	if got := parseErr(t, []string{"--listen-client-urls", "http://127.0.0.1:0"}); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := parseErr(t, nil, "ETCD_LISTEN_CLIENT_URLS=http://127.0.0.1:0"); got != want {
		t.Errorf("env: got %q, want %q", got, want)
	}
	parseOK(t, []string{"--listen-client-urls", "http://127.0.0.1:0"}, "ETCD_ADVERTISE_CLIENT_URLS=http://127.0.0.1:0")
	parseOK(t, client)
}

func TestSnapshotZeroMeansDefault(t *testing.T) {
	c := parseOK(t, []string{"--snapshot-count", "0", "--snapshot-catchup-entries=0"})
	if c.SnapshotCount != 10000 || c.SnapshotCatchUpEntries != 5000 {
		t.Errorf("got %d, %d; want etcd's defaults 10000, 5000", c.SnapshotCount, c.SnapshotCatchUpEntries)
	}
	for _, key := range []string{"--snapshot-count", "--snapshot-catchup-entries"} {
		if n := findNotice(c, key); n == nil || n.Value != "0" {
			t.Errorf("no notice for %s=0: %+v", key, c.Notices)
		}
	}
}

func TestLogSettingsCanonical(t *testing.T) {
	for _, tc := range []struct {
		args        []string
		level, form string
	}{
		{[]string{"--log-level", "DEBUG"}, "debug", "json"},
		{[]string{"--log-level", "Warning"}, "warn", "json"},
		{[]string{"--log-level", ""}, "info", "json"},
		{[]string{"--log-level", "dpanic"}, "dpanic", "json"},
		{[]string{"--log-format", ""}, "info", "json"},
		{[]string{"--log-format", "console"}, "info", "console"},
	} {
		c := parseOK(t, tc.args)
		if c.LogLevel != tc.level || c.LogFormat != tc.form {
			t.Errorf("%q: got %q %q, want %q %q", tc.args, c.LogLevel, c.LogFormat, tc.level, tc.form)
		}
	}
	c := parseOK(t, []string{"--log-outputs", "stdout,/var/log/keel.log,stdout"})
	if want := []string{"/var/log/keel.log", "stdout"}; !reflect.DeepEqual(c.LogOutputs, want) {
		t.Errorf("LogOutputs = %q, want %q", c.LogOutputs, want)
	}
}

func TestActionString(t *testing.T) {
	for a, want := range map[Action]string{ActionRun: "run", ActionHelp: "help", ActionVersion: "version", Action(9): "Action(9)"} {
		if a.String() != want {
			t.Errorf("%d: %q, want %q", int(a), a.String(), want)
		}
	}
}

func findNotice(c *Config, key string) *Notice {
	for i := range c.Notices {
		if c.Notices[i].Key == key {
			return &c.Notices[i]
		}
	}
	return nil
}

func TestParsePrintsNothing(t *testing.T) {
	stdout, stderr := os.Stdout, os.Stderr
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	os.Stdout, os.Stderr = w, w
	for _, args := range [][]string{{"--nosuch"}, {"--help"}, {"--name"}, {"--snapshot-count=x"}, {"--version"}, {"x"}, nil} {
		_, _, _ = Parse(args, []string{"ETCD_FOO=1", "ETCD_NAME=x"})
	}
	os.Stdout, os.Stderr = stdout, stderr
	w.Close()
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 0 {
		t.Errorf("Parse printed %q", out)
	}
}

func TestKubeadmStaticPodCommandLine(t *testing.T) {
	// The shape of the etcd command line kubeadm writes for a control-plane
	// node: keel must start from it unchanged, warning about what it
	// ignores.
	args := []string{
		"--advertise-client-urls=https://10.0.0.1:2379",
		"--cert-file=/etc/kubernetes/pki/etcd/server.crt",
		"--client-cert-auth=true",
		"--data-dir=/var/lib/etcd",
		"--feature-gates=InitialCorruptCheck=true",
		"--initial-advertise-peer-urls=https://10.0.0.1:2380",
		"--initial-cluster=cp1=https://10.0.0.1:2380",
		"--key-file=/etc/kubernetes/pki/etcd/server.key",
		"--listen-client-urls=https://127.0.0.1:2379,https://10.0.0.1:2379",
		"--listen-metrics-urls=http://127.0.0.1:2381",
		"--listen-peer-urls=https://10.0.0.1:2380",
		"--name=cp1",
		"--peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt",
		"--peer-client-cert-auth=true",
		"--peer-key-file=/etc/kubernetes/pki/etcd/peer.key",
		"--peer-trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
		"--snapshot-count=10000",
		"--trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
		"--watch-progress-notify-interval=5s",
	}
	c := parseOK(t, args)
	if err := c.VerifyBootstrap(); err != nil {
		t.Fatalf("VerifyBootstrap: %v", err)
	}
	if c.Name != "cp1" || c.DataDir != "/var/lib/etcd" ||
		urlsText(c.ListenClientURLs) != "https://10.0.0.1:2379,https://127.0.0.1:2379" {
		t.Errorf("got %+v", c)
	}
	if c.WatchProgressNotifyInterval != 5*time.Second {
		t.Errorf("watch progress notify interval %v, want 5s", c.WatchProgressNotifyInterval)
	}
	var ignored []string
	for _, n := range c.Notices {
		ignored = append(ignored, n.Key)
	}
	if len(ignored) != 0 {
		t.Errorf("notices for %q, want none", ignored)
	}
	if urlsText(c.ListenMetricsURLs) != "http://127.0.0.1:2381" || c.Metrics != "basic" {
		t.Errorf("metrics %q on %q, want basic on http://127.0.0.1:2381", c.Metrics, urlsText(c.ListenMetricsURLs))
	}
	if !c.InitialCorruptCheck {
		t.Error("--feature-gates=InitialCorruptCheck=true did not turn the initial corruption check on")
	}
}

func TestFeaturesResolveEveryGate(t *testing.T) {
	c := parseOK(t, []string{"--feature-gates=AllAlpha=true,StopGRPCServiceOnDefrag=false"})
	got := map[string]bool{}
	for _, g := range c.Features() {
		got[g.Name] = g.Enabled
	}
	want := map[string]bool{
		"AllAlpha": true, "AllBeta": false,
		"CompactHashCheck": true, "InitialCorruptCheck": true, // alpha, switched by AllAlpha
		"StopGRPCServiceOnDefrag": false, // named: wins over AllAlpha
		"FastLeaseKeepAlive":      true,  // beta, on by default
	}
	for name, on := range want {
		if got[name] != on {
			t.Errorf("%s enabled = %v, want %v", name, got[name], on)
		}
	}
	if len(got) != len(etcdFeatureGates) {
		t.Errorf("Features lists %d gates, want all %d", len(got), len(etcdFeatureGates))
	}
	if !c.InitialCorruptCheck || !c.CompactHashCheck {
		t.Error("AllAlpha=true did not turn on the corruption checks keel acts on")
	}
}
