package compat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// etcdctlPackage is the official etcdctl, pinned in go.mod by the tool
// directive, so the build below uses exactly the version this module requires.
const etcdctlPackage = "go.etcd.io/etcd/etcdctl/v3"

// etcdctlTimeout bounds one etcdctl run; building takes longer on a cold cache.
const (
	etcdctlTimeout      = 60 * time.Second
	etcdctlBuildTimeout = 10 * time.Minute
)

// etcdctl is built at most once per test binary run, into buildDir, which
// TestMain removes.
var etcdctl struct {
	once     sync.Once
	buildDir string
	path     string
	err      error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if etcdctl.buildDir != "" {
		_ = os.RemoveAll(etcdctl.buildDir)
	}
	os.Exit(code)
}

// buildEtcdctl returns the path of an etcdctl binary built from the module
// cache (downloaded through the Go module proxy if needed).
func buildEtcdctl(t *testing.T) string {
	t.Helper()
	etcdctl.once.Do(func() {
		goTool, err := findGoTool()
		if err != nil {
			etcdctl.err = err
			return
		}
		dir, err := os.MkdirTemp("", "keel-compat-etcdctl-")
		if err != nil {
			etcdctl.err = err
			return
		}
		etcdctl.buildDir = dir
		out := filepath.Join(dir, "etcdctl")
		ctx, cancel := context.WithTimeout(context.Background(), etcdctlBuildTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, goTool, "build", "-o", out, etcdctlPackage)
		cmd.Dir = "." // the compat module, whose go.mod pins etcdctl
		if msg, err := cmd.CombinedOutput(); err != nil {
			etcdctl.err = fmt.Errorf("go build %s: %v\n%s", etcdctlPackage, err, msg)
			return
		}
		etcdctl.path = out
	})
	if etcdctl.err != nil {
		t.Fatalf("build etcdctl: %v", etcdctl.err)
	}
	return etcdctl.path
}

func findGoTool() (string, error) {
	if root := os.Getenv("GOROOT"); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("the go tool is needed to build etcdctl: %w", err)
	}
	return p, nil
}

// ctlStep is one etcdctl invocation of the sequence.
type ctlStep struct {
	args  []string
	stdin string
}

func ctl(args ...string) ctlStep { return ctlStep{args: args} }

func ctlIn(stdin string, args ...string) ctlStep { return ctlStep{args: args, stdin: stdin} }

// etcdctlSteps is the etcdctl command sequence run on both sides. Revisions
// in the arguments are literal: both stores start empty and see the same
// writes, so they reach the same revisions (revision 1 is the empty store).
func etcdctlSteps() []ctlStep {
	steps := []ctlStep{
		ctl("put", "foo", "bar"),                           // rev 2
		ctl("put", "foo/a", "1"),                           // 3
		ctl("put", "foo/b", "2"),                           // 4
		ctl("put", "foo/c", "3"),                           // 5
		ctl("put", "zoo", "z"),                             // 6
		ctl("put", "foo", "bar2"),                          // 7
		ctl("put", "foo/a", "10"),                          // 8
		ctl("put", "--prev-kv", "foo", "bar3"),             // 9
		ctl("put", "-w", "json", "k", "v"),                 // 10
		ctl("put", "-w", "fields", "--prev-kv", "k", "v2"), // 11
		ctl("put", "", "empty-key"),
		ctl("put", "--ignore-value", "k"), // 12
		ctl("put", "--ignore-value", "missing"),
		ctl("put", "--lease=1234", "k", "leased"),

		ctl("get", "foo"),
		ctl("get", "-w", "json", "foo"),
		ctl("get", "-w", "fields", "foo"),
		ctl("get", "--prefix", "foo"),
		ctl("get", "--prefix", "--keys-only", "foo"),
		ctl("get", "--prefix", "--limit=2", "foo"),
		ctl("get", "--prefix", "--limit=2", "-w", "json", "foo"),
		ctl("get", "--prefix", "--rev=4", "foo"),
		ctl("get", "--prefix", "--rev=4", "-w", "json", "foo"),
		ctl("get", "--from-key", "foo/b"),
		ctl("get", "foo", "foo/c"),
		ctl("get", "--prefix", "--print-value-only", "foo"),
		ctl("get", "--prefix", "--count-only", "-w", "fields", "foo"),
		ctl("get", "--consistency=s", "--prefix", "foo"),
		ctl("get", "missing"),
		ctl("get", "-w", "json", "missing"),
		ctl("get", "--rev=1000", "foo"),
		ctl("get", "--sort-by=NOPE", "foo"),

		ctl("del", "foo/a"),              // 13
		ctl("del", "--prev-kv", "foo/b"), // 14
		ctl("del", "missing"),
		ctl("del", "-w", "json", "--prev-kv", "k"), // 15
		ctl("put", "foo/a", "again"),               // 16
		ctl("put", "foo/d", "4"),                   // 17

		// Success branch, failure branch, fields output, a read-only txn.
		ctlIn("value(\"foo\") = \"bar3\"\nmod(\"zoo\") > \"0\"\n\nput foo ok\nget foo\n\nput foo failed\n\n", "txn"),                            // 18
		ctlIn("value(\"foo\") = \"bar3\"\n\nput foo ok2\n\nput foo failed\nget foo --prefix\n\n", "txn", "-w", "json"),                          // 19
		ctlIn("ver(\"foo\") > \"1\"\ncreate(\"zoo\") = \"6\"\n\ndel foo/d\nget foo --prefix --keys-only\n\nput x y\n\n", "txn", "-w", "fields"), // 20
		ctlIn("mod(\"foo\") < \"3\"\n\nput a 1\n\nget zoo\n\n", "txn"),
		// Rejected by the server (duplicate key) and by etcdctl (bad compares).
		ctlIn("\nput dup 1\nput dup 2\n\n\n", "txn"),
		ctlIn("nonsense(\"foo\") = \"1\"\n\n\n\n", "txn"),
		ctlIn("mod(\"foo\") > \"abc\"\n\n\n\n", "txn"),

		ctl("compaction", "5"),
		ctl("get", "--rev=3", "foo"),
		ctl("get", "--rev=5", "--prefix", "foo"),
		ctl("compaction", "5"),
		ctl("compaction", "4"),
		ctl("compaction", "--physical", "9"),
		ctl("get", "--rev=8", "--prefix", "foo"),
		ctl("get", "--rev=9", "--prefix", "foo"),
		ctl("compaction", "1000"),

		// Keys whose key, version, create, modify and value orders differ.
		ctl("put", "a/3", "x"),
		ctl("put", "a/1", "z"),
		ctl("put", "a/2", "y"),
		ctl("put", "a/1", "w"),
		ctl("put", "a/4", "v"),
		ctl("put", "a/1", "u"),
		ctl("put", "a/3", "t"),
	}
	for _, by := range []string{"KEY", "VERSION", "CREATE", "MODIFY", "VALUE"} {
		for _, order := range []string{"ASCEND", "DESCEND"} {
			steps = append(steps, ctl("get", "--prefix", "--sort-by="+by, "--order="+order, "a"))
		}
	}
	return append(steps,
		ctl("del", "--prefix", "foo"),
		ctl("del", "--prefix", "-w", "json", "a"),
		ctl("get", "--prefix", "foo"),
		ctl("get", "--from-key", ""),

		ctl("member", "list", "-w", "table"),
		ctl("member", "list", "-w", "json"),
		ctl("member", "list", "-w", "fields"),
		ctl("endpoint", "status", "-w", "table"),
		ctl("endpoint", "status", "-w", "json"),
		ctl("endpoint", "status", "-w", "fields"),
		ctl("endpoint", "health", "-w", "table"),
		ctl("endpoint", "health", "-w", "json"),
	)
}

// TestEtcdctlAgainstKeel runs the same etcdctl command sequence against a
// fresh etcd and a fresh keel and requires the same exit codes and the same
// output once what legitimately differs is masked (member and cluster ids,
// versions, database sizes, raft indexes, URLs and ports).
func TestEtcdctlAgainstKeel(t *testing.T) {
	ref, sut := startPair(t)
	bin := buildEtcdctl(t)

	for i, st := range etcdctlSteps() {
		// One subtest per step, for the name in the report; the steps depend
		// on each other and run in order.
		t.Run(fmt.Sprintf("%02d %s", i, strings.Join(st.args, " ")), func(t *testing.T) {
			a := runEtcdctl(t, bin, ref, st)
			b := runEtcdctl(t, bin, sut, st)
			if a.code != b.code || a.stdout != b.stdout || a.stderr != b.stderr {
				t.Errorf("etcdctl %s%s\n%s: exit %d\nstdout:\n%s\nstderr:\n%s\n%s: exit %d\nstdout:\n%s\nstderr:\n%s",
					strings.Join(quoteArgs(st.args), " "), stdinNote(st),
					ref.name, a.code, a.stdout, a.stderr, sut.name, b.code, b.stdout, b.stderr)
			}
		})
	}
}

func quoteArgs(args []string) []string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \"'") {
			a = fmt.Sprintf("%q", a)
		}
		q[i] = a
	}
	return q
}

func stdinNote(st ctlStep) string {
	if st.stdin == "" {
		return ""
	}
	return fmt.Sprintf(" <<< %q", st.stdin)
}

// ctlResult is the masked outcome of one etcdctl run.
type ctlResult struct {
	code           int
	stdout, stderr string
}

func runEtcdctl(t *testing.T, bin string, tg *target, st ctlStep) ctlResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), etcdctlTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--endpoints=" + tg.endpoint}, st.args...)...)
	cmd.Stdin = strings.NewReader(st.stdin)
	cmd.Env = ctlEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ctx.Err() != nil {
			t.Fatalf("etcdctl %v against %s: %v (stderr: %s)", st.args, tg, err, stderr.String())
		}
		code = ee.ExitCode()
	}
	return ctlResult{code: code, stdout: maskOutput(stdout.String()), stderr: maskStderr(stderr.String())}
}

// ctlEnv is the environment without ETCDCTL_* variables, so that nothing
// outside the test changes what etcdctl does.
func ctlEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCDCTL_") {
			env = append(env, kv)
		}
	}
	return env
}

var (
	hostPort = regexp.MustCompile(`127\.0\.0\.1:\d+`)
	// Fields-format lines whose values identify the member or describe its
	// storage. Status versions are quoted, a key's version is a number.
	maskedFieldLine = regexp.MustCompile(`(?m)^("(?:ClusterID|MemberID|ID|Leader|StorageVersion|DBSize|DBSizeInUse|RaftIndex|RaftAppliedIndex|PeerURL|ClientURL|Endpoint|Took)" :|"Version" : ").*$`)
)

// maskedColumns are the table columns (headers as etcdctl prints them) whose
// values legitimately differ between etcd and keel.
var maskedColumns = map[string]bool{
	"ID": true, "ENDPOINT": true, "VERSION": true, "STORAGE VERSION": true,
	"DB SIZE": true, "IN USE": true, "PERCENTAGE NOT IN USE": true,
	"RAFT INDEX": true, "RAFT APPLIED INDEX": true, "PEER ADDRS": true, "CLIENT ADDRS": true,
	"TOOK": true,
}

// maskedJSONKeys are the JSON keys whose values legitimately differ.
var maskedJSONKeys = map[string]bool{
	"cluster_id": true, "member_id": true, "ID": true, "leader": true,
	"storageVersion": true, "dbSize": true, "dbSizeInUse": true,
	"raftIndex": true, "raftAppliedIndex": true, "peerURLs": true, "clientURLs": true, "Endpoint": true,
	"took": true,
}

// maskOutput replaces what legitimately differs with "*": tables cell by
// column, JSON value by key, fields line by name, and any loopback port.
func maskOutput(s string) string {
	if m, ok := maskJSONLines(s); ok {
		return hostPort.ReplaceAllString(m, "127.0.0.1:*")
	}
	if strings.HasPrefix(s, "+") || strings.HasPrefix(s, "┌") {
		s = maskTable(s)
	}
	s = maskedFieldLine.ReplaceAllStringFunc(s, func(line string) string {
		name, _, _ := strings.Cut(line, " :")
		return name + " : *"
	})
	return hostPort.ReplaceAllString(s, "127.0.0.1:*")
}

// maskStderr drops the client library's log lines (they carry timestamps)
// and masks ports; what remains is etcdctl's own error text.
func maskStderr(s string) string {
	var keep []string
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, `{"level":`) {
			continue
		}
		keep = append(keep, line)
	}
	return hostPort.ReplaceAllString(strings.Join(keep, "\n"), "127.0.0.1:*")
}

// maskTable rewrites a table (ASCII or box-drawing) as trimmed cells, so that
// column widths (which follow the masked values) do not matter, and masks
// whole columns.
func maskTable(s string) string {
	var out []string
	var header []string
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		if strings.ContainsAny(line[:min(len(line), 4)], "+┌├└") {
			continue // a border
		}
		if !strings.HasPrefix(line, "|") && !strings.HasPrefix(line, "│") {
			out = append(out, line)
			continue
		}
		line = strings.ReplaceAll(line, "│", "|")
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if header == nil {
			header = cells
		} else {
			for i := range cells {
				if i < len(header) && maskedColumns[header[i]] {
					cells[i] = "*"
				}
			}
		}
		out = append(out, strings.Join(cells, " | "))
	}
	return strings.Join(out, "\n") + "\n"
}

// maskJSONLines masks output made of JSON documents, one per line. It
// reports false if any non-empty line is not JSON.
func maskJSONLines(s string) (string, bool) {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) == 0 || strings.TrimSpace(s) == "" {
		return "", false
	}
	var out []string
	for _, line := range lines {
		if strings.TrimSpace(line) == "" {
			out = append(out, line)
			continue
		}
		dec := json.NewDecoder(strings.NewReader(line))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil || dec.More() {
			return "", false
		}
		if _, ok := v.(string); ok {
			return "", false // a quoted value, not a document
		}
		v = maskJSON(v)
		b, err := json.Marshal(v)
		if err != nil {
			return "", false
		}
		out = append(out, string(b))
	}
	return strings.Join(out, "\n") + "\n", true
}

func maskJSON(v any) any {
	switch x := v.(type) {
	case map[string]any:
		_, status := x["raftIndex"]
		if _, ok := x["storageVersion"]; ok {
			status = true
		}
		for k, e := range x {
			if maskedJSONKeys[k] || (status && k == "version") {
				x[k] = "*"
				continue
			}
			x[k] = maskJSON(e)
		}
		return x
	case []any:
		for i := range x {
			x[i] = maskJSON(x[i])
		}
		return x
	default:
		return v
	}
}
