// Package proc builds the servers under test (keel and etcd 3.7), runs each
// as a child process on loopback with identical settings, reads its memory
// and CPU from /proc, and stops it.
package proc

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Kind names a server implementation.
type Kind string

// The two servers a benchmark compares.
const (
	Etcd Kind = "etcd"
	Keel Kind = "keel"
)

// Module paths the build relies on.
const (
	benchModule = "github.com/keeldb/keel/bench"
	keelModule  = "github.com/keeldb/keel"
	// etcdMain is etcd's server main package; bench/go.mod pins its version
	// with a tool directive, so the build below uses exactly that version.
	etcdMain = "go.etcd.io/etcd/server/v3"
	keelMain = "github.com/keeldb/keel/cmd/keel"
)

// Binaries are the server executables a run uses.
type Binaries struct {
	Etcd string
	Keel string
}

// Build compiles whichever of b's binaries is empty into dir and returns the
// paths of both. It must run with the working directory inside the bench
// module. etcd is built in the bench module (at the version its go.mod pins);
// keel is built in keel's own module, the repository root, so that it gets
// exactly the dependency versions of a release build and not the ones the
// bench module's larger graph would select.
func Build(ctx context.Context, dir string, b Binaries) (Binaries, error) {
	benchDir, err := moduleDir(ctx)
	if err != nil {
		return b, err
	}
	if b.Etcd == "" {
		b.Etcd = filepath.Join(dir, "etcd")
		if err := goBuild(ctx, benchDir, b.Etcd, etcdMain); err != nil {
			return b, err
		}
	}
	if b.Keel == "" {
		root := filepath.Dir(benchDir)
		if err := checkModule(filepath.Join(root, "go.mod"), keelModule); err != nil {
			return b, err
		}
		b.Keel = filepath.Join(dir, "keel")
		if err := goBuild(ctx, root, b.Keel, keelMain); err != nil {
			return b, err
		}
	}
	return b, nil
}

// moduleDir returns the bench module's directory, found from the working
// directory the way the go command finds it.
func moduleDir(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module: run keelbench from the bench directory (cd bench && go run ./cmd/keelbench ...), or pass -etcd-bin and -keel-bin")
	}
	if err := checkModule(gomod, benchModule); err != nil {
		return "", err
	}
	return filepath.Dir(gomod), nil
}

// checkModule fails unless the go.mod file at path declares module want.
func checkModule(path, want string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "module" {
			if f[1] != want {
				return fmt.Errorf("%s is module %s, want %s: run keelbench from the bench directory, or pass -etcd-bin and -keel-bin", path, f[1], want)
			}
			return nil
		}
	}
	return fmt.Errorf("%s declares no module", path)
}

func goBuild(ctx context.Context, dir, out, pkg string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s (in %s): %w\n%s", pkg, dir, err, stderr.String())
	}
	return nil
}

// Version runs bin --version and returns its first line, e.g.
// "etcd Version: 3.7.3".
func Version(ctx context.Context, bin string) string {
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return fmt.Sprintf("unknown (%v)", err)
	}
	first, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(first)
}
