package scenario

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keeldb/keel/bench/internal/harness"
	"github.com/keeldb/keel/bench/internal/proc"
	"github.com/keeldb/keel/bench/internal/report"
)

// KVLoad is the closed-loop load engine of the put, range and txn-put
// scenarios, modelled on etcd's benchmark tool. Each run starts a fresh
// cluster of Members members, opens Conns client connections and runs
// Clients goroutines; goroutine i sends on connection i mod Conns, one
// request at a time, each bounded by requestTimeout. Connection j talks to
// member j mod Members, counting from the leader (see leaderFirst). The
// requests of the first Warmup are not measured; the next Duration is the
// measured window. Throughput is the requests that succeeded within the
// window divided by its length, and the latencies are those of the same
// requests (see windowTally). The per-server figures are the leader's.
type KVLoad struct {
	Members int
	Clients int
	Conns   int
	// Duration is the measured window; Warmup precedes it.
	Duration time.Duration
	Warmup   time.Duration
	// TargetLeader puts every connection on the leader; otherwise the
	// connections go round-robin over the members' endpoints, the
	// leader's first.
	TargetLeader bool
	// KeySize is the length of every key in bytes: a zero-padded decimal
	// key number.
	KeySize int
	// ValueSize is the length of every value in bytes. Every value is
	// fresh random bytes, so neither server gains by compressing values.
	ValueSize int
	// CPUProfile saves the leader's CPU profile over the measured window
	// to <run dir>/cpu.pprof; HeapProfile saves its heap profile after
	// the load to <run dir>/heap.pprof. Either starts every member with
	// --enable-pprof.
	CPUProfile  bool
	HeapProfile bool
	// Security is TLS and auth for the cluster and the clients.
	Security Security
}

// Validate checks the parameters every KV scenario shares.
func (l KVLoad) Validate() error {
	switch {
	case l.Members < 1:
		return errors.New("-members must be at least 1")
	case l.Conns < 1 || l.Clients < l.Conns:
		return errors.New("-conns must be at least 1 and -clients at least -conns")
	case l.Duration <= 0:
		return errors.New("-duration must be positive")
	case l.Warmup < 0:
		return errors.New("-warmup must not be negative")
	case l.KeySize < 1:
		return errors.New("-key-size must be at least 1")
	case l.ValueSize < 0:
		return errors.New("-val-size must not be negative")
	}
	return l.Security.Validate()
}

// validateKeys checks that keys numbered 0 to n-1 fit in KeySize digits.
func (l KVLoad) validateKeys(n int, flag string) error {
	if n < 1 {
		return fmt.Errorf("%s must be at least 1", flag)
	}
	if l.KeySize < 19 && uint64(n-1) >= pow10(l.KeySize) {
		return fmt.Errorf("%s %d needs keys longer than -key-size %d (key numbers are decimal)", flag, n, l.KeySize)
	}
	return nil
}

func pow10(n int) uint64 {
	p := uint64(1)
	for range n {
		p *= 10
	}
	return p
}

// KVPut puts one key per request: request n writes key number
// n mod KeySpace, like etcd's `benchmark put` with sequential keys.
type KVPut struct {
	KVLoad
	KeySpace int
}

// Name implements harness.Named.
func (KVPut) Name() string { return "put" }

// Validate checks the parameters.
func (s KVPut) Validate() error {
	if err := s.KVLoad.Validate(); err != nil {
		return err
	}
	return s.validateKeys(s.KeySpace, "-key-space")
}

// RunCluster implements harness.ClusterScenario.
func (s KVPut) RunCluster(ctx context.Context, kind proc.Kind, bin, dir string, serverArgs []string, run *report.Run, progress *harness.Progress) error {
	space := uint64(s.KeySpace)
	return s.run(ctx, kind, bin, dir, serverArgs, run, progress, kvOp{
		name: "put",
		request: func(ctx context.Context, cli *clientv3.Client, n uint64, w *kvWorker) error {
			_, err := cli.Put(ctx, w.key(n%space), w.value())
			return err
		},
	})
}

// KVRange gets one key per request out of Prefill keys written before the
// load (request n reads key number n mod Prefill), linearizable or, when
// Serializable, served from the member's local state, like etcd's
// `benchmark range --consistency`.
type KVRange struct {
	KVLoad
	Prefill      int
	Serializable bool
}

// Name implements harness.Named.
func (KVRange) Name() string { return "range" }

// Validate checks the parameters.
func (s KVRange) Validate() error {
	if err := s.KVLoad.Validate(); err != nil {
		return err
	}
	return s.validateKeys(s.Prefill, "-prefill")
}

// RunCluster implements harness.ClusterScenario.
func (s KVRange) RunCluster(ctx context.Context, kind proc.Kind, bin, dir string, serverArgs []string, run *report.Run, progress *harness.Progress) error {
	space := uint64(s.Prefill)
	var opts []clientv3.OpOption
	consistency := "linearizable"
	if s.Serializable {
		opts = append(opts, clientv3.WithSerializable())
		consistency = "serializable"
	}
	return s.run(ctx, kind, bin, dir, serverArgs, run, progress, kvOp{
		name:  "range",
		about: consistency,
		prepare: func(ctx context.Context, clis []*clientv3.Client, progress *harness.Progress) error {
			return s.prefill(ctx, clis, s.Prefill, progress)
		},
		request: func(ctx context.Context, cli *clientv3.Client, n uint64, w *kvWorker) error {
			key := w.key(n % space)
			resp, err := cli.Get(ctx, key, opts...)
			if err != nil {
				return err
			}
			if len(resp.Kvs) != 1 {
				return fmt.Errorf("get %q: %d keys, want the 1 prefilled", key, len(resp.Kvs))
			}
			return nil
		},
	})
}

// KVTxnPut sends one transaction per request: no compares and Ops puts of
// distinct keys (request n writes key numbers n*Ops to n*Ops+Ops-1, each
// mod KeySpace), like etcd's `benchmark txn-put`.
type KVTxnPut struct {
	KVLoad
	KeySpace int
	Ops      int
}

// Name implements harness.Named.
func (KVTxnPut) Name() string { return "txn-put" }

// Validate checks the parameters.
func (s KVTxnPut) Validate() error {
	if err := s.KVLoad.Validate(); err != nil {
		return err
	}
	if s.Ops < 1 || s.Ops > s.KeySpace {
		return errors.New("-txn-ops must be at least 1 and at most -key-space (the keys of a txn are distinct)")
	}
	return s.validateKeys(s.KeySpace, "-key-space")
}

// RunCluster implements harness.ClusterScenario.
func (s KVTxnPut) RunCluster(ctx context.Context, kind proc.Kind, bin, dir string, serverArgs []string, run *report.Run, progress *harness.Progress) error {
	space, ops := uint64(s.KeySpace), uint64(s.Ops)
	return s.run(ctx, kind, bin, dir, serverArgs, run, progress, kvOp{
		name: "txn-put",
		request: func(ctx context.Context, cli *clientv3.Client, n uint64, w *kvWorker) error {
			puts := make([]clientv3.Op, ops)
			for j := range ops {
				puts[j] = clientv3.OpPut(w.key(txnKey(n, j, ops, space)), w.value())
			}
			resp, err := cli.Txn(ctx).Then(puts...).Commit()
			if err != nil {
				return err
			}
			if !resp.Succeeded {
				return errors.New("txn without compares did not succeed")
			}
			return nil
		},
	})
}

// txnKey is the key number of the j-th of the ops puts of request n. The
// ops keys of one request are distinct when ops <= space.
func txnKey(n, j, ops, space uint64) uint64 { return (n*ops + j) % space }

// kvOp is what one KV scenario asks of the engine.
type kvOp struct {
	// name is the op in the figure names: "<name> throughput" etc.
	name string
	// about qualifies the op in progress lines (e.g. "serializable").
	about string
	// prepare, if set, runs before the load, on every connection; it is
	// not measured.
	prepare func(ctx context.Context, clis []*clientv3.Client, progress *harness.Progress) error
	// request sends request number n on cli. It is called from many
	// goroutines at once, each with its own worker.
	request func(ctx context.Context, cli *clientv3.Client, n uint64, w *kvWorker) error
}

// kvWorker is one load goroutine's state: its key and value buffers and
// its tally. Only its goroutine uses it until the load has stopped.
type kvWorker struct {
	keySize   int
	keyBuf    []byte
	values    *valueGen
	valueSize int
	tally     windowTally
}

// kvValueSeed seeds the values of the KV scenarios; worker i draws stream i.
const kvValueSeed = 0x6b76

func newKVWorker(id, keySize, valueSize int, lat *latencyShard) *kvWorker {
	return &kvWorker{
		keySize:   keySize,
		keyBuf:    make([]byte, 0, max(keySize, 20)),
		values:    newValueGen(kvValueSeed, uint64(id)),
		valueSize: valueSize,
		tally:     windowTally{lat: lat},
	}
}

// key is key number n: n in decimal, zero-padded to keySize bytes.
func (w *kvWorker) key(n uint64) string {
	w.keyBuf = appendKey(w.keyBuf[:0], n, w.keySize)
	return string(w.keyBuf)
}

// appendKey appends n in decimal, zero-padded on the left to size bytes
// (longer if n needs more digits; Validate prevents that).
func appendKey(dst []byte, n uint64, size int) []byte {
	var digits [20]byte
	d := strconv.AppendUint(digits[:0], n, 10)
	for range size - len(d) {
		dst = append(dst, '0')
	}
	return append(dst, d...)
}

// value is ValueSize fresh random bytes.
func (w *kvWorker) value() string { return w.values.value(w.valueSize) }

// loop sends requests on cli until the window ends or ctx is done; the
// request in flight at the end of the window completes and is not counted.
func (w *kvWorker) loop(ctx context.Context, cli *clientv3.Client, win window, seq *atomic.Uint64, op kvOp) {
	for ctx.Err() == nil && time.Now().Before(win.end) {
		n := seq.Add(1) - 1
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		sent := time.Now()
		err := op.request(rctx, cli, n, w)
		done := time.Now()
		cancel()
		w.tally.record(win, sent, done, err, ctx.Err() != nil)
	}
}

// run is the engine: it starts the cluster, prepares, loads it, measures
// and stops everything before it returns.
func (l KVLoad) run(ctx context.Context, kind proc.Kind, bin, dir string, serverArgs []string, run *report.Run, progress *harness.Progress, op kvOp) (err error) {
	args := slices.Clone(serverArgs)
	if l.CPUProfile || l.HeapProfile {
		args = append(args, "--enable-pprof")
	}
	c, err := startSecureBenchCluster(ctx, kind, bin, dir, l.Members, args, l.Security, progress)
	if err != nil {
		return err
	}
	defer c.stop(&err)
	leader := c.leader

	mem := c.leaderMemoryLog()
	defer mem.finish(run, &err)
	if err := mem.begin(ctx); err != nil {
		return err
	}

	eps := c.leaderFirst()
	if l.TargetLeader {
		eps = eps[:1]
	}
	clis, err := c.dialSpread(l.Conns, eps)
	if err != nil {
		return err
	}
	defer closeAll(clis)
	if c.auth {
		if err := checkAuthEnforced(ctx, clis[0]); err != nil {
			return err
		}
	}
	c.addLeaderShare(run, l.Conns, l.TargetLeader)

	if op.prepare != nil {
		start := time.Now()
		if err := op.prepare(ctx, clis, progress); err != nil {
			return err
		}
		progress.Printf("prepared in %v", time.Since(start).Round(time.Millisecond))
		if err := mem.read(ctx, "after prefill"); err != nil {
			return err
		}
	}

	// The load: every worker runs until the window ends.
	win := newWindow(time.Now(), l.Warmup, l.Duration)
	var (
		lat     latencies
		seq     atomic.Uint64
		workers = make([]*kvWorker, l.Clients)
	)
	for i := range workers {
		workers[i] = newKVWorker(i, l.KeySize, l.ValueSize, lat.shard())
	}
	mem.startSampling()
	load := startLoad(ctx, l.Clients, func(ctx context.Context, i int) {
		workers[i].loop(ctx, clis[i%len(clis)], win, &seq, op)
	})
	what := op.name
	if op.about != "" {
		what += " (" + op.about + ")"
	}
	progress.Printf("%s: %d clients on %d connections, warm-up %v, then measuring %v", what, l.Clients, l.Conns, l.Warmup, l.Duration)

	var prof chan profileResult
	startProfile := func() {
		if !l.CPUProfile {
			return
		}
		prof = make(chan profileResult, 1)
		secs := max(1, int(l.Duration/time.Second))
		go func() {
			prof <- fetchProfile(ctx, c.HTTPClient(), fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", leader.Endpoint, secs), filepath.Join(dir, "cpu.pprof"), time.Duration(secs)*time.Second+requestTimeout)
		}()
	}
	used, err := measureLoad(ctx, c, win, load, startProfile, progress)
	if err != nil {
		return err
	}
	if err := mem.stopSampling(); err != nil {
		return err
	}

	var total windowTally
	for _, w := range workers {
		total.add(&w.tally)
	}
	sorted := lat.merge()
	run.Add(op.name+" throughput", report.Rate, win.rate(total.ok))
	addLatencyFigures(run, op.name, sorted)
	run.Add(op.name+" requests ok", report.Count, float64(total.ok))
	run.Add(op.name+" requests failed", report.Count, float64(total.failed))
	if total.failed > 0 {
		run.Failf("%d %s requests failed; the first: %v", total.failed, op.name, total.firstErr)
	}
	progress.Printf("%s: %d requests in %v, %.0f/s, p99 %v, %d failed", what, total.ok, l.Duration, win.rate(total.ok), percentile(sorted, 0.99).Round(time.Microsecond), total.failed)
	if err := used.addTo(run, "load"); err != nil {
		return err
	}

	if prof != nil {
		select {
		case r := <-prof:
			progress.Printf("CPU profile of the leader over the window: %s", r)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if l.HeapProfile {
		r := fetchProfile(ctx, c.HTTPClient(), leader.Endpoint+"/debug/pprof/heap", filepath.Join(dir, "heap.pprof"), requestTimeout)
		progress.Printf("heap profile of the leader after the load: %s", r)
	}
	c.failIfExited(run)
	if err := mem.read(ctx, "after load"); err != nil {
		return err
	}
	return c.addLeaderDataDirFigures(run, "at the end")
}

// prefill writes keys 0 to n-1 with random values of ValueSize, spread
// over the connections, at most prefillInflight at a time, each request
// bounded by requestTimeout and the whole by loadTimeout(n).
func (l KVLoad) prefill(ctx context.Context, clis []*clientv3.Client, n int, progress *harness.Progress) error {
	const prefillInflight = 64
	progress.Printf("prefilling %d keys", n)
	pctx, cancel := context.WithTimeout(ctx, loadTimeout(n))
	defer cancel()
	workers := make([]*kvWorker, min(prefillInflight, n))
	for g := range workers {
		workers[g] = newKVWorker(-1-g, l.KeySize, l.ValueSize, nil)
	}
	_, err := runPool(pctx, n, len(workers), func(ctx context.Context, g, i int) error {
		w := workers[g]
		rctx, rcancel := context.WithTimeout(ctx, requestTimeout)
		defer rcancel()
		if _, err := clis[g%len(clis)].Put(rctx, w.key(uint64(i)), w.value()); err != nil {
			return fmt.Errorf("prefill key %d: %w", i, err)
		}
		return nil
	})
	if err != nil && ctx.Err() == nil && pctx.Err() != nil {
		return fmt.Errorf("prefill of %d keys did not finish within %v", n, loadTimeout(n))
	}
	return err
}

// profileResult says what became of a profile fetch, for a progress line.
type profileResult struct {
	path string
	err  error
	// absent is set when the server answered 404: it serves no profiles.
	absent bool
}

func (r profileResult) String() string {
	switch {
	case r.absent:
		return "the server answered 404 (no /debug/pprof/); none saved"
	case r.err != nil:
		return "not saved: " + r.err.Error()
	}
	return r.path
}

// fetchProfile GETs url with client and saves the body to path, giving up after
// timeout. A profile is a diagnostic: a failure to get one is reported,
// never a failure of the run.
func fetchProfile(ctx context.Context, client *http.Client, url, path string, timeout time.Duration) profileResult {
	fctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(fctx, http.MethodGet, url, nil)
	if err != nil {
		return profileResult{err: err}
	}
	resp, err := client.Do(req)
	if err != nil {
		return profileResult{err: err}
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return profileResult{absent: true}
	case resp.StatusCode != http.StatusOK:
		return profileResult{err: fmt.Errorf("GET %s: %s", url, resp.Status)}
	}
	f, err := os.Create(path)
	if err != nil {
		return profileResult{err: err}
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return profileResult{err: fmt.Errorf("GET %s: %w", url, err)}
	}
	if err := f.Close(); err != nil {
		return profileResult{err: err}
	}
	return profileResult{path: path}
}
