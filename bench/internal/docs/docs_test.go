package docs

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keeldb/keel/bench/internal/report"
)

// loadRuns fakes three rounds of a load step: etcd at etcdRate requests/s,
// keel at keelRate, with latencies that shrink as the rate grows.
func loadRuns(op string, etcdRate, keelRate float64) []report.Run {
	var runs []report.Run
	for round := 1; round <= 3; round++ {
		for _, srv := range []struct {
			name string
			rate float64
		}{{"etcd", etcdRate}, {"keel", keelRate}} {
			r := report.Run{Server: srv.name, Round: round}
			// Rounds vary around the rate; the median is the rate itself.
			r.Add(op+" throughput", report.Rate, srv.rate*(0.8+0.1*float64(round)))
			for i, p := range []string{"p50", "p90", "p99", "p99.9", "max"} {
				r.Add(op+" latency "+p, report.Millis, 1000/srv.rate*float64(i+1))
			}
			r.Add("server RSS idle", report.Bytes, 30<<20)
			// 10 s of requests at the rate, 5 s of CPU: 500 ms per
			// 1,000 requests at 1,000/s.
			r.Add("put requests ok", report.Count, 10*srv.rate)
			r.AddDuration("server CPU load", 5*time.Second)
			r.AddMissing("server goroutines idle", report.Count)
			runs = append(runs, r)
		}
	}
	return runs
}

func fakeSuite() *Suite {
	dataset := report.Report{Scenario: "dataset", Command: "cd bench && go run ./cmd/keelbench dataset -keys=1000"}
	for round := 1; round <= 3; round++ {
		e := report.Run{Server: "etcd", Round: round}
		e.Add("server RSS after loading the keys", report.Bytes, 400<<20)
		e.Add("server RssAnon after loading the keys", report.Bytes, 300<<20)
		e.Add("restart until /health ok", report.Seconds, 2)
		e.Add("snapshot save throughput", report.Rate, 100)
		e.Add("load throughput", report.Rate, 50000)
		e.Add("list page latency p50", report.Millis, 3)
		e.Add("list page latency p99", report.Millis, 9)
		e.Add("data dir size after loading the keys", report.Bytes, 600<<20)
		k := report.Run{Server: "keel", Round: round}
		k.Add("server RSS after loading the keys", report.Bytes, 100<<20)
		k.Add("server RssAnon after loading the keys", report.Bytes, 90<<20)
		k.Add("restart until /health ok", report.Seconds, 1.5)
		k.AddMissing("snapshot save throughput", report.Rate)
		k.Add("load throughput", report.Rate, 80000)
		k.Add("list page latency p50", report.Millis, 2)
		k.Add("list page latency p99", report.Millis, 5)
		k.Add("data dir size after loading the keys", report.Bytes, 200<<20)
		dataset.Runs = append(dataset.Runs, e, k)
	}
	failed := report.Report{Scenario: "put", Command: "cd bench && go run ./cmd/keelbench put -clients=100", Runs: loadRuns("put", 1000, 1600)}
	failed.Runs[3].Failf("%d requests failed, first: %s", 2, "deadline exceeded")
	return &Suite{
		Command:     "cd bench && go run ./cmd/keelbench suite -quick",
		Mode:        "quick",
		Environment: [][2]string{{"machine", "test CPU | 2 CPUs"}, {"etcd", "etcd Version: 3.7.3"}},
		Elapsed:     3 * time.Minute,
		Steps: []Step{
			{
				Label:  "put, 1 client / 1 conn",
				Report: report.Report{Scenario: "put", Command: "cd bench && go run ./cmd/keelbench put -clients=1", Runs: loadRuns("put", 2000, 2500)},
				Chart:  Chart{Throughput: "put throughput", Latency: "put", Overview: true},
				PerThousand: []PerThousand{
					{Name: "server CPU per 1,000 requests", Figure: "server CPU load", Per: "put requests ok"},
					{Name: "not derivable", Figure: "no such figure", Per: "put requests ok"},
				},
			},
			{
				Label:  "put, 100 clients / 10 conns",
				Report: failed,
				Chart:  Chart{Throughput: "put throughput", Latency: "put", Overview: true},
			},
			{
				Label:  "dataset, 1,000 keys",
				Report: dataset,
				Chart: Chart{
					Throughput: "load throughput",
					Latency:    "list page",
					Figures:    []string{"server RSS after loading the keys", "data dir size after loading the keys", "restart until /health ok", "snapshot save throughput", "not measured"},
				},
			},
			{Label: "k8s-mixed", Err: `keelbench: unknown scenario "k8s-mixed"`},
		},
		Targets: []Target{
			{Goal: "writes, 1 client: throughput", Step: "put, 1 client / 1 conn", Figure: "put throughput", Bound: 1},
			{Goal: "writes, 1 client: p99", Step: "put, 1 client / 1 conn", Figure: "put latency p99", AtMost: true, Bound: 1},
			{Goal: "writes, 100 clients: throughput", Step: "put, 100 clients / 10 conns", Figure: "put throughput", Bound: 1.5},
			{Goal: "RSS with the keys", Step: "dataset, 1,000 keys", Figure: "server RSS after loading the keys", AtMost: true, Bound: 0.5},
			{Goal: "RssAnon with the keys", Step: "dataset, 1,000 keys", Figure: "server RssAnon after loading the keys", AtMost: true, Bound: 0.5, Note: "anonymous memory only"},
			{Goal: "restart", Step: "dataset, 1,000 keys", Figure: "restart until /health ok", AtMost: true, Bound: 0.5},
			{Goal: "not run", Step: "no such step", Figure: "x", Bound: 1},
		},
	}
}

func TestDocumentHasTheTargetsVerdictsAndEveryStepsMedians(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "benchmarks.md")
	if err := Write(path, fakeSuite()); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	for _, want := range []string{
		"`cd bench && go run ./cmd/keelbench suite -quick`",
		"same machine as the server",
		"**Quick mode**",
		`| machine | test CPU \| 2 CPUs |`,
		// 2500/2000 = 1.25 >= 1: pass. p99: 1000/2500*3 / (1000/2000*3) = 0.80 <= 1: pass.
		"| writes, 1 client: throughput | [put, 1 client / 1 conn](#put-1-client--1-conn) | put throughput (/s) | 2000 | 2500 | 1.25 | >= 1.00 | **PASS** |",
		"| writes, 1 client: p99 | [put, 1 client / 1 conn](#put-1-client--1-conn) | put latency p99 (ms) | 1.50 | 1.20 | 0.80 | <= 1.00 | **PASS** |",
		// 1600/1000 = 1.6 >= 1.5 would pass, but a run failed: keel's
		// median is over its 2 other runs, and the target is not judged.
		"| 1000 | 1600 (n=2) | 1.60 | >= 1.50 | **FAILED RUNS**: keel: 1 of 3 runs failed |",
		"The medians leave out the runs that failed (keel: 1 of 3 runs failed)",
		"| put throughput (/s) | 1000 | 1600 (n=2) | 1.60 |",
		// 5 s per 20,000 and 25,000 requests (the median rounds).
		"| server CPU per 1,000 requests (ms) | 250.00 | 200.00 | 0.80 |",
		"| server RssAnon after loading the keys (MiB) | 300.0 | 90.0 | 0.30 | <= 0.50 | **PASS** |",
		"- *RssAnon with the keys*: anonymous memory only",
		"swap places every round",
		"| server RSS after loading the keys (MiB) | 400.0 | 100.0 | 0.25 | <= 0.50 | **PASS** |",
		"| restart until /health ok (s) | 2.000 | 1.500 | 0.75 | <= 0.50 | **MISS** |",
		"keel round 2 FAILED: 2 requests failed, first: deadline exceeded",
		"**Did not run**: keelbench: unknown scenario \"k8s-mixed\"",
		"| snapshot save throughput (/s) | 100 | n/a | – |",
		"| server goroutines idle (n) | n/a | n/a | – |",
		"Runs: 3 × etcd and 3 × keel, alternating",
		"![throughput, keel/etcd, every step](benchmarks/throughput-ratio.png)",
		"![put, 1 client / 1 conn](benchmarks/put-1-client-1-conn.png)",
		"![dataset, 1,000 keys](benchmarks/dataset-1-000-keys.png)",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("document lacks %q", want)
		}
	}
	if strings.Contains(doc, "not derivable") {
		t.Errorf("a derived figure no run yields is in the document")
	}
	if strings.Contains(doc, "not run |") {
		t.Errorf("a target of a step that did not run is in the summary:\n%s", doc)
	}
}

func TestChartsAreNonEmptyPNGs(t *testing.T) {
	dir := t.TempDir()
	if err := Write(filepath.Join(dir, "benchmarks.md"), fakeSuite()); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"throughput-ratio.png", "put-1-client-1-conn.png", "put-100-clients-10-conns.png", "dataset-1-000-keys.png"} {
		data, err := os.ReadFile(filepath.Join(dir, "benchmarks", name))
		if err != nil {
			t.Errorf("chart not written: %v", err)
			continue
		}
		img, err := png.Decode(bytes.NewReader(data))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if b := img.Bounds(); b.Dx() < 300 || b.Dy() < 200 {
			t.Errorf("%s is %dx%d, too small to read", name, b.Dx(), b.Dy())
		}
	}
	// A step that did not run has no chart.
	if _, err := os.Stat(filepath.Join(dir, "benchmarks", "k8s-mixed.png")); err == nil {
		t.Error("chart drawn for a step that did not run")
	}
}

func TestSlugAndAnchor(t *testing.T) {
	for _, c := range []struct{ label, slug, anchor string }{
		{"put, 100 clients / 10 conns", "put-100-clients-10-conns", "put-100-clients--10-conns"},
		{"dataset, 1,000,000 keys", "dataset-1-000-000-keys", "dataset-1000000-keys"},
		{"watch fan-out", "watch-fan-out", "watch-fan-out"},
	} {
		if got := Slug(c.label); got != c.slug {
			t.Errorf("Slug(%q) = %q, want %q", c.label, got, c.slug)
		}
		if got := anchor(c.label); got != c.anchor {
			t.Errorf("anchor(%q) = %q, want %q", c.label, got, c.anchor)
		}
	}
}

func TestTheSavedSuiteWritesTheSameDocument(t *testing.T) {
	dir := t.TempDir()
	first := filepath.Join(dir, "a.md")
	if err := Write(first, fakeSuite()); err != nil {
		t.Fatal(err)
	}
	saved, err := Read(filepath.Join(dir, "a", DataFile))
	if err != nil {
		t.Fatal(err)
	}
	second := filepath.Join(dir, "b.md")
	if err := Write(second, saved); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(first)
	b, _ := os.ReadFile(second)
	// The chart directories differ by name only.
	if got := strings.ReplaceAll(string(b), "](b/", "](a/"); got != string(a) {
		t.Errorf("document from the saved suite differs:\n%s\n---\n%s", a, b)
	}
}
