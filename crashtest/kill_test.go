package crashtest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keeldb/keel/internal/keelbin"
)

// TestKillNineLosesNoAcknowledgedWrite runs keel as a child process on one
// data dir, kills it with SIGKILL under concurrent load at a random moment,
// restarts it and checks that every acknowledged write survived, at its
// revision, and that nothing half-applied did.
func TestKillNineLosesNoAcknowledgedWrite(t *testing.T) {
	dir := t.TempDir()
	tgt := &killTarget{bin: keelbin.Path(t), dataDir: filepath.Join(dir, "data"), logDir: dir}
	t.Cleanup(tgt.close)
	runCrashRounds(t, tgt)
}

// Bounds of waiting for the member.
const (
	startTimeout = time.Minute
	stopTimeout  = 30 * time.Second
)

type killTarget struct {
	bin, dataDir, logDir string
	starts               int
	proc                 *keelProc
	cli                  *clientv3.Client
}

func (k *killTarget) lateAcks() bool { return false }

func (k *killTarget) start(t *testing.T, p roundPlan) kvStore {
	t.Helper()
	k.close()
	k.starts++
	args := []string{
		"--name", "crash",
		"--data-dir", k.dataDir,
		"--listen-client-urls", "http://127.0.0.1:0",
		"--advertise-client-urls", "http://127.0.0.1:0",
		"--listen-peer-urls", "http://127.0.0.1:0",
		"--initial-advertise-peer-urls", "http://127.0.0.1:0",
		"--initial-cluster", "crash=http://127.0.0.1:0",
		"--snapshot-count", fmt.Sprint(p.snapshotCount),
		"--snapshot-catchup-entries", fmt.Sprint(p.catchUp),
	}
	k.proc = startKeel(t, k.bin, args, filepath.Join(k.logDir, fmt.Sprintf("keel-%02d.log", k.starts)))
	k.cli = dialClient(t, k.proc.addr)
	return clientStore{k.cli}
}

func (k *killTarget) checkAlive(t *testing.T) {
	t.Helper()
	select {
	case <-k.proc.done:
		t.Fatalf("keel exited on its own under load: %v\n%s", k.proc.err, k.proc.log.tail())
	default:
	}
}

func (k *killTarget) crash(t *testing.T, _ roundPlan) {
	t.Helper()
	k.checkAlive(t)
	if err := k.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill keel: %v", err)
	}
	k.proc.reap(t, stopTimeout)
}

func (k *killTarget) stats() string {
	return fmt.Sprintf("%d Raft snapshots, %d compactions finished", k.proc.log.count(msgRaftSnapshot), k.proc.log.count(msgCompactionDone))
}

func (k *killTarget) stop(t *testing.T) {
	t.Helper()
	k.checkAlive(t)
	if err := k.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("terminate keel: %v", err)
	}
	k.proc.reap(t, stopTimeout)
	if k.proc.err != nil {
		t.Errorf("keel did not exit cleanly on SIGTERM: %v\n%s", k.proc.err, k.proc.log.tail())
	}
	k.close()
}

// close closes the client of the last process.
func (k *killTarget) close() {
	if k.cli != nil {
		k.cli.Close()
		k.cli = nil
	}
}

// keelProc is a keel child process.
type keelProc struct {
	cmd  *exec.Cmd
	log  *logWatcher
	addr string
	done chan struct{} // closed once reaped
	err  error         // from Wait, read after done
}

// startKeel starts keel with args, its output going to logPath, and waits
// until it serves clients. The process is killed and reaped at the end of
// the test if still running.
func startKeel(t *testing.T, bin string, args []string, logPath string) *keelProc {
	t.Helper()
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	lw := &logWatcher{ready: make(chan struct{})}
	lw.LineWriter = keelbin.LineWriter{W: f, Line: lw.line}
	cmd := exec.Command(bin, args...)
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = lw, lw
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start keel: %v", err)
	}
	p := &keelProc{cmd: cmd, log: lw, done: make(chan struct{})}
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
		if n := lw.raceReports(); n > 0 {
			t.Errorf("keel (%s) reported %d data races:\n%s", filepath.Base(logPath), n, lw.races())
		}
		if t.Failed() {
			t.Logf("last lines of %s:\n%s", filepath.Base(logPath), lw.tail())
		}
	})
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case <-lw.ready:
	case <-p.done:
		t.Fatalf("keel exited before serving: %v\n%s", p.err, lw.tail())
	case <-timer.C:
		t.Fatalf("keel did not serve within %v\n%s", startTimeout, lw.tail())
	}
	p.addr = lw.address()
	if p.addr == "" {
		t.Fatalf("keel logged no client address before serving\n%s", lw.tail())
	}
	return p
}

// reap waits for the process to exit after a signal, killing it when it
// takes longer than timeout.
func (p *keelProc) reap(t *testing.T, timeout time.Duration) {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
		p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("keel did not exit within %v of the signal\n%s", timeout, p.log.tail())
	}
}

// cleanEnv is the test's environment without ETCD_* variables, which keel
// would take as flags.
func cleanEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "ETCD_") {
			env = append(env, e)
		}
	}
	return env
}

// Messages keel logs when it starts serving.
const (
	msgServingClients = "serving client traffic insecurely; this is strongly discouraged!"
	msgReady          = "ready to serve client requests"
)

// Messages counted to show what a member did before it crashed.
const (
	msgRaftSnapshot   = "compacted Raft logs"
	msgCompactionDone = "finished scheduled compaction"
)

// logWatcher writes keel's output to a file and watches it for the client
// address, readiness and race reports.
type logWatcher struct {
	keelbin.LineWriter // to the log file, lines to line
	ready              chan struct{}

	mu       sync.Mutex
	last     []string // the last tailLines lines
	addr     string
	isReady  bool
	raceN    int
	raceText []string
	inRace   bool
	// counts of the log messages in countedMsgs
	counts map[string]int
}

const (
	tailLines     = 15
	maxRaceLines  = 200
	tailLineBytes = 400
)

func (w *logWatcher) line(l string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(l) > tailLineBytes {
		w.last = append(w.last, l[:tailLineBytes]+"...")
	} else {
		w.last = append(w.last, l)
	}
	if len(w.last) > tailLines {
		w.last = w.last[len(w.last)-tailLines:]
	}
	if strings.Contains(l, "WARNING: DATA RACE") {
		w.raceN++
		w.inRace = true
	}
	if w.inRace {
		if len(w.raceText) < maxRaceLines {
			w.raceText = append(w.raceText, l)
		}
		if strings.HasPrefix(l, "==================") && len(w.raceText) > 1 {
			w.inRace = false
		}
		return
	}
	if !strings.HasPrefix(l, "{") {
		return
	}
	var e struct {
		Msg     string `json:"msg"`
		Address string `json:"address"`
	}
	if json.Unmarshal([]byte(l), &e) != nil {
		return
	}
	switch e.Msg {
	case msgServingClients:
		if w.addr == "" {
			w.addr = e.Address
		}
	case msgReady:
		if !w.isReady {
			w.isReady = true
			close(w.ready)
		}
	case msgRaftSnapshot, msgCompactionDone:
		if w.counts == nil {
			w.counts = map[string]int{}
		}
		w.counts[e.Msg]++
	}
}

func (w *logWatcher) count(msg string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.counts[msg]
}

func (w *logWatcher) address() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.addr
}

func (w *logWatcher) tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.last, "\n")
}

func (w *logWatcher) raceReports() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.raceN
}

func (w *logWatcher) races() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.raceText, "\n")
}
