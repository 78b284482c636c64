package report

import (
	"strings"
	"testing"
)

func runOf(server string, round int, figs ...Figure) Run {
	return Run{Server: server, Round: round, Figures: figs}
}

func TestTableShowsMediansAndTheirRatio(t *testing.T) {
	rep := Report{Scenario: "s", Command: "c", Runs: []Run{
		runOf("etcd", 1, Figure{Name: "rate", Unit: Rate, Value: 100}),
		runOf("keel", 1, Figure{Name: "rate", Unit: Rate, Value: 300}),
		runOf("etcd", 2, Figure{Name: "rate", Unit: Rate, Value: 200}),
		runOf("keel", 2, Figure{Name: "rate", Unit: Rate, Value: 100}),
		runOf("etcd", 3, Figure{Name: "rate", Unit: Rate, Value: 300}),
		runOf("keel", 3, Figure{Name: "rate", Unit: Rate, Value: 500}),
	}}
	var b strings.Builder
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	// Medians: etcd 200, keel 300; ratio 1.50.
	var row string
	for line := range strings.SplitSeq(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "rate") {
			row = line
		}
	}
	want := []string{"100", "300", "200", "100", "300", "500", "200", "300", "1.50"}
	if got := strings.Fields(row)[2:]; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("row %q, want values %v", row, want)
	}
	if !strings.Contains(out, "etcd median") || !strings.Contains(out, "keel/etcd") {
		t.Errorf("no median or ratio columns:\n%s", out)
	}
	if !strings.Contains(out, "every run met the requirement") {
		t.Errorf("a run without failures is not reported as met:\n%s", out)
	}
}

func TestYesNoMedianIsYesOnlyWhenEveryRunSaidYes(t *testing.T) {
	runs := []*Run{
		{Figures: []Figure{{Name: "ok", Unit: Bool, Value: 1}}},
		{Figures: []Figure{{Name: "ok", Unit: Bool, Value: 0}}},
		{Figures: []Figure{{Name: "ok", Unit: Bool, Value: 1}}},
	}
	if m := median(runs, "ok", Bool); m.Value != 0 {
		t.Errorf("median of yes, no, yes = %v, want no", format(m, true))
	}
}

func TestMissingFiguresHaveNoRatio(t *testing.T) {
	keel := Figure{Unit: Bytes, Missing: true}
	etcd := Figure{Unit: Bytes, Value: 1 << 20}
	if r := ratio(keel, etcd); r != "" {
		t.Errorf("ratio with a missing figure = %q, want none", r)
	}
	if got := format(keel, true); got != "n/a" {
		t.Errorf("missing figure printed as %q, want n/a", got)
	}
}

func TestAFailedRunFailsTheReport(t *testing.T) {
	r := runOf("keel", 1)
	r.Failf("%d events lost", 3)
	rep := Report{Runs: []Run{runOf("etcd", 1), r}}
	if rep.OK() {
		t.Fatal("report with a failed run is OK")
	}
	var b strings.Builder
	rep.WriteText(&b)
	if !strings.Contains(b.String(), "keel round 1 FAILED: 3 events lost") {
		t.Errorf("failure not printed:\n%s", b.String())
	}
}

func TestMediansLeaveOutFailedRuns(t *testing.T) {
	rate := func(v float64) Figure { return Figure{Name: "rate", Unit: Rate, Value: v} }
	failed := runOf("keel", 2, rate(9000))
	failed.Failf("requests failed")
	broken := runOf("etcd", 3, rate(1))
	broken.Error = "server exited"
	rep := Report{Runs: []Run{
		runOf("etcd", 1, rate(100)), runOf("keel", 1, rate(200)),
		failed, runOf("etcd", 2, rate(300)),
		broken, runOf("keel", 3, rate(400)),
	}}
	s, ok := rep.Summary("rate")
	if !ok {
		t.Fatal("no summary")
	}
	if s.Etcd.Value != 200 || s.Keel.Value != 300 {
		t.Errorf("medians etcd %v, keel %v; want 200, 300 (failed runs left out)", s.Etcd.Value, s.Keel.Value)
	}
	if s.EtcdN != 2 || s.KeelN != 2 || s.EtcdMeasured != 3 || s.KeelMeasured != 3 {
		t.Errorf("n = %d/%d etcd, %d/%d keel; want 2/3 each", s.EtcdN, s.EtcdMeasured, s.KeelN, s.KeelMeasured)
	}
	if got := rep.FailedRuns(); got["etcd"] != 1 || got["keel"] != 1 {
		t.Errorf("FailedRuns = %v", got)
	}
}
