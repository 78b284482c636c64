package crashtest

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

var (
	flagRounds = flag.Int("rounds", 0, "crashes per test (default 5; also KEEL_CRASH_ROUNDS)")
	flagSeed   = flag.Uint64("seed", 0, "seed of the random choices (default: from the clock; also KEEL_CRASH_SEED)")
)

const defaultRounds = 5

// maxRounds bounds -rounds so that a typo cannot make a run endless.
const maxRounds = 1000

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	build.mu.Lock()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	build.mu.Unlock()
	os.Exit(code)
}

// crashRounds returns how many crashes a test runs.
func crashRounds(t *testing.T) int {
	t.Helper()
	n := *flagRounds
	if n == 0 {
		if s := os.Getenv("KEEL_CRASH_ROUNDS"); s != "" {
			v, err := strconv.Atoi(s)
			if err != nil {
				t.Fatalf("KEEL_CRASH_ROUNDS=%q: %v", s, err)
			}
			n = v
		}
	}
	if n == 0 {
		n = defaultRounds
	}
	if n < 1 || n > maxRounds {
		t.Fatalf("rounds must be in [1, %d], got %d", maxRounds, n)
	}
	return n
}

// crashSeed returns the seed of the test's random choices and logs how to
// replay it.
func crashSeed(t *testing.T) uint64 {
	t.Helper()
	seed := *flagSeed
	if seed == 0 {
		if s := os.Getenv("KEEL_CRASH_SEED"); s != "" {
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				t.Fatalf("KEEL_CRASH_SEED=%q: %v", s, err)
			}
			seed = v
		}
	}
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -seed=%d or KEEL_CRASH_SEED=%d)", seed, seed, seed)
	return seed
}

// build holds the keel binary, built once per test run into a directory
// that TestMain removes.
var build struct {
	mu   sync.Mutex
	done bool
	dir  string
	bin  string
	err  error
}

// buildTimeout bounds the one build of the keel binary.
const buildTimeout = 5 * time.Minute

// keelBinary builds cmd/keel once per test run (with -race when the tests run
// under the race detector) and returns its path.
func keelBinary(t *testing.T) string {
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

func buildKeel() (string, error) {
	dir, err := os.MkdirTemp("", "keel-crashtest-")
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
