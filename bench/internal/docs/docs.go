// Package docs writes the results of a benchmark suite as a markdown
// document with PNG charts: the summary against the targets, then every
// step's medians for etcd and keel with the ratio keel/etcd.
package docs

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keeldb/keel/bench/internal/report"
)

// Suite is everything one run of the suite measured. It is plain data, so
// that it can be saved as JSON and the document written again from it.
type Suite struct {
	// Command is the command that produced the results, e.g.
	// "cd bench && go run ./cmd/keelbench suite -quick".
	Command string `json:"command"`
	// Mode is "full" or "quick".
	Mode string `json:"mode"`
	// Environment describes the machine and both servers: key, value.
	Environment [][2]string   `json:"environment"`
	Elapsed     time.Duration `json:"elapsed"`
	Steps       []Step        `json:"steps"`
	// Targets are checked against the steps they name; a target whose
	// step is not among Steps is left out of the summary.
	Targets []Target `json:"targets"`
}

// Step is one scenario run with fixed arguments, and what it measured.
type Step struct {
	// Label names the step, e.g. "put, 100 clients / 10 conns". Labels are
	// unique within a suite; targets refer to steps by label.
	Label string `json:"label"`
	// Report is what the scenario measured. Report.Command reproduces the
	// step on its own.
	Report report.Report `json:"report"`
	// Err says why the step did not run at all (its flags were rejected,
	// the scenario does not exist); Report is then empty.
	Err     string        `json:"error,omitempty"`
	Elapsed time.Duration `json:"elapsed"`
	Chart   Chart         `json:"chart"`
	// PerThousand are figures the document derives from each run's
	// figures and adds to the step's table.
	PerThousand []PerThousand `json:"per_thousand,omitempty"`
}

// PerThousand is a figure derived from two of a run's figures: how much
// of Figure (in seconds) was spent per 1,000 of Per (a count), printed in
// milliseconds, e.g. the server's CPU per 1,000 requests.
type PerThousand struct {
	// Name is the derived figure's name, e.g. "server CPU per 1,000 requests".
	Name string `json:"name"`
	// Figure is in seconds, e.g. "server CPU load".
	Figure string `json:"figure"`
	// Per is a count over the same span, e.g. "put requests ok".
	Per string `json:"per"`
}

// summarise is the derived figure's medians over the step's runs; ok is
// false when no run has both figures.
func (d PerThousand) summarise(rep *report.Report) (report.Summary, bool) {
	return rep.Derive(d.Name, report.Millis, func(r *report.Run) (float64, bool) {
		secs, ok1 := r.Value(d.Figure)
		n, ok2 := r.Value(d.Per)
		if !ok1 || !ok2 || n <= 0 {
			return 0, false
		}
		return secs * 1000 / n * 1000, true
	})
}

// OK reports whether the step ran and every run met its requirement.
func (s *Step) OK() bool { return s.Err == "" && s.Report.OK() }

// Chart says which of a step's figures its chart shows, as panels side by
// side: the throughput, the latency percentiles, then one panel per extra
// figure. A step whose Chart is empty gets no chart.
type Chart struct {
	// Throughput is a figure name, e.g. "put throughput".
	Throughput string `json:"throughput,omitempty"`
	// Latency is the op of "<op> latency p50" ... "<op> latency p99.9",
	// e.g. "put"; the percentiles no server measured are left out.
	Latency string `json:"latency,omitempty"`
	// Figures are charted one panel each.
	Figures []string `json:"figures,omitempty"`
	// Overview puts the step's throughput ratio keel/etcd in the chart
	// that compares every step.
	Overview bool `json:"overview,omitempty"`
}

func (c Chart) empty() bool { return c.Throughput == "" && c.Latency == "" && len(c.Figures) == 0 }

// Target is a goal for keel relative to etcd on one figure of one step.
type Target struct {
	// Goal says what is wanted in words, e.g. "writes, 100 clients:
	// throughput".
	Goal   string `json:"goal"`
	Step   string `json:"step"`
	Figure string `json:"figure"`
	// AtMost makes the target keel/etcd <= Bound; otherwise it is
	// keel/etcd >= Bound.
	AtMost bool    `json:"at_most,omitempty"`
	Bound  float64 `json:"bound"`
	// Note, when set, is printed under the summary to say how to read
	// the target.
	Note string `json:"note,omitempty"`
}

// Wanted is the target as a condition on keel/etcd, e.g. ">= 1.50".
func (t Target) Wanted() string {
	if t.AtMost {
		return fmt.Sprintf("<= %.2f", t.Bound)
	}
	return fmt.Sprintf(">= %.2f", t.Bound)
}

// Verdict is the outcome of checking a target.
type Verdict string

// Verdicts.
const (
	Pass Verdict = "PASS"
	Miss Verdict = "MISS"
	// NA: the figure is missing for a server, or the ratio is undefined.
	NA Verdict = "n/a"
	// RunsFailed: some run of the step failed or did not complete, so
	// the target is not judged, whatever the medians of the other runs.
	RunsFailed Verdict = "FAILED RUNS"
)

// Check compares keel/etcd of the step's medians with the target. The
// medians leave out the runs that failed (see report.Summary); when any
// run of the step failed the verdict is RunsFailed rather than PASS or
// MISS.
func (t Target) Check(step *Step) (report.Summary, Verdict) {
	s, ok := step.Report.Summary(t.Figure)
	if !ok {
		return s, NA
	}
	r, ok := s.Ratio()
	switch {
	case len(step.Report.FailedRuns()) > 0:
		return s, RunsFailed
	case !ok:
		return s, NA
	case t.AtMost && r <= t.Bound, !t.AtMost && r >= t.Bound:
		return s, Pass
	}
	return s, Miss
}

// Read reads a suite that Write saved as DataFile.
func Read(path string) (*Suite, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s Suite
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &s, nil
}

// step returns the step with the label, or nil.
func (s *Suite) step(label string) *Step {
	for i := range s.Steps {
		if s.Steps[i].Label == label {
			return &s.Steps[i]
		}
	}
	return nil
}

// OK reports whether every step ran and met its requirement.
func (s *Suite) OK() bool {
	for i := range s.Steps {
		if !s.Steps[i].OK() {
			return false
		}
	}
	return true
}

// DataFile is the name of the file, beside the charts, that holds the
// suite the document was written from, as JSON: Read it to write the
// document again without running anything.
const DataFile = "suite.json"

// Write writes the document to path, and its charts, as PNG files, into
// the directory beside it named like the document without ".md" (for
// docs/benchmarks.md, docs/benchmarks/), which it creates, together with
// s itself as DataFile. The document links the charts by relative paths.
// Charts of an earlier run that this suite does not draw again are left
// alone.
func Write(path string, s *Suite) error {
	chartDir := strings.TrimSuffix(path, filepath.Ext(path))
	if err := os.MkdirAll(chartDir, 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(chartDir, DataFile), append(data, '\n'), 0o644); err != nil {
		return err
	}
	charts, err := drawCharts(chartDir, s)
	if err != nil {
		return err
	}
	// The markdown links relative to its own directory.
	rel := filepath.Base(chartDir)
	for k, v := range charts {
		charts[k] = rel + "/" + filepath.Base(v)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := writeMarkdown(f, s, charts); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// overviewChart is the key, in the map of charts, of the chart comparing
// every step's throughput; the other keys are step labels.
const overviewChart = ""

func writeMarkdown(w io.Writer, s *Suite, charts map[string]string) error {
	ew := &errWriter{w: w}
	p := ew.printf
	p("# keel beside etcd: benchmarks\n\n")
	p("Generated by `%s` (%s mode, %s in all). Do not edit: run it again.\n\n", s.Command, s.Mode, roundDuration(s.Elapsed))
	p("Each figure is the median of the runs of each server that met the scenario's requirement ")
	p("(a run that failed or did not complete is left out; `n=` beside a median says how many runs it is over when some were left out). ")
	p("The servers alternate and swap places every round (etcd, keel; keel, etcd; ...), ")
	p("each run on a fresh server process with an empty data dir, one server at a time, with identical flags on 127.0.0.1; ")
	p("before each run the file systems are flushed (`sync`) and the run waits, at most 10 s, until the machine's CPUs are less than 10%% busy over 500 ms, ")
	p("so that what one run leaves behind does not land on the next. ")
	p("**The load generator runs on the same machine as the server** and competes with it for the CPUs: ")
	p("the figures compare the two servers on this machine; they are not the capacity of either on a dedicated one.")
	if s.Mode == "quick" {
		p(" **Quick mode**: shorter runs and a smaller data set than the full suite, to check that everything works; do not quote its numbers.")
	}
	p("\n\n")

	p("## Machine and versions\n\n| | |\n|---|---|\n")
	for _, kv := range s.Environment {
		p("| %s | %s |\n", cell(kv[0]), cell(kv[1]))
	}
	p("\n")

	writeSummary(ew, s, charts)

	p("## Steps\n\n")
	for i := range s.Steps {
		st := &s.Steps[i]
		status := "ok"
		switch {
		case st.Err != "":
			status = "**did not run**"
		case !st.OK():
			status = "**FAILED**"
		}
		p("- [%s](#%s): %s, %s\n", st.Label, anchor(st.Label), status, roundDuration(st.Elapsed))
	}
	p("\n")
	for i := range s.Steps {
		writeStep(ew, &s.Steps[i], charts[s.Steps[i].Label])
	}
	return ew.err
}

func writeSummary(ew *errWriter, s *Suite, charts map[string]string) {
	p := ew.printf
	p("## Summary against the targets\n\n")
	var rows int
	for _, t := range s.Targets {
		if s.step(t.Step) != nil {
			rows++
		}
	}
	if rows == 0 {
		p("No step of this run has a target.\n\n")
	} else {
		p("keel/etcd is the ratio of the medians; PASS when it meets the target of issue 5.\n\n")
		p("| target | step | figure | etcd | keel | keel/etcd | wanted | verdict |\n")
		p("|---|---|---|--:|--:|--:|--:|---|\n")
		var notes []Target
		for _, t := range s.Targets {
			st := s.step(t.Step)
			if st == nil {
				continue
			}
			if t.Note != "" {
				notes = append(notes, t)
			}
			sum, v := t.Check(st)
			verdict := "**" + string(v) + "**"
			switch v {
			case NA:
				verdict = string(v)
			case RunsFailed:
				verdict += ": " + failedRunsText(st)
			}
			if st.Err != "" {
				verdict += " (step did not run)"
			}
			p("| %s | [%s](#%s) | %s | %s | %s | %s | %s | %s |\n",
				cell(t.Goal), cell(st.Label), anchor(st.Label), cell(report.Label(t.Figure, sum.Unit)),
				medianText(sum.Etcd, sum.EtcdN, sum.EtcdMeasured), medianText(sum.Keel, sum.KeelN, sum.KeelMeasured),
				orDash(sum.RatioText()), t.Wanted(), verdict)
		}
		p("\n")
		for _, t := range notes {
			p("- *%s*: %s\n", cell(t.Goal), cell(t.Note))
		}
		if len(notes) > 0 {
			p("\n")
		}
	}
	if c, ok := charts[overviewChart]; ok {
		p("![throughput, keel/etcd, every step](%s)\n\n", c)
	}
}

func writeStep(ew *errWriter, st *Step, chart string) {
	p := ew.printf
	p("### %s\n\n", st.Label)
	if st.Err != "" {
		p("**Did not run**: %s\n\n", cell(st.Err))
		return
	}
	rep := &st.Report
	p("```\n%s\n```\n\n", rep.Command)
	counts, servers := rep.RunCounts()
	var ran []string
	for _, srv := range servers {
		ran = append(ran, fmt.Sprintf("%d × %s", counts[srv], srv))
	}
	p("Runs: %s, alternating, in %s.", strings.Join(ran, " and "), roundDuration(st.Elapsed))
	if problems := rep.Problems(); len(problems) > 0 {
		p(" **FAILED**:\n\n")
		for _, pr := range problems {
			p("- %s\n", cell(pr))
		}
		p("\n")
	} else if rep.OK() {
		p(" Every run met the scenario's requirement.\n\n")
	} else {
		p(" **No run completed.**\n\n")
	}
	if chart != "" {
		p("![%s](%s)\n\n", st.Label, chart)
	}
	sums := rep.Summaries()
	if len(sums) == 0 {
		return
	}
	for _, d := range st.PerThousand {
		if s, ok := d.summarise(rep); ok {
			sums = append(sums, s)
		}
	}
	if len(rep.FailedRuns()) > 0 {
		p("The medians leave out the runs that failed (%s); `n=` is how many runs a median is over.\n\n", failedRunsText(st))
	}
	p("| figure | etcd median | keel median | keel/etcd |\n|---|--:|--:|--:|\n")
	for _, s := range sums {
		p("| %s | %s | %s | %s |\n", cell(report.Label(s.Name, s.Unit)),
			medianText(s.Etcd, s.EtcdN, s.EtcdMeasured), medianText(s.Keel, s.KeelN, s.KeelMeasured), orDash(s.RatioText()))
	}
	p("\n")
}

// medianText is a median as the tables print it, followed by "(n=N)" when
// it is over fewer runs than measured the figure (the others failed).
func medianText(median report.Figure, n, measured int) string {
	if n < measured {
		return fmt.Sprintf("%s (n=%d)", report.Format(median), n)
	}
	return report.Format(median)
}

// failedRunsText says how many runs of each server failed, e.g.
// "keel: 1 of 3 runs failed".
func failedRunsText(st *Step) string {
	failed := st.Report.FailedRuns()
	counts, servers := st.Report.RunCounts()
	var parts []string
	for _, srv := range servers {
		if failed[srv] > 0 {
			parts = append(parts, fmt.Sprintf("%s: %d of %d runs failed", srv, failed[srv], counts[srv]))
		}
	}
	return strings.Join(parts, ", ")
}

// cell makes text safe inside a markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.Join(strings.Fields(s), " ")
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

// anchor is the id GitHub gives the heading with text label.
func anchor(label string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(label) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

// Slug turns a step label into a file name: lower case letters, digits and
// single dashes, e.g. "put, 100 clients / 10 conns" -> "put-100-clients-10-conns".
func Slug(label string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(label) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(r)
		} else {
			dash = true
		}
	}
	if b.Len() == 0 {
		return "step"
	}
	return b.String()
}

func roundDuration(d time.Duration) string {
	switch {
	case d >= time.Minute:
		return d.Round(time.Second).String()
	case d >= time.Second:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Millisecond).String()
}

// errWriter keeps the first write error, so that the writer can print
// without checking each call.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}
