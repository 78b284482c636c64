package scenario

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
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
// Each run starts a fresh cluster of Members members (1 by default). With
// more than one member, the memory and data dir figures are the first
// member's, and the restart stops and starts every member (a lone member
// cannot serve /health without a quorum).
//
// Keys are <KeyPrefix>ns-<i/1000>/pod-<i> for i in [0, Keys), the numbers
// zero-padded so that the keys sort in the order of i. Values are ValueSize
// random bytes: incompressible, so a store that compresses its blocks (keel's
// Pebble) gains nothing from them, where real Kubernetes objects would let it
// gain something.
//
// Every phase is bounded by phaseTimeout, which grows with Keys.
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
// restart, the snapshot save, the restore): one minute plus 0.5 ms per key,
// about 9 minutes for a million keys.
func (s *Dataset) phaseTimeout() time.Duration {
	return time.Minute + time.Duration(s.Keys)*500*time.Microsecond
}

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
	progress.Printf("starting %d member(s) of %s", s.Members, bin)
	c, err := proc.StartCluster(ctx, kind, bin, dir, s.Members, serverArgs)
	if err != nil {
		return err
	}
	defer func() {
		if serr := c.Stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	first := c.Members[0]
	progress.Printf("serving at %v (first member pid %d, data dir %s)", c.Endpoints(), first.Pid(), first.DataDir)

	// The memory figures of the first process are added before the
	// restart's, or on the way out if the run ends earlier.
	mem := newMemoryLogOf(first.Pid(), first.Endpoint)
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

	clients := make([]*clientv3.Client, s.LoadConns)
	defer closeAll(clients)
	for i := range clients {
		clients[i], err = clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: proc.DialTimeout, Logger: zap.NewNop()})
		if err != nil {
			return fmt.Errorf("connect client: %w", err)
		}
	}
	names := newKeyNamer(s.KeyPrefix, s.Keys)

	// 1. Load.
	mem.startSampling()
	cpu, err := startCPU(first.Pid())
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
	if err := addDataDirFigures(run, first.DataDir, "after loading the keys"); err != nil {
		return err
	}
	progress.Printf("loaded: data dir %s", first.DataDir)

	// 3. Paginated lists.
	if s.ListRounds > 0 {
		cpu, err := startCPU(first.Pid())
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
	clear(clients)

	// 4. Restart.
	if !s.SkipRestart {
		if ok, err := s.restart(ctx, c, names, run, progress); err != nil || !ok {
			return err
		}
	}

	// 5. Snapshot save and restore.
	if !s.SkipSnapshot {
		return s.snapshot(ctx, kind, first, dir, run, progress)
	}
	return nil
}

// load puts every key, Batch keys per request, from LoadClients workers, and
// records the load figures. It reports false, after recording the failure in
// run, when a request failed (the first failure stops the load).
func (s *Dataset) load(parent context.Context, clients []*clientv3.Client, names keyNamer, run *report.Run, progress *harness.Progress) bool {
	ctx, cancel := context.WithTimeout(parent, s.phaseTimeout())
	defer cancel()
	batches := (s.Keys + s.Batch - 1) / s.Batch
	var (
		next, done, ok, failed atomic.Int64
		firstErr               error
		errOnce                sync.Once
		lat                    latencies
		wg                     sync.WaitGroup
	)
	fail := func(err error) {
		failed.Add(1)
		errOnce.Do(func() {
			firstErr = err
			cancel()
		})
	}
	progress.Printf("loading %d keys of %d bytes, %d per request, %d workers on %d connections", s.Keys, s.ValueSize, s.Batch, s.LoadClients, len(clients))
	start := time.Now()
	for w := range s.LoadClients {
		cli := clients[w%len(clients)]
		shard := lat.shard()
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 0x6b65656c))
			value := make([]byte, s.ValueSize)
			ops := make([]clientv3.Op, 0, s.Batch)
			for ctx.Err() == nil {
				b := int(next.Add(1) - 1)
				if b >= batches {
					return
				}
				ops = ops[:0]
				for i := b * s.Batch; i < min((b+1)*s.Batch, s.Keys); i++ {
					fillRandom(rng, value)
					ops = append(ops, clientv3.OpPut(names.key(i), string(value)))
				}
				rctx, rcancel := context.WithTimeout(ctx, requestTimeout)
				t0 := time.Now()
				var err error
				if len(ops) == 1 {
					_, err = cli.Do(rctx, ops[0])
				} else {
					var resp *clientv3.TxnResponse
					resp, err = cli.Txn(rctx).Then(ops...).Commit()
					if err == nil && !resp.Succeeded {
						err = errors.New("a txn without conditions did not succeed")
					}
				}
				rcancel()
				if err != nil && errors.Is(err, context.Canceled) && ctx.Err() != nil {
					return // stopped by another worker's failure or by the caller
				}
				if err != nil {
					fail(fmt.Errorf("load keys %s...: %w", names.key(b*s.Batch), err))
					return
				}
				shard.add(time.Since(t0))
				ok.Add(1)
				done.Add(int64(len(ops)))
			}
		})
	}
	stopProgress := make(chan struct{})
	var pwg sync.WaitGroup
	pwg.Go(func() {
		t := time.NewTicker(progressInterval)
		defer t.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-t.C:
				n := done.Load()
				progress.Printf("loaded %d of %d keys (%.0f keys/s)", n, s.Keys, float64(n)/time.Since(start).Seconds())
			}
		}
	})
	finished := waitGroupTimeout(&wg, s.phaseTimeout()+drainTimeout)
	took := time.Since(start)
	close(stopProgress)
	pwg.Wait()

	if !finished {
		run.Failf("the loaders did not stop within %v of the load's deadline", drainTimeout)
		return false
	}
	run.Add("load requests ok", report.Count, float64(ok.Load()))
	run.Add("load requests failed", report.Count, float64(failed.Load()))
	addLatencyFigures(run, "load", lat.merge())
	switch {
	case parent.Err() != nil:
		return false // interrupted: the caller returns its context's error
	case firstErr != nil:
		if errors.Is(firstErr, context.DeadlineExceeded) && done.Load() < int64(s.Keys) {
			run.Failf("loaded %d of %d keys within %v: %v", done.Load(), s.Keys, s.phaseTimeout(), firstErr)
		} else {
			run.Failf("%d load request(s) failed; the first: %v", failed.Load(), firstErr)
		}
		return false
	case ctx.Err() != nil:
		run.Failf("loaded %d of %d keys within %v", done.Load(), s.Keys, s.phaseTimeout())
		return false
	}
	run.Add("load throughput", report.Rate, float64(s.Keys)/took.Seconds())
	run.AddDuration("load time", took)
	progress.Printf("loaded %d keys in %v", s.Keys, took.Round(time.Millisecond))
	return true
}

// fillRandom fills b with random bytes.
func fillRandom(rng *rand.Rand, b []byte) {
	for i := 0; i < len(b); i += 8 {
		v := rng.Uint64()
		for j := i; j < min(i+8, len(b)); j++ {
			b[j] = byte(v)
			v >>= 8
		}
	}
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

// addDataDirFigures records the data dir's allocated size (as du counts it,
// the figure to compare) and its apparent size (the files' lengths; they
// differ when a server preallocates files).
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

// getter is the part of clientv3.KV that a list uses.
type getter interface {
	Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error)
}

// listResult is what one full paginated list returned.
type listResult struct {
	keys, pages int
	// count is the first page's Count: the number of keys in the whole
	// range at its revision, whatever the limit.
	count int64
}

// listAll lists every key under prefix the way a Kubernetes list pages
// through etcd: the first page is a linearizable Get with a limit; each
// following page starts just after the last key returned, at the first
// page's revision, so that the pages together are one consistent view.
// Every page's latency goes to lat. It fails when a page is out of order or
// the server keeps answering More with empty pages; at most maxPages pages
// are requested.
func listAll(ctx context.Context, kv getter, prefix string, pageSize, maxPages int, lat *latencyShard) (listResult, error) {
	var res listResult
	end := clientv3.GetPrefixRangeEnd(prefix)
	key, rev, last := prefix, int64(0), ""
	for res.pages < maxPages {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(int64(pageSize))}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		t0 := time.Now()
		resp, err := kv.Get(rctx, key, opts...)
		d := time.Since(t0)
		cancel()
		if err != nil {
			return res, fmt.Errorf("list page %d from %q: %w", res.pages+1, key, err)
		}
		lat.add(d)
		if res.pages == 0 {
			rev, res.count = resp.Header.Revision, resp.Count
		}
		res.pages++
		for _, kv := range resp.Kvs {
			if k := string(kv.Key); k <= last {
				return res, fmt.Errorf("list page %d: key %q after %q", res.pages, k, last)
			}
			last = string(kv.Key)
		}
		res.keys += len(resp.Kvs)
		if !resp.More {
			return res, nil
		}
		if len(resp.Kvs) == 0 {
			return res, fmt.Errorf("list page %d: no keys but More", res.pages)
		}
		key = last + "\x00"
	}
	return res, fmt.Errorf("list did not end after %d pages", maxPages)
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
// until a linearizable Get succeeds, then the first member's memory. It
// reports false, after recording the failure, when the cluster did not come
// back with every key.
func (s *Dataset) restart(ctx context.Context, c *proc.Cluster, names keyNamer, run *report.Run, progress *harness.Progress) (bool, error) {
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

	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: proc.DialTimeout, Logger: zap.NewNop()})
	if err != nil {
		return false, fmt.Errorf("connect client: %w", err)
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

	first := c.Members[0]
	if _, idle, err := settle(ctx, c.Members); err != nil {
		return false, err
	} else if !idle {
		progress.Printf("still busy %v after the restart; reading the memory anyway", settleTimeout)
	}
	m, err := proc.ReadMemory(first.Pid())
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

// snapshot saves a snapshot of the first member through
// Maintenance.Snapshot into dir, and for etcd restores it with etcdutl into
// a new data dir; both files are removed afterwards (they are as large as
// the data). A server without Maintenance.Snapshot gets the figures missing.
func (s *Dataset) snapshot(ctx context.Context, kind proc.Kind, m *proc.Member, dir string, run *report.Run, progress *harness.Progress) error {
	file := filepath.Join(dir, "snapshot.db")
	defer os.Remove(file)
	size, took, err := s.saveSnapshot(ctx, m.Endpoint, file)
	if status.Code(err) == codes.Unimplemented {
		progress.Printf("%s has no Maintenance.Snapshot yet (issue 8): %v", kind, err)
		for _, name := range []string{"snapshot size", "snapshot save time", "snapshot save throughput", "snapshot restore time", "snapshot restore throughput"} {
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
	run.Add("snapshot save throughput", report.Rate, float64(size)/(1<<20)/took.Seconds())
	progress.Printf("snapshot saved: %s in %v", mib(size), took.Round(time.Millisecond))

	if kind != proc.Etcd {
		progress.Printf("%s has no snapshot restore yet (keelctl snapshot restore arrives with issue 8)", kind)
		run.AddMissing("snapshot restore time", report.Seconds)
		run.AddMissing("snapshot restore throughput", report.Rate)
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
	run.Add("snapshot restore throughput", report.Rate, float64(size)/(1<<20)/took.Seconds())
	progress.Printf("snapshot restored in %v", took.Round(time.Millisecond))
	return nil
}

func snapshotUnit(name string) report.Unit {
	switch name {
	case "snapshot size":
		return report.Bytes
	case "snapshot save throughput", "snapshot restore throughput":
		return report.Rate
	}
	return report.Seconds
}

// saveSnapshot streams a snapshot from endpoint into file and syncs it, as
// `etcdctl snapshot save` does, and returns its size and the time from the
// request to the synced file.
func (s *Dataset) saveSnapshot(ctx context.Context, endpoint, file string) (int64, time.Duration, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: proc.DialTimeout, Logger: zap.NewNop()})
	if err != nil {
		return 0, 0, fmt.Errorf("connect client: %w", err)
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
