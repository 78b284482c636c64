package faulttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/keeldb/keel/internal/keelbin"
)

// Bounds of waiting for members.
const (
	readyTimeout    = 60 * time.Second
	reapTimeout     = 20 * time.Second
	rpcTimeout      = 2 * time.Second
	convergeTimeout = 60 * time.Second
)

// clusterOpts are the flags a run varies.
type clusterOpts struct {
	size          int
	snapshotCount int // 0: the server's default
	catchUp       int // --snapshot-catchup-entries; 0: default
}

// cluster is a set of member processes of one target (keel or etcd) whose
// peer traffic goes through one Proxy each.
type cluster struct {
	t      *testing.T
	tgt    target
	dir    string
	token  string
	opts   clusterOpts
	net    *Net
	lg     *zap.Logger
	mu     sync.Mutex // guards the members' proc, id and stopped fields, and procs
	member []*member
	procs  []*proc // every process started, in order
}

// member is one slot of the cluster: a name, ports, a data dir and a proxy
// that outlive its processes (a member removed and added back keeps its slot
// and gets a new ID).
type member struct {
	idx        int
	name       string
	dataDir    string
	clientPort int
	peerPort   int
	proxy      *Proxy
	id         uint64
	proc       *proc
	starts     int
	stopped    bool // SIGSTOPped
	// the --initial-cluster-state and --initial-cluster of the last start,
	// used again on restarts as an operator's unit file would
	state, initial string
}

func (m *member) clientURL() string { return fmt.Sprintf("http://127.0.0.1:%d", m.clientPort) }
func (m *member) peerURL() string   { return "http://" + m.proxy.Addr() }

// proc is one member process.
type proc struct {
	cmd      *exec.Cmd
	logPath  string
	log      *logWatcher
	done     chan struct{} // closed once reaped
	err      error         // from Wait, read after done
	expected bool          // the test killed or removed it (guarded by cluster.mu)
	died     bool          // it had exited before the test killed it (guarded by cluster.mu)
	ignored  bool          // it failed to bind a port and was replaced (guarded by cluster.mu)
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// freePort returns a port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startCluster starts opts.size members with --initial-cluster-state new
// and waits until all serve clients.
func startCluster(t *testing.T, tgt target, dir string, seed uint64, opts clusterOpts) *cluster {
	t.Helper()
	c := &cluster{t: t, tgt: tgt, dir: dir, token: fmt.Sprintf("fault-%d", seed), opts: opts, net: NewNet(seed), lg: zap.NewNop()}
	for i := range opts.size {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		m := &member{idx: i, name: fmt.Sprintf("m%d", i), dataDir: filepath.Join(dir, fmt.Sprintf("m%d.data", i)),
			clientPort: freePort(t), peerPort: freePort(t)}
		backend := fmt.Sprintf("127.0.0.1:%d", m.peerPort)
		if tgt.grpcPeers {
			m.proxy = c.net.NewGRPCProxy(l, backend)
		} else {
			m.proxy = c.net.NewTCPProxy(l, backend)
		}
		c.member = append(c.member, m)
	}
	t.Cleanup(c.stopAll)
	var initial []string
	for _, m := range c.member {
		initial = append(initial, m.name+"="+m.peerURL())
	}
	for _, m := range c.member {
		c.start(m, "new", strings.Join(initial, ","))
	}
	for _, m := range c.member {
		c.waitReadyOrRetryPorts(m, "new", strings.Join(initial, ","))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.refreshIDs(ctx); err != nil {
		t.Fatalf("member list of the new cluster: %v", err)
	}
	return c
}

// args are the member's flags for a start with the given
// --initial-cluster-state and --initial-cluster.
func (c *cluster) args(m *member, state, initial string) []string {
	a := []string{
		"--name", m.name,
		"--data-dir", m.dataDir,
		"--listen-client-urls", m.clientURL(),
		"--advertise-client-urls", m.clientURL(),
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", m.peerPort),
		"--initial-advertise-peer-urls", m.peerURL(),
		"--initial-cluster", initial,
		"--initial-cluster-token", c.token,
		"--initial-cluster-state", state,
		"--heartbeat-interval", "100",
		"--election-timeout", "1000",
	}
	if c.opts.snapshotCount > 0 {
		a = append(a, "--snapshot-count", strconv.Itoa(c.opts.snapshotCount))
	}
	if c.opts.catchUp > 0 {
		a = append(a, "--snapshot-catchup-entries", strconv.Itoa(c.opts.catchUp))
	}
	return a
}

// start starts a process for m (which must have none running) without
// waiting for it to serve.
func (c *cluster) start(m *member, state, initial string) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	m.starts++
	m.state, m.initial = state, initial
	logPath := filepath.Join(c.dir, fmt.Sprintf("%s.%02d.log", m.name, m.starts))
	f, err := os.Create(logPath)
	if err != nil {
		c.t.Fatal(err)
	}
	lw := &logWatcher{ready: make(chan struct{})}
	lw.LineWriter = keelbin.LineWriter{W: f, Line: lw.line}
	cmd := exec.Command(c.tgt.bin, c.args(m, state, initial)...)
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = lw, lw
	if err := cmd.Start(); err != nil {
		f.Close()
		c.t.Fatalf("start %s: %v", m.name, err)
	}
	p := &proc{cmd: cmd, logPath: logPath, log: lw, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	m.proc = p
	m.stopped = false
	c.procs = append(c.procs, p)
}

// waitReady waits until m's current process logs that it serves clients.
func (c *cluster) waitReady(m *member, timeout time.Duration) error {
	c.mu.Lock()
	p := m.proc
	c.mu.Unlock()
	if p == nil {
		return fmt.Errorf("%s has no process", m.name)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.log.ready:
		return nil
	case <-p.done:
		return fmt.Errorf("%s exited before serving: %v\n%s", m.name, p.err, p.log.tail())
	case <-timer.C:
		return fmt.Errorf("%s did not serve within %v\n%s", m.name, timeout, p.log.tail())
	}
}

// waitReadyOrRetryPorts waits for m's first start; if it lost a port to
// another process it gets new ports and starts again (its advertised peer
// URL, the proxy's, does not change).
func (c *cluster) waitReadyOrRetryPorts(m *member, state, initial string) {
	c.t.Helper()
	for attempt := 0; ; attempt++ {
		err := c.waitReady(m, readyTimeout)
		if err == nil {
			return
		}
		if attempt < 3 && m.proc.exited() && m.proc.log.contains("address already in use") {
			c.mu.Lock()
			m.proc.ignored = true // lost a port race: not the server's fault
			c.mu.Unlock()
			m.clientPort, m.peerPort = freePort(c.t), freePort(c.t)
			m.proxy.SetBackend(fmt.Sprintf("127.0.0.1:%d", m.peerPort))
			c.start(m, state, initial)
			continue
		}
		c.t.Fatal(err)
	}
}

// kill kills m's process with SIGKILL and waits until it is reaped.
func (c *cluster) kill(m *member) {
	c.t.Helper()
	c.mu.Lock()
	p := m.proc
	if p != nil {
		p.died = p.died || (p.exited() && !p.expected)
		p.expected = true
	}
	c.mu.Unlock()
	if p == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(reapTimeout):
		c.t.Fatalf("%s not reaped within %v of SIGKILL", m.name, reapTimeout)
	}
	c.mu.Lock()
	m.stopped = false
	c.mu.Unlock()
}

// restart starts m again on its data dir and ports, with the flags of its
// last start, without waiting.
func (c *cluster) restart(m *member) {
	c.t.Helper()
	c.start(m, m.state, m.initial)
}

// pause stops (SIGSTOP) or continues (SIGCONT) m's process.
func (c *cluster) pause(m *member, stop bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m.proc == nil || m.proc.exited() || m.stopped == stop {
		return
	}
	sig := syscall.SIGCONT
	if stop {
		sig = syscall.SIGSTOP
	}
	m.proc.cmd.Process.Signal(sig)
	m.stopped = stop
}

// stopAll kills every process; on failure it logs the tail of each member's
// last log.
func (c *cluster) stopAll() {
	for _, m := range c.member {
		c.mu.Lock()
		p := m.proc
		if p != nil {
			p.expected = true
		}
		c.mu.Unlock()
		if p != nil {
			p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.done
			if c.t.Failed() {
				c.t.Logf("last lines of %s:\n%s", p.logPath, p.log.tail())
			}
		}
		m.proxy.Close()
	}
}

// ids maps members to their current IDs.
func (c *cluster) ids() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]uint64, len(c.member))
	for i, m := range c.member {
		out[i] = m.id
	}
	return out
}

// refreshIDs learns the members' IDs from a member list (by peer URL) and
// tells each proxy whom it serves.
func (c *cluster) refreshIDs(ctx context.Context) error {
	var lastErr error
	for _, m := range c.member {
		resp, err := c.memberList(ctx, m)
		if err != nil {
			lastErr = err
			continue
		}
		c.setIDs(resp.Members)
		return nil
	}
	return lastErr
}

func (c *cluster) setIDs(ms []*etcdserverpb.Member) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, pm := range ms {
		for _, m := range c.member {
			for _, u := range pm.PeerURLs {
				if u == m.peerURL() {
					m.id = pm.ID
					m.proxy.SetMember(pm.ID)
				}
			}
		}
	}
}

// client opens a client to m alone.
func (c *cluster) client(m *member) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   []string{m.clientURL()},
		DialTimeout: rpcTimeout,
		Logger:      c.lg,
	})
}

// withClient runs f with a short-lived client to m.
func (c *cluster) withClient(m *member, f func(*clientv3.Client) error) error {
	cli, err := c.client(m)
	if err != nil {
		return err
	}
	defer cli.Close()
	return f(cli)
}

func (c *cluster) memberList(ctx context.Context, m *member) (*clientv3.MemberListResponse, error) {
	var resp *clientv3.MemberListResponse
	err := c.withClient(m, func(cli *clientv3.Client) error {
		cctx, cancel := context.WithTimeout(ctx, rpcTimeout)
		defer cancel()
		var err error
		resp, err = cli.MemberList(cctx)
		return err
	})
	return resp, err
}

func (c *cluster) status(ctx context.Context, m *member) (*clientv3.StatusResponse, error) {
	var resp *clientv3.StatusResponse
	err := c.withClient(m, func(cli *clientv3.Client) error {
		cctx, cancel := context.WithTimeout(ctx, rpcTimeout)
		defer cancel()
		var err error
		resp, err = cli.Status(cctx, m.clientURL())
		return err
	})
	return resp, err
}

// leader finds the member that leads now, from the members' Status,
// polling until one answers that it is the leader.
func (c *cluster) leader(ctx context.Context) (*member, error) {
	var lastErr error = errors.New("no member is leader")
	for attempt := 0; attempt < 50 && ctx.Err() == nil; attempt++ {
		for _, m := range c.member {
			if m.proc == nil || m.proc.exited() || m.stopped {
				continue
			}
			st, err := c.status(ctx, m)
			if err != nil {
				lastErr = err
				continue
			}
			if st.Leader != 0 && st.Leader == st.Header.MemberId {
				return m, nil
			}
		}
		if !pauseCtx(ctx, 100*time.Millisecond) {
			break
		}
	}
	return nil, fmt.Errorf("find leader: %w", lastErr)
}

// pauseCtx waits d (a step of a bounded poll or a fault's planned duration,
// never a wait for a condition) and reports whether ctx is still live.
func pauseCtx(ctx context.Context, d time.Duration) bool {
	return waitUntil(ctx, time.Now().Add(d))
}

// unexpectedExits lists the processes that exited without the test killing
// them, and processes that logged a panic.
func (c *cluster) unexpectedExits() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, p := range c.procs {
		if p.ignored {
			continue
		}
		if p.died || (p.exited() && !p.expected) {
			out = append(out, fmt.Sprintf("%s exited on its own (%v):\n%s", p.logPath, p.err, p.log.tail()))
		}
		if s := p.log.panicText(); s != "" {
			out = append(out, fmt.Sprintf("%s reported a panic or a data race:\n%s", p.logPath, s))
		}
	}
	return out
}

// cleanEnv is the test's environment without ETCD_* variables, which the
// servers would take as flags.
func cleanEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "ETCD_") {
			env = append(env, e)
		}
	}
	return env
}

// logWatcher writes a member's output to its log file and watches it for
// readiness and panics.
type logWatcher struct {
	keelbin.LineWriter // to the log file, lines to line
	ready              chan struct{}

	mu      sync.Mutex
	last    []string
	isReady bool
	panics  []string
	all     bytes.Buffer // lines that matter for contains(), bounded
}

const (
	tailLines     = 25
	tailLineBytes = 500
	panicLines    = 60
	keptBytes     = 1 << 20
)

func (w *logWatcher) line(l string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	short := l
	if len(short) > tailLineBytes {
		short = short[:tailLineBytes] + "..."
	}
	w.last = append(w.last, short)
	if len(w.last) > tailLines {
		w.last = w.last[len(w.last)-tailLines:]
	}
	if w.all.Len() < keptBytes {
		w.all.WriteString(short)
		w.all.WriteByte('\n')
	}
	if len(w.panics) > 0 && len(w.panics) < panicLines {
		w.panics = append(w.panics, short)
	} else if strings.HasPrefix(l, "panic:") || strings.HasPrefix(l, "fatal error:") ||
		strings.Contains(l, `"level":"panic"`) || strings.Contains(l, `"level":"fatal"`) ||
		strings.Contains(l, "WARNING: DATA RACE") {
		w.panics = append(w.panics, short)
	}
	if !w.isReady && strings.Contains(l, "ready to serve client requests") {
		w.isReady = true
		close(w.ready)
	}
}

func (w *logWatcher) tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.last, "\n")
}

func (w *logWatcher) contains(s string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Contains(w.all.String(), s)
}

func (w *logWatcher) panicText() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.panics, "\n")
}
