package e2e

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keeldb/keel/discovery"
	"github.com/keeldb/keel/internal/dnstest"
)

// startKeel starts a keel process named name with args after --name and
// --data-dir, and env added to a clean environment.
func startKeel(t *testing.T, name, dataDir string, env []string, args ...string) *proc {
	t.Helper()
	return startProc(t, memberSpec{name: name, dataDir: dataDir}, env, args...)
}

// waitExit waits for p to exit on its own and returns its exit code.
func (p *proc) waitExit(t *testing.T) int {
	t.Helper()
	timer := time.NewTimer(readyTimeout)
	defer timer.Stop()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-timer.C:
		t.Fatalf("%s still runs after %v\n%s", p.spec.name, readyTimeout, p.log.tail())
		return 0
	}
}

// memberNames is the sorted names of `keelctl member list` output lines
// ("id, started, name, peers, clients, learner").
func memberNames(t *testing.T, out string) []string {
	t.Helper()
	var names []string
	for l := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		f := strings.Split(l, ", ")
		if len(f) < 6 {
			t.Fatalf("member list line %q", l)
		}
		if f[1] != "started" {
			t.Errorf("member %s is %s", f[2], f[1])
		}
		names = append(names, f[2])
	}
	return names
}

// TestDNSSRVBootstrapsThreeMembers starts three keel processes with only
// --discovery-srv: the initial cluster comes from the SRV records of a DNS
// server on loopback. keelctl finds the members from the client SRV records.
func TestDNSSRVBootstrapsThreeMembers(t *testing.T) {
	dns := dnstest.Start(t)
	// The records name localhost, which the peers' own dialling resolves
	// too; DNS discovery resolves it with the test server's resolver and
	// matches it with each member's advertised peer URL.
	dns.AddA("localhost.", "127.0.0.1")
	dir := t.TempDir()
	ports := freePorts(t, 6)
	env := []string{discovery.TestDNSServerEnv + "=" + dns.Addr}
	for i := range 3 {
		dns.AddSRV("_etcd-server._tcp.keel.test.", "localhost.", uint16(ports[2*i+1]))
		dns.AddSRV("_etcd-client._tcp.keel.test.", "localhost.", uint16(ports[2*i]))
	}
	var ps []*proc
	for i := range 3 {
		name := fmt.Sprintf("s%d", i+1)
		client := "http://127.0.0.1:" + strconv.Itoa(ports[2*i])
		ps = append(ps, startKeel(t, name, filepath.Join(dir, name+".keel"), env,
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", "http://127.0.0.1:"+strconv.Itoa(ports[2*i+1]),
			"--initial-advertise-peer-urls", "http://localhost:"+strconv.Itoa(ports[2*i+1]),
			"--discovery-srv", "keel.test", "--initial-cluster-token", "srv-e2e"))
	}
	for _, p := range ps {
		p.waitReady(t)
	}
	t.Setenv(discovery.TestDNSServerEnv, dns.Addr)
	code, out, errOut := keelctl("--discovery-srv", "keel.test", "member", "list")
	if code != 0 {
		t.Fatalf("keelctl --discovery-srv member list: exit %d: %s", code, errOut)
	}
	if got := memberNames(t, out); strings.Join(got, ",") != "s1,s2,s3" && !sameSet(got, []string{"s1", "s2", "s3"}) {
		t.Fatalf("members %q, want s1, s2, s3:\n%s", got, out)
	}
	for i := range 3 {
		if want := "http://localhost:" + strconv.Itoa(ports[2*i+1]); !strings.Contains(out, want) {
			t.Errorf("member list lacks peer URL %s:\n%s", want, out)
		}
	}
	code, out, errOut = keelctl("--discovery-srv", "keel.test", "put", "k", "v")
	if code != 0 || strings.TrimSpace(out) != "OK" {
		t.Fatalf("put through discovered endpoints: exit %d %q %s", code, out, errOut)
	}
	stopAll(t, ps)
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]int{}
	for _, s := range a {
		seen[s]++
	}
	for _, s := range b {
		seen[s]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}

// TestV3DiscoveryBootstrapsThreeMembers runs etcd's v3 discovery against a
// keel cluster: the operator puts the size with keelctl, three members
// started with --discovery-token and --discovery-endpoints form one
// cluster, and a fourth is refused because the cluster is full.
func TestV3DiscoveryBootstrapsThreeMembers(t *testing.T) {
	dir := t.TempDir()
	svc := startAll(t, clusterSpecs(t, filepath.Join(dir, "svc"), "discovery-service", "d1"))
	endpoint := svc[0].spec.clientURL()
	const token = "e2e-token"
	if code, _, errOut := keelctl("--endpoints", endpoint, "put", "/_etcd/registry/"+token+"/_config/size", "3"); code != 0 {
		t.Fatalf("put size: %s", errOut)
	}
	ports := freePorts(t, 8)
	member := func(i int) *proc {
		name := fmt.Sprintf("v%d", i+1)
		client := "http://127.0.0.1:" + strconv.Itoa(ports[2*i])
		peer := "http://127.0.0.1:" + strconv.Itoa(ports[2*i+1])
		return startKeel(t, name, filepath.Join(dir, name+".keel"), nil,
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--discovery-token", token, "--discovery-endpoints", endpoint)
	}
	var ps []*proc
	for i := range 3 {
		ps = append(ps, member(i))
	}
	for _, p := range ps {
		p.waitReady(t)
	}
	code, out, errOut := keelctl("--endpoints", "http://127.0.0.1:"+strconv.Itoa(ports[0]), "member", "list")
	if code != 0 {
		t.Fatalf("member list: %s", errOut)
	}
	if got := memberNames(t, out); !sameSet(got, []string{"v1", "v2", "v3"}) {
		t.Fatalf("members %q, want v1, v2, v3:\n%s", got, out)
	}
	// The registrations are etcd's: one key per member ID, name=peerURL.
	_, out, _ = keelctl("--endpoints", endpoint, "get", "--prefix", "--keys-only", "/_etcd/registry/"+token+"/members/")
	if n := strings.Count(strings.TrimSpace(out), "\n\n") + 1; n != 3 {
		t.Errorf("%d registrations, want 3:\n%s", n, out)
	}

	fourth := member(3)
	if code := fourth.waitExit(t); code != 1 {
		t.Errorf("fourth member exited with %d, want 1", code)
	}
	tail := fourth.log.tail()
	for _, want := range []string{"failed to join discovery cluster (discovery: cluster is full)",
		"do not reuse discovery token; generate a new one to bootstrap a cluster"} {
		if !strings.Contains(tail, want) {
			t.Errorf("fourth member's log lacks %q:\n%s", want, tail)
		}
	}
	stopAll(t, ps)
	stopAll(t, svc)
}
