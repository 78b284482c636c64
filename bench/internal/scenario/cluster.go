package scenario

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/keeldb/keel/bench/internal/harness"
	"github.com/keeldb/keel/bench/internal/proc"
	"github.com/keeldb/keel/bench/internal/report"
)

// benchCluster is a cluster a scenario started for one run, and the leader
// it found. The leader is where the per-server figures (memory, CPU, data
// dir) are read: it does the work every write needs, whichever member took
// the request, so the figures mean the same for etcd and keel whichever
// member won the election.
type benchCluster struct {
	*proc.Cluster
	kind   proc.Kind
	leader *proc.Member
	// auth is set when auth is enabled: the load generator's clients log
	// in as benchUser.
	auth bool
}

// startBenchCluster starts members members and finds their leader. The
// caller must defer stop, also when it returns an error after this one
// succeeded.
func startBenchCluster(ctx context.Context, kind proc.Kind, bin, dir string, members int, serverArgs []string, progress *harness.Progress) (*benchCluster, error) {
	return startSecureBenchCluster(ctx, kind, bin, dir, members, serverArgs, Security{}, progress)
}

// startSecureBenchCluster is startBenchCluster secured as sec says: with
// TLS the members start with certificates made in dir; with auth, auth is
// enabled once the leader is found, and c.dial's clients log in.
func startSecureBenchCluster(ctx context.Context, kind proc.Kind, bin, dir string, members int, serverArgs []string, sec Security, progress *harness.Progress) (_ *benchCluster, err error) {
	t, secArgs, err := sec.prepareFiles(dir)
	if err != nil {
		return nil, err
	}
	progress.Printf("starting a %d-member cluster (%s)", members, sec)
	c, err := proc.StartTLSCluster(ctx, kind, bin, dir, members, append(secArgs, serverArgs...), t)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	bc := &benchCluster{Cluster: c, kind: kind}
	if err := bc.findLeader(ctx); err != nil {
		return nil, err
	}
	if sec.Auth {
		cli, err := bc.dial(bc.leader.Endpoint)
		if err != nil {
			return nil, err
		}
		err = enableAuth(ctx, cli, progress)
		cli.Close()
		if err != nil {
			return nil, err
		}
		bc.auth = true
	}
	progress.Printf("serving at %v; leader %s (pid %d, data dir %s)", c.Endpoints(), bc.leader.Name, bc.leader.Pid(), bc.leader.DataDir)
	return bc, nil
}

// stop stops every member; a problem becomes *errp unless that already
// holds an error. Callers defer it right after startBenchCluster.
func (c *benchCluster) stop(errp *error) {
	if err := c.Stop(); err != nil && *errp == nil {
		*errp = err
	}
}

// findLeader asks every member for the leader until they agree, and makes
// it c.leader. Call it again after anything that can move the leadership
// (a restart).
func (c *benchCluster) findLeader(ctx context.Context) error {
	m, _, err := findLeader(ctx, c.Cluster)
	if err != nil {
		return err
	}
	c.leader = m
	return nil
}

// leaderFirst are the members' client URLs, the leader's first and then
// the followers' in member order. Connection i of a scenario goes to
// leaderFirst()[i mod members], so that etcd and keel get the same share
// of connections on their leader whichever member won the election.
func (c *benchCluster) leaderFirst() []string {
	eps := []string{c.leader.Endpoint}
	for _, m := range c.Members {
		if m != c.leader {
			eps = append(eps, m.Endpoint)
		}
	}
	return eps
}

// leaderMemoryLog returns a memory log of the leader.
func (c *benchCluster) leaderMemoryLog() *memoryLog {
	return newMemoryLogOf(c.leader.Pid(), c.leader.Endpoint, c.HTTPClient())
}

// failIfExited fails run for every member whose process has exited.
func (c *benchCluster) failIfExited(run *report.Run) {
	for _, m := range c.Members {
		if exited, err := m.Exited(); exited {
			run.Failf("%s %s exited during the run: %v (server log: %s)", c.kind, m.Name, err, m.LogPath)
		}
	}
}

// addLeaderDataDirFigures records the leader's data dir figures at phase.
func (c *benchCluster) addLeaderDataDirFigures(run *report.Run, phase string) error {
	return addDataDirFigures(run, c.leader.DataDir, phase)
}

// addDataDirFigures records "data dir size <phase>", the data dir's
// allocated size (as du counts it: the figure to compare), and "data dir
// apparent size <phase>", the files' lengths (they differ when a server
// preallocates files).
func addDataDirFigures(run *report.Run, dataDir, phase string) error {
	used, err := proc.DiskUsage(dataDir)
	if err != nil {
		return fmt.Errorf("measure the data dir: %w", err)
	}
	apparent, err := proc.ApparentSize(dataDir)
	if err != nil {
		return fmt.Errorf("measure the data dir: %w", err)
	}
	run.Add("data dir size "+phase, report.Bytes, float64(used))
	run.Add("data dir apparent size "+phase, report.Bytes, float64(apparent))
	return nil
}

// addLeaderShare records the share of n connections, spread over
// leaderFirst() round-robin (or all on the leader when onLeader), that
// talk to the leader, with more than one member.
func (c *benchCluster) addLeaderShare(run *report.Run, n int, onLeader bool) {
	if len(c.Members) < 2 {
		return
	}
	share := 1.0
	if !onLeader {
		share = float64(connsOnFirst(n, len(c.Members))) / float64(n)
	}
	run.Add("share of connections on the leader", report.Count, share)
}

// connsOnFirst is how many of n connections spread round-robin over k
// endpoints go to the first.
func connsOnFirst(n, k int) int { return (n + k - 1) / k }

// dial opens one plain client connection to the given endpoints.
func dial(endpoints ...string) (*clientv3.Client, error) {
	return dialConfig(clientv3.Config{Endpoints: endpoints, DialTimeout: proc.DialTimeout, Logger: zap.NewNop()})
}

func dialConfig(cfg clientv3.Config) (*clientv3.Client, error) {
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("connect a client to %v: %w", cfg.Endpoints, err)
	}
	return cli, nil
}

// clientConfig is the configuration of a client of the cluster: with its
// client certificate if it has TLS, logged in as benchUser if auth is on.
func (c *benchCluster) clientConfig(endpoints ...string) clientv3.Config {
	cfg := c.ClientConfig(endpoints...)
	if c.auth {
		cfg.Username, cfg.Password = benchUser, benchPassword
	}
	return cfg
}

// dial opens one client connection to the given endpoints of the
// cluster (see clientConfig).
func (c *benchCluster) dial(endpoints ...string) (*clientv3.Client, error) {
	return dialConfig(c.clientConfig(endpoints...))
}

// dialSpread opens n client connections to the cluster, connection i to
// endpoint i mod len(endpoints). On an error it closes what it opened.
func (c *benchCluster) dialSpread(n int, endpoints []string) ([]*clientv3.Client, error) {
	clis := make([]*clientv3.Client, n)
	for i := range clis {
		cli, err := c.dial(endpoints[i%len(endpoints)])
		if err != nil {
			closeAll(clis)
			return nil, fmt.Errorf("client %d: %w", i, err)
		}
		clis[i] = cli
	}
	return clis, nil
}

// clusterCPUMeter measures, over a phase, the CPU time of the leader and of
// the load generator (as cpuMeter does) and of all members together.
type clusterCPUMeter struct {
	leader *cpuMeter
	pids   []int
	start  time.Duration
}

// startCPU starts measuring the CPU time of the cluster's processes.
func (c *benchCluster) startCPU() (*clusterCPUMeter, error) {
	leader, err := startCPU(c.leader.Pid())
	if err != nil {
		return nil, err
	}
	m := &clusterCPUMeter{leader: leader}
	for _, mem := range c.Members {
		m.pids = append(m.pids, mem.Pid())
	}
	if m.start, err = sumCPU(m.pids); err != nil {
		return nil, err
	}
	return m, nil
}

// clusterCPUUse is the CPU time used over a phase.
type clusterCPUUse struct {
	cpuUse
	// all is every member's CPU time together; members how many there are.
	all     time.Duration
	members int
}

// stop reads the CPU time used since startCPU.
func (m *clusterCPUMeter) stop() clusterCPUUse {
	u := clusterCPUUse{cpuUse: m.leader.stop(), members: len(m.pids)}
	if u.err != nil {
		return u
	}
	all, err := sumCPU(m.pids)
	if err != nil {
		u.err = err
		return u
	}
	u.all = all - m.start
	return u
}

// addTo records "server CPU <phase>" (the leader's), "load generator CPU
// <phase>" and, with more than one member, "cluster CPU <phase>" (all
// members'), or returns why they could not be read.
func (u clusterCPUUse) addTo(run *report.Run, phase string) error {
	if err := u.cpuUse.addTo(run, phase); err != nil {
		return err
	}
	if u.members > 1 {
		run.AddDuration("cluster CPU "+phase, u.all)
	}
	return nil
}

// sumCPU is the CPU time of every process in pids together.
func sumCPU(pids []int) (time.Duration, error) {
	var total time.Duration
	for _, pid := range pids {
		t, err := proc.ReadCPU(pid)
		if err != nil {
			return 0, fmt.Errorf("read the CPU time of pid %d: %w", pid, err)
		}
		total += t
	}
	return total, nil
}
