package proxymain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// health is etcd's /health answer.
type health struct {
	Health string `json:"health"`
	Reason string `json:"reason"`
}

// httpHandler serves, as etcd's proxy: /metrics (the cluster's, fetched
// from an endpoint), /health (the cluster's, read through the proxy's
// client), /proxy/metrics and /proxy/health (the proxy's own), and with
// pprof /debug/pprof/.
func (s *Server) httpHandler(withPprof bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", http.NotFound)
	mux.HandleFunc("/metrics", s.clusterMetrics)
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		writeHealth(w, s.lg, checkCluster(r.Context(), s.client))
	})
	mux.Handle("/proxy/metrics", promhttp.HandlerFor(s.proxy.Metrics().Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/proxy/health", func(w http.ResponseWriter, r *http.Request) {
		writeHealth(w, s.lg, checkProxy(r.Context(), s.self))
	})
	if withPprof && s.f.EnablePprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		s.lg.Info("gRPC proxy enabled pprof", zap.String("path", "/debug/pprof/"))
	}
	return mux
}

func writeHealth(w http.ResponseWriter, lg *zap.Logger, h health) {
	w.Header().Set("Content-Type", "application/json")
	if h.Health != "true" {
		lg.Warn("/health error", zap.String("output", h.Reason), zap.Int("status-code", http.StatusServiceUnavailable))
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(h)
}

// checkCluster is healthy when a read reaches the cluster (a permission
// error means it did).
func checkCluster(ctx context.Context, c *clientv3.Client) health {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err := c.Get(ctx, "a")
	if err == nil || errors.Is(err, rpctypes.ErrPermissionDenied) {
		return health{Health: "true"}
	}
	return health{Health: "false", Reason: fmt.Sprintf("GET ERROR:%s", err)}
}

// checkProxy is healthy when a read and a watch pass through the proxy.
func checkProxy(ctx context.Context, self *clientv3.Client) health {
	if self == nil {
		return health{Health: "false", Reason: "no connection to proxy"}
	}
	if h := checkCluster(ctx, self); h.Health != "true" {
		return h
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	select {
	case <-self.Watch(ctx, "a", clientv3.WithCreatedNotify()):
		if ctx.Err() == nil {
			return health{Health: "true"}
		}
	case <-ctx.Done():
	}
	return health{Health: "false", Reason: "WATCH TIMEOUT"}
}

// clusterMetrics passes on the /metrics of the first endpoint that
// answers.
func (s *Server) clusterMetrics(w http.ResponseWriter, r *http.Request) {
	hc := &http.Client{Timeout: 10 * time.Second}
	if tc := s.upstreamHTTPTLS(); tc != nil {
		hc.Transport = &http.Transport{TLSClientConfig: tc}
	}
	for _, ep := range s.client.Endpoints() {
		target := ep
		if !strings.Contains(target, "://") {
			scheme := "http"
			if s.upstreamHTTPTLS() != nil {
				scheme = "https"
			}
			target = scheme + "://" + target
		}
		req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, target+"/metrics", nil)
		if err != nil {
			continue
		}
		resp, err := hc.Do(req)
		if err != nil {
			s.lg.Warn("cannot fetch the cluster's metrics", zap.String("endpoint", ep), zap.Error(err))
			continue
		}
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		resp.Body.Close()
		return
	}
	http.Error(w, "Internal server error", http.StatusInternalServerError)
}
