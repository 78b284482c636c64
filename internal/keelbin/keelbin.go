// Package keelbin builds the keel server binary from this tree for tests
// that run it as a child process (kill -9, fault injection). It builds once
// per test binary, with the race detector when the tests run under it.
package keelbin

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// buildTimeout bounds the one build of the keel binary.
const buildTimeout = 5 * time.Minute

var build struct {
	mu   sync.Mutex
	done bool
	dir  string
	bin  string
	err  error
}

// Path builds cmd/keel on first use and returns the binary's path; a failed
// build fails t (and every later caller).
func Path(t testing.TB) string {
	t.Helper()
	build.mu.Lock()
	defer build.mu.Unlock()
	if !build.done {
		build.done = true
		build.bin, build.err = buildKeel()
	}
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.bin
}

// Cleanup removes the binary; call it from TestMain after m.Run.
func Cleanup() {
	build.mu.Lock()
	defer build.mu.Unlock()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
}

func buildKeel() (string, error) {
	dir, err := os.MkdirTemp("", "keel-testbin-")
	if err != nil {
		return "", err
	}
	build.dir = dir
	bin := filepath.Join(dir, "keel")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "github.com/keeldb/keel/cmd/keel")
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool(), args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %v: %v\n%s", args, err, out)
	}
	return bin, nil
}

// goTool finds the go command that runs these tests.
func goTool() string {
	if goroot := os.Getenv("GOROOT"); goroot != "" {
		if p := filepath.Join(goroot, "bin", "go"); fileExists(p) {
			return p
		}
	}
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
