package compat

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	humanize "github.com/dustin/go-humanize"

	"github.com/keeldb/keel/snapshot"
)

// Golden tests of keelctl snapshot save (etcdctl 3.7's only snapshot
// command) and of the format of keelctl snapshot status, which etcd 3.7
// moved to etcdutl.

func TestCtlSnapshotSave(t *testing.T) {
	tw := newCtlTwins(t)
	if err := os.Mkdir(filepath.Join(tw.dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	tw.run(seq(
		[]twinStep{
			line("put", "a", "1"),
			line("put", "b", "2"),
			line("del", "a"),
			// Saved: the log lines (created temporary db file, fetching
			// snapshot, fetched snapshot, saved) and "Snapshot saved at
			// <file>" with the server's version.
			line("snapshot", "save", "{dir}/a.db"),
			// Saved again over the file.
			line("snapshot", "save", "{dir}/a.db"),
			line("snapshot", "save", "--command-timeout=10s", "{dir}/b.db"),
			// The errors: no argument, two, a directory as the target (the
			// .part beside it is written, then the rename fails), a
			// directory that does not exist.
			line("snapshot", "save"),
			line("snapshot", "save", "{dir}/x.db", "{dir}/y.db"),
			line("snapshot", "save", "{dir}/sub"),
			line("snapshot", "save", "{dir}/nope/c.db"),
			line("snapshot", "save", "--bogus", "{dir}/d.db"),
			// More than one endpoint, and one nobody listens on (without
			// --command-timeout etcdctl waits for it forever).
			{NoEndpoints: true, Args: []string{"--endpoints={endpoint}," + deadEndpoint, "snapshot", "save", "{dir}/e.db"}},
			{NoEndpoints: true, Args: []string{"--endpoints=" + deadEndpoint, "--command-timeout=1s", "snapshot", "save", "{dir}/g.db"}},
		},
	)...)
	for _, name := range []string{"x.db", "y.db", "sub.part", "c.db", "d.db", "e.db", "f.db", "g.db"} {
		if _, err := os.Stat(filepath.Join(tw.dir, name)); !os.IsNotExist(err) {
			t.Errorf("%s exists after a failed save (%v)", name, err)
		}
	}
	if _, err := os.Stat(tw.dir + ".part"); !os.IsNotExist(err) {
		t.Errorf("the .part beside the directory target is left (%v)", err)
	}
}

// etcdutlPackage is the official etcdutl, pinned in go.mod by the tool
// directive.
const etcdutlPackage = "go.etcd.io/etcd/etcdutl/v3"

var etcdutl struct {
	once sync.Once
	path string
	err  error
}

// buildEtcdutl builds etcdutl at the version compat/go.mod pins into the
// directory of etcdctl.
func buildEtcdutl(t *testing.T) string {
	t.Helper()
	dir := filepath.Dir(buildEtcdctl(t))
	etcdutl.once.Do(func() {
		goTool, err := findGoTool()
		if err != nil {
			etcdutl.err = err
			return
		}
		out := filepath.Join(dir, "etcdutl")
		ctx, cancel := context.WithTimeout(context.Background(), etcdctlBuildTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, goTool, "build", "-o", out, etcdutlPackage)
		cmd.Dir = "."
		if msg, err := cmd.CombinedOutput(); err != nil {
			etcdutl.err = fmt.Errorf("go build %s: %v\n%s", etcdutlPackage, err, msg)
			return
		}
		etcdutl.path = out
	})
	if etcdutl.err != nil {
		t.Fatal(etcdutl.err)
	}
	return etcdutl.path
}

// statusValues are the values of a snapshot status, as each format spells
// them, most specific first: they are replaced by placeholders so that the
// format of two files' statuses (headers, field names and order, JSON
// keys, number formatting, table layout) can be compared when the values
// cannot be equal (an etcd file and a keel file).
func statusValues(t *testing.T, hash uint32, rev, keys, size int64, version string) [][2]string {
	t.Helper()
	vals := [][2]string{
		{humanize.Bytes(uint64(size)), "<size-human>"},
		{version, "<version>"},
		{fmt.Sprintf("%x", hash), "<hash-hex>"},
		{fmt.Sprint(hash), "<hash>"},
		{fmt.Sprint(size), "<size>"},
		{fmt.Sprint(rev), "<revision>"},
		{fmt.Sprint(keys), "<keys>"},
	}
	seen := map[string]bool{}
	for _, v := range vals {
		if seen[v[0]] {
			t.Fatalf("two status values are both %q: the placeholders would be ambiguous; change the test data", v[0])
		}
		seen[v[0]] = true
	}
	return vals
}

var (
	tableBorder = regexp.MustCompile(`([─━\-=])+`)
	tableCell   = regexp.MustCompile(`^( *)(.*?)( *)$`)
	alnum       = regexp.MustCompile(`[A-Za-z0-9]`)
)

// normaliseStatus replaces the values in out by placeholders and reduces a
// table to its structure: border runs to one character, and each cell to
// its text with its alignment (L, R, C, or = when it fills its column), so
// that columns of different widths compare equal while the headers, their
// order and the alignment of each cell are kept.
func normaliseStatus(out string, vals [][2]string) string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.ContainsAny(l, "│|") && !strings.ContainsAny(l, "─-"):
			sep := "│"
			if !strings.Contains(l, sep) {
				sep = "|"
			}
			parts := strings.Split(l, sep)
			for i := 1; i < len(parts)-1; i++ {
				m := tableCell.FindStringSubmatch(parts[i])
				lead, text, trail := len(m[1]), m[2], len(m[3])
				align := "="
				switch {
				case text == "":
					align = "empty"
				case lead > 1 && trail > 1:
					align = "C"
				case lead > 1:
					align = "R"
				case trail > 1:
					align = "L"
				}
				parts[i] = text + "/" + align
			}
			l = strings.Join(parts, sep)
		case strings.ContainsAny(l, "─-") && !alnum.MatchString(l):
			l = tableBorder.ReplaceAllString(l, "$1")
		}
		lines = append(lines, l)
	}
	s := strings.Join(lines, "\n")
	for _, v := range vals {
		s = regexp.MustCompile(`(^|[^0-9a-zA-Z.])`+regexp.QuoteMeta(v[0])+`($|[^0-9a-zA-Z.])`).ReplaceAllString(s, "${1}"+v[1]+"${2}")
	}
	return s
}

// TestCtlSnapshotStatusFormat compares keelctl snapshot status of a keel
// file with etcdutl 3.7.3's snapshot status of an etcd file, in every
// output format, with the values replaced by placeholders (they are the
// files' own: etcd's hash is over its bbolt pages and its key count counts
// every bucket's keys, keel's are over its own records), and the errors.
func TestCtlSnapshotStatusFormat(t *testing.T) {
	etcdctl, keelctl, etcdutl := buildEtcdctl(t), buildKeelctl(t), buildEtcdutl(t)
	dir := t.TempDir()
	e, k := startEtcd(t, "etcd"), startKeel(t, "keel")
	files := [2]string{filepath.Join(dir, "etcd.db"), filepath.Join(dir, "keel.db")}
	for i, tg := range []*target{e, k} {
		for j := range 3 {
			if _, err := tg.client.Put(context.Background(), fmt.Sprintf("k%d", j), "v"); err != nil {
				t.Fatal(err)
			}
		}
		if code, _, errOut := runBin(t, etcdctl, "--endpoints="+tg.endpoint, "snapshot", "save", files[i]); code != 0 {
			t.Fatalf("save %s: exit %d: %s", files[i], code, errOut)
		}
	}

	code, out, errOut := runBin(t, etcdutl, "snapshot", "status", files[0], "-w", "json")
	if code != 0 {
		t.Fatalf("etcdutl snapshot status: exit %d: %s", code, errOut)
	}
	var es struct {
		Hash      uint32 `json:"hash"`
		Revision  int64  `json:"revision"`
		TotalKey  int64  `json:"totalKey"`
		TotalSize int64  `json:"totalSize"`
		Version   string `json:"version"`
	}
	if err := json.Unmarshal([]byte(out), &es); err != nil {
		t.Fatalf("etcdutl json %q: %v", out, err)
	}
	f, err := os.Open(files[1])
	if err != nil {
		t.Fatal(err)
	}
	ki, err := snapshot.Verify(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	vals := [2][][2]string{
		statusValues(t, es.Hash, es.Revision, es.TotalKey, es.TotalSize, es.Version),
		statusValues(t, ki.Hash, ki.Revision, ki.TotalKeys, ki.Size, ki.StorageVersion),
	}
	if es.Revision != ki.Revision {
		t.Errorf("revision: etcd's file %d, keel's %d, after the same writes", es.Revision, ki.Revision)
	}

	bins := [2]string{etcdutl, keelctl}
	for _, args := range [][]string{
		{"-w", "simple"}, {"-w", "json"}, {"-w", "fields"}, {"-w", "table"}, {"-w", "protobuf"}, {"-w", "yaml"}, {},
	} {
		var runs [2]twinRun
		for side := range runs {
			code, out, errOut := runBin(t, bins[side], append([]string{"snapshot", "status", files[side]}, args...)...)
			runs[side] = twinRun{
				code:   code,
				stdout: normaliseStatus(out, vals[side]),
				stderr: normaliseStderr(normaliseStatus(strings.ReplaceAll(strings.ReplaceAll(errOut, files[side], "<file>"), "etcdutl", "keelctl"), vals[side])),
			}
		}
		t.Logf("snapshot status %v, normalised: exit %d\n%s%s", args, runs[1].code, runs[1].stdout, runs[1].stderr)
		if diff := compareCtlRuns(runs[0], runs[1]); diff != "" {
			t.Errorf("snapshot status %v: %s\netcdutl (etcd file):\n%s%s\nkeelctl (keel file):\n%s%s", args, diff,
				runs[0].stdout, runs[0].stderr, runs[1].stdout, runs[1].stderr)
		}
	}

	// The errors, on the same arguments.
	for _, args := range [][]string{
		{"snapshot", "status"},
		{"snapshot", "status", files[0], files[1]},
		{"snapshot", "status", filepath.Join(dir, "missing.db")},
	} {
		var runs [2]twinRun
		for side := range runs {
			code, out, errOut := runBin(t, bins[side], args...)
			runs[side] = twinRun{code: code, stdout: out, stderr: normaliseStderr(strings.ReplaceAll(errOut, "etcdutl", "keelctl"))}
		}
		if diff := compareCtlRuns(runs[0], runs[1]); diff != "" {
			t.Errorf("%v: %s\netcdutl:\n%s%s\nkeelctl:\n%s%s", args, diff, runs[0].stdout, runs[0].stderr, runs[1].stdout, runs[1].stderr)
		}
	}
}
