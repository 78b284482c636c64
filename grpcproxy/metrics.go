package grpcproxy

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the proxy's own metrics, with etcd's grpc-proxy names, in a
// registry of their own (served on /proxy/metrics).
type Metrics struct {
	Registry           *prometheus.Registry
	watchersCoalescing prometheus.Gauge
	eventsCoalescing   prometheus.Counter
	cacheKeys          prometheus.Gauge
	// etcd exports the hit and miss counts as gauges; so does keel.
	cacheHits   prometheus.Gauge
	cacheMisses prometheus.Gauge
}

func newMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		watchersCoalescing: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "etcd", Subsystem: "grpc_proxy", Name: "watchers_coalescing_total",
			Help: "Total number of current watchers coalescing",
		}),
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
	m.Registry.MustRegister(m.watchersCoalescing, m.eventsCoalescing, m.cacheKeys, m.cacheHits, m.cacheMisses,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
