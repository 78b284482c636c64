package crashtest

import (
	"flag"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/keeldb/keel/internal/keelbin"
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
	keelbin.Cleanup()
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
