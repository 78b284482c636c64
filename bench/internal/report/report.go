// Package report holds a benchmark's measured figures and prints them as a
// table that puts keel beside etcd, with the ratio keel/etcd.
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Unit says how a figure is printed and whether a ratio makes sense.
type Unit string

// Units of figures.
const (
	Count   Unit = "count"
	Bytes   Unit = "bytes"
	Seconds Unit = "s"
	Millis  Unit = "ms"
	Rate    Unit = "per_s"
	Bool    Unit = "bool" // 1 is yes, 0 is no
)

// Figure is one measured value. A figure that could not be measured (for
// example a server without /metrics) is Missing.
type Figure struct {
	Name    string  `json:"name"`
	Unit    Unit    `json:"unit"`
	Value   float64 `json:"value"`
	Missing bool    `json:"missing,omitempty"`
}

// Run is the result of one scenario against one server.
type Run struct {
	Server string `json:"server"`
	// Round counts from 1; servers alternate within a round.
	Round   int      `json:"round"`
	Figures []Figure `json:"figures"`
	// Failures are the ways the run did not meet the scenario's
	// requirement (an event lost, a lease expired). A run with failures
	// still reports its figures.
	Failures []string `json:"failures,omitempty"`
	// Error is set when the run could not complete.
	Error string `json:"error,omitempty"`
}

// Add records a figure.
func (r *Run) Add(name string, unit Unit, v float64) {
	r.Figures = append(r.Figures, Figure{Name: name, Unit: unit, Value: v})
}

// AddDuration records a duration in seconds.
func (r *Run) AddDuration(name string, d time.Duration) { r.Add(name, Seconds, d.Seconds()) }

// AddMillis records a short duration in milliseconds.
func (r *Run) AddMillis(name string, d time.Duration) {
	r.Add(name, Millis, float64(d)/float64(time.Millisecond))
}

// AddBool records a yes/no figure.
func (r *Run) AddBool(name string, yes bool) {
	v := 0.0
	if yes {
		v = 1
	}
	r.Add(name, Bool, v)
}

// AddMissing records that a figure could not be measured.
func (r *Run) AddMissing(name string, unit Unit) {
	r.Figures = append(r.Figures, Figure{Name: name, Unit: unit, Missing: true})
}

// Failf records a failure of the scenario's requirement.
func (r *Run) Failf(format string, args ...any) {
	r.Failures = append(r.Failures, fmt.Sprintf(format, args...))
}

// OK reports whether the run completed and met its requirement.
func (r *Run) OK() bool { return r.Error == "" && len(r.Failures) == 0 }

func (r *Run) figure(name string) (Figure, bool) {
	for _, f := range r.Figures {
		if f.Name == name {
			return f, true
		}
	}
	return Figure{}, false
}

// Report is everything one invocation of keelbench measured.
type Report struct {
	Scenario string `json:"scenario"`
	// Command is the command line that reproduces the measurement, with
	// every parameter spelled out.
	Command string `json:"command"`
	// Environment describes the machine and the binaries: key, value.
	Environment [][2]string `json:"environment"`
	Runs        []Run       `json:"runs"`
	// Spread adds each server's minimum and maximum beside its median
	// when a server ran more than once.
	Spread bool `json:"-"`
}

// OK reports whether every run completed and met its requirement.
func (rep *Report) OK() bool {
	for i := range rep.Runs {
		if !rep.Runs[i].OK() {
			return false
		}
	}
	return len(rep.Runs) > 0
}

// WriteJSON writes the report as indented JSON.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// WriteText prints the report: the command, the environment, one column per
// run, and when both servers ran, the median of each server's runs and the
// ratio keel/etcd of the medians. The medians are over the runs that met
// the requirement only (see Summary); every run has its column.
func (rep *Report) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "scenario: %s\ncommand:  %s\n", rep.Scenario, rep.Command)
	for _, kv := range rep.Environment {
		fmt.Fprintf(w, "%-9s %s\n", kv[0]+":", kv[1])
	}
	fmt.Fprintln(w)

	var names []string
	units := map[string]Unit{}
	for _, r := range rep.Runs {
		for _, f := range r.Figures {
			if _, ok := units[f.Name]; !ok {
				names = append(names, f.Name)
				units[f.Name] = f.Unit
			}
		}
	}
	byServer := map[string][]*Run{}
	var servers []string
	for i := range rep.Runs {
		r := &rep.Runs[i]
		if _, ok := byServer[r.Server]; !ok {
			servers = append(servers, r.Server)
		}
		byServer[r.Server] = append(byServer[r.Server], r)
	}
	slices.Sort(servers) // etcd before keel
	multi := false
	for _, s := range servers {
		multi = multi || len(byServer[s]) > 1
	}
	both := len(byServer["etcd"]) > 0 && len(byServer["keel"]) > 0

	width := len("figure")
	for _, name := range names {
		width = max(width, len(label(name, units[name])))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	var head []string
	head = append(head, fmt.Sprintf("%-*s", width, "figure"))
	for _, r := range rep.Runs {
		if multi {
			head = append(head, fmt.Sprintf("%s#%d", r.Server, r.Round))
		} else {
			head = append(head, r.Server)
		}
	}
	if multi {
		for _, s := range servers {
			head = append(head, s+" median")
			if rep.Spread {
				head = append(head, s+" min", s+" max")
			}
		}
	}
	if both {
		head = append(head, "keel/etcd")
	}
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	for _, name := range names {
		unit := units[name]
		row := []string{fmt.Sprintf("%-*s", width, label(name, unit))}
		for i := range rep.Runs {
			f, ok := rep.Runs[i].figure(name)
			row = append(row, format(f, ok))
		}
		medians := map[string]Figure{}
		for _, s := range servers {
			medians[s] = median(okRuns(byServer[s]), name, unit)
		}
		if multi {
			for _, s := range servers {
				row = append(row, format(medians[s], true))
				if rep.Spread {
					lo, hi := extremes(okRuns(byServer[s]), name, unit)
					row = append(row, format(lo, true), format(hi, true))
				}
			}
		}
		if both {
			row = append(row, ratio(medians["keel"], medians["etcd"]))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rep.Runs {
		if r.Error != "" {
			fmt.Fprintf(w, "\n%s round %d did not complete: %s\n", r.Server, r.Round, r.Error)
		}
		for _, f := range r.Failures {
			fmt.Fprintf(w, "\n%s round %d FAILED: %s\n", r.Server, r.Round, f)
		}
	}
	if rep.OK() {
		fmt.Fprintln(w, "\nresult: every run met the requirement")
	} else {
		if multi || both {
			fmt.Fprintln(w, "\nThe medians and keel/etcd leave out the runs that failed or did not complete.")
		}
		fmt.Fprintln(w, "\nresult: FAILED (see above)")
	}
	return nil
}

func label(name string, u Unit) string { return name + " (" + unitLabel(u) + ")" }

func unitLabel(u Unit) string {
	switch u {
	case Bytes:
		return "MiB"
	case Seconds:
		return "s"
	case Millis:
		return "ms"
	case Rate:
		return "/s"
	case Bool:
		return "yes/no"
	}
	return "n"
}

func format(f Figure, ok bool) string {
	if !ok || f.Missing {
		return "n/a"
	}
	switch f.Unit {
	case Bytes:
		return fmt.Sprintf("%.1f", f.Value/(1<<20))
	case Seconds:
		return fmt.Sprintf("%.3f", f.Value)
	case Millis:
		return fmt.Sprintf("%.2f", f.Value)
	case Rate:
		return fmt.Sprintf("%.0f", f.Value)
	case Bool:
		if f.Value == 1 {
			return "yes"
		}
		return "no"
	}
	if f.Value == math.Trunc(f.Value) {
		return fmt.Sprintf("%.0f", f.Value)
	}
	return fmt.Sprintf("%.2f", f.Value)
}

// median is the median of a figure over runs; for a yes/no figure it is yes
// only when every run said yes.
func median(runs []*Run, name string, unit Unit) Figure {
	var vs []float64
	for _, r := range runs {
		if f, ok := r.figure(name); ok && !f.Missing {
			vs = append(vs, f.Value)
		}
	}
	if len(vs) == 0 {
		return Figure{Name: name, Unit: unit, Missing: true}
	}
	if unit == Bool {
		return Figure{Name: name, Unit: unit, Value: slices.Min(vs)}
	}
	slices.Sort(vs)
	m := vs[len(vs)/2]
	if len(vs)%2 == 0 {
		m = (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
	}
	return Figure{Name: name, Unit: unit, Value: m}
}

// extremes are the minimum and maximum of a figure over runs.
func extremes(runs []*Run, name string, unit Unit) (lo, hi Figure) {
	var vs []float64
	for _, r := range runs {
		if f, ok := r.figure(name); ok && !f.Missing {
			vs = append(vs, f.Value)
		}
	}
	if len(vs) == 0 {
		m := Figure{Name: name, Unit: unit, Missing: true}
		return m, m
	}
	return Figure{Name: name, Unit: unit, Value: slices.Min(vs)}, Figure{Name: name, Unit: unit, Value: slices.Max(vs)}
}

func ratio(keel, etcd Figure) string {
	if keel.Missing || etcd.Missing || keel.Unit == Bool {
		return ""
	}
	if etcd.Value == 0 {
		if keel.Value == 0 {
			return "="
		}
		return "inf"
	}
	return fmt.Sprintf("%.2f", keel.Value/etcd.Value)
}
