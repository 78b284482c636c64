package config

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "etcd.conf.yml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestConfigFileEtcdSample reads a file with every key and value of etcd's
// sample configuration file.
func TestConfigFileEtcdSample(t *testing.T) {
	path := filepath.Join("testdata", "etcd-sample-keys.yml")
	c := parseOK(t, []string{"--config-file", path})
	if c.ConfigFile != path {
		t.Errorf("ConfigFile %q", c.ConfigFile)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"name", c.Name, "default"},
		{"data-dir (empty keeps the default)", c.DataDir, "default.keel"},
		{"snapshot-count", c.SnapshotCount, uint64(10000)},
		{"heartbeat", c.HeartbeatInterval, 100 * time.Millisecond},
		{"election", c.ElectionTimeout, time.Second},
		{"listen-peer-urls", urlStrings(c.ListenPeerURLs), []string{"http://localhost:2380"}},
		{"listen-client-urls", urlStrings(c.ListenClientURLs), []string{"http://localhost:2379"}},
		{"advertise-client-urls", urlStrings(c.AdvertiseClientURLs), []string{"http://localhost:2379"}},
		{"initial-advertise-peer-urls", urlStrings(c.InitialAdvertisePeerURLs), []string{"http://localhost:2380"}},
		{"initial-cluster (empty keeps the default)", c.InitialCluster, "default=http://localhost:2380"},
		{"initial-cluster-token", c.InitialClusterToken, "etcd-cluster"},
		{"initial-cluster-state", c.InitialClusterState, "new"},
		{"strict-reconfig-check", c.StrictReconfigCheck, false},
		{"enable-pprof", c.EnablePprof, true},
		{"log-level", c.LogLevel, "debug"},
		{"log-outputs", c.LogOutputs, []string{"stderr"}},
		{"auto-compaction-mode", c.AutoCompactionMode, "periodic"},
		{"auto-compaction-retention", c.AutoCompactionRetention, "1"},
		{"cipher-suites", c.CipherSuites, []string{"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"}},
		{"tls-min-version", c.TLSMinVersion, "TLS1.2"},
		{"tls-max-version", c.TLSMaxVersion, "TLS1.3"},
		{"self-signed-cert-validity", c.SelfSignedCertValidity, uint(1)},
		{"client TLS", c.ClientTLS.Empty() && !c.ClientTLS.AutoTLS && !c.ClientTLS.ClientCertAuth, true},
	}
	for _, ck := range checks {
		if !reflect.DeepEqual(ck.got, ck.want) {
			t.Errorf("%s = %#v, want %#v", ck.name, ck.got, ck.want)
		}
	}
	// Keys etcd no longer reads are ignored with a notice.
	for _, k := range []string{"discovery", "discovery-fallback", "proxy", "proxy-read-timeout"} {
		if n := findNotice(c, k); n == nil || n.Msg != msgUnknownFileKey {
			t.Errorf("no notice for %s: %+v", k, c.Notices)
		}
	}
}

// TestConfigFileEqualsFlags: a file and the equivalent flags give the same
// Config.
func TestConfigFileEqualsFlags(t *testing.T) {
	path := writeFile(t, `
name: m1
data-dir: /var/lib/keel/m1
listen-peer-urls: https://127.0.0.1:12380
initial-advertise-peer-urls: https://127.0.0.1:12380
listen-client-urls: https://127.0.0.1:12379,http://127.0.0.1:22379
advertise-client-urls: https://127.0.0.1:12379
initial-cluster: m1=https://127.0.0.1:12380,m2=https://127.0.0.1:22380,m3=https://127.0.0.1:32380
initial-cluster-token: tok
initial-cluster-state: existing
snapshot-count: 5000
heartbeat-interval: 200
election-timeout: 2000
quota-backend-bytes: 8589934592
max-txn-ops: 256
max-request-bytes: 10485760
auto-compaction-mode: revision
auto-compaction-retention: "1000"
watch-progress-notify-interval: 5000000000
corrupt-check-time: 60000000000
feature-gates: InitialCorruptCheck=true
auth-token: simple
bcrypt-cost: 12
auth-token-ttl: 600
log-level: warn
log-format: console
log-outputs: [stdout, /var/log/keel.log]
cipher-suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]
tls-min-version: TLS1.2
self-signed-cert-validity: 3
enable-pprof: true
client-transport-security:
  cert-file: /etc/keel/server.crt
  key-file: /etc/keel/server.key
  client-cert-auth: true
  trusted-ca-file: /etc/keel/ca.crt
  allowed-hostname: [client.example.com]
peer-transport-security:
  cert-file: /etc/keel/peer.crt
  key-file: /etc/keel/peer.key
  client-cert-auth: true
  trusted-ca-file: /etc/keel/ca.crt
  allowed-cn: [m1, m2]
  skip-client-san-verification: true
`)
	fromFile := parseOK(t, []string{"--config-file", path})
	fromFlags := parseOK(t, []string{
		"--name", "m1", "--data-dir", "/var/lib/keel/m1",
		"--listen-peer-urls", "https://127.0.0.1:12380", "--initial-advertise-peer-urls", "https://127.0.0.1:12380",
		"--listen-client-urls", "https://127.0.0.1:12379,http://127.0.0.1:22379", "--advertise-client-urls", "https://127.0.0.1:12379",
		"--initial-cluster", "m1=https://127.0.0.1:12380,m2=https://127.0.0.1:22380,m3=https://127.0.0.1:32380",
		"--initial-cluster-token", "tok", "--initial-cluster-state", "existing",
		"--snapshot-count", "5000", "--heartbeat-interval", "200", "--election-timeout", "2000",
		"--quota-backend-bytes", "8589934592", "--max-txn-ops", "256", "--max-request-bytes", "10485760",
		"--auto-compaction-mode", "revision", "--auto-compaction-retention", "1000",
		"--watch-progress-notify-interval", "5s", "--corrupt-check-time", "1m",
		"--feature-gates", "InitialCorruptCheck=true",
		"--auth-token", "simple", "--bcrypt-cost", "12", "--auth-token-ttl", "600",
		"--log-level", "warn", "--log-format", "console", "--log-outputs", "stdout,/var/log/keel.log",
		"--cipher-suites", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "--tls-min-version", "TLS1.2",
		"--self-signed-cert-validity", "3", "--enable-pprof",
		"--cert-file", "/etc/keel/server.crt", "--key-file", "/etc/keel/server.key", "--client-cert-auth",
		"--trusted-ca-file", "/etc/keel/ca.crt", "--client-cert-allowed-hostname", "client.example.com",
		"--peer-cert-file", "/etc/keel/peer.crt", "--peer-key-file", "/etc/keel/peer.key", "--peer-client-cert-auth",
		"--peer-trusted-ca-file", "/etc/keel/ca.crt", "--peer-cert-allowed-cn", "m1,m2",
		"--peer-skip-client-san-verification",
	})
	if fromFile.ConfigFile != path {
		t.Errorf("ConfigFile %q", fromFile.ConfigFile)
	}
	fromFile.ConfigFile, fromFile.Notices, fromFlags.Notices, fromFlags.EnvUsed = "", nil, nil, nil
	if !reflect.DeepEqual(fromFile, fromFlags) {
		t.Errorf("file and flags differ:\nfile  %+v\nflags %+v", fromFile, fromFlags)
	}
}

// TestConfigFileIgnoresFlagsAndEnvironment: as in etcd, the file replaces
// the command line and the ETCD_* variables, even broken ones.
func TestConfigFileIgnoresFlagsAndEnvironment(t *testing.T) {
	path := writeFile(t, "name: from-file\nsnapshot-count: 42\n")
	for _, tc := range []struct {
		args []string
		env  []string
	}{
		{[]string{"--config-file", path, "--name", "from-flag", "--snapshot-count", "7"}, []string{"ETCD_NAME=from-env"}},
		{[]string{"--name", "from-flag"}, []string{"ETCD_CONFIG_FILE=" + path, "ETCD_SNAPSHOT_COUNT=abc"}},
		{[]string{"--config-file=" + path}, []string{"ETCD_CONFIG_FILE=/no/such/file", "ETCD_LOG_LEVEL=bogus"}},
	} {
		c := parseOK(t, tc.args, tc.env...)
		if c.Name != "from-file" || c.SnapshotCount != 42 || c.ConfigFile != path || len(c.EnvUsed) != 0 {
			t.Errorf("%q %q: name %q snapshot-count %d file %q env %v", tc.args, tc.env, c.Name, c.SnapshotCount, c.ConfigFile, c.EnvUsed)
		}
		// "keel --name x" derives the initial cluster; a file does too.
		if c.InitialCluster != "from-file=http://localhost:2380" {
			t.Errorf("initial cluster %q", c.InitialCluster)
		}
	}
	// An empty --config-file is no file: etcd then looks at the variable.
	c := parseOK(t, []string{"--config-file="}, "ETCD_CONFIG_FILE="+path)
	if c.Name != "from-file" {
		t.Errorf("ETCD_CONFIG_FILE after an empty --config-file: name %q", c.Name)
	}
}

// TestConfigFileListenWithoutAdvertise: etcd's rule that explicit
// --listen-client-urls needs --advertise-client-urls is a flag rule; a file
// keeps the default advertised URL.
func TestConfigFileListenWithoutAdvertise(t *testing.T) {
	c := parseOK(t, []string{"--config-file", writeFile(t, "listen-client-urls: http://127.0.0.1:12379\n")})
	if got := urlStrings(c.AdvertiseClientURLs); !slices.Equal(got, []string{"http://localhost:2379"}) {
		t.Errorf("advertise-client-urls %q", got)
	}
}

func TestConfigFileErrors(t *testing.T) {
	for _, tc := range []struct {
		text, want string
	}{
		{"log-outputs: stderr\n", "log-outputs: cannot use a string as a list of strings"},
		{"snapshot-count: many\n", "snapshot-count: cannot use a string as a number"},
		{"enable-pprof: 'yes'\n", "enable-pprof: cannot use a string as a boolean"},
		{"name: 5\n", "name: cannot use a number as a string"},
		{"grpc-keepalive-timeout: 5s\n", "grpc-keepalive-timeout: cannot use a string as a duration in nanoseconds"},
		{"initial-cluster-state: bogus\n", `invalid value "bogus" for initial-cluster-state: invalid value`},
		{"listen-client-urls: localhost:2379\nadvertise-client-urls: http://localhost:2379\n", "URL scheme must be http, https, unix, or unixs"},
		{"peer-transport-security: yes\n", "invalid peer-transport-security"},
		{"client-transport-security:\n  client-cert-auth: 1\n", "client-transport-security.client-cert-auth: cannot use a number as a boolean"},
		{"- a\n- b\n", "the file is not a YAML mapping"},
		{"name: [unclosed\n", "yaml"},
		{"heartbeat-interval: 100\nelection-timeout: 200\n", "should be at least as 5 times as --heartbeat-interval"},
	} {
		got := parseErr(t, []string{"--config-file", writeFile(t, tc.text)})
		if !strings.Contains(got, tc.want) {
			t.Errorf("%q: error %q, want %q", tc.text, got, tc.want)
		}
	}
	if got := parseErr(t, []string{"--config-file", "/no/such/keel.yml"}); got != "--config-file: open /no/such/keel.yml: no such file or directory" {
		t.Errorf("missing file: %q", got)
	}
	// An empty file is etcd's defaults.
	c := parseOK(t, []string{"--config-file", writeFile(t, "")})
	if c.Name != "default" || c.DataDir != "default.keel" {
		t.Errorf("empty file: %+v", c)
	}
}

// TestConfigFileDiscoveryAndSocketSections maps the nested sections onto
// their flags.
func TestConfigFileDiscoveryAndSocketSections(t *testing.T) {
	p := newParser()
	err := p.applyFile([]byte(`
discovery-config:
  token: tok
  endpoints: [http://127.0.0.1:2379, http://127.0.0.2:2379]
  dial-timeout: 3000000000
  secure:
    cacert: /ca.crt
    insecure-transport: false
  auth:
    username: root
    password: pw
socket-options:
  reuse-port: true
`))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"discovery-token": "tok", "discovery-endpoints": "http://127.0.0.1:2379,http://127.0.0.2:2379",
		"discovery-dial-timeout": "3s", "discovery-cacert": "/ca.crt", "discovery-insecure-transport": "false",
		"discovery-user": "root", "discovery-password": "pw", "socket-reuse-port": "true",
	} {
		if got := p.str(name); got != want || !p.fromFile[name] {
			t.Errorf("%s = %q (from file %v), want %q", name, got, p.fromFile[name], want)
		}
	}
}
