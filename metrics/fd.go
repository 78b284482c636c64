package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/procfs"
)

// fdCollector reports the process's file descriptors as etcd's os_fd_*
// gauges, read at scrape time (etcd samples them every ten minutes).
type fdCollector struct{ used, limit *prometheus.Desc }

func newFDCollector() prometheus.Collector {
	return fdCollector{
		used:  prometheus.NewDesc("os_fd_used", "File descriptors the process has open.", nil, nil),
		limit: prometheus.NewDesc("os_fd_limit", "The process's limit of open file descriptors.", nil, nil),
	}
}

func (c fdCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.used
	ch <- c.limit
}

func (c fdCollector) Collect(ch chan<- prometheus.Metric) {
	p, err := procfs.Self()
	if err != nil {
		return // not Linux: nothing to report
	}
	if n, err := p.FileDescriptorsLen(); err == nil {
		ch <- prometheus.MustNewConstMetric(c.used, prometheus.GaugeValue, float64(n))
	}
	if l, err := p.Limits(); err == nil {
		ch <- prometheus.MustNewConstMetric(c.limit, prometheus.GaugeValue, float64(l.OpenFiles))
	}
}
