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
		model, ok := checkLoads[o.load]
		if !ok {
			return withCode(ExitBadFeature, fmt.Errorf("unknown load option %v", o.load))
		}
		return g.checkPerf(perfLoads[model], o)
	})
	return cmd
}

// checkClients connects n clients to the endpoints, as etcdctl's checks do.
func (g *globals) checkClients(n int) ([]*clientv3.Client, error) {
	if _, err := g.printer(); err != nil {
		return nil, err
	}
	cfg, err := g.clientConfig(g.endpoints)
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

// runWorkers sends each request from requests with one of the clients (one
// goroutine per client) and reports it to r; done is called after each. It
// returns once requests is closed and drained.
func runWorkers(clients []*clientv3.Client, requests <-chan clientv3.Op, r report.Report, done func()) {
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() {
			for op := range requests {
				st := time.Now()
				_, err := c.Do(context.Background(), op)
				r.Results() <- report.Result{Err: err, Start: st, End: time.Now()}
				done()
			}
		})
	}
	wg.Wait()
}

// randomKey fills k with a random varint and returns prefix+k.
func randomKey(prefix string, k []byte) string {
	binary.PutVarint(k, rand.Int63n(math.MaxInt64))
	return prefix + string(k)
}

func (g *globals) checkPerf(load perfLoad, o checkOptions) error {
	clients, err := g.checkClients(load.clients)
	if err != nil {
		return err
	}
	defer closeClients(clients)
	p := &printer{w: g.stdio.Out}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(load.duration)*time.Second)
	defer cancel()
	// An interrupt ends the load early and cleans up; the results of what
	// ran are still printed.
	ctx, stop := interruptible(ctx, func() { p.cleanup(clients[0], o.prefix, false) })
	defer stop()
	if err := checkEmptyPrefix(ctx, clients[0], o.prefix, "'keelctl del --prefix %s'"); err != nil {
		return err
	}

	bar := pb.New(load.duration)
	bar.SetWriter(g.stdio.Err)
	bar.Start()
	go func() {
		for range load.duration {
			time.Sleep(time.Second)
			bar.Add(1)
		}
		bar.Finish()
	}()

	requests := make(chan clientv3.Op, load.clients)
	go func() {
		defer close(requests)
		limit := rate.NewLimiter(rate.Limit(load.limit), 1)
		k, v := make([]byte, 256), string(make([]byte, 1024))
		for limit.Wait(ctx) == nil {
			requests <- clientv3.OpPut(randomKey(o.prefix, k), v)
		}
	}()
	r := report.NewReport("%4.4f", "", false)
	sc := r.Stats()
	runWorkers(clients, requests, r, func() {})
	close(r.Results())
	s := <-sc

	p.cleanup(clients[0], o.prefix, o.autoCompact)
	if o.autoDefrag {
		if err := p.defragAll(clients[0]); err != nil {
			return err
		}
	}
	if !p.perfVerdict(s, load) {
		p.println("FAIL")
		return withCode(ExitError, errSilent)
	}
	p.println("PASS")
	return nil
}

// perfVerdict prints a PASS or FAIL line for errors, throughput, slowest
// request and standard deviation, and says whether all passed.
func (p *printer) perfVerdict(s report.Stats, load perfLoad) bool {
	ok := true
	if len(s.ErrorDist) != 0 {
		p.println("FAIL: too many errors")
		for k, v := range s.ErrorDist {
			p.printf("FAIL: ERROR(%v) -> %d\n", k, v)
		}
		ok = false
	}
	if s.RPS/float64(load.limit) <= 0.9 {
		p.printf("FAIL: Throughput too low: %d writes/s\n", int(s.RPS)+1)
		ok = false
	} else {
		p.printf("PASS: Throughput is %d writes/s\n", int(s.RPS)+1)
	}
	if s.Slowest > 0.5 {
		p.printf("Slowest request took too long: %fs\n", s.Slowest)
		ok = false
	} else {
		p.printf("PASS: Slowest request took %fs\n", s.Slowest)
	}
	if s.Stddev > 0.1 {
		p.printf("Stddev too high: %fs\n", s.Stddev)
		ok = false
	} else {
		p.printf("PASS: Stddev is %fs\n", s.Stddev)
	}
	return ok
}

// interruptible is ctx, also cancelled by an interrupt, after which
// onInterrupt runs. stop releases the signal.
func interruptible(ctx context.Context, onInterrupt func()) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	go func() {
		defer signal.Stop(sig)
		select {
		case <-sig:
			cancel()
			onInterrupt()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
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
		model, ok := checkLoads[o.load]
		if !ok {
			return withCode(ExitBadFeature, fmt.Errorf("unknown load option %v", o.load))
		}
		return g.checkDatascale(datascaleLoads[model], o)
	})
	return cmd
}

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
	ep := g.endpoints[0]
	before := p.residentMemory(ep, g.cert, g.key, g.insecureSkipVerify)
	if before == 0 {
		p.println("FAIL: Could not read process_resident_memory_bytes before the put operations.")
		return withCode(ExitError, errSilent)
	}
	p.printf("Start data scale check for work load [%v key-value pairs, %v bytes per key-value, %v concurrent clients].\n", load.limit, load.kvSize, load.clients)
	bar := pb.New(load.limit)
	bar.SetWriter(g.stdio.Err)
	bar.Start()
	requests := make(chan clientv3.Op, load.clients)
	go func() {
		defer close(requests)
		k, v := make([]byte, 512), string(make([]byte, 512))
		for range load.limit {
			requests <- clientv3.OpPut(randomKey(o.prefix, k), v)
		}
	}()
	r := report.NewReport("%4.4f", "", false)
	sc := r.Stats()
	runWorkers(clients, requests, r, func() { bar.Increment() })
	close(r.Results())
	bar.Finish()
	s := <-sc

	after := p.residentMemory(ep, g.cert, g.key, g.insecureSkipVerify)
	if after == 0 {
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
	if len(s.ErrorDist) != 0 {
		p.println("FAIL: too many errors")
		for k, v := range s.ErrorDist {
			p.printf("FAIL: ERROR(%v) -> %d\n", k, v)
		}
		return withCode(ExitError, errSilent)
	}
	mb := (after - before) / (1024 * 1024)
	p.printf("PASS: Approximate system memory used : %v MB.\n", strconv.FormatFloat(mb, 'f', 2, 64))
	return nil
}

// residentMemoryMetric is the Prometheus metric check datascale reads.
const residentMemoryMetric = "process_resident_memory_bytes"

// residentMemory reads process_resident_memory_bytes from the endpoint's
// /metrics (https with the client certificate for an https endpoint). As
// etcdctl, a failure is printed and read as 0.
func (p *printer) residentMemory(ep, cert, key string, skipVerify bool) float64 {
	if !strings.HasPrefix(ep, "http://") && !strings.HasPrefix(ep, "https://") {
		ep = "http://" + ep
	}
	url := ep + "/metrics"
	hc := http.DefaultClient
	if strings.HasPrefix(ep, "https://") {
		tr, err := metricsTransport(cert, key, skipVerify)
		if err != nil {
			p.printf("client certificate error: %v\n", err)
			return 0
		}
		hc = &http.Client{Transport: tr}
	}
	resp, err := hc.Get(url)
	if err != nil {
		p.printf("fetch error: %v\n", err)
		return 0
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		p.printf("fetch error: reading %s: %v\n", url, err)
		return 0
	}
	var value string
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, residentMemoryMetric); ok {
			value = strings.TrimSpace(v)
			break
		}
	}
	if value == "" {
		p.printf("could not find: %v\n", residentMemoryMetric)
		return 0
	}
	bytes, err := strconv.ParseFloat(value, 64)
	if err != nil {
		p.printf("parse error: %v\n", err)
		return 0
	}
	return bytes
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
