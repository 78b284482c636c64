package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/keeldb/keel/metrics"
	"github.com/keeldb/keel/tlsutil"
)

// errNoClientTLSForMetrics is etcd's refusal of an https metrics URL
// without client certificates.
var errNoClientTLSForMetrics = errors.New("client TLS key/cert (--cert-file, --key-file) must be provided for metrics secure url")

// newMetrics creates the member's metrics (--metrics).
func (s *Server) newMetrics() {
	s.metrics = metrics.New(metrics.Options{Extensive: s.cfg.Metrics == "extensive", Features: s.cfg.Features()})
}

// withMetrics serves /metrics in front of the client port's other HTTP
// endpoints.
func (s *Server) withMetrics(h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", s.metrics.Handler())
	mux.Handle("/health", s.countHealth(h))
	mux.Handle("/", h)
	return mux
}

// listenMetrics binds the --listen-metrics-urls listeners; https ones do
// their TLS handshakes with the client certificates.
func (s *Server) listenMetrics() error {
	for _, u := range s.cfg.ListenMetricsURLs {
		if u.Scheme != "http" && u.Scheme != "https" {
			return fmt.Errorf("listen-metrics-urls %s: only http and https metrics URLs are supported (unix sockets are not supported)", u.String())
		}
		if u.Scheme == "https" && s.clientTLS == nil {
			if s.cfg.ClientTLS.Empty() && !s.cfg.ClientTLS.AutoTLS {
				return errNoClientTLSForMetrics
			}
			src, err := s.tlsSource("client", s.cfg.ClientTLS, s.cfg.ListenMetricsURLs)
			if err != nil {
				return err
			}
			s.clientTLS = src
		}
	}
	for _, u := range s.cfg.ListenMetricsURLs {
		l, err := net.Listen("tcp", u.Host)
		if err != nil {
			return fmt.Errorf("listen on metrics URL %s: %w", u.String(), err)
		}
		s.metricsBound = append(s.metricsBound, u.Scheme+"://"+l.Addr().String())
		if u.Scheme == "https" {
			l = tlsutil.NewListener(l, tlsutil.ListenerConfig{Source: s.clientTLS, NextProtos: []string{"h2", "http/1.1"},
				Port: "metrics", Logger: s.lg})
		}
		s.metricsLs = append(s.metricsLs, l)
	}
	return nil
}

// serveMetrics serves /metrics and the health endpoints of the client
// port (/health, /livez, /readyz) on the metrics listeners, as etcd does.
func (s *Server) serveMetrics(client http.Handler) {
	if len(s.metricsLs) == 0 {
		return
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", s.metrics.Handler())
	mux.Handle("/health", s.countHealth(client))
	for _, p := range []string{"/livez", "/livez/", "/readyz", "/readyz/"} {
		mux.Handle(p, client)
	}
	s.metricsHTTP = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: zap.NewStdLog(s.lg)}
	for i, l := range s.metricsLs {
		s.lg.Info("serving metrics", zap.String("address", s.metricsBound[i]))
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.metricsHTTP.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				s.lg.Warn("stopped serving metrics", zap.String("address", l.Addr().String()), zap.Error(err))
			}
		}()
	}
}

// countHealth counts the outcome of the /health checks h answers
// (etcd_server_health_success and _failures): 200 healthy, 503 not; other
// answers (a wrong method) are not checks, as in etcd.
func (s *Server) countHealth(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(rec, r)
		switch rec.status {
		case http.StatusOK:
			s.metrics.Health(true)
		case http.StatusServiceUnavailable:
			s.metrics.Health(false)
		}
	})
}

// statusRecorder remembers the status code written through it.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// stopMetrics stops serving the metrics listeners.
func (s *Server) stopMetrics() {
	if s.metricsHTTP == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s.metricsHTTP.Shutdown(ctx)
}

// MetricsURLs returns the URLs the --listen-metrics-urls listeners bound,
// with port 0 resolved.
func (s *Server) MetricsURLs() []string { return slices.Clone(s.metricsBound) }

// Metrics returns the member's metrics.
func (s *Server) Metrics() *metrics.Metrics { return s.metrics }
