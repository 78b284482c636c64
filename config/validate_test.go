package config

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestValidationErrorsMatchEtcd(t *testing.T) {
	// Unless marked otherwise, each message was compared with what etcd
	// 3.7.3 prints for the same flags (added to a valid command line).
	for _, tc := range []struct {
		args []string
		want string
	}{
		// URLs (embed.Config.Validate: checkBindURLs, checkHostURLs).
		{[]string{"--listen-peer-urls", "http://foo:2380"}, "expected IP in URL for binding (http://foo:2380)"},
		{append([]string{"--listen-client-urls", "http://example.com:2379"}, client[2:]...), "expected IP in URL for binding (http://example.com:2379)"},
		{[]string{"--listen-metrics-urls", "http://foo:2381"}, "expected IP in URL for binding (http://foo:2381)"},
		{[]string{"--listen-client-http-urls", "http://foo:2382"}, "expected IP in URL for binding (http://foo:2382)"},
		{[]string{"--listen-peer-urls", "http://:2380"}, "expected IP in URL for binding (http://:2380)"},
		{[]string{"--advertise-client-urls", "http://:2379"},
			`--advertise-client-urls "http://:2379" must be in the format "host:port", "unix:/path/to/socket" or "unixs:/path/to/socket" (unexpected empty host (http://:2379))`},
		{[]string{"--initial-advertise-peer-urls", "http://:2380"},
			`--initial-advertise-peer-urls "http://:2380" must be "host:port" (unexpected empty host (http://:2380))`},

		// TLS URLs without a certificate (not compared with etcd: it
		// fails the same way while creating the listeners).
		{append([]string{"--listen-client-urls", "https://127.0.0.1:2379"}, client[2:]...),
			"TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:2379 with HTTPS scheme"},
		{[]string{"--listen-peer-urls", "https://127.0.0.1:2380"}, "cannot listen on TLS for 127.0.0.1:2380: KeyFile and CertFile are not presented"},
		{[]string{"--listen-peer-urls", "unixs://127.0.0.1:2380"}, "cannot listen on TLS for 127.0.0.1:2380: KeyFile and CertFile are not presented"},

		// Raft timing.
		{[]string{"--election-timeout", "400"}, "--election-timeout[400ms] should be at least as 5 times as --heartbeat-interval[100ms]"},
		{[]string{"--election-timeout", "60000"}, "--election-timeout[60000ms] is too long, and should be set less than 50000ms"},
		{[]string{"--heartbeat-interval", "0"}, "--heartbeat-interval must be >0 (set to 0ms)"},
		{[]string{"--election-timeout", "0"}, "--election-timeout must be >0 (set to 0ms)"},
		// Not compared with etcd: there 5*heartbeat wraps around.
		{[]string{"--heartbeat-interval", "18446744073709551615"},
			"--election-timeout[1000ms] should be at least as 5 times as --heartbeat-interval[18446744073709551615ms]"},

		// Logging (etcd panics on a bad level; keel reports zap's message).
		{[]string{"--log-level", "bogus"}, `unrecognized level: "bogus"`},
		{[]string{"--log-format", "bogus"}, "unknown log format: bogus, supported values json, console"},
		{[]string{"--logger", "capnslog"}, "--logger=capnslog is removed in v3.5"},
		{[]string{"--logger", "foo"}, `unknown logger option "foo"`},
		{[]string{"--log-outputs", "default,stderr"}, `multi logoutput for "default" is not supported yet`},
		{[]string{"--log-outputs", "systemd/journal,stderr"},
			`running with systemd/journal but other '--log-outputs' values (["stderr" "systemd/journal"]) are configured with 'default'; override 'default' value with something else`},
		{[]string{"--enable-log-rotation"}, "--log-outputs requires a single file path when --log-rotate-config-json is defined"},
		{[]string{"--enable-log-rotation", "--log-outputs", "/a.log,/b.log"}, "--log-outputs requires a single file path when --log-rotate-config-json is defined"},
		{[]string{"--enable-log-rotation", "--log-outputs", "/a.log", "--log-rotation-config-json", "{"},
			"improperly formatted log rotation config: unexpected end of JSON input"},

		// Clustering and discovery.
		{[]string{"--discovery-fallback", "proxy"}, `v2 proxy is deprecated, and --discovery-fallback can't be configured as "proxy"`},
		{[]string{"--discovery-token", "abc"}, "both --discovery-token and --discovery-endpoints must be set"},
		{[]string{"--discovery-endpoints", "http://127.0.0.1:1"}, "both --discovery-token and --discovery-endpoints must be set"},
		{[]string{"--discovery-endpoints", "a,,b", "--discovery-token", "x"}, "--discovery-endpoints must not contain empty endpoints"},
		{[]string{"--discovery-srv", "example.com", "--initial-cluster", "n1=http://127.0.0.1:2380"},
			`multiple discovery or bootstrap flags are set. Choose one of "initial-cluster", "discovery-endpoints" or "discovery-srv"`},
		{[]string{"--discovery-srv", "example.com", "--discovery-endpoints", "http://127.0.0.1:1", "--discovery-token", "x"},
			`multiple discovery or bootstrap flags are set. Choose one of "initial-cluster", "discovery-endpoints" or "discovery-srv"`},
		{[]string{"--auto-compaction-mode", ""}, "undefined auto-compaction-mode"},
		{[]string{"--auto-compaction-mode", "x"}, `unknown auto-compaction-mode "x"`},
		{[]string{"--auto-compaction-retention", "abc"}, `error parsing CompactionRetention: time: invalid duration "abc"`},
		{[]string{"--auto-compaction-retention", "-1"}, `error parsing CompactionRetention: time: missing unit in duration "-1"`}, // not compared
		{[]string{"--initial-cluster", "garbage"}, "error setting up initial cluster: URL scheme must be http, https, unix, or unixs: "},
		{[]string{"--initial-cluster", "a=http://10.0.0.1:2380/path"}, "error setting up initial cluster: URL must not contain a path: http://10.0.0.1:2380/path"}, // not compared

		// Features, tracing, TLS.
		{[]string{"--enable-distributed-tracing", "--distributed-tracing-sampling-rate=-1"},
			"distributed tracing configurition is not valid: (tracing sampling rate must be positive)"},
		{[]string{"--enable-distributed-tracing", "--distributed-tracing-sampling-rate=1000001"},
			"distributed tracing configurition is not valid: (tracing sampling rate must be less than 1000000)"}, // not compared
		{[]string{"--feature-gates", "LeaseCheckpointPersist=true"},
			"enabling feature gate LeaseCheckpointPersist requires enabling feature gate LeaseCheckpoint"},
		{[]string{"--feature-gates", "AllAlpha=true,LeaseCheckpoint=false"},
			"enabling feature gate LeaseCheckpointPersist requires enabling feature gate LeaseCheckpoint"}, // not compared
		{[]string{"--compact-hash-check-time", "0s"}, "--compact-hash-check-time must be >0 (set to 0s)"},
		{[]string{"--tls-min-version", "TLS1.1"}, `unexpected TLS version "TLS1.1" (must be one of: TLS1.2, TLS1.3)`},
		{[]string{"--tls-max-version", "TLS1.0"}, `unexpected TLS version "TLS1.0" (must be one of: TLS1.2, TLS1.3)`},
		{[]string{"--tls-min-version", "TLS1.3", "--tls-max-version", "TLS1.2"}, "min version (TLS1.3) is greater than max version (TLS1.2)"},
		{[]string{"--tls-min-version", "TLS1.3", "--cipher-suites", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"},
			"cipher suites cannot be configured when only TLS1.3 is enabled"},
		{[]string{"--cipher-suites", "bogus"}, `unexpected TLS cipher suite "bogus"`},
		{[]string{"--cipher-suites", ""}, `unexpected TLS cipher suite ""`},
	} {
		if got := parseErr(t, tc.args); got != tc.want {
			t.Errorf("Parse(%q):\n got %s\nwant %s", tc.args, got, tc.want)
		}
	}
}

func TestValidValuesAccepted(t *testing.T) {
	for _, args := range [][]string{
		{"--feature-gates", "LeaseCheckpointPersist=true,LeaseCheckpoint=true"},
		{"--feature-gates", "AllAlpha=true"},
		{"--feature-gates", "LeaseCheckpoint=true", "--feature-gates", "LeaseCheckpointPersist=true"}, // repeated gates accumulate
		{"--feature-gates", ""},
		{"--feature-gates", " StopGRPCServiceOnDefrag = true ,"},
		{"--cipher-suites", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305,TLS_RSA_WITH_RC4_128_SHA"},
		{"--tls-min-version", "TLS1.3"},
		{"--tls-min-version", "TLS1.2", "--tls-max-version", "TLS1.3"},
		{"--auto-compaction-retention", "1h", "--auto-compaction-mode", "revision"},
		{"--auto-compaction-retention", "-5m"}, // etcd accepts any Go duration
		{"--enable-log-rotation", "--log-outputs", "/var/log/keel.log"},
		{"--enable-log-rotation", "--log-outputs", "stderr,/var/log/keel.log"},
		{"--log-outputs", "systemd/journal"},
		{"--enable-distributed-tracing", "--distributed-tracing-sampling-rate", "1000000"},
		{"--distributed-tracing-sampling-rate", "-1"}, // checked only when tracing is on
		{"--discovery-fallback", "exit"},
		{"--v2-deprecation", "write-only,gone"},
		{"--listen-peer-urls", "http://[fe80::1]:0", "--initial-advertise-peer-urls", "https://[fe80::1]:2380"},
		{"--cors", "*"},
		{"--cors", "http://example.com:80,https://a.example:443"},
		{"--host-whitelist", "a,b,a"},
		{"--discovery-srv-name", "x", "--initial-cluster", "n1=http://127.0.0.1:2380"},
		{"--initial-cluster-state", "existing"},
		{"--heartbeat-interval", "200", "--election-timeout", "1000"},
		{"--heartbeat-interval", "1", "--election-timeout", "50000"},
	} {
		parseOK(t, args)
	}
}

func TestDiscoveryFlagsFillConfig(t *testing.T) {
	// DNS SRV discovery: the default --initial-cluster is dropped, the
	// cluster comes from DNS.
	c := parseOK(t, []string{"--name", "n1", "--discovery-srv", "example.com", "--discovery-srv-name", "a"})
	if c.DiscoverySRV != "example.com" || c.DiscoverySRVName != "a" || c.InitialCluster != "" {
		t.Errorf("srv: got %q %q initial cluster %q", c.DiscoverySRV, c.DiscoverySRVName, c.InitialCluster)
	}
	c = parseOK(t, nil, "ETCD_DISCOVERY_SRV=example.com")
	if c.DiscoverySRV != "example.com" {
		t.Errorf("ETCD_DISCOVERY_SRV: got %q", c.DiscoverySRV)
	}

	// v3 discovery with etcd's defaults.
	c = parseOK(t, []string{"--discovery-endpoints", "http://127.0.0.1:1,http://127.0.0.1:2", "--discovery-token", "tok"})
	want := Discovery{Token: "tok", Endpoints: []string{"http://127.0.0.1:1", "http://127.0.0.1:2"},
		DialTimeout: 2 * time.Second, RequestTimeout: 5 * time.Second, KeepAliveTime: 2 * time.Second, KeepAliveTimeout: 6 * time.Second,
		InsecureTransport: true}
	if !reflect.DeepEqual(c.Discovery, want) || c.InitialCluster != "" {
		t.Errorf("v3 discovery: got %+v, initial cluster %q; want %+v", c.Discovery, c.InitialCluster, want)
	}
	c = parseOK(t, []string{"--discovery-endpoints", "https://127.0.0.1:1", "--discovery-token", "tok",
		"--discovery-dial-timeout", "1s", "--discovery-request-timeout", "3s", "--discovery-keepalive-time", "4s",
		"--discovery-keepalive-timeout", "7s", "--discovery-insecure-transport=false", "--discovery-insecure-skip-tls-verify",
		"--discovery-cert", "c.pem", "--discovery-key", "k.pem", "--discovery-cacert", "ca.pem",
		"--discovery-user", "root", "--discovery-password", "pw"})
	want = Discovery{Token: "tok", Endpoints: []string{"https://127.0.0.1:1"},
		DialTimeout: time.Second, RequestTimeout: 3 * time.Second, KeepAliveTime: 4 * time.Second, KeepAliveTimeout: 7 * time.Second,
		InsecureSkipVerify: true, CertFile: "c.pem", KeyFile: "k.pem", CAFile: "ca.pem", User: "root", Password: "pw"}
	if !reflect.DeepEqual(c.Discovery, want) {
		t.Errorf("v3 discovery with every flag: got %+v, want %+v", c.Discovery, want)
	}
	// Neither way of discovery is refused or warned about any more.
	for _, n := range c.Notices {
		if strings.Contains(n.Key, "discovery") {
			t.Errorf("notice about %s: %s", n.Key, n.Msg)
		}
	}
}

func TestUnsupportedFlagNotices(t *testing.T) {
	// A value etcd accepts for each flag keel does not act on yet.
	sample := map[string]string{
		"cipher-suites":        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
		"listen-metrics-urls":  "http://127.0.0.1:2381",
		"auto-compaction-mode": "revision",
		"logger":               "zap",
		"pre-vote":             "false",
	}
	for _, s := range flagTable {
		if s.status != unsupported {
			continue
		}
		val, ok := sample[s.name]
		if !ok {
			val = s.def
		}
		for _, viaEnv := range []bool{false, true} {
			var c *Config
			if viaEnv {
				c = parseOK(t, nil, FlagToEnv(s.name)+"="+val)
				if val == "" {
					continue // an empty variable sets nothing
				}
			} else {
				c = parseOK(t, []string{"--" + s.name + "=" + val})
			}
			want := Notice{Msg: msgUnsupported, Key: "--" + s.name, Value: val}
			if s.keelDoes != "" && val == s.keelDoes {
				if n := findNotice(c, "--"+s.name); n != nil {
					t.Errorf("--%s=%s is what keel does, yet got notice %+v", s.name, val, n)
				}
				continue
			}
			if !slices.Contains(c.Notices, want) {
				t.Errorf("--%s=%q (env %v): notices %+v, want %+v", s.name, val, viaEnv, c.Notices, want)
			}
		}
	}

	// Not set: no notice, even when the value equals the default.
	c := parseOK(t, []string{"--name", "n1"})
	if len(c.Notices) != 0 {
		t.Errorf("notices without flags: %+v", c.Notices)
	}
}

func TestFeatureGatesKeelDoesNotActOnGetANoticeEach(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  []string
		want []Notice
	}{
		{[]string{"--feature-gates=InitialCorruptCheck=true,CompactHashCheck=false"}, nil, nil},
		{[]string{"--feature-gates=LeaseCheckpoint=true,InitialCorruptCheck=true,AllBeta=false"}, nil, []Notice{
			{Msg: msgUnsupported, Key: "--feature-gates", Value: "AllBeta=false"},
			{Msg: msgUnsupported, Key: "--feature-gates", Value: "LeaseCheckpoint=true"},
		}},
		{nil, []string{"ETCD_FEATURE_GATES=StopGRPCServiceOnDefrag=true"}, []Notice{
			{Msg: msgUnsupported, Key: "--feature-gates", Value: "StopGRPCServiceOnDefrag=true"},
		}},
	} {
		cfg := parseOK(t, append([]string{"--name", "n1"}, c.args...), c.env...)
		if !slices.Equal(cfg.Notices, c.want) {
			t.Errorf("%q %q: notices %+v, want %+v", c.args, c.env, cfg.Notices, c.want)
		}
	}
	// AllAlpha switches the alpha gates keel acts on too.
	if cfg := parseOK(t, []string{"--feature-gates=AllAlpha=true"}); !cfg.InitialCorruptCheck || !cfg.CompactHashCheck {
		t.Errorf("AllAlpha=true: initial check %v, compact hash check %v; want both on", cfg.InitialCorruptCheck, cfg.CompactHashCheck)
	}
}

func TestDeprecatedAndLegacyNotices(t *testing.T) {
	c := parseOK(t, []string{"--name", "n1", "--max-snapshots", "3", "--v2-deprecation", "gone",
		"--snapshot", "--v", "--vv=3", "--peer-heartbeat-interval=10", "--test.coverprofile=x"}, "ETCD_FORCE=1")
	// In flag order, as etcd visits them.
	want := []Notice{
		{Msg: msgLegacy, Key: "--force", Value: "1"},
		{Msg: "--max-snapshots is deprecated in 3.6 and will be decommissioned in 3.8.", Key: "--max-snapshots", Value: "3"},
		{Msg: msgUnsupported, Key: "--max-snapshots", Value: "3"},
		{Msg: msgLegacy, Key: "--peer-heartbeat-interval", Value: "10"},
		{Msg: msgLegacy, Key: "--snapshot", Value: "true"},
		{Msg: msgLegacy, Key: "--test.coverprofile", Value: "x"},
		{Msg: msgLegacy, Key: "--v", Value: "true"},
		{Msg: "--v2-deprecation is deprecated and scheduled for removal in v3.8. The default value is enforced, ignoring user input.", Key: "--v2-deprecation", Value: "gone"},
		{Msg: msgLegacy, Key: "--vv", Value: "3"},
	}
	if !slices.Equal(c.Notices, want) {
		t.Errorf("notices\n got %+v\nwant %+v", c.Notices, want)
	}
	// A legacy flag is a bare boolean: it does not take the next argument.
	if got := parseErr(t, []string{"--snapshot", "x"}); got != `"x" is not a valid flag` {
		t.Errorf("got %q", got)
	}
}
