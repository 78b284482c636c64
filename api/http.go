package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"slices"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.uber.org/zap"

	"github.com/keeldb/keel/member"
	"github.com/keeldb/keel/version"
)

// health is the body of /health, in etcd's format.
type healthStatus struct {
	Health string `json:"health"`
	Reason string `json:"reason"`
}

// healthCheckTimeout bounds the read /health makes.
const healthCheckTimeout = 5 * time.Second

// HTTPConfig configures the client port's HTTP endpoints.
type HTTPConfig struct {
	// EnablePprof serves the Go runtime's profiles under /debug/pprof/
	// (--enable-pprof).
	EnablePprof bool
	Logger      *zap.Logger
}

// NewHTTPHandler returns the handler of the client port's HTTP endpoints.
func NewHTTPHandler(m *member.Member, cfg HTTPConfig) http.Handler {
	lg := cfg.Logger
	mux := http.NewServeMux()
	if cfg.EnablePprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
			return
		}
		serializable := r.URL.Query().Get("serializable") == "true"
		h := checkHealth(r.Context(), m, serializable, r.URL.Query()["exclude"])
		body, _ := json.Marshal(h)
		if h.Health != "true" {
			lg.Warn("/health error", zap.String("output", string(body)), zap.Int("status-code", http.StatusServiceUnavailable))
			http.Error(w, string(body), http.StatusServiceUnavailable)
			return
		}
		w.Write(body)
	})
	RegisterProbes(mux, m, lg)
	mux.HandleFunc("/version", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
			return
		}
		body, _ := json.Marshal(struct {
			Server  string `json:"etcdserver"`
			Cluster string `json:"etcdcluster"`
			Storage string `json:"storage"`
			Keel    string `json:"keel"`
		}{version.Etcd, version.Cluster, version.Storage, version.Version})
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
	return withCORS(mux)
}

// withCORS adds the CORS headers etcd sends with its default --cors "*",
// and answers preflight requests.
func withCORS(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE")
		w.Header().Add("Access-Control-Allow-Origin", "*")
		w.Header().Add("Access-Control-Allow-Headers", "accept, content-type, authorization")
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusOK)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// checkHealth is etcd's /health: no alarm may be raised (except those
// excluded), a leader must be known (unless the check is serializable) and a
// read through the member must succeed.
func checkHealth(ctx context.Context, m *member.Member, serializable bool, exclude []string) healthStatus {
	for _, a := range m.Alarms() {
		if slices.Contains(exclude, a.Alarm.String()) {
			continue
		}
		switch a.Alarm {
		case pb.AlarmType_NOSPACE:
			return healthStatus{Health: "false", Reason: "ALARM NOSPACE"}
		case pb.AlarmType_CORRUPT:
			return healthStatus{Health: "false", Reason: "ALARM CORRUPT"}
		default:
			return healthStatus{Health: "false", Reason: "ALARM UNKNOWN"}
		}
	}
	if !serializable && m.Leader() == 0 {
		return healthStatus{Health: "false", Reason: "RAFT NO LEADER"}
	}
	ctx, cancel := context.WithTimeout(ctx, healthCheckTimeout)
	defer cancel()
	_, err := m.Range(ctx, &pb.RangeRequest{Key: []byte("health"), KeysOnly: true, Limit: 1, Serializable: serializable}, member.Unchecked)
	if err != nil {
		return healthStatus{Health: "false", Reason: "RANGE ERROR:" + errorText(err)}
	}
	return healthStatus{Health: "true"}
}
