package proc

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Member is one server process of a multi-member cluster on 127.0.0.1. Its
// flags and data dir stay the same across Kill and Restart, so a restart
// rejoins the cluster from the data dir.
//
// A Member is driven by one goroutine (the scenario's); only Done and
// Exited may be called from others.
type Member struct {
	Kind Kind
	Name string
	// Endpoint is the client URL, e.g. http://127.0.0.1:41234 (https
	// with TLS).
	Endpoint string
	// PeerURL is the URL the member listens on for its peers.
	PeerURL string
	DataDir string
	// LogPath holds the output of every start of the member.
	LogPath string

	tls   *TLS
	bin   string
	args  []string
	cmd   *exec.Cmd
	exitc chan struct{}
	err   error
	log   *os.File
}

// Cluster is a static cluster of members started together.
type Cluster struct {
	Kind    Kind
	Members []*Member
	// TLS is the cluster's certificates, nil when it serves plain HTTP.
	TLS *TLS
}

// StartCluster starts n members of kind with a static --initial-cluster,
// data dirs and logs under dir, and returns once every member serves and
// knows all n members. extraArgs are given to every member after the
// cluster flags. If another process takes a port picked for a member before
// it binds it, the cluster is started over with other ports and empty data
// dirs.
func StartCluster(ctx context.Context, kind Kind, bin, dir string, n int, extraArgs []string) (*Cluster, error) {
	return StartTLSCluster(ctx, kind, bin, dir, n, extraArgs, nil)
}

// StartTLSCluster is StartCluster with the members serving clients over
// HTTPS with t's certificates and requiring a client certificate, and, with
// n > 1, talking to each other over TLS with peer certificates required.
// With t nil it is StartCluster.
func StartTLSCluster(ctx context.Context, kind Kind, bin, dir string, n int, extraArgs []string, t *TLS) (*Cluster, error) {
	var lastErr error
	for range startAttempts {
		c, err := startCluster(ctx, kind, bin, dir, n, extraArgs, t)
		if err == nil {
			return c, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
		for i := range n {
			if rerr := os.RemoveAll(memberDataDir(dir, i)); rerr != nil {
				return nil, fmt.Errorf("remove a data dir after a failed start: %w", rerr)
			}
		}
	}
	return nil, fmt.Errorf("start a %d-member %s cluster: %w", n, kind, lastErr)
}

func memberDataDir(dir string, i int) string {
	return filepath.Join(dir, fmt.Sprintf("m%d.data", i+1))
}

func startCluster(ctx context.Context, kind Kind, bin, dir string, n int, extraArgs []string, t *TLS) (*Cluster, error) {
	c := &Cluster{Kind: kind, TLS: t}
	// A single member has no peers to talk to: its peer URL stays plain.
	scheme, peerScheme := t.scheme(), "http"
	if n > 1 {
		peerScheme = scheme
	}
	var initial []string
	for i := range n {
		cp, err := freePort()
		if err != nil {
			return nil, err
		}
		pp, err := freePort()
		if err != nil {
			return nil, err
		}
		m := &Member{
			Kind: kind, Name: fmt.Sprintf("m%d", i+1), bin: bin, tls: t,
			Endpoint: scheme + "://127.0.0.1:" + strconv.Itoa(cp),
			PeerURL:  peerScheme + "://127.0.0.1:" + strconv.Itoa(pp),
			DataDir:  memberDataDir(dir, i),
			LogPath:  filepath.Join(dir, fmt.Sprintf("m%d.log", i+1)),
		}
		c.Members = append(c.Members, m)
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	for _, m := range c.Members {
		m.args = []string{
			"--name", m.Name, "--data-dir", m.DataDir,
			"--listen-client-urls", m.Endpoint, "--advertise-client-urls", m.Endpoint,
			"--listen-peer-urls", m.PeerURL, "--initial-advertise-peer-urls", m.PeerURL,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-token", "keelbench",
			"--initial-cluster-state", "new",
			"--log-level", "warn",
		}
		if t != nil {
			m.args = append(m.args, t.ServerArgs()...)
			if n > 1 {
				m.args = append(m.args, t.PeerArgs()...)
			}
		}
		m.args = append(m.args, extraArgs...)
		if err := m.start(); err != nil {
			c.Stop()
			return nil, err
		}
	}
	for _, m := range c.Members {
		if err := m.WaitServing(ctx, c.PeerURLs()); err != nil {
			c.Stop()
			return nil, err
		}
	}
	return c, nil
}

// PeerURLs are the members' peer URLs.
func (c *Cluster) PeerURLs() []string {
	var urls []string
	for _, m := range c.Members {
		urls = append(urls, m.PeerURL)
	}
	return urls
}

// ClientConfig is the configuration of a client of the cluster at
// endpoints, with the cluster's client certificate if it has TLS.
func (c *Cluster) ClientConfig(endpoints ...string) clientv3.Config {
	return clientConfig(c.TLS, endpoints)
}

func clientConfig(t *TLS, endpoints []string) clientv3.Config {
	return clientv3.Config{Endpoints: endpoints, DialTimeout: DialTimeout, Logger: zap.NewNop(), TLS: t.ClientTLS()}
}

// HTTPClient is the client for the members' HTTP endpoints (/health,
// /metrics, /debug/pprof/).
func (c *Cluster) HTTPClient() *http.Client { return c.TLS.HTTPClient() }

// Endpoints are the members' client URLs.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.Members {
		eps = append(eps, m.Endpoint)
	}
	return eps
}

// Stop stops every member that runs (SIGTERM, then SIGKILL after
// stopTimeout) and returns the first problem.
func (c *Cluster) Stop() error {
	var first error
	for _, m := range c.Members {
		if err := m.Stop(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (m *Member) start() error {
	log, err := os.OpenFile(m.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open server log: %w", err)
	}
	fmt.Fprintf(log, "--- %s %v\n", m.bin, m.args)
	cmd := exec.Command(m.bin, m.args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = serverEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("run %s: %w", m.bin, err)
	}
	m.cmd, m.log, m.exitc, m.err = cmd, log, make(chan struct{}), nil
	exitc := m.exitc
	go func() {
		m.err = cmd.Wait()
		close(exitc)
	}()
	return nil
}

// Restart starts the member again with the same flags and data dir, after
// Kill or Stop, and returns once it serves and knows every peer in peers.
func (m *Member) Restart(ctx context.Context, peers []string) error {
	if exited, _ := m.Exited(); !exited {
		return fmt.Errorf("%s %s is still running", m.Kind, m.Name)
	}
	if err := m.start(); err != nil {
		return err
	}
	return m.WaitServing(ctx, peers)
}

// WaitServing polls until the member answers /health and its member list
// has exactly the given peer URLs, so that a server another process
// started on a port we picked is not mistaken for ours.
func (m *Member) WaitServing(ctx context.Context, peers []string) error {
	deadline := time.Now().Add(startTimeout)
	var cli *clientv3.Client
	defer func() {
		if cli != nil {
			cli.Close()
		}
	}()
	want := slices.Sorted(slices.Values(peers))
	for {
		err := healthy(ctx, m.tls.HTTPClient(), m.Endpoint)
		if err == nil {
			if cli == nil {
				cli, err = clientv3.New(clientConfig(m.tls, []string{m.Endpoint}))
			}
			if err == nil {
				c, cancel := context.WithTimeout(ctx, time.Second)
				resp, lerr := cli.MemberList(c)
				cancel()
				if lerr == nil {
					var got []string
					for _, mem := range resp.Members {
						got = append(got, mem.PeerURLs...)
					}
					slices.Sort(got)
					if slices.Equal(got, want) {
						return nil
					}
				}
				err = fmt.Errorf("member list does not name exactly the peer URLs %v (%v)", want, lerr)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s %s at %s not serving after %v: %w (server log: %s)", m.Kind, m.Name, m.Endpoint, startTimeout, err, m.LogPath)
		}
		select {
		case <-m.exitc:
			return fmt.Errorf("%s %s exited during start-up: %v (server log: %s)", m.Kind, m.Name, m.err, m.LogPath)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollInterval):
		}
	}
}

// Pid is the member's process id.
func (m *Member) Pid() int { return m.cmd.Process.Pid }

// Done is closed when the member's current process has exited.
func (m *Member) Done() <-chan struct{} { return m.exitc }

// Exited reports whether the member's current process has exited, and how.
func (m *Member) Exited() (bool, error) {
	if m.cmd == nil {
		return true, nil
	}
	select {
	case <-m.exitc:
		return true, m.err
	default:
		return false, nil
	}
}

// Kill sends SIGKILL and waits until the process has exited. It returns
// when the kernel has reaped the process: from then on it holds no port,
// sends nothing and acknowledges nothing.
func (m *Member) Kill() error {
	if exited, _ := m.Exited(); exited {
		return fmt.Errorf("%s %s had already exited: %v (server log: %s)", m.Kind, m.Name, m.err, m.LogPath)
	}
	if err := m.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill %s %s: %w", m.Kind, m.Name, err)
	}
	<-m.exitc
	m.log.Close()
	return nil
}

// Stop sends SIGTERM and waits up to stopTimeout for the exit, then kills
// the process. It does nothing if the member is not running.
func (m *Member) Stop() error {
	if exited, _ := m.Exited(); exited {
		return nil
	}
	defer m.log.Close()
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %s %s: %w", m.Kind, m.Name, err)
	}
	select {
	case <-m.exitc:
		return nil
	case <-time.After(stopTimeout):
		m.cmd.Process.Kill()
		<-m.exitc
		return fmt.Errorf("%s %s did not exit within %v of SIGTERM and was killed (server log: %s)", m.Kind, m.Name, stopTimeout, m.LogPath)
	}
}
