package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestFlagToEnv(t *testing.T) {
	for name, want := range map[string]string{
		"name":                        "ETCD_NAME",
		"initial-advertise-peer-urls": "ETCD_INITIAL_ADVERTISE_PEER_URLS",
		"v":                           "ETCD_V",
		"test.coverprofile":           "ETCD_TEST.COVERPROFILE",
	} {
		if got := FlagToEnv(name); got != want {
			t.Errorf("FlagToEnv(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestEnvironmentFillsUnsetFlags(t *testing.T) {
	c := parseOK(t, []string{"--name", "n1"},
		"ETCD_SNAPSHOT_COUNT=42",
		"ETCD_HEARTBEAT_INTERVAL=10",
		"ETCD_ELECTION_TIMEOUT=100",
		"ETCD_LISTEN_PEER_URLS=http://127.0.0.1:0",
		"ETCD_INITIAL_ADVERTISE_PEER_URLS=http://127.0.0.1:0",
		"ETCD_LOG_OUTPUTS=stderr",
		"ETCD_INITIAL_CLUSTER_STATE=existing",
		"ETCD_MAX_TXN_OPS=", // empty: not used
		"PATH=/usr/bin",
		"ETCD_SNAPSHOT_COUNT=99", // a repeated variable: the first wins
	)
	if c.SnapshotCount != 42 || c.HeartbeatInterval.Milliseconds() != 10 || c.ElectionTimeout.Milliseconds() != 100 ||
		urlsText(c.ListenPeerURLs) != "http://127.0.0.1:0" || c.InitialCluster != "n1=http://127.0.0.1:0" ||
		!reflect.DeepEqual(c.LogOutputs, []string{"stderr"}) || c.InitialClusterState != "existing" || c.MaxTxnOps != 128 {
		t.Errorf("environment not applied: %+v", c)
	}
	var used []string
	for _, n := range c.EnvUsed {
		if n.Msg != msgEnvUsed {
			t.Errorf("EnvUsed message %q", n.Msg)
		}
		used = append(used, n.Key+"="+n.Value)
	}
	// Flag order, as etcd logs them.
	want := []string{
		"ETCD_ELECTION_TIMEOUT=100", "ETCD_HEARTBEAT_INTERVAL=10", "ETCD_INITIAL_ADVERTISE_PEER_URLS=http://127.0.0.1:0",
		"ETCD_INITIAL_CLUSTER_STATE=existing", "ETCD_LISTEN_PEER_URLS=http://127.0.0.1:0", "ETCD_LOG_OUTPUTS=stderr",
		"ETCD_SNAPSHOT_COUNT=42",
	}
	if !reflect.DeepEqual(used, want) {
		t.Errorf("EnvUsed = %q, want %q", used, want)
	}
}

func TestEnvironmentBooleans(t *testing.T) {
	for _, val := range []string{"true", "1", "false", "F"} {
		c := parseOK(t, nil, "ETCD_MEMORY_MLOCK="+val)
		if n := findNotice(c, "--memory-mlock"); n == nil || n.Value != val {
			t.Errorf("ETCD_MEMORY_MLOCK=%s: notice %+v", val, n)
		}
	}
	want := `invalid value "maybe" for ETCD_AUTO_TLS: parse error`
	if got := parseErr(t, nil, "ETCD_AUTO_TLS=maybe"); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestEnvironmentInvalidValues(t *testing.T) {
	// The wording is etcd's (pkg/flags setFlagFromEnv), checked against
	// etcd 3.7.3 for the first three.
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{[]string{"ETCD_SNAPSHOT_COUNT=abc"}, `invalid value "abc" for ETCD_SNAPSHOT_COUNT: parse error`},
		{[]string{"ETCD_AUTO_TLS=maybe"}, `invalid value "maybe" for ETCD_AUTO_TLS: parse error`},
		{[]string{"ETCD_LISTEN_PEER_URLS=ftp://x:1"}, `invalid value "ftp://x:1" for ETCD_LISTEN_PEER_URLS: URL scheme must be http, https, unix, or unixs: ftp://x:1`},
		{[]string{"ETCD_INITIAL_CLUSTER_STATE=old"}, `invalid value "old" for ETCD_INITIAL_CLUSTER_STATE: invalid value`},
		{[]string{"ETCD_FEATURE_GATES=Nope=true"}, `invalid value "Nope=true" for ETCD_FEATURE_GATES: unrecognized feature gate: Nope`},
		// Several bad variables: etcd reports the last in flag order.
		{[]string{"ETCD_SNAPSHOT_COUNT=abc", "ETCD_AUTO_TLS=maybe"}, `invalid value "abc" for ETCD_SNAPSHOT_COUNT: parse error`},
		// Validation still applies to values that came from the environment.
		{[]string{"ETCD_HEARTBEAT_INTERVAL=0"}, "--heartbeat-interval must be >0 (set to 0ms)"},
	} {
		if got := parseErr(t, nil, tc.env...); got != tc.want {
			t.Errorf("%q:\n got %s\nwant %s", tc.env, got, tc.want)
		}
	}
}

func TestEnvironmentConflictsWithFlag(t *testing.T) {
	const want = "conflicting environment variable is shadowed by corresponding command-line flag (either unset environment variable or disable flag)): ETCD_NAME"
	for _, env := range [][]string{
		{"ETCD_NAME=x"},
		// etcd refuses even an empty variable that shadows a flag.
		{"ETCD_NAME="},
		// The conflict wins over a bad value elsewhere, as in etcd.
		{"ETCD_SNAPSHOT_COUNT=abc", "ETCD_NAME=x"},
	} {
		if got := parseErr(t, []string{"--name", "y"}, env...); got != want {
			t.Errorf("%q:\n got %s\nwant %s", env, got, want)
		}
	}
	// Legacy flags and bools conflict the same way.
	if got := parseErr(t, []string{"--snapshot"}, "ETCD_SNAPSHOT=1"); !strings.HasSuffix(got, ": ETCD_SNAPSHOT") {
		t.Errorf("got %q", got)
	}
}

func TestEnvironmentUnrecognized(t *testing.T) {
	c := parseOK(t, nil,
		"ETCD_NO_SUCH_FLAG=1",
		"ETCD_DISCOVERY=x", // a flag of old etcd versions
		"ETCDCTL_API=3",    // another prefix: not ours
		"HOME=/root",
		"ETCD_MAX_TXN_OPS=", // an empty variable of a real flag: etcd calls it unrecognized too
		"ETCD_BROKEN",       // no '='
	)
	var got []Notice
	for _, n := range c.Notices {
		if n.Msg == msgUnrecognizedEnv || n.Msg == msgInvalidEnv {
			got = append(got, n)
		}
	}
	want := []Notice{
		{Msg: msgUnrecognizedEnv, Key: "ETCD_NO_SUCH_FLAG", Value: "1"},
		{Msg: msgUnrecognizedEnv, Key: "ETCD_DISCOVERY", Value: "x"},
		{Msg: msgUnrecognizedEnv, Key: "ETCD_MAX_TXN_OPS", Value: ""},
		{Msg: msgInvalidEnv, Key: "ETCD_BROKEN"},
		{Msg: msgUnrecognizedEnv, Key: "ETCD_BROKEN"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("notices\n got %+v\nwant %+v", got, want)
	}
}

func TestEnvironmentVersionIsSpecial(t *testing.T) {
	// etcd drops ETCD_VERSION with a warning instead of printing the version.
	c := parseOK(t, nil, "ETCD_VERSION=true")
	if n := findNotice(c, "ETCD_VERSION"); n == nil || *n != (Notice{Msg: msgSpecialEnv, Key: "ETCD_VERSION", Value: "true"}) {
		t.Errorf("notice %+v, all %+v", n, c.Notices)
	}
	if len(c.EnvUsed) != 0 {
		t.Errorf("ETCD_VERSION used: %+v", c.EnvUsed)
	}
	// Nor does it conflict with --version=false, since it is dropped first.
	parseOK(t, []string{"--version=false"}, "ETCD_VERSION=1")
}
