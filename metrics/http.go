package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves the member's metrics in Prometheus' text format (or the
// format the scraper negotiates), counting its own scrapes as etcd's
// handler does (promhttp_metric_handler_*).
func (m *Metrics) Handler() http.Handler {
	return promhttp.InstrumentMetricHandler(m.reg, promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
}
