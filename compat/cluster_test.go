//go:build linux

package compat

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/etcd/server/v3/etcdserver/api/membership"
	"go.uber.org/zap"
)

// The operator scenarios S1 and S5 of /work/shared/SCENARIOS.md, run with
// real processes and the official etcdctl: first against etcd, which proves
// that the script itself is right, then against keel, then against keel
// driven by keelctl. Each side checks the
// scenario's requirements on its own; then the outputs that do not depend on
// timing, ports or generated IDs (formats, messages, exit codes) are compared
// between the two sides, step by step.
//
// Run one side with -run 'TestScenarioS1/etcd' or 'TestScenarioS1/keel'.

// TestScenarioS1 bootstraps a three-member cluster statically (two members
// by flags, one by ETCD_* variables), checks what member list, endpoint
// status and endpoint health show, that a write on one member is read on
// the others, that a restarted member rejoins from its data dir whatever
// --initial-cluster says, and that a member with the wrong
// --initial-cluster-token is refused.
func TestScenarioS1(t *testing.T) { runScenario(t, scenarioS1) }

// TestScenarioS5 scales a one-member cluster out to three (learners added
// with member add --learner, started with the ETCD_* lines etcdctl prints,
// then promoted), removes the leader (which stops by itself), moves a
// member to a new peer URL with member update and a restart, and hands
// leadership over with move-leader.
func TestScenarioS5(t *testing.T) { runScenario(t, scenarioS5) }

// runScenario runs a scenario three times: etcd and keel driven by the
// official etcdctl, then keel driven by keelctl (-run '.../keel-keelctl'),
// and compares both keel transcripts with etcd's.
func runScenario(t *testing.T, scenario func(*testing.T, serverKind, string) []string) {
	var etcd, keel, keelctl []string
	t.Run("etcd", func(t *testing.T) { etcd = scenario(t, kindEtcd, "") })
	t.Run("keel", func(t *testing.T) { keel = scenario(t, kindKeel, "") })
	t.Run("keel-keelctl", func(t *testing.T) { keelctl = scenario(t, kindKeel, buildKeelctl(t)) })
	t.Run("compare-keel", func(t *testing.T) { compareTranscripts(t, etcd, keel) })
	t.Run("compare-keelctl", func(t *testing.T) { compareTranscripts(t, etcd, keelctl) })
}

// startBootstrapCluster starts the members of c, already defined, with a
// static --initial-cluster, and waits until all serve. It reports false if
// a member could not bind a port picked for it (another process took it),
// so that the caller starts over with other ports.
func startBootstrapCluster(c *cluster) bool {
	c.t.Helper()
	for _, m := range c.members {
		m.start()
	}
	for _, m := range c.members {
		if err := m.waitReady(); err != nil {
			for _, m := range c.members {
				if !m.running() && m.bindClash() {
					c.t.Logf("%s: a port was taken before %s bound it; starting over with other ports", c.kind, m.name)
					for _, m := range c.members {
						m.kill()
					}
					return false
				}
			}
			c.fatalf("bootstrap: %v", err)
		}
	}
	return true
}

// cli is the command line client's binary; "" is the official etcdctl.
func scenarioS1(t *testing.T, kind serverKind, cli string) []string {
	const token = "keel-s1-token"
	var (
		c       *cluster
		initial string
	)
	for attempt := 1; ; attempt++ {
		c = newCluster(t, kind, cli)
		m1, m2, m3 := c.newMember("m1"), c.newMember("m2"), c.newMember("m3")
		initial = fmt.Sprintf("m1=%s,m2=%s,m3=%s", m1.peer, m2.peer, m3.peer)
		for _, m := range []*member{m1, m2} {
			m.args = []string{"--initial-cluster=" + initial, "--initial-cluster-token=" + token, "--initial-cluster-state=new"}
		}
		// m3 gets every setting from the environment.
		m3.viaEnv = true
		m3.env = []string{"ETCD_INITIAL_CLUSTER=" + initial, "ETCD_INITIAL_CLUSTER_TOKEN=" + token, "ETCD_INITIAL_CLUSTER_STATE=new"}
		if startBootstrapCluster(c) {
			break
		}
		if attempt == startAttempts {
			t.Fatalf("%s: ports taken %d times in a row", kind, attempt)
		}
	}
	m1, m2, m3 := c.member("m1"), c.member("m2"), c.member("m3")
	all := []*member{m1, m2, m3}

	// Member IDs and the cluster ID follow etcd's formula (a hash of the
	// peer URLs and the token), so the same flags give the same IDs on
	// keel and etcd. etcd's own code is the oracle.
	want, err := membership.NewClusterFromURLsMap(zap.NewNop(), token, mustURLsMap(t, initial))
	if err != nil {
		t.Fatalf("etcd's membership from %q: %v", initial, err)
	}
	list := c.memberList(all)
	if got := types.ID(list.Header.ClusterID); got != want.ID() {
		c.fatalf("member list: cluster ID %s, want %s (etcd's ID for these peer URLs and token)", got, want.ID())
	}
	if len(list.Members) != 3 {
		c.fatalf("member list: %d members, want 3: %+v", len(list.Members), list.Members)
	}
	for _, got := range list.Members {
		m := c.member(got.Name)
		w := want.MemberByName(got.Name)
		if w == nil || types.ID(got.ID) != w.ID {
			c.fatalf("member list: member %s has ID %s, want etcd's %v", got.Name, types.ID(got.ID), w)
		}
		if !slices.Equal(got.PeerURLs, []string{m.peer}) || !slices.Equal(got.ClientURLs, []string{m.client}) || got.IsLearner {
			c.fatalf("member list: %+v, want peer %s, client %s, voter", got, m.peer, m.client)
		}
	}
	tb := c.mustCtl(all, "member", "list", "-w", "table")
	c.record("member list -w table", canonicalMemberTable(tb.stdout))
	if rows := parseTable(tb.stdout).rows; len(rows) != 3 {
		c.fatalf("member list -w table: %d rows, want 3:\n%s", len(rows), tb.stdout)
	}

	checkEndpointStatusTable(c, all)
	checkEndpointHealthTable(c, all)

	// A write on one member is read (linearizably) on the others.
	c.record("put on m1", c.mustCtl([]*member{m1}, "put", "s1/key", "v1").stdout)
	for _, m := range []*member{m2, m3} {
		c.record("get on "+m.name, c.mustCtl([]*member{m}, "get", "s1/key").stdout)
	}

	// A restarted member rejoins from its data dir: --initial-cluster,
	// its token and its state only matter for bootstrapping, so garbage
	// there is ignored.
	m2.stop()
	m2.args = []string{"--initial-cluster=nobody=http://127.0.0.1:9", "--initial-cluster-token=garbage", "--initial-cluster-state=new"}
	m2.start()
	if err := m2.waitReady(); err != nil {
		c.fatalf("m2 restarted with a garbage --initial-cluster: %v", err)
	}
	c.record("get on restarted m2", c.mustCtl([]*member{m2}, "get", "s1/key").stdout)
	c.record("put on restarted m2", c.mustCtl([]*member{m2}, "put", "s1/key2", "v2").stdout)
	if again := c.memberList([]*member{m2}); !slices.EqualFunc(again.Members, list.Members, sameMember) {
		c.fatalf("member list after the restart of m2:\n%+v\nbefore:\n%+v", again.Members, list.Members)
	}
	c.waitLeader(all)

	// A member that bootstraps with the wrong token computes another
	// cluster ID; the others refuse its messages and it never serves.
	m3.stop()
	if err := os.RemoveAll(m3.dataDir); err != nil {
		t.Fatal(err)
	}
	m3.logPath = filepath.Join(c.dir, "m3-wrong-token.log")
	m3.env = []string{"ETCD_INITIAL_CLUSTER=" + initial, "ETCD_INITIAL_CLUSTER_TOKEN=wrong-token", "ETCD_INITIAL_CLUSTER_STATE=new"}
	m3.start()
	if !m3.waitLog("cluster ID mismatch", convergeTimeout) {
		c.fatalf("m3 with the wrong token: its log never says %q", "cluster ID mismatch")
	}
	if err := m3.healthy(); err == nil {
		c.fatalf("m3 with the wrong token is healthy")
	} else {
		t.Logf("%s: m3 with the wrong token: /health: %v", kind, err)
	}
	if strings.Contains(m3.logText(), "ready to serve client requests") {
		c.fatalf("m3 with the wrong token says it is ready to serve client requests")
	}
	t.Logf("%s: m3 with the wrong token: running %v; its log:\n%s", kind, m3.running(), grepLines(m3.logText(), "mismatch", 3))
	t.Logf("%s: m1's log about it:\n%s", kind, grepLines(m1.logText(), "mismatch", 3))
	// The two good members still form the cluster.
	c.waitLeader([]*member{m1, m2})
	c.record("put on m1 beside a member with the wrong token", c.mustCtl([]*member{m1}, "put", "s1/key3", "v3").stdout)
	h := c.ctl([]*member{m1, m2}, "endpoint", "health", "-w", "table")
	if h.code != 0 {
		c.fatalf("endpoint health of m1, m2 beside a member with the wrong token: %s", h)
	}
	return c.transcript
}

// checkEndpointStatusTable checks `endpoint status -w table` over ms: the
// columns operators read are there, exactly one member is the leader, and
// all are in the same raft term.
func checkEndpointStatusTable(c *cluster, ms []*member) {
	c.t.Helper()
	c.waitLeader(ms)
	o := c.mustCtl(ms, "endpoint", "status", "-w", "table")
	tb := parseTable(o.stdout)
	for _, col := range []string{"ENDPOINT", "ID", "VERSION", "DB SIZE", "IS LEADER", "IS LEARNER", "RAFT TERM", "RAFT INDEX", "RAFT APPLIED INDEX", "ERRORS"} {
		if tb.column(col) == nil {
			c.fatalf("endpoint status -w table has no column %s:\n%s", col, o.stdout)
		}
	}
	if len(tb.rows) != len(ms) {
		c.fatalf("endpoint status -w table: %d rows, want %d:\n%s", len(tb.rows), len(ms), o.stdout)
	}
	leaders := 0
	for _, v := range tb.column("IS LEADER") {
		if v == "true" {
			leaders++
		}
	}
	terms := tb.column("RAFT TERM")
	if leaders != 1 || len(slices.Compact(slices.Clone(terms))) != 1 {
		c.fatalf("endpoint status -w table: %d leaders (want 1), terms %v (want one):\n%s", leaders, terms, o.stdout)
	}
	c.record("endpoint status -w table columns", strings.Join(tb.header, " | "))
}

// checkEndpointHealthTable checks that `endpoint health -w table` says
// every member of ms is healthy.
func checkEndpointHealthTable(c *cluster, ms []*member) {
	c.t.Helper()
	o := c.mustCtl(ms, "endpoint", "health", "-w", "table")
	tb := parseTable(o.stdout)
	health := tb.column("HEALTH")
	if len(health) != len(ms) || slices.ContainsFunc(health, func(v string) bool { return v != "true" }) {
		c.fatalf("endpoint health -w table: want %d healthy members:\n%s", len(ms), o.stdout)
	}
	c.record("endpoint health -w table columns", strings.Join(tb.header, " | "))
}

// canonicalMemberTable masks IDs and ports in a member list table and sorts
// its rows by name, since rows come in ID order and IDs depend on ports.
func canonicalMemberTable(s string) string {
	tb := parseTable(maskIDs(s))
	rows := slices.Clone(tb.rows)
	slices.SortFunc(rows, func(a, b []string) int { return strings.Compare(strings.Join(a, "|"), strings.Join(b, "|")) })
	var out []string
	out = append(out, strings.Join(tb.header, " | "))
	for _, r := range rows {
		out = append(out, strings.Join(r, " | "))
	}
	return strings.Join(out, "\n")
}

func sameMember(a, b memberJSON) bool {
	return a.ID == b.ID && a.Name == b.Name && a.IsLearner == b.IsLearner &&
		slices.Equal(a.PeerURLs, b.PeerURLs) && slices.Equal(a.ClientURLs, b.ClientURLs)
}

func mustURLsMap(t *testing.T, s string) types.URLsMap {
	t.Helper()
	m, err := types.NewURLsMap(s)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return m
}

// grepLines returns up to n lines of s that contain sub.
func grepLines(s, sub string, n int) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(strings.ToLower(line), strings.ToLower(sub)) {
			if len(line) > 400 {
				line = line[:400] + "..."
			}
			out = append(out, line)
			if len(out) == n {
				break
			}
		}
	}
	if len(out) == 0 {
		return "(no line contains " + strconv.Quote(sub) + ")"
	}
	return strings.Join(out, "\n")
}

// memberAdded is the first line `member add` prints (IDs with %16x:
// padded with spaces).
var memberAdded = regexp.MustCompile(`^Member +([0-9a-f]{1,16}) added (?:as learner )?to cluster +([0-9a-f]{1,16})\n`)

// etcdctl's errors while a change is refused for now: the cluster has just
// changed and not every member has been active long enough, or the learner
// is still catching up.
var (
	retryUnhealthy = []string{"etcdserver: unhealthy cluster"}
	retryPromote   = []string{"etcdserver: can only promote a learner member which is in sync with leader", "etcdserver: unhealthy cluster"}
)

// addMember runs `member add` for a new member of c named name (as a
// learner or a voter), checks the output, starts the member with the
// ETCD_* lines it printed, and returns the member and its ID.
func addMember(c *cluster, on []*member, name string, learner bool) (*member, string) {
	c.t.Helper()
	m := c.newMember(name)
	args := []string{"member", "add", name, "--peer-urls=" + m.peer}
	if learner {
		args = append(args, "--learner")
	}
	o := c.ctlRetry(on, retryUnhealthy, args...)
	if o.code != 0 {
		c.fatalf("etcdctl %s: %s", strings.Join(args, " "), o)
	}
	c.record(strings.Join(args[:3], " ")+fmt.Sprintf(" learner=%v", learner), canonicalMemberAdd(o.stdout))
	sub := memberAdded.FindStringSubmatch(o.stdout)
	if sub == nil {
		c.fatalf("member add printed:\n%s\nwant %q, then the ETCD_* lines", o.stdout, memberAdded)
	}
	id := sub[1]
	// The ETCD_* lines, exactly as an operator would paste them into a
	// shell: NAME="value".
	env := map[string]string{}
	for _, line := range strings.Split(o.stdout, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && strings.HasPrefix(k, "ETCD_") {
			uq, err := strconv.Unquote(v)
			if err != nil {
				c.fatalf("member add: line %q is not NAME=\"value\"", line)
			}
			env[k] = uq
		}
	}
	var cluster []string
	for _, n := range on {
		cluster = append(cluster, n.name+"="+n.peer)
	}
	for k, want := range map[string]string{
		"ETCD_NAME":                        name,
		"ETCD_INITIAL_ADVERTISE_PEER_URLS": m.peer,
		"ETCD_INITIAL_CLUSTER_STATE":       "existing",
	} {
		if env[k] != want {
			c.fatalf("member add: %s=%q, want %q\n%s", k, env[k], want, o.stdout)
		}
	}
	if got := strings.Split(env["ETCD_INITIAL_CLUSTER"], ","); !sameSet(got, append(cluster, name+"="+m.peer)) {
		c.fatalf("member add: ETCD_INITIAL_CLUSTER=%q, want the members %v and %s=%s", env["ETCD_INITIAL_CLUSTER"], cluster, name, m.peer)
	}
	// Start it with those variables; its own listeners and data dir come
	// from flags.
	m.joining = true
	for _, k := range []string{"ETCD_NAME", "ETCD_INITIAL_CLUSTER", "ETCD_INITIAL_ADVERTISE_PEER_URLS", "ETCD_INITIAL_CLUSTER_STATE"} {
		m.env = append(m.env, k+"="+env[k])
	}
	m.start()
	return m, id
}

// canonicalMemberAdd masks IDs and ports in the output of member add and
// sorts the members in its ETCD_INITIAL_CLUSTER line: etcdctl lists them in
// the order of the member list, which is by ID, and IDs depend on ports.
func canonicalMemberAdd(s string) string {
	lines := strings.Split(maskIDs(s), "\n")
	for i, line := range lines {
		if v, ok := strings.CutPrefix(line, `ETCD_INITIAL_CLUSTER="`); ok {
			parts := strings.Split(strings.TrimSuffix(v, `"`), ",")
			slices.Sort(parts)
			lines[i] = `ETCD_INITIAL_CLUSTER="` + strings.Join(parts, ",") + `"`
		}
	}
	return strings.Join(lines, "\n")
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// promote promotes learner id, retrying while the leader says the learner
// has not caught up, and then waits until the learner serves.
func promote(c *cluster, on []*member, m *member, id string) {
	c.t.Helper()
	o := c.ctlRetry(on, retryPromote, "member", "promote", id)
	if o.code != 0 {
		c.fatalf("member promote %s: %s", id, o)
	}
	c.record("member promote", maskIDs(o.stdout))
	if err := m.waitReady(); err != nil {
		c.fatalf("promoted %s: %v", m.name, err)
	}
}

// cli is the command line client's binary; "" is the official etcdctl.
func scenarioS5(t *testing.T, kind serverKind, cli string) []string {
	var (
		c  *cluster
		m1 *member
	)
	for attempt := 1; ; attempt++ {
		c = newCluster(t, kind, cli)
		m1 = c.newMember("m1")
		m1.args = []string{"--initial-cluster=m1=" + m1.peer, "--initial-cluster-token=keel-s5-token", "--initial-cluster-state=new"}
		if startBootstrapCluster(c) {
			break
		}
		if attempt == startAttempts {
			t.Fatalf("%s: ports taken %d times in a row", kind, attempt)
		}
	}

	// 1 -> 2: m2 joins as a learner, catches up, is promoted.
	m2, id2 := addMember(c, []*member{m1}, "m2", true)
	if l := c.memberList([]*member{m1}); len(l.Members) != 2 || !learnerIs(l, id2) {
		c.fatalf("member list after adding the learner m2: %+v", l.Members)
	}
	promote(c, []*member{m1}, m2, id2)

	// 2 -> 3: m3 the same way.
	voters := []*member{m1, m2}
	m3, id3 := addMember(c, voters, "m3", true)
	promote(c, voters, m3, id3)
	all := []*member{m1, m2, m3}
	waitMemberList(c, all, func(l memberListJSON) bool {
		if len(l.Members) != 3 {
			return false
		}
		for _, m := range l.Members {
			if m.IsLearner || m.Name == "" || len(m.ClientURLs) == 0 {
				return false
			}
		}
		return true
	}, "3 started voters")
	c.record("member list -w table with 3 voters", canonicalMemberTable(c.mustCtl(all, "member", "list", "-w", "table").stdout))
	checkEndpointStatusTable(c, all)
	checkEndpointHealthTable(c, all)
	c.record("put on 3 voters", c.mustCtl(all, "put", "s5/key", "v1").stdout)

	// Remove the leader: it stops by itself, saying it was removed, and the
	// other two elect a new leader.
	leader, leaderID := c.waitLeader(all)
	var rest []*member
	for _, m := range all {
		if m != leader {
			rest = append(rest, m)
		}
	}
	o := c.ctlRetry(rest, retryUnhealthy, "member", "remove", fmt.Sprintf("%x", leaderID))
	if o.code != 0 {
		c.fatalf("member remove %x (the leader %s): %s", leaderID, leader.name, o)
	}
	c.record("member remove the leader", maskIDs(o.stdout))
	if !leader.waitExit(convergeTimeout) {
		c.fatalf("the removed leader %s is still running %v after its removal", leader.name, convergeTimeout)
	}
	if !strings.Contains(strings.ToLower(leader.logText()), "permanently removed") {
		c.fatalf("the removed leader %s exited (%v) without logging that it was permanently removed", leader.name, leader.err)
	}
	t.Logf("%s: the removed leader exited with %v; its log:\n%s", kind, leader.err, grepLines(leader.logText(), "removed", 5))
	c.waitLeader(rest)
	c.record("put after removing the leader", c.mustCtl(rest, "put", "s5/key", "v2").stdout)
	if l := c.memberList(rest); len(l.Members) != 2 {
		c.fatalf("member list after removing the leader: %+v", l.Members)
	}

	// Move a member to a new peer URL: member update, then a restart that
	// listens there.
	moved := rest[0]
	movedID := memberID(c, rest, moved.name)
	newPeer := localURLString(freePort(t))
	o = c.ctlRetry(rest, retryUnhealthy, "member", "update", movedID, "--peer-urls="+newPeer)
	if o.code != 0 {
		c.fatalf("member update %s --peer-urls=%s: %s", movedID, newPeer, o)
	}
	c.record("member update", maskIDs(o.stdout))
	moved.stop()
	moved.peer = newPeer
	// As an operator would, also change the advertised URL in the
	// member's settings (ignored on a restart, like --initial-cluster).
	for i, kv := range moved.env {
		if strings.HasPrefix(kv, "ETCD_INITIAL_ADVERTISE_PEER_URLS=") {
			moved.env[i] = "ETCD_INITIAL_ADVERTISE_PEER_URLS=" + newPeer
		}
	}
	moved.start()
	for _, m := range rest {
		if err := m.waitReady(); err != nil {
			c.fatalf("after moving %s to %s: %v", moved.name, newPeer, err)
		}
	}
	waitMemberList(c, rest, func(l memberListJSON) bool {
		for _, m := range l.Members {
			if m.Name == moved.name {
				return slices.Equal(m.PeerURLs, []string{newPeer})
			}
		}
		return false
	}, moved.name+" at "+newPeer)
	checkEndpointHealthTable(c, rest)
	c.record("put after member update", c.mustCtl(rest, "put", "s5/key", "v3").stdout)

	// Hand leadership to the follower.
	cur, _ := c.waitLeader(rest)
	var target *member
	for _, m := range rest {
		if m != cur {
			target = m
		}
	}
	targetID := memberID(c, rest, target.name)
	o = c.ctlRetry(rest, retryUnhealthy, "move-leader", targetID)
	if o.code != 0 {
		c.fatalf("move-leader %s: %s", targetID, o)
	}
	c.record("move-leader", maskIDs(o.stdout))
	if now, _ := c.waitLeader(rest); now != target {
		c.fatalf("after move-leader %s (%s) the leader is %s", targetID, target.name, now.name)
	}
	c.record("put after move-leader", c.mustCtl(rest, "put", "s5/key", "v4").stdout)
	c.record("get after move-leader", c.mustCtl(rest, "get", "s5/key").stdout)
	return c.transcript
}

func learnerIs(l memberListJSON, id string) bool {
	for _, m := range l.Members {
		if fmt.Sprintf("%x", m.ID) == id {
			return m.IsLearner
		}
	}
	return false
}

// memberID is the hex ID of the member named name.
func memberID(c *cluster, on []*member, name string) string {
	c.t.Helper()
	for _, m := range c.memberList(on).Members {
		if m.Name == name {
			return fmt.Sprintf("%x", m.ID)
		}
	}
	c.fatalf("no member named %s", name)
	return ""
}

// waitMemberList polls member list until ok says it is what the scenario
// expects.
func waitMemberList(c *cluster, on []*member, ok func(memberListJSON) bool, what string) memberListJSON {
	c.t.Helper()
	deadline := time.Now().Add(convergeTimeout)
	for {
		l := c.memberList(on)
		if ok(l) {
			return l
		}
		if time.Now().After(deadline) {
			c.fatalf("member list never showed %s: %+v", what, l.Members)
		}
		time.Sleep(pollEvery) // poll interval
	}
}
