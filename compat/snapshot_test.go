package compat

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/keeldb/keel/snapshot"
)

// runBin runs a CLI binary and returns its exit code, stdout and stderr.
func runBin(t *testing.T, bin string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), etcdctlTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = ctlEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %v: %v", bin, args, ctx.Err())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}

// TestSnapshotSaveOfKeelWithEtcdctlAndKeelctl saves a keel member's
// snapshot with the official etcdctl and with keelctl: both succeed with
// etcdctl's output, leave no .part file, and produce a file keel's decoder
// verifies, of the member's revision and keys; keelctl snapshot status
// reports it.
func TestSnapshotSaveOfKeelWithEtcdctlAndKeelctl(t *testing.T) {
	etcdctl, keelctl := buildEtcdctl(t), buildKeelctl(t)
	k := startKeel(t, "keel")
	for i := range 50 {
		if _, err := k.client.Put(context.Background(), fmt.Sprintf("k%02d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := k.client.Delete(context.Background(), "k00"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, bin := range []string{etcdctl, keelctl} {
		name := filepath.Base(bin)
		file := filepath.Join(dir, name+".db")
		code, out, errOut := runBin(t, bin, "--endpoints="+k.endpoint, "snapshot", "save", file)
		if code != 0 {
			t.Fatalf("%s snapshot save: exit %d\n%s", name, code, errOut)
		}
		if want := "Snapshot saved at " + file + "\nServer version 3.7.0\n"; out != want {
			t.Fatalf("%s printed %q, want %q", name, out, want)
		}
		if !strings.Contains(errOut, `"msg":"fetched snapshot"`) {
			t.Errorf("%s logged no fetched snapshot: %s", name, errOut)
		}
		if _, err := os.Stat(file + ".part"); !os.IsNotExist(err) {
			t.Fatalf("%s left %s.part: %v", name, file, err)
		}
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		info, err := snapshot.Verify(f)
		f.Close()
		if err != nil {
			t.Fatalf("the file %s saved does not verify: %v", name, err)
		}
		if info.Revision != 52 || info.TotalKeys != 49 {
			t.Fatalf("%s's file: revision %d, %d keys; want 52, 49", name, info.Revision, info.TotalKeys)
		}

		code, out, errOut = runBin(t, keelctl, "snapshot", "status", file, "-w", "json")
		if code != 0 {
			t.Fatalf("keelctl snapshot status: exit %d: %s", code, errOut)
		}
		var st struct {
			Hash      uint32 `json:"hash"`
			Revision  int64  `json:"revision"`
			TotalKey  int64  `json:"totalKey"`
			TotalSize int64  `json:"totalSize"`
			Version   string `json:"version"`
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status json %q: %v", out, err)
		}
		if st.Hash != info.Hash || st.Revision != 52 || st.TotalKey != 49 || st.TotalSize != info.Size || st.Version != "3.7.0" {
			t.Fatalf("status %+v, info %+v", st, info)
		}
		// The table is as wide as its cells: a hash of fewer than eight hex
		// digits makes a narrower HASH column, padded only up to "HASH".
		code, out, _ = runBin(t, keelctl, "snapshot", "status", file, "-w", "table")
		row := regexp.MustCompile(fmt.Sprintf(`│ +%x +│       52 │         49 │`, info.Hash))
		if code != 0 || !strings.Contains(out, "│ REVISION │ TOTAL KEYS │ TOTAL SIZE │ VERSION │") || !row.MatchString(out) {
			t.Fatalf("status table (exit %d):\n%s", code, out)
		}
	}

	// A damaged file is refused with a clear error.
	data, err := os.ReadFile(filepath.Join(dir, "keelctl.db"))
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.db")
	if err := os.WriteFile(bad, data[:len(data)-100], 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runBin(t, keelctl, "snapshot", "status", bad); code != 1 || !strings.Contains(errOut, "snapshot file is corrupt") {
		t.Fatalf("status of a truncated file: exit %d, %q", code, errOut)
	}
}

// TestSnapshotSaveNeedsOneEndpoint: keelctl refuses several endpoints with
// etcdctl's message and exit code.
func TestSnapshotSaveNeedsOneEndpoint(t *testing.T) {
	etcdctl, keelctl := buildEtcdctl(t), buildKeelctl(t)
	file := filepath.Join(t.TempDir(), "x.db")
	args := []string{"--endpoints=127.0.0.1:1,127.0.0.1:2", "snapshot", "save", file}
	wc, wout, werr := runBin(t, etcdctl, args...)
	gc, gout, gerr := runBin(t, keelctl, args...)
	lastLine := func(s string) string {
		lines := strings.Split(strings.TrimSpace(s), "\n")
		return lines[len(lines)-1]
	}
	if wc != gc || wout != gout || lastLine(werr) != lastLine(gerr) {
		t.Fatalf("etcdctl: %d %q %q\nkeelctl: %d %q %q", wc, wout, lastLine(werr), gc, gout, lastLine(gerr))
	}
	for _, args := range [][]string{{"snapshot", "save"}, {"snapshot", "save", "a", "b"}} {
		wc, _, werr := runBin(t, etcdctl, args...)
		gc, _, gerr := runBin(t, keelctl, args...)
		if wc != gc || lastLine(werr) != lastLine(gerr) {
			t.Fatalf("%v: etcdctl %d %q, keelctl %d %q", args, wc, lastLine(werr), gc, lastLine(gerr))
		}
	}
}

// TestKeelctlSnapshotSaveOfEtcd: keelctl saves real etcd's snapshot (its
// bbolt file) as etcdctl does, and keelctl's status reads it (the values
// are compared with etcdutl's in TestSnapshotFromEtcdImportsIntoKeel).
func TestKeelctlSnapshotSaveOfEtcd(t *testing.T) {
	keelctl := buildKeelctl(t)
	ep := startCtlTwinEtcd(t, "etcd")
	file := filepath.Join(t.TempDir(), "etcd.db")
	code, out, errOut := runBin(t, keelctl, "--endpoints="+ep, "snapshot", "save", file)
	if code != 0 || !strings.HasPrefix(out, "Snapshot saved at "+file+"\n") {
		t.Fatalf("exit %d, %q, %s", code, out, errOut)
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Size()%512 != 32 {
		t.Fatalf("etcd's file: %v %v", fi, err)
	}
	if code, out, errOut := runBin(t, keelctl, "snapshot", "status", file, "-w", "simple"); code != 0 || strings.Count(out, ", ") != 4 {
		t.Fatalf("status of etcd's file: exit %d, %q, %s", code, out, errOut)
	}
}
