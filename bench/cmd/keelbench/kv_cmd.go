package main

import (
	"errors"
	"flag"
	"time"

	"github.com/keeldb/keel/bench/internal/harness"
	"github.com/keeldb/keel/bench/internal/scenario"
)

// The KV load scenarios: put, range and txn-put, modelled on etcd's
// benchmark tool and sharing one load engine (scenario.KVLoad).
func init() {
	scenarios = append(scenarios,
		scenarioCmd{
			name:  "put",
			about: "closed-loop puts from N clients over M connections; throughput and latency",
			setup: func(fs *flag.FlagSet) func() (harness.Named, error) {
				var s scenario.KVPut
				defineKVLoad(fs, &s.KVLoad)
				fs.IntVar(&s.KeySpace, "key-space", 100000, "distinct keys written: request i writes key number i mod key-space")
				return func() (harness.Named, error) { return s, s.Validate() }
			},
		},
		scenarioCmd{
			name:  "range",
			about: "closed-loop gets of prefilled keys, linearizable or serializable; throughput and latency",
			setup: func(fs *flag.FlagSet) func() (harness.Named, error) {
				var s scenario.KVRange
				defineKVLoad(fs, &s.KVLoad)
				fs.IntVar(&s.Prefill, "prefill", 1000, "keys written before the load (not measured); request i reads key number i mod prefill")
				consistency := fs.String("consistency", "l", "l (linearizable) or s (serializable)")
				return func() (harness.Named, error) {
					switch *consistency {
					case "l":
					case "s":
						s.Serializable = true
					default:
						return nil, errors.New("-consistency must be l or s")
					}
					return s, s.Validate()
				}
			},
		},
		scenarioCmd{
			name:  "txn-put",
			about: "closed-loop txns of puts (no compares) from N clients; throughput and latency",
			setup: func(fs *flag.FlagSet) func() (harness.Named, error) {
				var s scenario.KVTxnPut
				defineKVLoad(fs, &s.KVLoad)
				fs.IntVar(&s.KeySpace, "key-space", 100000, "distinct keys written; the puts of request i write key numbers i*txn-ops ... i*txn-ops+txn-ops-1, mod key-space")
				fs.IntVar(&s.Ops, "txn-ops", 1, "puts in each txn, all to distinct keys")
				return func() (harness.Named, error) { return s, s.Validate() }
			},
		},
	)
}

// defineKVLoad defines the flags every KV load scenario shares.
func defineKVLoad(fs *flag.FlagSet, l *scenario.KVLoad) {
	fs.IntVar(&l.Members, "members", 1, "members of the cluster")
	fs.IntVar(&l.Clients, "clients", 1, "concurrent clients, each with one request outstanding at a time")
	fs.IntVar(&l.Conns, "conns", 1, "gRPC connections the clients share (client i uses connection i mod conns)")
	fs.DurationVar(&l.Duration, "duration", 10*time.Second, "measured window")
	fs.DurationVar(&l.Warmup, "warmup", time.Second, "load before the measured window, not measured")
	fs.BoolVar(&l.TargetLeader, "target-leader", false, "put every connection on the leader (default: connections round-robin over the members)")
	fs.IntVar(&l.KeySize, "key-size", 8, "bytes in each key (a zero-padded decimal key number)")
	fs.IntVar(&l.ValueSize, "val-size", 256, "bytes in each value (fresh random bytes per request)")
	fs.BoolVar(&l.CPUProfile, "cpuprofile", false, "save the leader's CPU profile over the measured window to <run dir>/cpu.pprof (starts the members with --enable-pprof; keep the work dir with -workdir or -keep)")
	fs.BoolVar(&l.Security.TLS, "tls", false, "serve clients over HTTPS with --client-cert-auth (and, with -members above 1, peers over TLS with --peer-client-cert-auth), certificates made in the run's directory; the clients present a client certificate")
	fs.BoolVar(&l.Security.Auth, "auth", false, "enable auth: a root user and role, and a user bench with readwrite on the benchmark's keys, as whom the clients log in with a password")
	fs.StringVar(&l.Security.AuthToken, "auth-token", scenario.AuthSimple, "with -auth, the servers' tokens: simple, or jwt (ES256, keys made in the run's directory)")
	fs.BoolVar(&l.HeapProfile, "heapprofile", false, "save the leader's heap profile after the load to <run dir>/heap.pprof (starts the members with --enable-pprof; keep the work dir with -workdir or -keep)")
}
