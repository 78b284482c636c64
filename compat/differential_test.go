package compat

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
)

// defaultKVOps is TestDifferentialKV's number of operations unless -ops says
// otherwise.
const defaultKVOps = 10000

// TestDifferentialKV sends the same seeded random sequence of KV requests
// (Range, Put, DeleteRange, Txn, Compact) to real etcd and to keel, one at a
// time, and requires identical responses: every field at the protobuf level,
// header revision and raft term included, cluster and member id excluded; or
// the same gRPC error code and message.
func TestDifferentialKV(t *testing.T) {
	seed := resolveSeed(t)
	n := resolveOps(t, defaultKVOps)
	ref, sut := startPair(t)
	t.Logf("seed %d, %d ops, %s vs %s", seed, n, ref.name, sut.name)

	g := newGenerator(seed)
	outcomes := map[string]int{}
	start := time.Now()
	for i := range n {
		o := g.next(i)
		a, b := runBoth(ref, sut, o)
		if !a.equal(b) {
			hint := ""
			if sameUpToTies(o, a, b) {
				hint = "The kvs are the same, but kvs with equal sort keys come in another order " +
					"(etcd sorts with sort.Sort, which is not stable beyond 12 results).\n"
			}
			t.Fatal(mismatchReport("TestDifferentialKV", ref.name, sut.name, seed, i, i+1,
				o.kind()+noteSuffix(o), o.request(), a, b, hint))
		}
		g.observe(o, a.resp, a.err)
		outcomes[o.kind()+" "+a.outcome()]++
	}
	t.Logf("%d ops in %v, final revision %d, compacted at %d", n, time.Since(start).Round(time.Millisecond), g.rev, g.compacted)
	logOutcomes(t, outcomes)
}

// mismatchReport says what differed at op i of test's sequence and how to
// run the same sequence again (its first ops ops). what names the op ("Put",
// "Txn, too many compares"); hint, if not empty, explains a known kind of
// difference.
func mismatchReport(test, refName, sutName string, seed int64, i, ops int, what string, req proto.Message, a, b result, hint string) string {
	return fmt.Sprintf("%s and %s differ at op %d of seed %d.\n%s"+
		"op (%s):\n%s\n\n%s:\n%s\n\n%s:\n%s\n\ndiff (-%s +%s):\n%s\n\n%s",
		refName, sutName, i, seed, hint,
		what, formatMsg(req),
		refName, a, sutName, b,
		refName, sutName, diff(a, b),
		rerunCommand(test, seed, ops))
}

// rerunCommand is the command that replays the first ops operations of test's
// sequence of seed.
func rerunCommand(test string, seed int64, ops int) string {
	return fmt.Sprintf("rerun: cd compat && go test -run '%s$' -seed=%d -ops=%d%s", test, seed, ops, selfCheckSuffix())
}

// runBoth sends o to both sides concurrently (they are independent servers)
// and waits for both answers.
func runBoth(ref, sut *target, o op) (a, b result) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	done := make(chan result, 1)
	go func() { done <- newResult(o.do(ctx, sut.kv)) }()
	a = newResult(o.do(ctx, ref.kv))
	b = <-done
	return a, b
}

func noteSuffix(o op) string {
	if o.note == "" {
		return ""
	}
	return ", " + o.note
}

func selfCheckSuffix() string {
	if selfCheck() {
		return " -selfcheck"
	}
	return ""
}

func resolveSeed(t *testing.T) int64 {
	if *flagSeed != 0 {
		return *flagSeed
	}
	if v := os.Getenv("KEEL_COMPAT_SEED"); v != "" {
		s, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("KEEL_COMPAT_SEED=%q: %v", v, err)
		}
		return s
	}
	return time.Now().UnixNano()
}

// resolveOps returns the number of operations to run: -ops, else
// KEEL_COMPAT_OPS, else def.
func resolveOps(t *testing.T, def int) int {
	if *flagOps > 0 {
		return *flagOps
	}
	if v := os.Getenv("KEEL_COMPAT_OPS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("KEEL_COMPAT_OPS=%q: want a positive number", v)
		}
		return n
	}
	return def
}

// logOutcomes logs how often each kind of op got each answer, so that a
// reader can see which paths the run covered.
func logOutcomes(t *testing.T, outcomes map[string]int) {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(outcomes)) {
		fmt.Fprintf(&b, "\n%6d  %s", outcomes[k], k)
	}
	t.Logf("outcomes (reference side):%s", b.String())
}
