package scenario

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keeldb/keel/bench/internal/harness"
	"github.com/keeldb/keel/bench/internal/proc"
	"github.com/keeldb/keel/bench/internal/report"
)

// Dataset measures a server holding a large data set, the way Kubernetes
// uses etcd: Keys objects under one prefix are loaded, then the figures are
// the server's memory and data dir with them, paginated lists of all of
// them, the time to restart and serve again, and snapshot save and restore.
//
// Each run starts a fresh cluster of Members members (1 by default). The
// memory, CPU and data dir figures are the leader's (found again after the
// restart), and the load connections are spread over the members from the
// leader on (see leaderFirst). With more than one member the restart stops
// and starts every member (a lone member cannot serve /health without a
// quorum).
//
// "load throughput" and "list throughput" count keys per second, where
// "load requests ok" counts requests of Batch keys each.
//
// Keys are <KeyPrefix>ns-<i/1000>/pod-<i> for i in [0, Keys), the numbers
// zero-padded so that the keys sort in the order of i. Values are ValueSize
// random bytes: incompressible, so a store that compresses its blocks (keel's
// Pebble) gains nothing from them, where real Kubernetes objects would let it
// gain something.
//
// Every phase is bounded by phaseTimeout, which grows with Keys. The
// snapshot throughputs are bytes per second, reported in MiB.
type Dataset struct {
	Members   int
	Keys      int
	ValueSize int
	KeyPrefix string
	// Batch is how many puts each load request carries, in one Txn; 1
	// loads with plain puts. etcd and keel refuse a Txn with more than
	// --max-txn-ops (128) operations.
	Batch int
	// LoadClients is how many goroutines load concurrently, spread
	// round-robin over LoadConns client connections.
	LoadClients int
	LoadConns   int
	// PageSize is the limit of each list request (Kubernetes' default
	// chunk is 500).
	PageSize int
	// ListRounds is how many full paginated lists are measured; 0 skips
	// the lists.
	ListRounds   int
	SkipRestart  bool
	SkipSnapshot bool
	// EtcdutlBin restores etcd's snapshot. When empty, the first etcd run
	// that needs it builds etcdutl at the version bench/go.mod pins, into
	// the bin directory beside the runs' directories, and sets it here.
	EtcdutlBin string
}

// Name implements harness.Named.
func (*Dataset) Name() string { return "dataset" }

// Validate checks the parameters.
func (s *Dataset) Validate() error {
	switch {
	case s.Members < 1:
		return errors.New("-members must be at least 1")
	case s.Keys < 1:
		return errors.New("-keys must be at least 1")
	case s.ValueSize < 0:
		return errors.New("-val-size must not be negative")
	case s.KeyPrefix == "":
		return errors.New("-key-prefix must not be empty")
	case s.Batch < 1:
		return errors.New("-batch must be at least 1")
	case s.LoadClients < 1 || s.LoadConns < 1:
		return errors.New("-load-clients and -load-conns must be at least 1")
	case s.LoadConns > s.LoadClients:
		return errors.New("-load-conns must not exceed -load-clients")
	case s.PageSize < 1:
		return errors.New("-page-size must be at least 1")
	case s.ListRounds < 0:
		return errors.New("-list-rounds must not be negative")
	}
	return nil
}

// Settling and restart probing.
const (
	// idleWindow is the span over which the server's CPU use is measured
	// to decide that it is idle, and idleShare the share of one core below
	// which it is.
	idleWindow = time.Second
	idleShare  = 0.05
	// settleTimeout bounds the wait for the server to become idle after
	// the load; the memory is read anyway after it.
	settleTimeout = 30 * time.Second
	// healthPoll spaces the /health probes after a restart: the
	// resolution of the restart figure.
	healthPoll = 10 * time.Millisecond
	// probeTimeout bounds each Get that probes a restarted server.
	probeTimeout = time.Second
)

// phaseTimeout bounds each phase of a run (the load, each full list, the
// restart, the snapshot save, the restore): loadTimeout(Keys).
func (s *Dataset) phaseTimeout() time.Duration { return loadTimeout(s.Keys) }

// keyNamer names the keys of a data set of n keys.
type keyNamer struct {
	prefix            string
	nsWidth, podWidth int
}

func newKeyNamer(prefix string, n int) keyNamer {
	last := max(n-1, 0)
	return keyNamer{
		prefix:   prefix,
		nsWidth:  len(strconv.Itoa(last / 1000)),
		podWidth: len(strconv.Itoa(last)),
	}
}

// key is the i-th key: prefix + "ns-<i/1000>/pod-<i>", zero-padded.
func (k keyNamer) key(i int) string {
	return fmt.Sprintf("%sns-%0*d/pod-%0*d", k.prefix, k.nsWidth, i/1000, k.podWidth, i)
}

// RunCluster implements harness.ClusterScenario.
func (s *Dataset) RunCluster(ctx context.Context, kind proc.Kind, bin, dir string, serverArgs []string, run *report.Run, progress *harness.Progress) (err error) {
	c, err := startBenchCluster(ctx, kind, bin, dir, s.Members, serverArgs, progress)
	if err != nil {
		return err
	}
	defer c.stop(&err)

	// The memory figures of the leader's process are added before the
	// restart's, or on the way out if the run ends earlier.
	mem := c.leaderMemoryLog()
	flushMemory := func() {
		if mem != nil {
			mem.finish(run, &err)
			mem = nil
		}
	}
	defer flushMemory()
	if err := mem.begin(ctx); err != nil {
		return err
	}

	clients, err := c.dialSpread(s.LoadConns, c.leaderFirst())
	if err != nil {
		return err
	}
	defer func() { closeAll(clients) }()
	c.addLeaderShare(run, s.LoadConns, false)
	names := newKeyNamer(s.KeyPrefix, s.Keys)

	// 1. Load.
	mem.startSampling()
	cpu, err := c.startCPU()
	if err != nil {
		return err
	}
	loaded := s.load(ctx, clients, names, run, progress)
	if err := cpu.stop().addTo(run, "during load"); err != nil {
		return err
	}
	if err := mem.stopSampling(); err != nil {
		return err
	}
	if !loaded {
		return ctx.Err()
	}

	// 2. Settle, then the memory and the data dir with every key.
	waited, idle, err := settle(ctx, c.Members)
	if err != nil {
		return err
	}
	run.AddDuration("settle time after load (until CPU idle)", waited)
	if !idle {
		progress.Printf("still busy %v after the load; reading the memory anyway", settleTimeout)
	}
	if err := mem.read(ctx, "after loading the keys"); err != nil {
		return err
	}
	if err := c.addLeaderDataDirFigures(run, "after loading the keys"); err != nil {
		return err
	}
	progress.Printf("loaded: data dir %s", c.leader.DataDir)

	// 3. Paginated lists.
	if s.ListRounds > 0 {
		cpu, err := c.startCPU()
		if err != nil {
			return err
		}
		listed := s.list(ctx, clients[0], run, progress)
		if err := cpu.stop().addTo(run, "during the lists"); err != nil {
			return err
		}
		if err := mem.read(ctx, "after the lists"); err != nil {
			return err
		}
		if !listed {
			return ctx.Err()
		}
	}
	flushMemory()
	if err != nil {
		return err
	}
	closeAll(clients)
	clients = nil

	// 4. Restart.
	if !s.SkipRestart {
		if ok, err := s.restart(ctx, c, names, run, progress); err != nil || !ok {
			return err
		}
	}

	// 5. Snapshot save and restore.
	if !s.SkipSnapshot {
		return s.snapshot(ctx, kind, c.leader, dir, run, progress)
	}
	return nil
}

// datasetValueSeed seeds the values of the data set; loader g draws
// stream g.
const datasetValueSeed = 0x6b65656c

// load puts every key, Batch keys per request, from LoadClients workers, and
// records the load figures. It reports false, after recording the failure in
// run, when a request failed (the first failure stops the load).
func (s *Dataset) load(parent context.Context, clients []*clientv3.Client, names keyNamer, run *report.Run, progress *harness.Progress) bool {
	timeout := s.phaseTimeout()
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	batches := (s.Keys + s.Batch - 1) / s.Batch
	type loader struct {
		values *valueGen
		ops    []clientv3.Op
		lat    *latencyShard
	}
	var (
		lat      latencies
		ok, done atomic.Int64
		loaders  = make([]loader, min(s.LoadClients, batches))
	)
	for g := range loaders {
		loaders[g] = loader{values: newValueGen(datasetValueSeed, uint64(g)), ops: make([]clientv3.Op, 0, s.Batch), lat: lat.shard()}
	}
	progress.Printf("loading %d keys of %d bytes, %d per request, %d workers on %d connections", s.Keys, s.ValueSize, s.Batch, s.LoadClients, len(clients))
	start := time.Now()
	stopProgress := every(progressInterval, func() {
		n := done.Load()
		progress.Printf("loaded %d of %d keys (%.0f keys/s)", n, s.Keys, float64(n)/time.Since(start).Seconds())
	})
	failed, err := runPool(ctx, batches, len(loaders), func(ctx context.Context, g, b int) error {
		l := &loaders[g]
		l.ops = l.ops[:0]
		for i := b * s.Batch; i < min((b+1)*s.Batch, s.Keys); i++ {
			l.ops = append(l.ops, clientv3.OpPut(names.key(i), l.values.value(s.ValueSize)))
		}
		cli := clients[g%len(clients)]
		rctx, rcancel := context.WithTimeout(ctx, requestTimeout)
		defer rcancel()
		t0 := time.Now()
		var err error
		if len(l.ops) == 1 {
			_, err = cli.Do(rctx, l.ops[0])
		} else {
			var resp *clientv3.TxnResponse
			resp, err = cli.Txn(rctx).Then(l.ops...).Commit()
			if err == nil && !resp.Succeeded {
				err = errors.New("a txn without conditions did not succeed")
			}
		}
		if err != nil {
			return fmt.Errorf("load keys %s...: %w", names.key(b*s.Batch), err)
		}
		l.lat.add(time.Since(t0))
		ok.Add(1)
		done.Add(int64(len(l.ops)))
		return nil
	})
	took := time.Since(start)
	stopProgress()

	run.Add("load requests ok", report.Count, float64(ok.Load()))
	run.Add("load requests failed", report.Count, float64(failed))
	addLatencyFigures(run, "load", lat.merge())
	switch {
	case parent.Err() != nil:
		return false // interrupted: the caller returns its context's error
	case failed > 0:
		run.Failf("%d load request(s) failed; the first: %v", failed, err)
		return false
	case err != nil:
		run.Failf("loaded %d of %d keys within %v: %v", done.Load(), s.Keys, timeout, err)
		return false
	}
	run.Add("load throughput", report.Rate, float64(s.Keys)/took.Seconds())
	run.AddDuration("load time", took)
	progress.Printf("loaded %d keys in %v", s.Keys, took.Round(time.Millisecond))
	return true
}

// settle waits until every member's CPU use is below idleShare over an
// idleWindow, for at most settleTimeout in all, and returns how long it
// waited and whether all became idle.
func settle(ctx context.Context, members []*proc.Member) (time.Duration, bool, error) {
	start := time.Now()
	deadline := start.Add(settleTimeout)
	for _, m := range members {
		idle, err := waitIdle(ctx, m.Pid(), deadline)
		if err != nil || !idle {
			return time.Since(start), false, err
		}
	}
	return time.Since(start), true, nil
}

// waitIdle measures pid's CPU time over successive idleWindows until one
// shows less than idleShare of a core, or the deadline passes.
func waitIdle(ctx context.Context, pid int, deadline time.Time) (bool, error) {
	for time.Now().Before(deadline) {
		c0, err := proc.ReadCPU(pid)
		if err != nil {
			return false, err
		}
		t0 := time.Now()
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(idleWindow):
		}
		c1, err := proc.ReadCPU(pid)
		if err != nil {
			return false, err
		}
		if float64(c1-c0) < idleShare*float64(time.Since(t0)) {
			return true, nil
		}
	}
	return false, nil
}

// list runs ListRounds full lists on one connection, one after the other
// (as one API server lists), checks that each returns every key, and
// records the list figures. It reports false, after recording the failure,
// when a list failed.
func (s *Dataset) list(ctx context.Context, cli *clientv3.Client, run *report.Run, progress *harness.Progress) bool {
	var (
		lat      latencies
		shard    = lat.shard()
		times    []time.Duration
		total    time.Duration
		pages    int
		failure  error
		maxPages = s.Keys/s.PageSize + 2
	)
	for round := range s.ListRounds {
		lctx, cancel := context.WithTimeout(ctx, s.phaseTimeout())
		t0 := time.Now()
		res, err := listAll(lctx, cli, s.KeyPrefix, s.PageSize, maxPages, shard)
		took := time.Since(t0)
		cancel()
		if err == nil && (res.keys != s.Keys || res.count != int64(s.Keys)) {
			err = fmt.Errorf("list %d returned %d keys, and its first page counted %d, of the %d loaded", round+1, res.keys, res.count, s.Keys)
		}
		if err != nil {
			if ctx.Err() != nil {
				return false // interrupted: the caller returns its context's error
			}
			failure = err
			break
		}
		times = append(times, took)
		total += took
		pages = res.pages
		progress.Printf("list %d: %d keys in %d pages in %v", round+1, res.keys, res.pages, took.Round(time.Millisecond))
	}
	sorted := lat.merge()
	run.Add("list page requests ok", report.Count, float64(len(sorted)))
	failed := 0
	if failure != nil {
		failed = 1
	}
	run.Add("list page requests failed", report.Count, float64(failed))
	addLatencyFigures(run, "list page", sorted)
	if failure != nil {
		run.Failf("%v", failure)
		return false
	}
	run.Add("list pages per full list", report.Count, float64(pages))
	run.Add("list throughput", report.Rate, float64(s.Keys*len(times))/total.Seconds())
	slices.Sort(times)
	run.AddDuration("full list time", times[len(times)/2])
	return true
}

// restart stops every member (SIGTERM), starts them all again from their
// data dirs, and records how long until /health is ok on every member and
// until a linearizable Get succeeds, then finds the leader again and
// records its memory. It reports false, after recording the failure, when a
// member had exited before the restart or the cluster did not come back
// with every key.
func (s *Dataset) restart(ctx context.Context, c *benchCluster, names keyNamer, run *report.Run, progress *harness.Progress) (bool, error) {
	// Stop does nothing to a member that has exited: it would be
	// relaunched as if it had been stopped.
	for _, m := range c.Members {
		if exited, err := m.Exited(); exited {
			run.Failf("%s %s exited before the restart: %v (server log: %s)", c.kind, m.Name, err, m.LogPath)
			return false, nil
		}
	}
	t0 := time.Now()
	for _, m := range c.Members {
		if err := m.Stop(); err != nil {
			run.Failf("stop before the restart: %v", err)
			return false, nil
		}
	}
	run.AddDuration("stop: SIGTERM until exit", time.Since(t0))

	var launched time.Time
	for i, m := range c.Members {
		at, err := m.Launch()
		if err != nil {
			return false, err
		}
		if i == 0 {
			launched = at
		}
	}
	var healthy time.Time
	for _, m := range c.Members {
		at, err := proc.WaitHealthy(ctx, m.Endpoint, m.Done(), healthPoll, s.phaseTimeout())
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		if err != nil {
			run.Failf("after the restart: %v (server log: %s)", err, m.LogPath)
			return false, nil
		}
		healthy = later(healthy, at)
	}
	run.AddDuration("restart until /health ok", healthy.Sub(launched))
	progress.Printf("restarted: /health ok after %v", healthy.Sub(launched).Round(time.Millisecond))

	cli, err := c.dial(c.Endpoints()...)
	if err != nil {
		return false, err
	}
	defer cli.Close()
	got, err := firstGet(ctx, cli, names.key(0), launched.Add(s.phaseTimeout()))
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		run.Failf("after the restart: %v", err)
		return false, nil
	}
	run.AddDuration("restart until first linearizable get", got.Sub(launched))

	for _, m := range c.Members {
		if err := m.WaitServing(ctx, c.PeerURLs()); err != nil {
			run.Failf("after the restart: %v", err)
			return false, nil
		}
	}
	cctx, cancel := context.WithTimeout(ctx, s.phaseTimeout())
	resp, err := cli.Get(cctx, s.KeyPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	cancel()
	switch {
	case err != nil:
		run.Failf("count the keys after the restart: %v", err)
		return false, nil
	case resp.Count != int64(s.Keys):
		run.Failf("%d keys after the restart, %d before", resp.Count, s.Keys)
		return false, nil
	}

	if err := c.findLeader(ctx); err != nil {
		run.Failf("after the restart: %v", err)
		return false, nil
	}
	progress.Printf("leader after the restart: %s (pid %d)", c.leader.Name, c.leader.Pid())
	if _, idle, err := settle(ctx, c.Members); err != nil {
		return false, err
	} else if !idle {
		progress.Printf("still busy %v after the restart; reading the memory anyway", settleTimeout)
	}
	m, err := proc.ReadMemory(c.leader.Pid())
	if err != nil {
		return false, fmt.Errorf("read server memory after restart: %w", err)
	}
	run.Add("server RSS after restart", report.Bytes, float64(m.RSS))
	run.Add("server RssAnon after restart", report.Bytes, float64(m.Anon))
	run.Add("server VmHWM after restart (peak RSS since the restart)", report.Bytes, float64(m.HWM))
	return true, nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// firstGet retries a linearizable Get of key, each bounded by probeTimeout,
// until one returns the key, and returns the instant it did. It fails when
// the deadline passes or the key is not there.
func firstGet(ctx context.Context, cli *clientv3.Client, key string, deadline time.Time) (time.Time, error) {
	for {
		gctx, cancel := context.WithTimeout(ctx, probeTimeout)
		resp, err := cli.Get(gctx, key)
		cancel()
		if err == nil {
			if resp.Count != 1 {
				return time.Time{}, fmt.Errorf("key %q is gone", key)
			}
			return time.Now(), nil
		}
		if ctx.Err() != nil {
			return time.Time{}, ctx.Err()
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("no linearizable get succeeded by the deadline: %w", err)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(healthPoll):
		}
	}
}

// snapshot saves a snapshot of member m (the leader) through
// Maintenance.Snapshot into dir, and for etcd restores it with etcdutl into
// a new data dir; both files are removed afterwards (they are as large as
// the data). A server without Maintenance.Snapshot gets the figures missing.
func (s *Dataset) snapshot(ctx context.Context, kind proc.Kind, m *proc.Member, dir string, run *report.Run, progress *harness.Progress) error {
	file := filepath.Join(dir, "snapshot.db")
	defer os.Remove(file)
	size, took, err := s.saveSnapshot(ctx, m.Endpoint, file)
	if status.Code(err) == codes.Unimplemented {
		progress.Printf("%s has no Maintenance.Snapshot yet (issue 8): %v", kind, err)
		for _, name := range []string{"snapshot size", "snapshot save time", snapshotSaveRate, "snapshot restore time", snapshotRestoreRate} {
			run.AddMissing(name, snapshotUnit(name))
		}
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		run.Failf("snapshot save: %v", err)
		return nil
	}
	run.Add("snapshot size", report.Bytes, float64(size))
	run.AddDuration("snapshot save time", took)
	run.Add(snapshotSaveRate, report.Bytes, float64(size)/took.Seconds())
	progress.Printf("snapshot saved: %s in %v", mib(size), took.Round(time.Millisecond))

	if kind != proc.Etcd {
		progress.Printf("%s has no snapshot restore yet (keelctl snapshot restore arrives with issue 8)", kind)
		run.AddMissing("snapshot restore time", report.Seconds)
		run.AddMissing(snapshotRestoreRate, report.Bytes)
		return nil
	}
	if s.EtcdutlBin == "" {
		progress.Printf("building etcdutl")
		bin, err := proc.BuildEtcdutl(ctx, filepath.Join(filepath.Dir(dir), "bin"))
		if err != nil {
			return err
		}
		s.EtcdutlBin = bin
	}
	restored := filepath.Join(dir, "restored.data")
	defer os.RemoveAll(restored)
	rctx, cancel := context.WithTimeout(ctx, s.phaseTimeout())
	defer cancel()
	t0 := time.Now()
	if err := proc.RestoreSnapshot(rctx, s.EtcdutlBin, file, restored); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		run.Failf("snapshot restore: %v", err)
		return nil
	}
	took = time.Since(t0)
	run.AddDuration("snapshot restore time", took)
	run.Add(snapshotRestoreRate, report.Bytes, float64(size)/took.Seconds())
	progress.Printf("snapshot restored in %v", took.Round(time.Millisecond))
	return nil
}

// The snapshot throughputs: bytes per second, in report.Bytes so that the
// tables and charts show them in MiB with a decimal.
const (
	snapshotSaveRate    = "snapshot saved per second"
	snapshotRestoreRate = "snapshot restored per second"
)

func snapshotUnit(name string) report.Unit {
	switch name {
	case "snapshot size", snapshotSaveRate, snapshotRestoreRate:
		return report.Bytes
	}
	return report.Seconds
}

// saveSnapshot streams a snapshot from endpoint into file and syncs it, as
// `etcdctl snapshot save` does, and returns its size and the time from the
// request to the synced file.
func (s *Dataset) saveSnapshot(ctx context.Context, endpoint, file string) (int64, time.Duration, error) {
	cli, err := dial(endpoint)
	if err != nil {
		return 0, 0, err
	}
	defer cli.Close()
	f, err := os.Create(file)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sctx, cancel := context.WithTimeout(ctx, s.phaseTimeout())
	defer cancel()
	t0 := time.Now()
	resp, err := cli.SnapshotWithVersion(sctx)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Snapshot.Close()
	n, err := io.Copy(f, resp.Snapshot)
	if err != nil {
		return n, 0, err
	}
	if err := f.Sync(); err != nil {
		return n, 0, err
	}
	return n, time.Since(t0), nil
}
