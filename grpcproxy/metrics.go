package grpcproxy

import (
	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the proxy's own metrics, with etcd's grpc-proxy names, in a
// registry of their own (served on /proxy/metrics).
type Metrics struct {
	Registry         *prometheus.Registry
	eventsCoalescing prometheus.Counter
	cacheKeys        prometheus.Gauge
	// etcd exports the hit and miss counts as gauges; so does keel.
	cacheHits   prometheus.Gauge
	cacheMisses prometheus.Gauge
	// GRPC counts the calls and messages of the proxy's gRPC server
	// (grpc_server_*, etcd's labels): add its interceptors to the server
	// and initialise it once the services are registered.
	GRPC *grpcprom.ServerMetrics
}

func newMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		eventsCoalescing: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "etcd", Subsystem: "grpc_proxy", Name: "events_coalescing_total",
			Help: "Upstream watch events handed to more than one client watcher.",
		}),
		cacheKeys: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "etcd", Subsystem: "grpc_proxy", Name: "cache_keys_total",
			Help: "Range responses held in the proxy's cache.",
		}),
		cacheHits: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "etcd", Subsystem: "grpc_proxy", Name: "cache_hits_total",
			Help: "Serializable ranges answered from the proxy's cache.",
		}),
		cacheMisses: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "etcd", Subsystem: "grpc_proxy", Name: "cache_misses_total",
			Help: "Serializable ranges the proxy's cache could not answer.",
		}),
	}
	m.GRPC = grpcprom.NewServerMetrics()
	m.Registry.MustRegister(m.eventsCoalescing, m.cacheKeys, m.cacheHits, m.cacheMisses, m.GRPC,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// registerProxy adds the figures read from p when scraped.
func (m *Metrics) registerProxy(p *Proxy) {
	watch := func(f func(WatchStats) float64) func() float64 {
		return func() float64 { return f(p.WatchStats()) }
	}
	keepAlive := func(f func(KeepAliveStats) float64) func() float64 {
		return func() float64 { return f(p.KeepAliveStats()) }
	}
	m.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "etcd", Subsystem: "grpc_proxy", Name: "watchers_coalescing_total",
			Help: "Client watchers now sharing an upstream watcher with another.",
		}, watch(func(s WatchStats) float64 { return float64(s.Downstream - s.Upstream) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "keel_grpc_proxy_watchers", Help: "Client watchers the proxy serves.",
		}, watch(func(s WatchStats) float64 { return float64(s.Downstream) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "keel_grpc_proxy_upstream_watchers", Help: "Upstream watchers the proxy's client watchers share.",
		}, watch(func(s WatchStats) float64 { return float64(s.Upstream) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "keel_grpc_proxy_upstream_watchers_created_total", Help: "Upstream watchers created since the proxy started.",
		}, watch(func(s WatchStats) float64 { return float64(s.UpstreamCreated) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "keel_grpc_proxy_keepalives_total", Help: "Lease keep-alives received from clients.",
		}, keepAlive(func(s KeepAliveStats) float64 { return float64(s.DownstreamRequests) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "keel_grpc_proxy_upstream_keepalives_total", Help: "Lease keep-alives sent to the cluster.",
		}, keepAlive(func(s KeepAliveStats) float64 { return float64(s.UpstreamRequests) })),
	)
}
