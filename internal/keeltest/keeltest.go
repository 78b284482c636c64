// Package keeltest starts keel members in-process for tests: on loopback,
// on free ports, with a data dir the test owns, and with an official etcd
// client connected to them. Everything it starts is stopped by the test's
// cleanup.
package keeltest

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/keeldb/keel/config"
	"github.com/keeldb/keel/server"
)

// DialTimeout bounds how long a client built by this package waits for its
// first connection.
const DialTimeout = 10 * time.Second

// startAttempts bounds how often Start retries when the free peer port it
// picked was taken by someone else before the server bound it.
const startAttempts = 5

// Member is one running keel member and a client connected to it.
//
// Restart replaces Server, Endpoint and Client (the client port changes on
// every start); read them from the Member after a restart, never keep copies.
type Member struct {
	Server *server.Server
	// Endpoint is the client URL the server bound, e.g. http://127.0.0.1:41234.
	Endpoint string
	// Client is connected to Endpoint; it is closed by Restart and by the
	// test's cleanup.
	Client *clientv3.Client
	// Config is the configuration the member was started with. Restart
	// reuses it (same name, data dir and peer URL).
	Config *config.Config

	t  testing.TB
	lg *zap.Logger
	// clientTLS secures the clients NewClient makes (WithClientTLS).
	clientTLS *tls.Config
}

// Option adjusts how Start builds a member.
type Option func(*options)

type options struct {
	dataDir  string
	name     string
	keepLogs bool
	mutate   []func(*config.Config)
	// clientTLS is the clients' TLS configuration (WithClientTLS).
	clientTLS *tls.Config
	// peerTLS makes the peer URLs https (WithPeerTLS).
	peerTLS bool
	// logger receives the server logs (WithLogger).
	logger *zap.Logger
}

// WithLogger sends the server's logs to lg, e.g. an observer that a test
// reads.
func WithLogger(lg *zap.Logger) Option { return func(o *options) { o.logger = lg } }

// WithClientTLS serves the client port over TLS set up by server (the
// --cert-file family) on an https:// URL, and connects the clients made by
// this package with client (a nil client connects without TLS, to see it
// fail).
func WithClientTLS(server config.TLS, client *tls.Config) Option {
	return func(o *options) {
		o.clientTLS = client
		o.mutate = append(o.mutate, func(c *config.Config) {
			c.ClientTLS = server
			for _, us := range [][]url.URL{c.ListenClientURLs, c.AdvertiseClientURLs} {
				for i := range us {
					us[i].Scheme = "https"
				}
			}
		})
	}
}

// WithPeerTLS serves and dials the peer port over TLS set up by peer (the
// --peer-cert-file family) on https:// peer URLs.
func WithPeerTLS(peer config.TLS) Option {
	return func(o *options) {
		o.peerTLS = true
		o.mutate = append(o.mutate, func(c *config.Config) { c.PeerTLS = peer })
	}
}

// peerScheme is the scheme of the peer URLs o asks for.
func (o options) peerScheme() string {
	if o.peerTLS {
		return "https"
	}
	return "http"
}

// WithDataDir uses dir as the data dir instead of a fresh t.TempDir(), e.g.
// to start a member again on the data of one that was stopped.
func WithDataDir(dir string) Option { return func(o *options) { o.dataDir = dir } }

// WithName sets the member name (--name); the default is "default", as in etcd.
func WithName(name string) Option { return func(o *options) { o.name = name } }

// WithSnapshotCount sets --snapshot-count.
func WithSnapshotCount(n uint64) Option {
	return WithConfig(func(c *config.Config) { c.SnapshotCount = n })
}

// WithMaxTxnOps sets --max-txn-ops.
func WithMaxTxnOps(n uint) Option {
	return WithConfig(func(c *config.Config) { c.MaxTxnOps = n })
}

// WithMaxRequestBytes sets --max-request-bytes.
func WithMaxRequestBytes(n uint) Option {
	return WithConfig(func(c *config.Config) { c.MaxRequestBytes = n })
}

// WithLogs sends the server's logs to the test log (zaptest) instead of
// discarding them.
func WithLogs() Option { return func(o *options) { o.keepLogs = true } }

// WithConfig runs f on the configuration after the defaults and the URLs are
// set, for settings no other option covers.
func WithConfig(f func(*config.Config)) Option {
	return func(o *options) { o.mutate = append(o.mutate, f) }
}

// Start starts one keel member that bootstraps a one-member cluster (or
// restarts from WithDataDir's data), waits until it serves, connects a
// client, and registers their shutdown with t.Cleanup. It fails the test if
// the member does not start.
func Start(t testing.TB, opts ...Option) *Member {
	t.Helper()
	o := options{name: "default"}
	for _, opt := range opts {
		opt(&o)
	}
	if o.dataDir == "" {
		o.dataDir = t.TempDir()
	}
	lg := zap.NewNop()
	if o.keepLogs {
		lg = zaptest.NewLogger(t)
	}
	if o.logger != nil {
		lg = o.logger
	}
	m := &Member{t: t, lg: lg, clientTLS: o.clientTLS}
	t.Cleanup(m.stop)

	var lastErr error
	for range startAttempts {
		cfg, err := newConfig(o)
		if err != nil {
			t.Fatalf("keeltest: %v", err)
		}
		srv, err := server.Start(cfg, lg)
		if err == nil {
			m.Config = cfg
			m.attach(srv)
			return m
		}
		lastErr = err
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	t.Fatalf("keeltest: start member: %v", lastErr)
	return nil
}

// newConfig builds the configuration of a member on loopback: client URLs on
// port 0, a peer URL on a port the OS just reported free.
func newConfig(o options) (*config.Config, error) {
	peerPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	peer := url.URL{Scheme: o.peerScheme(), Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(peerPort))}
	client := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg := config.Default()
	cfg.Name = o.name
	cfg.DataDir = o.dataDir
	cfg.ListenClientURLs = []url.URL{client}
	cfg.AdvertiseClientURLs = []url.URL{client}
	cfg.ListenPeerURLs = []url.URL{peer}
	cfg.InitialAdvertisePeerURLs = []url.URL{peer}
	cfg.InitialCluster = o.name + "=" + peer.String()
	for _, f := range o.mutate {
		f(cfg)
	}
	return cfg, nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free when asked.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// attach records a started server and connects a client to it.
func (m *Member) attach(srv *server.Server) {
	m.t.Helper()
	m.Server = srv
	urls := srv.ClientURLs()
	if len(urls) == 0 {
		m.t.Fatalf("keeltest: server bound no client URL")
	}
	m.Endpoint = urls[0]
	m.Client = m.NewClient(m.t)
}

// NewClient returns a new client connected to the member, closed by t's
// cleanup. edit, if given, adjusts the client configuration first (e.g. to
// raise MaxCallSendMsgSize).
func (m *Member) NewClient(t testing.TB, edit ...func(*clientv3.Config)) *clientv3.Client {
	t.Helper()
	cc := clientv3.Config{
		Endpoints:   []string{m.Endpoint},
		DialTimeout: DialTimeout,
		Logger:      zap.NewNop(),
		TLS:         m.clientTLS,
	}
	for _, f := range edit {
		f(&cc)
	}
	cli, err := clientv3.New(cc)
	if err != nil {
		t.Fatalf("keeltest: connect client to %s: %v", m.Endpoint, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// HostPort returns the member's client address without the scheme, e.g.
// 127.0.0.1:41234, for raw HTTP requests.
func (m *Member) HostPort() string {
	_, hostPort, _ := strings.Cut(m.Endpoint, "://")
	return hostPort
}

// Stop closes the client and stops the server. It is safe to call more than
// once; the test's cleanup calls it too.
func (m *Member) Stop() { m.stop() }

func (m *Member) stop() {
	if m.Client != nil {
		m.Client.Close()
		m.Client = nil
	}
	if m.Server != nil {
		m.Server.Stop()
		m.Server = nil
	}
}

// Restart stops the member cleanly and starts it again with the same
// configuration and data dir, then reconnects Client. The client port
// changes; the peer URL and member identity stay.
func (m *Member) Restart(t testing.TB) {
	t.Helper()
	m.stop()
	srv, err := server.Start(m.Config, m.lg)
	if err != nil {
		t.Fatalf("keeltest: restart member: %v", err)
	}
	m.attach(srv)
}
