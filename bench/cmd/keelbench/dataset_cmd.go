package main

import (
	"flag"

	"github.com/keeldb/keel/bench/internal/harness"
	"github.com/keeldb/keel/bench/internal/scenario"
)

func init() {
	scenarios = append(scenarios, scenarioCmd{
		name:  "dataset",
		about: "1,000,000 Kubernetes-like keys: load, RSS and data dir size, paginated lists, restart, snapshot save/restore",
		setup: func(fs *flag.FlagSet) func() (harness.Named, error) {
			s := new(scenario.Dataset)
			fs.IntVar(&s.Members, "members", 1, "members of the cluster (memory and data dir figures are the leader's)")
			fs.IntVar(&s.Keys, "keys", 1000000, "keys to load")
			fs.IntVar(&s.ValueSize, "val-size", 256, "bytes in each value (random, incompressible)")
			fs.StringVar(&s.KeyPrefix, "key-prefix", "/registry/pods/", "prefix of every key; keys are <prefix>ns-<i/1000>/pod-<i>")
			fs.IntVar(&s.Batch, "batch", 100, "puts per load request, in one txn (1: plain puts; the servers refuse more than --max-txn-ops, 128)")
			fs.IntVar(&s.LoadClients, "load-clients", 16, "concurrent loaders")
			fs.IntVar(&s.LoadConns, "load-conns", 4, "client connections the loaders are spread over")
			fs.IntVar(&s.PageSize, "page-size", 500, "limit of each list request (Kubernetes' default list chunk)")
			fs.IntVar(&s.ListRounds, "list-rounds", 3, "full paginated lists to measure (0: none)")
			fs.BoolVar(&s.SkipRestart, "skip-restart", false, "skip the restart phase")
			fs.BoolVar(&s.SkipSnapshot, "skip-snapshot", false, "skip the snapshot save and restore phase")
			fs.StringVar(&s.EtcdutlBin, "etcdutl-bin", "", "etcdutl binary for the snapshot restore, instead of building etcdutl v3.7.3 from bench/go.mod")
			return func() (harness.Named, error) { return s, s.Validate() }
		},
	})
}
