package ctl

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cheggaaa/pb/v3"
	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/pkg/v3/report"
	"golang.org/x/time/rate"
)

// check perf and check datascale, as etcdctl: the same workloads, the same
// report (go.etcd.io/etcd/pkg/v3/report), the same progress bar.

// checkLoads maps the --load names to the workload models.
var checkLoads = map[string]string{
	"s": "s", "small": "s",
	"m": "m", "medium": "m",
	"l": "l", "large": "l",
	"xl": "xl", "xLarge": "xl",
}

// perfLoad is a check perf workload: clients writing at most limit
// requests a second, for duration seconds.
type perfLoad struct{ limit, clients, duration int }

var perfLoads = map[string]perfLoad{
	"s":  {limit: 150, clients: 50, duration: 60},
	"m":  {limit: 1000, clients: 200, duration: 60},
	"l":  {limit: 8000, clients: 500, duration: 60},
	"xl": {limit: 15000, clients: 1000, duration: 60},
}

// datascaleLoad is a check datascale workload: limit key-value pairs of
// kvSize bytes written by clients.
type datascaleLoad struct{ limit, kvSize, clients int }

var datascaleLoads = map[string]datascaleLoad{
	"s":  {limit: 10000, kvSize: 1024, clients: 50},
	"m":  {limit: 100000, kvSize: 1024, clients: 200},
	"l":  {limit: 1000000, kvSize: 1024, clients: 500},
	"xl": {limit: 3000000, kvSize: 1024, clients: 1000},
}

// checkOptions are the flags both checks take.
type checkOptions struct {
	load, prefix            string
	autoCompact, autoDefrag bool
}

func (o *checkOptions) register(cmd *cobra.Command, prefix string) {
	f := cmd.Flags()
	f.StringVar(&o.load, "load", "s", "size of the workload: s (small), m (medium), l (large) or xl (xLarge)")
	f.StringVar(&o.prefix, "prefix", prefix, "write the check's keys under this prefix, which must hold none")
	f.BoolVar(&o.autoCompact, "auto-compact", false, "compact away the check's history once it is done")
	f.BoolVar(&o.autoDefrag, "auto-defrag", false, "defragment each endpoint once the check is done")
}

func checkCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "check <subcommand>",
		Short:   "Puts the cluster under a workload and judges how it copes",
		GroupID: groupUtility,
	}
	cmd.AddCommand(checkPerfCommand(g), checkDatascaleCommand(g))
	return cmd
}

func checkPerfCommand(g *globals) *cobra.Command {
	var o checkOptions
	cmd := &cobra.Command{
		Use:   "perf [options]",
		Short: "Writes at a steady rate for a minute, then judges throughput and latency",
	}
	o.register(cmd, "/etcdctl-check-perf/")
	cmd.RunE = g.run(func(cmd *cobra.Command, args []string) error {
		model, err := o.model()
		if err != nil {
			return err
		}
		return g.checkPerf(perfLoads[model], o)
	})
	return cmd
}

// model is the workload model --load names.
func (o *checkOptions) model() (string, error) {
	model, ok := checkLoads[o.load]
	if !ok {
		return "", withCode(ExitBadFeature, fmt.Errorf("unknown load option %v", o.load))
	}
	return model, nil
}

// checkClients connects n clients to the endpoints, as etcdctl's checks do.
func (g *globals) checkClients(n int) ([]*clientv3.Client, error) {
	if _, err := g.printer(); err != nil {
		return nil, err
	}
	cfg, err := g.clientConfig(nil)
	if err != nil {
		return nil, err
	}
	clients := make([]*clientv3.Client, n)
	for i := range clients {
		if clients[i], err = newClient(cfg); err != nil {
			closeClients(clients[:i])
			return nil, err
		}
	}
	return clients, nil
}

func closeClients(clients []*clientv3.Client) {
	for _, c := range clients {
		c.Close()
	}
}

// checkEmptyPrefix fails unless no key has the prefix. etcdctl's two checks
// quote the del command differently; quote is the form.
func checkEmptyPrefix(ctx context.Context, c *clientv3.Client, prefix, quote string) error {
	resp, err := c.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithLimit(1))
	if err != nil {
		return err
	}
	if len(resp.Kvs) > 0 {
		return withCode(ExitInvalidInput, fmt.Errorf("prefix %q has keys. Delete with "+quote+" first", prefix, prefix))
	}
	return nil
}

// putLoad answers the puts of ops with the clients, one goroutine per
// client, calling each after every answer, and returns the statistics of
// the answers once ops is closed and every put answered. Its goroutines
// have all ended when it returns.
func putLoad(clients []*clientv3.Client, ops <-chan clientv3.Op, each func()) report.Stats {
	r := report.NewReport("%4.4f", "", false)
	stats := r.Stats()
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() {
			for op := range ops {
				start := time.Now()
				_, err := c.Do(context.Background(), op)
				r.Results() <- report.Result{Err: err, Start: start, End: time.Now()}
				each()
			}
		})
	}
	wg.Wait()
	close(r.Results())
	return <-stats
}

// randomKey fills k with a random varint and returns prefix+k.
func randomKey(prefix string, k []byte) string {
	binary.PutVarint(k, rand.Int63n(math.MaxInt64))
	return prefix + string(k)
}

// steadyPuts yields puts of 1 KiB values under random keys, at most
// perSecond a second, until ctx ends; then it closes the channel. The
// channel must be drained.
func steadyPuts(ctx context.Context, prefix string, perSecond, buffer int) <-chan clientv3.Op {
	ops := make(chan clientv3.Op, buffer)
	go func() {
		defer close(ops)
		pace := rate.NewLimiter(rate.Limit(perSecond), 1)
		key, value := make([]byte, 256), string(make([]byte, 1024))
		for pace.Wait(ctx) == nil {
			ops <- clientv3.OpPut(randomKey(prefix, key), value)
		}
	}()
	return ops
}

// countedPuts yields n puts of 512-byte values under random keys, then
// closes the channel. The channel must be drained.
func countedPuts(prefix string, n, buffer int) <-chan clientv3.Op {
	ops := make(chan clientv3.Op, buffer)
	go func() {
		defer close(ops)
		key, value := make([]byte, 512), string(make([]byte, 512))
		for range n {
			ops <- clientv3.OpPut(randomKey(prefix, key), value)
		}
	}()
	return ops
}

// clockBar shows on w the seconds that pass, up to total, until stop is
// called; stop ends its goroutines, leaving the bar as it stands.
func clockBar(w io.Writer, total int) (stop func()) {
	bar := pb.New(total)
	bar.SetWriter(w)
	bar.Start()
	quit, ended := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ended)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for range total {
			select {
			case <-quit:
				return
			case <-tick.C:
				bar.Increment()
			}
		}
	}()
	return func() {
		close(quit)
		<-ended
		bar.Finish()
	}
}

// checkPerf writes at the load's pace for its duration, or until SIGINT,
// then deletes the keys it wrote, once (compacting and defragmenting if
// asked), and judges the measures: PASS, or FAIL with ExitError.
func (g *globals) checkPerf(load perfLoad, o checkOptions) error {
	clients, err := g.checkClients(load.clients)
	if err != nil {
		return err
	}
	defer closeClients(clients)
	p := &printer{w: g.stdio.Out}
	timed, cancel := context.WithTimeout(context.Background(), time.Duration(load.duration)*time.Second)
	defer cancel()
	// SIGINT only ends the load early: the cleanup and the verdict follow.
	ctx, stopCatching := signal.NotifyContext(timed, os.Interrupt)
	defer stopCatching()
	if err := checkEmptyPrefix(ctx, clients[0], o.prefix, "'keelctl del --prefix %s'"); err != nil {
		return err
	}

	stopBar := clockBar(g.stdio.Err, load.duration)
	stats := putLoad(clients, steadyPuts(ctx, o.prefix, load.limit, load.clients), func() {})
	stopBar()

	p.cleanup(clients[0], o.prefix, o.autoCompact)
	if o.autoDefrag {
		if err := p.defragAll(clients[0]); err != nil {
			return err
		}
	}
	if !p.perfVerdict(stats, load) {
		p.println("FAIL")
		return withCode(ExitError, errSilent)
	}
	p.println("PASS")
	return nil
}

// perfLimits are what check perf asks of the cluster: the share of the
// load's rate it must exceed, and the slowest answer and the spread it
// allows, in seconds.
var perfLimits = struct{ rateShare, slowest, stddev float64 }{0.9, 0.5, 0.1}

// perfVerdict prints one line per measure (errors, throughput, slowest
// answer, spread) and says whether all are within perfLimits.
func (p *printer) perfVerdict(s report.Stats, load perfLoad) bool {
	pass := !p.requestErrors(s)
	writes := int(s.RPS) + 1
	if s.RPS/float64(load.limit) > perfLimits.rateShare {
		p.printf("PASS: Throughput is %d writes/s\n", writes)
	} else {
		p.printf("FAIL: Throughput too low: %d writes/s\n", writes)
		pass = false
	}
	if s.Slowest <= perfLimits.slowest {
		p.printf("PASS: Slowest request took %fs\n", s.Slowest)
	} else {
		p.printf("Slowest request took too long: %fs\n", s.Slowest)
		pass = false
	}
	if s.Stddev <= perfLimits.stddev {
		p.printf("PASS: Stddev is %fs\n", s.Stddev)
	} else {
		p.printf("Stddev too high: %fs\n", s.Stddev)
		pass = false
	}
	return pass
}

// requestErrors prints the errors the load's requests met, with how often
// each came, and says whether there were any.
func (p *printer) requestErrors(s report.Stats) bool {
	if len(s.ErrorDist) == 0 {
		return false
	}
	p.println("FAIL: too many errors")
	for msg, n := range s.ErrorDist {
		p.printf("FAIL: ERROR(%v) -> %d\n", msg, n)
	}
	return true
}

// cleanup deletes the check's keys, then compacts at the deletion's
// revision if asked. A failed deletion is printed, not returned, as etcdctl.
func (p *printer) cleanup(c *clientv3.Client, prefix string, compact bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := c.Delete(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		p.printf("FAIL: Cleanup failed during key deletion: ERROR(%v)\n", err)
		return
	}
	if compact {
		_ = p.compact(c, resp.Header.Revision)
	}
}

// compact compacts physically at rev, saying so before and after.
func (p *printer) compact(c *clientv3.Client, rev int64) error {
	p.printf("Compacting with revision %d\n", rev)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		return err
	}
	p.printf("Compacted with revision %d\n", rev)
	return nil
}

// defragAll defragments each of c's endpoints, saying so before and after.
func (p *printer) defragAll(c *clientv3.Client) error {
	for _, ep := range c.Endpoints() {
		p.printf("Defragmenting %q\n", ep)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := c.Defragment(ctx, ep)
		cancel()
		if err != nil {
			return err
		}
		p.printf("Defragmented %q\n", ep)
	}
	return nil
}

func checkDatascaleCommand(g *globals) *cobra.Command {
	var o checkOptions
	cmd := &cobra.Command{
		Use:   "datascale [options]",
		Short: "Writes many keys and reports the memory the first endpoint took for them",
	}
	o.register(cmd, "/etcdctl-check-datascale/")
	cmd.RunE = g.run(func(cmd *cobra.Command, args []string) error {
		model, err := o.model()
		if err != nil {
			return err
		}
		return g.checkDatascale(datascaleLoads[model], o)
	})
	return cmd
}

// checkDatascale writes the load's keys and prints how much the resident
// memory of the first endpoint grew meanwhile, read from its /metrics
// before and after. It deletes the keys (compacting and defragmenting if
// asked) before judging: errors of the puts are a FAIL with ExitError.
func (g *globals) checkDatascale(load datascaleLoad, o checkOptions) error {
	clients, err := g.checkClients(load.clients)
	if err != nil {
		return err
	}
	defer closeClients(clients)
	p := &printer{w: g.stdio.Out}
	if err := checkEmptyPrefix(context.Background(), clients[0], o.prefix, "keelctl del --prefix %s"); err != nil {
		return err
	}
	metrics := g.metricsReader(p, g.endpoints[0])
	before, ok := metrics.residentBytes()
	if !ok {
		p.println("FAIL: Could not read process_resident_memory_bytes before the put operations.")
		return withCode(ExitError, errSilent)
	}
	p.printf("Start data scale check for work load [%v key-value pairs, %v bytes per key-value, %v concurrent clients].\n", load.limit, load.kvSize, load.clients)
	bar := pb.New(load.limit)
	bar.SetWriter(g.stdio.Err)
	bar.Start()
	stats := putLoad(clients, countedPuts(o.prefix, load.limit, load.clients), func() { bar.Increment() })
	bar.Finish()
	after, ok := metrics.residentBytes()
	if !ok {
		p.println("FAIL: Could not read process_resident_memory_bytes after the put operations.")
		return withCode(ExitError, errSilent)
	}

	resp, err := clients[0].Delete(context.Background(), o.prefix, clientv3.WithPrefix())
	if err != nil {
		return err
	}
	if o.autoCompact {
		if err := p.compact(clients[0], resp.Header.Revision); err != nil {
			return err
		}
	}
	if o.autoDefrag {
		if err := p.defragAll(clients[0]); err != nil {
			return err
		}
	}
	if p.requestErrors(stats) {
		return withCode(ExitError, errSilent)
	}
	grown := (after - before) / (1 << 20)
	p.printf("PASS: Approximate system memory used : %v MB.\n", strconv.FormatFloat(grown, 'f', 2, 64))
	return nil
}

// residentMemoryMetric is the Prometheus metric check datascale reads.
const residentMemoryMetric = "process_resident_memory_bytes"

// metricsReader reads an endpoint's Prometheus /metrics, saying on p why
// it could not.
type metricsReader struct {
	p      *printer
	url    string
	client *http.Client
	// tlsErr is the error loading the client certificate for https.
	tlsErr error
}

// metricsReader is the reader of ep's /metrics: plain http unless ep says
// https, which presents the --cert client certificate.
func (g *globals) metricsReader(p *printer, ep string) *metricsReader {
	if !strings.HasPrefix(ep, "http://") && !strings.HasPrefix(ep, "https://") {
		ep = "http://" + ep
	}
	m := &metricsReader{p: p, url: ep + "/metrics", client: http.DefaultClient}
	if strings.HasPrefix(ep, "https://") {
		tr, err := metricsTransport(g.cert, g.key, g.insecureSkipVerify)
		m.client, m.tlsErr = &http.Client{Transport: tr}, err
	}
	return m
}

// residentBytes is the endpoint's resident memory in bytes. It is false,
// with the reason printed, when the memory cannot be read (or reads 0).
func (m *metricsReader) residentBytes() (float64, bool) {
	if m.tlsErr != nil {
		m.p.printf("client certificate error: %v\n", m.tlsErr)
		return 0, false
	}
	body, err := m.fetch()
	if err != nil {
		m.p.printf("fetch error: %v\n", err)
		return 0, false
	}
	value, found := metricValue(body, residentMemoryMetric)
	if !found {
		m.p.printf("could not find: %v\n", residentMemoryMetric)
		return 0, false
	}
	n, err := strconv.ParseFloat(value, 64)
	if err != nil {
		m.p.printf("parse error: %v\n", err)
		return 0, false
	}
	return n, n != 0
}

func (m *metricsReader) fetch() (string, error) {
	resp, err := m.client.Get(m.url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", m.url, err)
	}
	return string(body), nil
}

// metricValue is the value of the first sample of metric in a Prometheus
// text exposition.
func metricValue(exposition, metric string) (string, bool) {
	for line := range strings.Lines(exposition) {
		name, value, ok := strings.Cut(strings.TrimSpace(line), " ")
		if ok && (name == metric || strings.HasPrefix(name, metric+"{")) {
			return strings.TrimSpace(value), true
		}
	}
	return "", false
}

// metricsTransport is an HTTP transport presenting the client certificate,
// for an https endpoint's /metrics.
func metricsTransport(cert, key string, skipVerify bool) (*http.Transport, error) {
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{Certificates: []tls.Certificate{pair}, InsecureSkipVerify: skipVerify} //nolint:gosec // --insecure-skip-tls-verify asks for it
	return tr, nil
}
