package config

import (
	"strings"
	"testing"
)

// TestUsageGroupsFlagsAsEtcd checks the sections of keel --help against
// etcd 3.7.3's help (etcdmain/help.go): same titles, in the same order, and
// flags in etcd's section, including the ones etcd files under
// unexpected sections.
func TestUsageGroupsFlagsAsEtcd(t *testing.T) {
	u := Usage()
	titles := []string{"Member", "Clustering", "Security", "Auth", "Profiling and Monitoring", "Logging",
		"Distributed tracing", "Features", "Unsafe feature"}
	last := -1
	for _, title := range titles {
		i := strings.Index(u, "\n"+title+":\n")
		if i < 0 || i < last {
			t.Fatalf("section %q missing or out of etcd's order", title)
		}
		last = i
	}
	sections := map[string]string{}
	current := ""
	for _, line := range strings.Split(u, "\n") {
		if strings.HasSuffix(line, ":") && !strings.HasPrefix(line, " ") {
			current = strings.TrimSuffix(line, ":")
		}
		if name, ok := strings.CutPrefix(line, "  --"); ok {
			name, _, _ = strings.Cut(name, " ")
			sections[name] = current
		}
	}
	section := func(flag string) string { return sections[flag] }
	for flag, want := range map[string]string{
		"name": "Member", "data-dir": "Member", "listen-client-urls": "Member", "max-txn-ops": "Member",
		"initial-cluster": "Clustering", "advertise-client-urls": "Clustering", "discovery-srv": "Clustering",
		"v2-deprecation": "Clustering", "cert-file": "Security", "peer-cert-allowed-cn": "Security",
		"cipher-suites": "Security", "auth-token": "Auth", "bcrypt-cost": "Auth",
		"enable-pprof": "Profiling and Monitoring", "listen-metrics-urls": "Profiling and Monitoring",
		"logger": "Logging", "log-rotation-config-json": "Logging", "warning-unary-request-duration": "Logging",
		"enable-distributed-tracing": "Distributed tracing", "feature-gates": "Member",
		"snapshot-catchup-entries": "Features", "peer-skip-client-san-verification": "Features",
		"corrupt-check-time": "Features", "force-new-cluster": "Unsafe feature", "unsafe-no-fsync": "Unsafe feature",
	} {
		if got := section(flag); got != want {
			t.Errorf("--%s is under %q, etcd lists it under %q", flag, got, want)
		}
	}
	// Implemented flags carry no "not supported" remark; --config-file is
	// documented.
	for _, s := range flagTable {
		if s.status != implemented {
			continue
		}
		i := strings.Index(u, "\n  --"+s.name+" '")
		rest := u[i+1:]
		if j := strings.Index(rest[3:], "\n  --"); j >= 0 {
			rest = rest[:j+3]
		}
		if strings.Contains(rest, "not supported by keel") {
			t.Errorf("--%s is implemented but its help says otherwise", s.name)
		}
	}
	if !strings.Contains(u, "keel --config-file <file>") || strings.Contains(u, "--config-file is not supported") {
		t.Errorf("usage does not document --config-file")
	}
}
