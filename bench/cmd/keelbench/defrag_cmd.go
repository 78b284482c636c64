package main

import (
	"flag"
	"time"

	"github.com/keeldb/keel/bench/internal/harness"
	"github.com/keeldb/keel/bench/internal/scenario"
)

func init() {
	scenarios = append(scenarios, scenarioCmd{
		name:  "defrag",
		about: "Maintenance.Defragment under a steady write load: failures and put latency before, during and after",
		setup: func(fs *flag.FlagSet) func() (harness.Named, error) {
			var s scenario.Defrag
			fs.IntVar(&s.Members, "members", 1, "members of the cluster (the leader is defragmented; its figures are reported)")
			fs.IntVar(&s.Keys, "keys", 200000, "keys written before the load, not measured")
			fs.IntVar(&s.ValueSize, "val-size", 1024, "bytes in each prefilled value (random, incompressible)")
			fs.IntVar(&s.PrefillBatch, "prefill-batch", 100, "puts per prefill txn (the servers refuse more than --max-txn-ops, 128)")
			fs.IntVar(&s.DeleteBatch, "delete-batch", 100, "deletes per txn when every other prefilled key is deleted")
			fs.BoolVar(&s.SkipDelete, "skip-delete", false, "keep every prefilled key (only the compacted history is left to reclaim)")
			fs.IntVar(&s.Clients, "clients", 16, "concurrent put clients, each with one request outstanding at a time")
			fs.IntVar(&s.Conns, "conns", 4, "gRPC connections the clients share (client i uses connection i mod conns)")
			fs.IntVar(&s.Rate, "rate", 0, "paced load: puts per second in all, each latency counted from when the put was due (0: closed loop, every client puts again as soon as its put returns)")
			fs.IntVar(&s.LoadKeySpace, "load-key-space", 10000, "distinct keys the load puts: request n writes key number n mod load-key-space")
			fs.IntVar(&s.LoadValueSize, "load-val-size", 256, "bytes in each value the load puts (fresh random bytes per request)")
			fs.DurationVar(&s.Warmup, "warmup", 2*time.Second, "load before the first window, not measured")
			fs.DurationVar(&s.Before, "before", 10*time.Second, "the window measured before the defragmentation")
			fs.DurationVar(&s.After, "after", 10*time.Second, "the window measured after the defragmentation returned")
			fs.DurationVar(&s.DefragTimeout, "defrag-timeout", 10*time.Minute, "longest wait for the Defragment call")
			fs.DurationVar(&s.CPUProfile, "cpuprofile", 0, "if set (whole seconds), save the leader's CPU profile over the last this long of the before window to <run dir>/cpu-before.pprof and from the defrag call to cpu-defrag.pprof (starts the members with --enable-pprof; keep the work dir with -workdir or -keep)")
			return func() (harness.Named, error) { return s, s.Validate() }
		},
	})
}
