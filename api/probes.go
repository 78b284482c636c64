package api

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.uber.org/zap"
	"google.golang.org/grpc/status"

	"github.com/keeldb/keel/member"
)

// The Kubernetes-style probes etcd 3.7 serves next to /health:
//
//	/livez   serializable_read
//	/readyz  data_corruption, serializable_read, linearizable_read, non_learner
//
// Each check also has a path of its own (/readyz/linearizable_read). A probe
// answers 200 "ok\n" when every check it runs passes ("?verbose" adds one
// "[+]<check> ok" line per check before it) and 503 with one line per check
// ("[-]<check> failed: <reason>" for those that failed) otherwise.
// "?exclude=<check>" (repeatable) skips a check on the root paths; naming a
// check that does not exist only logs a warning, as in etcd.
//
// etcd runs the checks in Go's map order, so its line order changes from
// one request to the next; keel runs them in the order above.

// probeCheck is one named check of /livez or /readyz.
type probeCheck struct {
	name string
	run  func(ctx context.Context) error
}

// probe is /livez or /readyz.
type probe struct {
	path   string // "/livez"
	checks []probeCheck
}

// RegisterProbes registers /livez and /readyz and their per-check paths on
// mux: the client port's handler does, and so must any other listener that
// serves the health endpoints (etcd serves them on --listen-metrics-urls too).
func RegisterProbes(mux *http.ServeMux, m *member.Member, lg *zap.Logger) {
	read := func(serializable bool) func(context.Context) error {
		return func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, healthCheckTimeout)
			defer cancel()
			_, err := m.Range(ctx, &pb.RangeRequest{Key: []byte("health"), KeysOnly: true, Limit: 1, Serializable: serializable}, member.Unchecked)
			return err
		}
	}
	probes := []probe{
		{path: "/livez", checks: []probeCheck{{"serializable_read", read(true)}}},
		{path: "/readyz", checks: []probeCheck{
			{"data_corruption", func(context.Context) error {
				for _, a := range m.Alarms() {
					if a.Alarm == pb.AlarmType_CORRUPT {
						return fmt.Errorf("alarm activated: %s", a.Alarm)
					}
				}
				return nil
			}},
			{"serializable_read", read(true)},
			{"linearizable_read", read(false)},
			{"non_learner", func(context.Context) error {
				if m.IsLearner() {
					return fmt.Errorf("not supported for learner")
				}
				return nil
			}},
		}},
	}
	for _, p := range probes {
		mux.Handle(p.path, probeHandler(p.path, lg, func(r *http.Request) []probeCheck {
			return p.filter(lg, r.URL.Query()["exclude"])
		}))
		for _, c := range p.checks {
			sub := p.path + "/" + c.name
			mux.Handle(sub, probeHandler(sub, lg, func(*http.Request) []probeCheck { return []probeCheck{c} }))
		}
	}
}

// filter returns p's checks but those excluded; excluding an unknown check
// is not an error, for compatibility across versions.
func (p probe) filter(lg *zap.Logger, exclude []string) []probeCheck {
	var out []probeCheck
	for _, c := range p.checks {
		if !slices.Contains(exclude, c.name) {
			out = append(out, c)
		}
	}
	var missing []string
	for _, e := range exclude {
		if e != "" && !slices.ContainsFunc(p.checks, func(c probeCheck) bool { return c.name == e }) && !slices.Contains(missing, fmt.Sprintf("%q", e)) {
			missing = append(missing, fmt.Sprintf("%q", e))
		}
	}
	if len(missing) > 0 {
		lg.Warn("some health checks cannot be excluded", zap.String("missing-health-checks", strings.Join(missing, ",")))
	}
	return out
}

// probeHandler serves one probe path, running the checks checks returns.
func probeHandler(path string, lg *zap.Logger, checks func(*http.Request) []probeCheck) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
			lg.Warn("Health request error", zap.String("path", path), zap.Int("status-code", http.StatusMethodNotAllowed))
			return
		}
		var out strings.Builder
		failed := false
		for _, c := range checks(r) {
			if err := c.run(r.Context()); err != nil {
				failed = true
				fmt.Fprintf(&out, "[-]%s failed: %s\n", c.name, errorText(err))
			} else {
				fmt.Fprintf(&out, "[+]%s ok\n", c.name)
			}
		}
		if failed {
			http.Error(w, out.String(), http.StatusServiceUnavailable)
			lg.Error("Health check error", zap.String("path", path), zap.String("reason", out.String()), zap.Int("status-code", http.StatusServiceUnavailable))
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if _, ok := r.URL.Query()["verbose"]; ok {
			fmt.Fprint(w, out.String())
		}
		fmt.Fprint(w, "ok\n")
		lg.Debug("Health check OK", zap.String("path", path), zap.String("reason", out.String()), zap.Int("status-code", http.StatusOK))
	}
}

// errorText is err as etcd's server prints its own errors: the member
// returns gRPC status errors ("rpc error: code = Unavailable desc =
// etcdserver: request timed out") where etcd's server has plain ones
// ("etcdserver: request timed out").
func errorText(err error) string {
	if s, ok := status.FromError(err); ok {
		return s.Message()
	}
	return err.Error()
}
