package main

import (
	"flag"
	"strings"
	"time"

	"github.com/keeldb/keel/bench/internal/harness"
	"github.com/keeldb/keel/bench/internal/scenario"
)

func init() {
	scenarios = append(scenarios, scenarioCmd{
		name:  "k8s-mixed",
		about: "a kube-apiserver-like mix: CAS creates/updates/deletes, gets, paginated lists, node leases, prefix watches",
		setup: func(fs *flag.FlagSet) func() (harness.Named, error) {
			s := scenario.K8sMixed{SmallSize: 1024, LargeSize: 10 * 1024}
			fs.IntVar(&s.Members, "members", 1, "members of the cluster")
			fs.IntVar(&s.Clients, "clients", 100, "workers, each running one request at a time and owning its share of the objects")
			fs.IntVar(&s.Conns, "conns", 10, "client connections the workers share (connection j talks to member j mod -members)")
			fs.DurationVar(&s.Duration, "duration", 10*time.Second, "measured duration of the load")
			fs.DurationVar(&s.Warmup, "warmup", time.Second, "unmeasured load before -duration")
			resources := fs.String("resources", strings.Join(scenario.DefaultK8sResources, ","), "comma-separated resource prefixes of the objects (one watch each); the lease-update op writes under "+scenario.K8sLeasePrefix)
			fs.IntVar(&s.Objects, "objects", 20000, "objects created before the load (unmeasured), spread over the resources and the workers")
			fs.Float64Var(&s.LargeFraction, "large-fraction", 0.1, "fraction of objects with large values")
			fs.IntVar(&s.SmallSize, "small-size", s.SmallSize, "bytes in a small value")
			fs.IntVar(&s.LargeSize, "large-size", s.LargeSize, "bytes in a large value")
			fs.IntVar(&s.ListLimit, "list-limit", 500, "keys per list page")
			mix := fs.String("mix", scenario.DefaultK8sMix, "weights of the operations: create, update, delete, get, list (one page), lease-update")
			fs.Uint64Var(&s.Seed, "seed", 1, "seed of the workers' random choices (the same for both servers)")
			return func() (harness.Named, error) {
				var err error
				if s.Mix, err = scenario.ParseK8sMix(*mix); err != nil {
					return nil, err
				}
				s.Resources = nil
				for p := range strings.SplitSeq(*resources, ",") {
					if p = strings.TrimSpace(p); p != "" {
						s.Resources = append(s.Resources, p)
					}
				}
				return s, s.Validate()
			}
		},
	})
}
