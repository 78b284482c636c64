package report

import (
	"fmt"
	"slices"
)

// Summary is one figure summarised over a report's runs: the median of
// each server's runs that met the requirement (Run.OK) and keel/etcd of
// the medians, as WriteText prints them. A run that failed or did not
// complete is left out: its figures may describe a server that stopped
// answering, not one that was slow.
type Summary struct {
	Name string
	Unit Unit
	// Etcd and Keel are the medians; Missing when that server did not
	// run, never measured the figure, or every run that measured it
	// failed.
	Etcd, Keel Figure
	// EtcdN and KeelN are how many runs each median is over: the runs
	// that met the requirement and measured the figure.
	EtcdN, KeelN int
	// EtcdMeasured and KeelMeasured are how many runs measured the
	// figure, failed ones included. N below Measured means failed runs
	// were left out of the median.
	EtcdMeasured, KeelMeasured int
}

// Ratio is keel/etcd of the medians. ok is false when either is missing,
// when the figure is yes/no, or when etcd's median is 0.
func (s Summary) Ratio() (r float64, ok bool) {
	if s.Keel.Missing || s.Etcd.Missing || s.Unit == Bool || s.Etcd.Value == 0 {
		return 0, false
	}
	return s.Keel.Value / s.Etcd.Value, true
}

// RatioText is the ratio as WriteText prints it: two decimals, "" when
// there is none, "=" when both are 0 and "inf" when only etcd's is.
func (s Summary) RatioText() string { return ratio(s.Keel, s.Etcd) }

// Summaries summarises every figure of the report, in the order the
// figures first appear in its runs.
func (rep *Report) Summaries() []Summary {
	var out []Summary
	seen := map[string]bool{}
	for _, r := range rep.Runs {
		for _, f := range r.Figures {
			if !seen[f.Name] {
				seen[f.Name] = true
				out = append(out, rep.summary(f.Name, f.Unit))
			}
		}
	}
	return out
}

// Summary summarises the named figure; ok is false when no run recorded
// it.
func (rep *Report) Summary(name string) (s Summary, ok bool) {
	for _, r := range rep.Runs {
		if f, found := r.figure(name); found {
			return rep.summary(name, f.Unit), true
		}
	}
	return Summary{Name: name}, false
}

func (rep *Report) summary(name string, unit Unit) Summary {
	etcd, keel := rep.runsOf("etcd"), rep.runsOf("keel")
	return Summary{
		Name:         name,
		Unit:         unit,
		Etcd:         median(okRuns(etcd), name, unit),
		Keel:         median(okRuns(keel), name, unit),
		EtcdN:        measured(okRuns(etcd), name),
		KeelN:        measured(okRuns(keel), name),
		EtcdMeasured: measured(etcd, name),
		KeelMeasured: measured(keel, name),
	}
}

// okRuns are the runs that completed and met the requirement.
func okRuns(runs []*Run) []*Run {
	var out []*Run
	for _, r := range runs {
		if r.OK() {
			out = append(out, r)
		}
	}
	return out
}

// measured is how many of runs have a value for the named figure.
func measured(runs []*Run, name string) int {
	n := 0
	for _, r := range runs {
		if f, ok := r.figure(name); ok && !f.Missing {
			n++
		}
	}
	return n
}

// FailedRuns is how many runs of each server did not complete or did not
// meet the requirement; servers without such runs are absent.
func (rep *Report) FailedRuns() map[string]int {
	failed := map[string]int{}
	for _, r := range rep.Runs {
		if !r.OK() {
			failed[r.Server]++
		}
	}
	return failed
}

// runsOf returns the runs of one server, in order.
func (rep *Report) runsOf(server string) []*Run {
	var runs []*Run
	for i := range rep.Runs {
		if rep.Runs[i].Server == server {
			runs = append(runs, &rep.Runs[i])
		}
	}
	return runs
}

// RunCounts is how many runs each server had, e.g. {"etcd": 3, "keel": 3},
// and the servers in the order WriteText prints them (etcd before keel).
func (rep *Report) RunCounts() (counts map[string]int, servers []string) {
	counts = map[string]int{}
	for _, r := range rep.Runs {
		if counts[r.Server] == 0 {
			servers = append(servers, r.Server)
		}
		counts[r.Server]++
	}
	slices.Sort(servers)
	return counts, servers
}

// Problems lists, one line per problem, every run that did not complete
// and every failure of a run's requirement, e.g.
// "keel round 2 FAILED: 3 events lost".
func (rep *Report) Problems() []string {
	var out []string
	for _, r := range rep.Runs {
		if r.Error != "" {
			out = append(out, fmt.Sprintf("%s round %d did not complete: %s", r.Server, r.Round, r.Error))
		}
		for _, f := range r.Failures {
			out = append(out, fmt.Sprintf("%s round %d FAILED: %s", r.Server, r.Round, f))
		}
	}
	return out
}

// Format prints a figure's value in the figure's unit label (bytes as MiB,
// seconds with 3 decimals, ...), "n/a" when it is missing.
func Format(f Figure) string { return format(f, true) }

// Label is a figure's name with its unit label, e.g. "put throughput (/s)".
func Label(name string, u Unit) string { return label(name, u) }

// UnitLabel is how a unit is written beside a figure: "MiB" for Bytes,
// "/s" for Rate, and so on.
func UnitLabel(u Unit) string { return unitLabel(u) }

// Derive summarises a figure that no run recorded but each run's figures
// yield, e.g. CPU seconds per request: value computes it from a run, ok
// false when that run lacks what it needs. The medians follow Summary's
// rule (failed runs left out); found is false when no run yields it.
func (rep *Report) Derive(name string, unit Unit, value func(r *Run) (v float64, ok bool)) (s Summary, found bool) {
	derived := Report{Runs: make([]Run, 0, len(rep.Runs))}
	for i := range rep.Runs {
		r := &rep.Runs[i]
		d := Run{Server: r.Server, Round: r.Round, Failures: r.Failures, Error: r.Error}
		if v, ok := value(r); ok {
			d.Add(name, unit, v)
			found = true
		}
		derived.Runs = append(derived.Runs, d)
	}
	if !found {
		return Summary{Name: name, Unit: unit}, false
	}
	return derived.summary(name, unit), true
}

// Value is the run's value of the named figure; ok is false when the run
// did not record it or could not measure it.
func (r *Run) Value(name string) (v float64, ok bool) {
	f, found := r.figure(name)
	if !found || f.Missing {
		return 0, false
	}
	return f.Value, true
}
