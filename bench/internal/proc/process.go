package proc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Timeouts of a server's life cycle.
const (
	// startTimeout bounds the wait for a started server to serve.
	startTimeout = 60 * time.Second
	// startAttempts bounds the retries when the free ports picked for a
	// server were taken by another process before the server bound them.
	startAttempts = 5
	// stopTimeout is how long a server has to exit after SIGTERM before it
	// is killed.
	stopTimeout = 15 * time.Second
	// pollInterval spaces the readiness probes.
	pollInterval = 20 * time.Millisecond
	// DialTimeout is the client dial timeout the benchmarks use.
	DialTimeout = 5 * time.Second
)

// Process is a server under test running as a child process: one member of
// a one-member cluster on 127.0.0.1.
//
// Its methods may be called from any goroutine. Stop must be called exactly
// once, also when the benchmark fails, and the caller must not use the
// process afterwards.
type Process struct {
	Kind Kind
	// Endpoint is the client URL, e.g. http://127.0.0.1:41234.
	Endpoint string
	// DataDir is the member's data directory.
	DataDir string
	// LogPath is the file that holds the server's stdout and stderr.
	LogPath string

	peer  string
	cmd   *exec.Cmd
	exitc chan struct{} // closed when the process has exited
	err   error         // the process's exit status; read after exitc is closed
	log   *os.File
}

// Start runs bin as a one-member cluster with its data in dataDir and its
// output in logPath, and returns once it serves. etcd and keel get exactly
// the same flags (keel takes etcd's flags). extraArgs are appended to them.
func Start(ctx context.Context, kind Kind, bin, dataDir, logPath string, extraArgs []string) (*Process, error) {
	var lastErr error
	for range startAttempts {
		p, err := start(ctx, kind, bin, dataDir, logPath, extraArgs)
		if err == nil {
			return p, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
		// Start over from an empty data dir: the failed attempt may have
		// bootstrapped with ports it could not bind.
		if rerr := os.RemoveAll(dataDir); rerr != nil {
			return nil, fmt.Errorf("remove %s after a failed start: %w", dataDir, rerr)
		}
	}
	return nil, fmt.Errorf("start %s: %w", kind, lastErr)
}

func start(ctx context.Context, kind Kind, bin, dataDir, logPath string, extraArgs []string) (*Process, error) {
	ports := make([]int, 2)
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	args := []string{
		"--name", "default", "--data-dir", dataDir,
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "default=" + peer,
		"--log-level", "warn",
	}
	args = append(args, extraArgs...)
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open server log: %w", err)
	}
	fmt.Fprintf(log, "--- %s %v\n", bin, args)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	// Both servers see the same environment: keelbench's own, minus
	// ETCD_* variables, which would configure one of them behind our back
	// (keel reads them too, but a stray one is still a surprise).
	cmd.Env = serverEnv()
	// If keelbench dies without running its clean-up (kill -9), the kernel
	// kills the server too. Go keeps the thread that forked the child, so
	// the signal is not sent early.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("run %s: %w", bin, err)
	}
	p := &Process{Kind: kind, Endpoint: client, DataDir: dataDir, LogPath: logPath, peer: peer, cmd: cmd, exitc: make(chan struct{}), log: log}
	go func() {
		p.err = cmd.Wait()
		close(p.exitc)
	}()
	if err := p.waitServing(ctx); err != nil {
		p.Stop()
		return nil, fmt.Errorf("%w (server log: %s)", err, logPath)
	}
	return p, nil
}

func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if len(kv) >= 5 && kv[:5] == "ETCD_" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// waitServing polls until the server answers /health and its member list
// names this process's peer URL, so that a server another process started
// on a port we picked is not mistaken for ours.
func (p *Process) waitServing(ctx context.Context) error {
	deadline := time.Now().Add(startTimeout)
	var cli *clientv3.Client
	defer func() {
		if cli != nil {
			cli.Close()
		}
	}()
	for {
		// Poll over HTTP first: a gRPC client backs off for a second or
		// more after a refused connection.
		err := healthy(ctx, http.DefaultClient, p.Endpoint)
		if err == nil {
			if cli == nil {
				cli, err = p.Client()
			}
			if err == nil {
				c, cancel := context.WithTimeout(ctx, time.Second)
				resp, lerr := cli.MemberList(c)
				cancel()
				if lerr == nil && len(resp.Members) == 1 && len(resp.Members[0].PeerURLs) == 1 && resp.Members[0].PeerURLs[0] == p.peer {
					return nil
				}
				err = fmt.Errorf("member list does not name this server's peer URL %s (%v)", p.peer, lerr)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s at %s not serving after %v: %w", p.Kind, p.Endpoint, startTimeout, err)
		}
		select {
		case <-p.exitc:
			return fmt.Errorf("%s exited during start-up: %v", p.Kind, p.err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollInterval):
		}
	}
}

// healthy asks endpoint/health once, with client.
func healthy(ctx context.Context, client *http.Client, endpoint string) error {
	c, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(c, http.MethodGet, endpoint+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/health: %s", resp.Status)
	}
	return nil
}

// Client connects a new client to the server. Every call makes a separate
// gRPC connection; the caller closes it.
func (p *Process) Client() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   []string{p.Endpoint},
		DialTimeout: DialTimeout,
		Logger:      zap.NewNop(),
	})
}

// Pid is the server's process id: the server binary itself, never a
// wrapper such as `go run`.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the server process has exited.
func (p *Process) Done() <-chan struct{} { return p.exitc }

// Exited reports whether the server has exited, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.exitc:
		return true, p.err
	default:
		return false, nil
	}
}

// Stop sends SIGTERM, waits up to stopTimeout for the server to exit, then
// kills it. It returns an error when the server had to be killed or had
// already died.
func (p *Process) Stop() error {
	defer p.log.Close()
	select {
	case <-p.exitc:
		return fmt.Errorf("%s had exited before it was stopped: %v (server log: %s)", p.Kind, p.err, p.LogPath)
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %s: %w", p.Kind, err)
	}
	select {
	case <-p.exitc:
		return nil
	case <-time.After(stopTimeout):
		p.cmd.Process.Kill()
		<-p.exitc
		return fmt.Errorf("%s did not exit within %v of SIGTERM and was killed (server log: %s)", p.Kind, stopTimeout, p.LogPath)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// DiskUsage is the disk space the files under dir occupy, as du counts it:
// allocated blocks, so a preallocated but unwritten file counts in full and
// a sparse one does not.
func DiskUsage(dir string) (int64, error) {
	return sumFiles(dir, func(info os.FileInfo) int64 {
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			return st.Blocks * 512
		}
		return info.Size()
	})
}
