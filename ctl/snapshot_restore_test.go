package ctl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSnapshotRestoreBadArguments checks the argument errors of `snapshot
// restore`, which etcdutl ends with exit code 128, before anything is read
// or created.
func TestSnapshotRestoreBadArguments(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "d")
	for _, tc := range []struct {
		name string
		args []string
		code int
		err  string
	}{
		{"no file", []string{"snapshot", "restore", "--data-dir", dataDir}, ExitBadArgs, "Error: snapshot restore requires exactly one argument"},
		{"two files", []string{"snapshot", "restore", "a", "b", "--data-dir", dataDir}, ExitBadArgs, "Error: snapshot restore requires exactly one argument"},
		{"bump without mark", []string{"snapshot", "restore", "x.db", "--data-dir", dataDir, "--bump-revision", "5"}, ExitBadArgs,
			"Error: --mark-compacted required if --revision-bump > 0"},
		{"mark without bump", []string{"snapshot", "restore", "x.db", "--data-dir", dataDir, "--mark-compacted"}, ExitBadArgs,
			"Error: --mark-compacted required if --revision-bump > 0"},
		{"separate wal dir", []string{"snapshot", "restore", "x.db", "--data-dir", dataDir, "--wal-dir", filepath.Join(dir, "wal")}, ExitBadArgs,
			"keel keeps its write-ahead log inside the data dir"},
		{"missing file", []string{"snapshot", "restore", filepath.Join(dir, "missing.db"), "--data-dir", dataDir}, ExitError,
			"no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCtl(t, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.err) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, stderr, tc.code, tc.err)
			}
			if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
				t.Fatalf("the data dir was created: %v", err)
			}
		})
	}
	// --wal-dir naming where keel keeps its log is accepted.
	code, _, stderr := runCtl(t, "snapshot", "restore", filepath.Join(dir, "missing.db"), "--data-dir", dataDir, "--wal-dir", filepath.Join(dataDir, "member", "wal"))
	if code != ExitError || strings.Contains(stderr, "wal") {
		t.Fatalf("--wal-dir inside the data dir: exit %d, stderr %q", code, stderr)
	}
}
