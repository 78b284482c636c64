package grpcproxy

import (
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
}

func newMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		eventsCoalescing: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "etcd", Subsystem: "grpc_proxy", Name: "events_coalescing_total",
			Help: "Total number of events coalescing",
		}),
		cacheKeys: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "etcd", Subsystem: "grpc_proxy", Name: "cache_keys_total",
			Help: "Total number of keys/ranges cached",
		}),
		cacheHits: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "etcd", Subsystem: "grpc_proxy", Name: "cache_hits_total",
			Help: "Total number of cache hits",
		}),
		cacheMisses: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "etcd", Subsystem: "grpc_proxy", Name: "cache_misses_total",
			Help: "Total number of cache misses",
		}),
	}
	m.Registry.MustRegister(m.eventsCoalescing, m.cacheKeys, m.cacheHits, m.cacheMisses,
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
			Help: "Total number of current watchers coalescing",
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
