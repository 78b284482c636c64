package tlsutil

import (
	"os"
	"path/filepath"
	"testing"
)

// TestReloadSeesSameSizeRewritesInOneTick rewrites a watched file with
// content of the same size and the same modification time, in place and
// by renaming a new file over it (as rotation tools do): both are seen.
func TestReloadSeesSameSizeRewritesInOneTick(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, []byte("aaaa"), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	mtime := fi.ModTime()
	w, err := newWatched([]string{path}, func() (string, error) {
		b, err := os.ReadFile(path)
		return string(b), err
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, content string
		write         func(content string) error
	}{
		{"in place", "bbbb", func(c string) error { return os.WriteFile(path, []byte(c), 0o600) }},
		{"renamed over", "cccc", func(c string) error {
			tmp := filepath.Join(dir, "f.new")
			if err := os.WriteFile(tmp, []byte(c), 0o600); err != nil {
				return err
			}
			if err := os.Chtimes(tmp, mtime, mtime); err != nil {
				return err
			}
			return os.Rename(tmp, path)
		}},
	} {
		if err := tc.write(tc.content); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		if got := w.get(); got != tc.content {
			t.Errorf("%s: get = %q after a same-size rewrite in one tick, want %q", tc.name, got, tc.content)
		}
	}
}
