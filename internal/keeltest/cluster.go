package keeltest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
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

// ClusterToken is the --initial-cluster-token of clusters started by
// StartCluster.
const ClusterToken = "keeltest"

// ReadyTimeout bounds how long StartCluster and Join wait for members to
// serve.
const ReadyTimeout = 30 * time.Second

// Cluster is several in-process members of one cluster on loopback. Members
// lists the members the test started, in start order; a member the test
// stops or removes stays listed (its Server is then nil).
type Cluster struct {
	Members []*Member

	t    testing.TB
	opts []Option
}

// StartCluster bootstraps a cluster of n members named m1..mn
// (--initial-cluster-state new, token ClusterToken), waits until every one
// serves, and connects a client to each. opts apply to every member
// (WithName and WithDataDir are ignored). Everything is stopped by t's
// cleanup.
func StartCluster(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	c := &Cluster{t: t, opts: opts}
	var lastErr error
	for range startAttempts {
		members, err := c.tryStart(n)
		if err == nil {
			c.Members = members
			return c
		}
		lastErr = err
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	t.Fatalf("keeltest: start cluster of %d: %v", n, lastErr)
	return nil
}

// tryStart starts n members on peer ports that were free when asked; it
// stops what it started if any member fails.
func (c *Cluster) tryStart(n int) (_ []*Member, err error) {
	var initial []string
	cfgs := make([]*config.Config, n)
	for i := range n {
		name := fmt.Sprintf("m%d", i+1)
		peer, err := NewPeerURL()
		if err != nil {
			return nil, err
		}
		if c.options().peerTLS {
			peer = "https" + strings.TrimPrefix(peer, "http")
		}
		initial = append(initial, name+"="+peer)
		cfgs[i] = c.config(name, peer)
	}
	members := make([]*Member, n)
	defer func() {
		if err != nil {
			for _, m := range members {
				if m != nil {
					m.stop()
				}
			}
		}
	}()
	// All members must run before any can elect a leader and serve, so
	// start them all, then wait.
	for i, cfg := range cfgs {
		cfg.InitialCluster = strings.Join(initial, ",")
		cfg.InitialClusterState = "new"
		m := &Member{t: c.t, lg: c.logger(cfg.Name), Config: cfg, clientTLS: c.options().clientTLS}
		c.t.Cleanup(m.stop)
		srv, err := server.New(cfg, m.lg)
		if err != nil {
			return nil, fmt.Errorf("member %s: %w", cfg.Name, err)
		}
		m.Server = srv
		members[i] = m
	}
	for _, m := range members {
		if err := waitReady(m.Server); err != nil {
			return nil, fmt.Errorf("member %s: %w", m.Config.Name, err)
		}
		m.attach(m.Server)
	}
	return members, nil
}

// config is the configuration of member name with peer URL peer; the
// cluster flags are left for the caller.
func (c *Cluster) config(name, peer string) *config.Config {
	o := c.options()
	o.name, o.dataDir = name, c.t.TempDir()
	pu, _ := url.Parse(peer)
	client := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg := config.Default()
	cfg.Name = name
	cfg.DataDir = o.dataDir
	cfg.ListenClientURLs = []url.URL{client}
	cfg.AdvertiseClientURLs = []url.URL{client}
	cfg.ListenPeerURLs = []url.URL{*pu}
	cfg.InitialAdvertisePeerURLs = []url.URL{*pu}
	cfg.InitialClusterToken = ClusterToken
	for _, f := range o.mutate {
		f(cfg)
	}
	return cfg
}

// options are the options every member of c gets.
func (c *Cluster) options() options {
	var o options
	for _, opt := range c.opts {
		opt(&o)
	}
	return o
}

func (c *Cluster) logger(name string) *zap.Logger {
	if lg := c.options().logger; lg != nil {
		return lg.Named(name)
	}
	if c.options().keepLogs {
		return zaptest.NewLogger(c.t).Named(name)
	}
	return zap.NewNop()
}

// waitReady waits until srv serves clients, stops on its own, or
// ReadyTimeout passes.
func waitReady(srv *server.Server) error {
	t := time.NewTimer(ReadyTimeout)
	defer t.Stop()
	select {
	case <-srv.ReadyNotify():
		return nil
	case <-srv.Done():
		return fmt.Errorf("stopped before serving: %w", srv.Err())
	case <-t.C:
		return fmt.Errorf("not serving after %v", ReadyTimeout)
	}
}

// NewPeerURL returns an http peer URL on a loopback port that was free when
// asked.
func NewPeerURL() (string, error) {
	port, err := FreePort()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("http://127.0.0.1:%d", port), nil
}

// Running returns the members whose server runs, in start order.
func (c *Cluster) Running() []*Member {
	var out []*Member
	for _, m := range c.Members {
		if m.Server != nil {
			select {
			case <-m.Server.Done():
				continue
			default:
			}
			out = append(out, m)
		}
	}
	return out
}

// Leader waits until the running members agree on a leader among them and
// returns it. It fails the test after ReadyTimeout.
func (c *Cluster) Leader(t testing.TB) *Member {
	t.Helper()
	deadline := time.Now().Add(ReadyTimeout)
	for attempt := 0; time.Now().Before(deadline); attempt++ {
		if lead := c.agreedLeader(); lead != nil {
			return lead
		}
		time.Sleep(50 * time.Millisecond) // poll interval, bounded by the deadline
	}
	t.Fatalf("keeltest: running members agree on no leader after %v", ReadyTimeout)
	return nil
}

func (c *Cluster) agreedLeader() *Member {
	var lead uint64
	for _, m := range c.Running() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := m.Client.Status(ctx, m.Endpoint)
		cancel()
		if err != nil || st.Leader == 0 || (lead != 0 && st.Leader != lead) {
			return nil
		}
		lead = st.Leader
	}
	for _, m := range c.Running() {
		if m.Server.MemberID() == lead {
			return m
		}
	}
	return nil
}

// Member returns the member with ID id, or nil.
func (c *Cluster) Member(id uint64) *Member {
	for _, m := range c.Members {
		if m.Server != nil && m.Server.MemberID() == id {
			return m
		}
	}
	return nil
}

// Join starts a member named name with peer URL peer that joins the
// cluster (--initial-cluster-state existing). The cluster must already list
// a member with that peer URL (added with MemberAdd); --initial-cluster is
// built from the member list of a running member, as `etcdctl member add`
// prints it. Join waits until the new member serves and appends it to
// Members.
func (c *Cluster) Join(t testing.TB, name, peer string) *Member {
	t.Helper()
	m, err := c.StartJoining(name, peer)
	if err != nil {
		t.Fatalf("keeltest: join %s: %v", name, err)
	}
	return m
}

// JoinAs is Join with the member list asked through cli, a client logged
// in as a user: with auth enabled, the list needs one, as in etcd.
func (c *Cluster) JoinAs(t testing.TB, cli *clientv3.Client, name, peer string) *Member {
	t.Helper()
	m, err := c.startJoining(cli, name, peer)
	if err != nil {
		t.Fatalf("keeltest: join %s: %v", name, err)
	}
	return m
}

// StartJoining is Join returning the error instead of failing the test,
// for tests of refused joins.
func (c *Cluster) StartJoining(name, peer string) (*Member, error) {
	return c.startJoining(nil, name, peer)
}

// startJoining asks the member list through cli, or the first running
// member's client if nil.
func (c *Cluster) startJoining(cli *clientv3.Client, name, peer string) (*Member, error) {
	running := c.Running()
	if len(running) == 0 {
		return nil, errors.New("no running member to ask for the member list")
	}
	if cli == nil {
		cli = running[0].Client
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := cli.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("member list: %w", err)
	}
	var initial []string
	for _, mem := range list.Members {
		n := mem.Name
		if slices.Contains(mem.PeerURLs, peer) {
			n = name
		} else if n == "" {
			n = fmt.Sprintf("unstarted-%x", mem.ID)
		}
		for _, u := range mem.PeerURLs {
			initial = append(initial, n+"="+u)
		}
	}
	if !slices.ContainsFunc(initial, func(s string) bool { return s == name+"="+peer }) {
		initial = append(initial, name+"="+peer) // not added: the join is refused
	}
	cfg := c.config(name, peer)
	cfg.InitialCluster = strings.Join(initial, ",")
	cfg.InitialClusterState = "existing"
	m := &Member{t: c.t, lg: c.logger(name), Config: cfg, clientTLS: c.options().clientTLS}
	c.t.Cleanup(m.stop)
	srv, err := server.New(cfg, m.lg)
	if err != nil {
		return nil, err
	}
	m.Server = srv
	if err := waitReady(srv); err != nil {
		m.stop()
		return nil, err
	}
	m.attach(srv)
	c.Members = append(c.Members, m)
	return m, nil
}

// Endpoints returns the client URLs of the running members.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, m := range c.Running() {
		out = append(out, m.Endpoint)
	}
	return out
}

// NewClient returns a client of every running member, closed by t's
// cleanup.
func (c *Cluster) NewClient(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: DialTimeout, Logger: zap.NewNop(), TLS: c.options().clientTLS})
	if err != nil {
		t.Fatalf("keeltest: connect client to the cluster: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}
