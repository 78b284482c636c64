//go:build linux

package compat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// This file runs etcd and keel as child processes (not in the test process,
// as the differential tests do), so that scenarios can start, kill, restart
// and reconfigure members exactly as an operator would, and drive them with
// the official etcdctl binary.

// Bounds of the process scenarios. They only stop a hung test; no
// assertion depends on how fast anything happens.
const (
	// procReadyTimeout bounds the wait for a started member to serve.
	procReadyTimeout = 60 * time.Second
	// procStopTimeout is how long a member has to exit after SIGTERM.
	procStopTimeout = 15 * time.Second
	// convergeTimeout bounds the wait for the cluster to reach a state
	// (a leader, a caught-up learner, an exit after removal).
	convergeTimeout = 60 * time.Second
	// pollEvery spaces the polls of those waits.
	pollEvery = 100 * time.Millisecond
	// startAttempts bounds the restarts of a whole cluster when another
	// process took one of the free ports picked for it.
	startAttempts = 3
)

// serverKind names the implementation a scenario runs.
type serverKind string

const (
	kindEtcd serverKind = "etcd"
	kindKeel serverKind = "keel"
)

// clusterBins are the executables the process scenarios run, built once
// per test binary run into etcdctl's build directory (which TestMain
// removes).
var clusterBins struct {
	once                sync.Once
	etcd, keel, etcdctl string
	err                 error
}

// buildClusterBinaries builds etcd (at the version compat/go.mod pins; the
// root package of go.etcd.io/etcd/server/v3 is etcd's main), keel (in the
// repository root, with keel's own go.mod) and etcdctl.
func buildClusterBinaries(t *testing.T) (etcd, keel, etcdctl string) {
	t.Helper()
	ctl := buildEtcdctl(t)
	clusterBins.once.Do(func() {
		goTool, err := findGoTool()
		if err != nil {
			clusterBins.err = err
			return
		}
		dir := filepath.Dir(ctl)
		ctx, cancel := context.WithTimeout(context.Background(), etcdctlBuildTimeout)
		defer cancel()
		build := func(out, pkg, inDir string) error {
			cmd := exec.CommandContext(ctx, goTool, "build", "-o", out, pkg)
			cmd.Dir = inDir
			if msg, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("go build %s (in %s): %v\n%s", pkg, inDir, err, msg)
			}
			return nil
		}
		etcd, keel := filepath.Join(dir, "etcd"), filepath.Join(dir, "keel")
		if err := build(etcd, "go.etcd.io/etcd/server/v3", "."); err != nil {
			clusterBins.err = err
			return
		}
		if err := build(keel, "./cmd/keel", ".."); err != nil {
			clusterBins.err = err
			return
		}
		clusterBins.etcd, clusterBins.keel, clusterBins.etcdctl = etcd, keel, ctl
	})
	if clusterBins.err != nil {
		t.Fatalf("build the servers: %v", clusterBins.err)
	}
	return clusterBins.etcd, clusterBins.keel, clusterBins.etcdctl
}

// member is one server process of a scenario. Its flags, environment and
// data dir stay the same across restarts unless the scenario changes them.
type member struct {
	t       *testing.T
	kind    serverKind
	bin     string
	name    string
	peer    string // peer URL it listens on and advertises
	client  string // client URL
	dataDir string
	logPath string
	// args are the flags after the common ones (name, data dir, URLs);
	// env are extra environment variables. Set them before start.
	args []string
	env  []string
	// viaEnv gives the member its own settings (baseSettings) through
	// ETCD_* variables instead of flags.
	viaEnv bool
	// joining is a member started with the ETCD_* lines of `member add`
	// (in env): only its data dir and listeners come from flags.
	joining bool

	cmd  *exec.Cmd
	done chan struct{} // closed when the running process has exited
	err  error         // its exit status, once done is closed
	log  *os.File
}

// endpoint is the client address for etcdctl --endpoints.
func (m *member) endpoint() string { return strings.TrimPrefix(m.client, "http://") }

// baseSettings are the member's own settings, as flag name and value.
func (m *member) baseSettings() [][2]string {
	return [][2]string{
		{"name", m.name},
		{"data-dir", m.dataDir},
		{"listen-peer-urls", m.peer},
		{"initial-advertise-peer-urls", m.peer},
		{"listen-client-urls", m.client},
		{"advertise-client-urls", m.client},
	}
}

// start runs the member's process. It returns at once; see waitReady.
func (m *member) start() {
	m.t.Helper()
	var args []string
	env := ctlEnv() // the environment without ETCDCTL_*
	env = dropPrefix(env, "ETCD_")
	for _, s := range m.baseSettings() {
		if m.joining {
			switch s[0] {
			case "name", "initial-advertise-peer-urls":
				continue // in env
			}
			args = append(args, "--"+s[0]+"="+s[1])
			continue
		}
		if m.viaEnv {
			env = append(env, "ETCD_"+strings.ToUpper(strings.ReplaceAll(s[0], "-", "_"))+"="+s[1])
		} else {
			args = append(args, "--"+s[0]+"="+s[1])
		}
	}
	args = append(args, m.args...)
	env = append(env, m.env...)
	log, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		m.t.Fatalf("open log of %s: %v", m.name, err)
	}
	fmt.Fprintf(log, "--- %s %s %s\n", strings.Join(m.env, " "), m.bin, strings.Join(args, " "))
	cmd := exec.Command(m.bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = log, log
	// If the test binary dies without its clean-up, the kernel kills the
	// member too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		m.t.Fatalf("start %s %s: %v", m.kind, m.name, err)
	}
	m.cmd, m.log, m.done, m.err = cmd, log, make(chan struct{}), nil
	done := m.done
	go func() {
		err := cmd.Wait()
		m.err = err
		close(done)
	}()
}

func dropPrefix(env []string, prefix string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, prefix) {
			out = append(out, kv)
		}
	}
	return out
}

// running reports whether the member's process is running.
func (m *member) running() bool {
	if m.cmd == nil {
		return false
	}
	select {
	case <-m.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and waits for the exit, killing the process after
// procStopTimeout. It does nothing if the process is not running.
func (m *member) stop() {
	m.t.Helper()
	if !m.running() {
		m.closeLog()
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(procStopTimeout):
		_ = m.cmd.Process.Kill()
		<-m.done
		m.t.Errorf("%s %s did not exit within %v of SIGTERM and was killed (log %s)", m.kind, m.name, procStopTimeout, m.logPath)
	}
	m.closeLog()
}

// kill sends SIGKILL and waits for the exit.
func (m *member) kill() {
	if m.running() {
		_ = m.cmd.Process.Kill()
		<-m.done
	}
	m.closeLog()
}

func (m *member) closeLog() {
	if m.log != nil {
		m.log.Close()
		m.log = nil
	}
}

// waitExit waits up to d for the process to exit by itself.
func (m *member) waitExit(d time.Duration) bool {
	if m.cmd == nil {
		return true
	}
	select {
	case <-m.done:
		m.closeLog()
		return true
	case <-time.After(d):
		return false
	}
}

// logText is everything the member's processes have written so far.
func (m *member) logText() string {
	b, err := os.ReadFile(m.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read log %s: %v)", m.logPath, err)
	}
	return string(b)
}

// logTail is the end of the log, for failure messages.
func (m *member) logTail() string {
	s := m.logText()
	const n = 4000
	if len(s) > n {
		s = "...\n" + s[len(s)-n:]
	}
	return s
}

// healthy asks the member's /health endpoint, as a load balancer would.
func (m *member) healthy() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.client+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body struct {
		Health string `json:"health"`
		Reason string `json:"reason"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return fmt.Errorf("/health: %s: %v", resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK || body.Health != "true" {
		return fmt.Errorf("/health: %s %q %s", resp.Status, body.Health, body.Reason)
	}
	return nil
}

// errExited is returned by waits when the member's process has exited.
var errExited = errors.New("process exited")

// waitReady waits until /health says the member serves (it has a leader
// and answers a linearizable read).
func (m *member) waitReady() error {
	deadline := time.Now().Add(procReadyTimeout)
	for {
		err := m.healthy()
		if err == nil {
			return nil
		}
		if !m.running() {
			return fmt.Errorf("%s %s: %w (%v)", m.kind, m.name, errExited, m.err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s %s not ready after %v: %v", m.kind, m.name, procReadyTimeout, err)
		}
		time.Sleep(pollEvery) // poll interval
	}
}

// bindClash reports whether the member's log says a port it was given was
// taken by someone else between the test picking it and the member binding
// it.
func (m *member) bindClash() bool {
	return strings.Contains(m.logText(), "address already in use")
}

// cluster is the members of one scenario run, and the etcdctl that drives
// them.
type cluster struct {
	t       *testing.T
	kind    serverKind
	bin     string
	etcdctl string
	dir     string
	members []*member
	// transcript records the deterministic outputs of the run, in order,
	// so that the etcd and keel runs of a scenario can be compared.
	transcript []string
}

// newCluster is a cluster of kind driven by the client binary cli ("": the
// official etcdctl).
func newCluster(t *testing.T, kind serverKind, cli string) *cluster {
	etcd, keel, ctl := buildClusterBinaries(t)
	if cli != "" {
		ctl = cli
	}
	bin := etcd
	if kind == kindKeel {
		bin = keel
	}
	return &cluster{t: t, kind: kind, bin: bin, etcdctl: ctl, dir: t.TempDir()}
}

// newMember defines a member with fresh free ports and data dir; it does not
// start it. The member is stopped when the test ends.
func (c *cluster) newMember(name string) *member {
	c.t.Helper()
	m := &member{
		t: c.t, kind: c.kind, bin: c.bin, name: name,
		peer:   localURLString(freePort(c.t)),
		client: localURLString(freePort(c.t)),
	}
	m.dataDir = filepath.Join(c.dir, name+"-"+strconv.Itoa(len(c.members))+".data")
	m.logPath = filepath.Join(c.dir, name+"-"+strconv.Itoa(len(c.members))+".log")
	c.members = append(c.members, m)
	c.t.Cleanup(m.kill)
	return m
}

func localURLString(port int) string {
	u := localURL(port)
	return u.String()
}

// member returns the member named name.
func (c *cluster) member(name string) *member {
	for i := len(c.members) - 1; i >= 0; i-- {
		if c.members[i].name == name {
			return c.members[i]
		}
	}
	c.t.Fatalf("no member %s", name)
	return nil
}

// live are the members whose processes run.
func (c *cluster) live() []*member {
	var out []*member
	for _, m := range c.members {
		if m.running() {
			out = append(out, m)
		}
	}
	return out
}

// logs prints every member's log tail.
func (c *cluster) logs() string {
	var b strings.Builder
	for _, m := range c.members {
		fmt.Fprintf(&b, "\n===== %s %s log (%s) =====\n%s", m.kind, m.name, m.logPath, m.logTail())
	}
	return b.String()
}

// fatalf fails the test with every member's log.
func (c *cluster) fatalf(format string, args ...any) {
	c.t.Helper()
	c.t.Fatalf("%s: %s%s", c.kind, fmt.Sprintf(format, args...), c.logs())
}

// record adds a deterministic output to the transcript.
func (c *cluster) record(step, out string) {
	c.transcript = append(c.transcript, step+"\n"+out)
}

// ctlOut is one etcdctl run.
type ctlOut struct {
	code           int
	stdout, stderr string
}

func (o ctlOut) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", o.code, o.stdout, maskStderr(o.stderr))
}

// ctl runs etcdctl against the given members' client endpoints.
func (c *cluster) ctl(on []*member, args ...string) ctlOut {
	c.t.Helper()
	var eps []string
	for _, m := range on {
		eps = append(eps, m.endpoint())
	}
	ctx, cancel := context.WithTimeout(context.Background(), etcdctlTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.etcdctl, append([]string{"--endpoints=" + strings.Join(eps, ",")}, args...)...)
	cmd.Env = ctlEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	o := ctlOut{stdout: stdout.String(), stderr: stderr.String()}
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ctx.Err() != nil {
			c.fatalf("etcdctl %v: %v (stderr: %s)", args, err, stderr.String())
		}
		o.code = ee.ExitCode()
	}
	return o
}

// mustCtl runs etcdctl and fails the test unless it exits 0.
func (c *cluster) mustCtl(on []*member, args ...string) ctlOut {
	c.t.Helper()
	o := c.ctl(on, args...)
	if o.code != 0 {
		c.fatalf("etcdctl %s: %s", strings.Join(args, " "), o)
	}
	return o
}

// ctlRetry runs etcdctl until it exits 0, retrying (up to convergeTimeout)
// only while its error output contains one of retryOn; it returns the last
// run.
func (c *cluster) ctlRetry(on []*member, retryOn []string, args ...string) ctlOut {
	c.t.Helper()
	deadline := time.Now().Add(convergeTimeout)
	for {
		o := c.ctl(on, args...)
		if o.code == 0 {
			return o
		}
		retry := false
		for _, r := range retryOn {
			retry = retry || strings.Contains(o.stderr, r)
		}
		if !retry || time.Now().After(deadline) {
			return o
		}
		time.Sleep(pollEvery) // retry interval
	}
}

// statusJSON is the part of `endpoint status -w json` the scenarios read.
type statusJSON struct {
	Endpoint string `json:"Endpoint"`
	Status   struct {
		Header struct {
			MemberID uint64 `json:"member_id"`
		} `json:"header"`
		Leader    uint64   `json:"leader"`
		RaftTerm  uint64   `json:"raftTerm"`
		IsLearner bool     `json:"isLearner"`
		Errors    []string `json:"errors"`
	} `json:"Status"`
}

// status reads `endpoint status -w json` from the given members.
func (c *cluster) status(on []*member) ([]statusJSON, ctlOut) {
	c.t.Helper()
	o := c.ctl(on, "endpoint", "status", "-w", "json")
	if o.code != 0 {
		return nil, o
	}
	var st []statusJSON
	if err := json.Unmarshal([]byte(o.stdout), &st); err != nil {
		c.fatalf("endpoint status -w json: %v\n%s", err, o.stdout)
	}
	return st, o
}

// waitLeader waits until every given member reports the same leader, one
// of them, in the same term, and returns that leader.
func (c *cluster) waitLeader(on []*member) (leader *member, id uint64) {
	c.t.Helper()
	deadline := time.Now().Add(convergeTimeout)
	for {
		st, o := c.status(on)
		why := o.String()
		if st != nil {
			why = "members disagree: " + o.stdout
			agree := len(st) == len(on)
			for _, s := range st {
				agree = agree && s.Status.Leader != 0 && s.Status.Leader == st[0].Status.Leader && s.Status.RaftTerm == st[0].Status.RaftTerm
			}
			if agree {
				for i, s := range st {
					if s.Status.Header.MemberID == s.Status.Leader {
						return memberByEndpoint(on, st[i].Endpoint), s.Status.Leader
					}
				}
				why = "the leader is none of " + o.stdout
			}
		}
		if time.Now().After(deadline) {
			c.fatalf("no agreed leader among %d members after %v: %s", len(on), convergeTimeout, why)
		}
		time.Sleep(pollEvery) // poll interval
	}
}

func memberByEndpoint(ms []*member, ep string) *member {
	for _, m := range ms {
		if m.endpoint() == ep {
			return m
		}
	}
	return nil
}

// memberJSON is a member of `member list -w json`.
type memberJSON struct {
	ID         uint64   `json:"ID"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs"`
	IsLearner  bool     `json:"isLearner"`
}

type memberListJSON struct {
	Header struct {
		ClusterID uint64 `json:"cluster_id"`
	} `json:"header"`
	Members []memberJSON `json:"members"`
}

// memberList reads `member list -w json` from the given members.
func (c *cluster) memberList(on []*member) memberListJSON {
	c.t.Helper()
	o := c.mustCtl(on, "member", "list", "-w", "json")
	var l memberListJSON
	if err := json.Unmarshal([]byte(o.stdout), &l); err != nil {
		c.fatalf("member list -w json: %v\n%s", err, o.stdout)
	}
	return l
}

// table is a parsed etcdctl table (ASCII or box drawing).
type table struct {
	header []string
	rows   [][]string
}

func parseTable(s string) table {
	var tb table
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		if !strings.HasPrefix(line, "|") && !strings.HasPrefix(line, "│") {
			continue // a border or a line outside the table
		}
		line = strings.ReplaceAll(line, "│", "|")
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if tb.header == nil {
			tb.header = cells
		} else {
			tb.rows = append(tb.rows, cells)
		}
	}
	return tb
}

// column returns the values of the named column, or nil if there is none.
func (tb table) column(name string) []string {
	for i, h := range tb.header {
		if h == name {
			var out []string
			for _, r := range tb.rows {
				if i < len(r) {
					out = append(out, r[i])
				}
			}
			return out
		}
	}
	return nil
}

// hexID matches a member or cluster ID as etcdctl prints it: with %x, so
// without leading zeros (8 digits or more, but for one ID in 4 billion), or
// with %16x, padded with spaces.
var hexID = regexp.MustCompile(`(?: +|\b)[0-9a-f]{8,16}\b`)

// maskIDs replaces member and cluster IDs and loopback ports in etcdctl's
// text output.
func maskIDs(s string) string {
	s = hexID.ReplaceAllStringFunc(s, func(id string) string {
		if strings.HasPrefix(id, " ") {
			return " <id>"
		}
		return "<id>"
	})
	return hostPort.ReplaceAllString(s, "127.0.0.1:*")
}

// waitLog waits until the member's log contains want (case-insensitive).
func (m *member) waitLog(want string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if strings.Contains(strings.ToLower(m.logText()), strings.ToLower(want)) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pollEvery) // poll interval
	}
}

// compareTranscripts compares the deterministic outputs of the etcd and
// keel runs of a scenario, step by step, and prints both on a mismatch.
func compareTranscripts(t *testing.T, etcd, keel []string) {
	t.Helper()
	if etcd == nil || keel == nil {
		for name, tr := range map[string][]string{"etcd": etcd, "keel": keel} {
			if tr != nil {
				t.Logf("%s transcript:\n%s", name, strings.Join(tr, "\n\n"))
			}
		}
		t.Log("one side did not run to the end; transcripts not compared")
		return
	}
	for i := range max(len(etcd), len(keel)) {
		var a, b string
		if i < len(etcd) {
			a = etcd[i]
		}
		if i < len(keel) {
			b = keel[i]
		}
		if a != b {
			t.Errorf("step %d differs:\n--- etcd:\n%s\n--- keel:\n%s", i, a, b)
		}
	}
}

func TestMaskIDsHidesPaddedAndShortIDs(t *testing.T) {
	for in, want := range map[string]string{
		"Member  2222342066ed7 removed from cluster c64ec9a5c7c96ae7\n": "Member <id> removed from cluster <id>\n",
		"Member c8848b68beb45bb2 added to cluster c64ec9a5c7c96ae7\n":   "Member <id> added to cluster <id>\n",
		"| 8501aa5fb259a | started | m1 | http://127.0.0.1:4321 |":      "| <id> | started | m1 | http://127.0.0.1:* |",
		"s1/key\nv1\nOK\n": "s1/key\nv1\nOK\n",
	} {
		if got := maskIDs(in); got != want {
			t.Errorf("maskIDs(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCanonicalMemberAddSortsTheInitialCluster(t *testing.T) {
	in := "Member c8848b68beb45bb2 added to cluster c64ec9a5c7c96ae7\n\nETCD_NAME=\"m3\"\nETCD_INITIAL_CLUSTER=\"m3=http://127.0.0.1:3,m1=http://127.0.0.1:1\"\n"
	want := "Member <id> added to cluster <id>\n\nETCD_NAME=\"m3\"\nETCD_INITIAL_CLUSTER=\"m1=http://127.0.0.1:*,m3=http://127.0.0.1:*\"\n"
	if got := canonicalMemberAdd(in); got != want {
		t.Errorf("canonicalMemberAdd:\n got %q\nwant %q", got, want)
	}
}
