// Package e2e holds end-to-end tests of operator workflows (SCENARIOS.md)
// that run keel members as child processes and keelctl's commands as an
// operator types them.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keeldb/keel/ctl"
	"github.com/keeldb/keel/internal/keelbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	keelbin.Cleanup()
	os.Exit(code)
}

const (
	readyTimeout = 60 * time.Second
	stopTimeout  = 20 * time.Second
)

// freePorts returns n distinct free loopback ports.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// memberSpec is how one member is started.
type memberSpec struct {
	name, dataDir        string
	clientPort, peerPort int
	initialCluster       string
	token                string
}

func (s memberSpec) clientURL() string { return fmt.Sprintf("http://127.0.0.1:%d", s.clientPort) }
func (s memberSpec) peerURL() string   { return fmt.Sprintf("http://127.0.0.1:%d", s.peerPort) }

// clusterSpecs returns the specs of a cluster of the given member names on
// fresh ports, with data dirs under dir.
func clusterSpecs(t *testing.T, dir, token string, names ...string) []memberSpec {
	ports := freePorts(t, 2*len(names))
	specs := make([]memberSpec, len(names))
	var initial []string
	for i, n := range names {
		specs[i] = memberSpec{name: n, dataDir: filepath.Join(dir, n+".keel"), clientPort: ports[2*i], peerPort: ports[2*i+1], token: token}
		initial = append(initial, n+"="+specs[i].peerURL())
	}
	for i := range specs {
		specs[i].initialCluster = strings.Join(initial, ",")
	}
	return specs
}

// proc is a running keel member.
type proc struct {
	spec memberSpec
	cmd  *exec.Cmd
	log  *logTail
	done chan struct{}
	err  error
}

// start starts the member; waitReady waits until it serves.
func start(t *testing.T, spec memberSpec) *proc {
	t.Helper()
	return startProc(t, spec, nil,
		"--listen-client-urls", spec.clientURL(), "--advertise-client-urls", spec.clientURL(),
		"--listen-peer-urls", spec.peerURL(), "--initial-advertise-peer-urls", spec.peerURL(),
		"--initial-cluster", spec.initialCluster, "--initial-cluster-token", spec.token)
}

// startProc starts a keel process for spec with --name, --data-dir, short
// Raft timeouts and args, and env added to a clean environment. Its log
// goes to a file beside the data dir, whose last lines a failed test shows;
// t's cleanup kills it if it still runs.
func startProc(t *testing.T, spec memberSpec, env []string, args ...string) *proc {
	t.Helper()
	logDir := filepath.Dir(spec.dataDir)
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(logDir, fmt.Sprintf("%s-%d.log", spec.name, time.Now().UnixNano()))
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	lt := &logTail{ready: make(chan struct{})}
	lt.LineWriter = keelbin.LineWriter{W: f, Line: lt.line}
	cmd := exec.Command(keelbin.Path(t), append([]string{"--name", spec.name, "--data-dir", spec.dataDir,
		"--heartbeat-interval", "50", "--election-timeout", "500"}, args...)...)
	cmd.Env = append(cleanEnv(), env...)
	cmd.Stdout, cmd.Stderr = lt, lt
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatal(err)
	}
	p := &proc{spec: spec, cmd: cmd, log: lt, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("last lines of %s:\n%s", filepath.Base(logPath), lt.tail())
		}
	})
	return p
}

func (p *proc) waitReady(t *testing.T) {
	t.Helper()
	timer := time.NewTimer(readyTimeout)
	defer timer.Stop()
	select {
	case <-p.log.ready:
	case <-p.done:
		t.Fatalf("%s exited before serving: %v\n%s", p.spec.name, p.err, p.log.tail())
	case <-timer.C:
		t.Fatalf("%s did not serve within %v\n%s", p.spec.name, readyTimeout, p.log.tail())
	}
}

// stop stops the member gracefully (SIGTERM) and waits for it to exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
		p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("%s did not stop within %v of SIGTERM", p.spec.name, stopTimeout)
	}
}

func startAll(t *testing.T, specs []memberSpec) []*proc {
	t.Helper()
	var ps []*proc
	for _, s := range specs {
		ps = append(ps, start(t, s))
	}
	for _, p := range ps {
		p.waitReady(t)
	}
	return ps
}

func stopAll(t *testing.T, ps []*proc) {
	t.Helper()
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Go(func() { p.stop(t) })
	}
	wg.Wait()
}

// keelctl runs keelctl's command line in-process, as the binary does, and
// returns its exit code, standard output and standard error.
func keelctl(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := ctl.Main(args, ctl.Stdio{In: strings.NewReader(""), Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

func cleanEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "ETCD_") && !strings.HasPrefix(e, "ETCDCTL_") {
			env = append(env, e)
		}
	}
	return env
}

// logTail keeps the last lines of a member's log and notices readiness.
type logTail struct {
	keelbin.LineWriter
	ready chan struct{}

	mu      sync.Mutex
	last    []string
	isReady bool
}

func (w *logTail) line(l string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(l) > 400 {
		l = l[:400] + "..."
	}
	w.last = append(w.last, l)
	if len(w.last) > 20 {
		w.last = w.last[1:]
	}
	var e struct {
		Msg string `json:"msg"`
	}
	if !w.isReady && json.Unmarshal([]byte(l), &e) == nil && e.Msg == "ready to serve client requests" {
		w.isReady = true
		close(w.ready)
	}
}

func (w *logTail) tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.last, "\n")
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}
