package compat

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Masks of the lease tests. leaseMasks puts maskLeaseHex first: leaseTwins
// finds the lease IDs that grant printed through it.
var (
	// maskLeaseDec is a lease ID in decimal, as json and fields print it.
	maskLeaseDec = regexp.MustCompile(`(?i)"(?:id|lease)" ?: ?(-?\d+)`)
	// maskRemaining is the remaining TTL timetolive prints, which depends
	// on when the command ran.
	maskRemaining = regexp.MustCompile(`(?:remaining\(|"ttl":|"TTL" : )(-?\d+)`)
	// maskPointer is an address in a Go value printed with %v.
	maskPointer = regexp.MustCompile(`0x[0-9a-f]+`)
	// maskProtoSpace is the space between fields of a protobuf message
	// printed as text, which the protobuf library makes one or two spaces
	// depending on the binary, so that nobody relies on it.
	maskProtoSpace = regexp.MustCompile(`\d( +)[a-z_]+:`)
	// leaseRefPattern is a reference to a granted lease in an argument.
	leaseRefPattern = regexp.MustCompile(`\{lease:(\d+)\}`)
	// grantedPattern is grant's output in the simple format, masked (and
	// not timetolive's, which goes on with the remaining TTL).
	grantedPattern = regexp.MustCompile(`^lease (<0\.\d+>) granted with TTL\(\d+s\)\n$`)
)

func leaseMasks(extra ...*regexp.Regexp) []*regexp.Regexp {
	return append([]*regexp.Regexp{maskLeaseHex, maskLeaseDec}, extra...)
}

// lstep is a step of the lease tests, with the lease ID masks.
func lstep(args ...string) twinStep { return twinStep{Args: args, Mask: leaseMasks()} }

// ttlStep is a step that prints a remaining TTL.
func ttlStep(args ...string) twinStep {
	return twinStep{Args: args, Mask: leaseMasks(maskRemaining)}
}

// leaseFormats is a step once per output format, with the lease ID masks
// and extra ones.
func leaseFormats(extra []*regexp.Regexp, args ...string) []twinStep {
	var out []twinStep
	for _, st := range withFormats(args...) {
		st.Mask = leaseMasks(extra...)
		out = append(out, st)
	}
	return out
}

// leaseTwins runs twin steps that use the leases granted by earlier steps.
// The twins' servers make different lease IDs, so "{lease:n}" in an
// argument is, on each side, the ID of the n-th lease that a grant step in
// the simple format printed on that side (counting from 0).
type leaseTwins struct {
	*ctlTwins
	granted [2][]string
}

// run is ctlTwins.run with the lease references. A grant step must list
// maskLeaseHex first in its masks (leaseMasks) for its lease to be found.
func (lt *leaseTwins) run(steps ...twinStep) {
	lt.t.Helper()
	for i, st := range steps {
		var runs [2]twinRun
		var lines [2]string
		for side := range runs {
			s := st
			s.Args = lt.leaseArgs(side, st.Args)
			lines[side] = strings.Join(s.Args, " ")
			runs[side] = lt.exec(side, s)
			lt.noteGrant(side, runs[side].stdout)
		}
		if diff := compareCtlRuns(runs[0], runs[1]); diff != "" {
			lt.t.Fatalf("step %d: %s\n%s\netcdctl (%s) printed:\n--- stdout\n%s--- stderr\n%s--- exit %d\nkeelctl (%s) printed:\n--- stdout\n%s--- stderr\n%s--- exit %d",
				i, strings.Join(st.Args, " "), diff,
				lines[0], runs[0].stdout, runs[0].stderr, runs[0].code,
				lines[1], runs[1].stdout, runs[1].stderr, runs[1].code)
		}
	}
}

// last is the reference to the lease granted last.
func (lt *leaseTwins) last() string { return fmt.Sprintf("{lease:%d}", len(lt.granted[0])-1) }

// startBG is ctlTwins.startBG with the lease references.
func (lt *leaseTwins) startBG(st twinStep) *bgPair {
	lt.t.Helper()
	return lt.startBGArgs(st, [2][]string{lt.leaseArgs(0, st.Args), lt.leaseArgs(1, st.Args)})
}

// noteGrant remembers the lease a grant printed in stdout (masked) on side.
func (lt *leaseTwins) noteGrant(side int, stdout string) {
	m := grantedPattern.FindStringSubmatch(stdout)
	if m == nil {
		return
	}
	for key, ph := range lt.ids[side] {
		if ph == m[1] && strings.HasPrefix(key, "0:") {
			lt.granted[side] = append(lt.granted[side], strings.TrimPrefix(key, "0:"))
			return
		}
	}
	lt.t.Fatalf("side %d: no lease ID behind %s", side, m[1])
}

// leaseArgs replaces the "{lease:n}" references in args by side's lease IDs.
func (lt *leaseTwins) leaseArgs(side int, args []string) []string {
	lt.t.Helper()
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = leaseRefPattern.ReplaceAllStringFunc(a, func(ref string) string {
			n, _ := strconv.Atoi(leaseRefPattern.FindStringSubmatch(ref)[1])
			if n >= len(lt.granted[side]) {
				lt.t.Fatalf("%s: side %d granted only %d leases", ref, side, len(lt.granted[side]))
			}
			return lt.granted[side][n]
		})
	}
	return out
}

func TestCtlLease(t *testing.T) {
	lt := &leaseTwins{ctlTwins: newCtlTwins(t)}
	lt.run(seq(
		[]twinStep{
			lstep("lease", "grant", "100"), // {lease:0}
			lstep("lease", "grant", "200"), // {lease:1}
			lstep("put", "k1", "v1", "--lease", "{lease:0}"),
			// One key a lease: etcd lists the keys of a lease in no
			// particular order.
			lstep("put", "k2", "v2", "--lease", "{lease:1}"),
			lstep("get", "k1", "-w", "fields"),
		},
		// Each grant makes a lease, even where the format is refused; the
		// simple one is {lease:2}.
		leaseFormats(nil, "lease", "grant", "300"),
		[]twinStep{lstep("lease", "grant", "300", "-w", "fields", "--hex")},
		leaseFormats([]*regexp.Regexp{maskRemaining}, "lease", "timetolive", "{lease:0}"),
		leaseFormats([]*regexp.Regexp{maskRemaining}, "lease", "timetolive", "{lease:0}", "--keys"),
		leaseFormats([]*regexp.Regexp{maskRemaining}, "lease", "timetolive", "{lease:1}", "--keys"),
		[]twinStep{
			ttlStep("lease", "timetolive", "{lease:0}", "--keys", "-w", "fields", "--hex"),
			ttlStep("lease", "timetolive", "{lease:0}", "--keys", "--hex"),
		},
		leaseFormats(nil, "lease", "list"),
		[]twinStep{lstep("lease", "list", "-w", "fields", "--hex")},
		leaseFormats(nil, "lease", "keep-alive", "--once", "{lease:1}"),
		[]twinStep{lstep("lease", "keep-alive", "--once", "{lease:1}", "-w", "fields", "--hex")},
		// keep-alive renews at once, then every third of the TTL: within
		// four seconds, a 200s lease is renewed once.
		keepAliveSteps("{lease:1}"),
		[]twinStep{
			lstep("lease", "revoke", "{lease:1}"),
			lstep("lease", "grant", "100", "-w", "json"),
			lstep("lease", "grant", "100"), // {lease:3}
			lstep("lease", "grant", "100"), // {lease:4}
			lstep("lease", "grant", "100"), // {lease:5}
			lstep("lease", "grant", "100"), // {lease:6}
			lstep("lease", "revoke", "{lease:3}", "-w", "json"),
			lstep("lease", "revoke", "{lease:4}", "-w", "fields"),
			lstep("lease", "revoke", "{lease:5}", "-w", "table"),
			{Args: []string{"lease", "revoke", "{lease:6}", "-w", "protobuf"}, Mask: leaseMasks(maskPointer, maskProtoSpace)},
			lstep("lease", "revoke", "{lease:6}"),
			lstep("get", "k", "--prefix"),
			lstep("lease", "revoke", "{lease:0}"),
			lstep("get", "k", "--prefix"),
		},
		// A lease that is gone.
		leaseFormats([]*regexp.Regexp{maskRemaining}, "lease", "timetolive", "{lease:0}"),
		leaseFormats(nil, "lease", "timetolive", "1234", "--keys"),
		leaseFormats(nil, "lease", "keep-alive", "--once", "{lease:0}"),
		keepAliveSteps("{lease:0}"),
		keepAliveSteps("1234"),
		leaseFormats(nil, "lease", "revoke", "1234"),
		leaseFormats(nil, "lease", "list"),
		// Mistakes.
		[]twinStep{
			lstep("lease", "grant"),
			lstep("lease", "grant", "1", "2"),
			lstep("lease", "grant", "x"),
			lstep("lease", "grant", "-5"),
			lstep("lease", "grant", "99999999999"),
			lstep("lease", "grant", "10", "-w", "yaml"),
			lstep("lease", "grant", "x", "-w", "yaml"),
			lstep("lease", "revoke"),
			lstep("lease", "revoke", "1", "2"),
			lstep("lease", "revoke", "zz"),
			lstep("lease", "revoke", "-1"),
			lstep("lease", "revoke", "10000000000000000"),
			lstep("lease", "timetolive"),
			lstep("lease", "timetolive", "zz", "--keys"),
			lstep("lease", "timetolive", "1", "--bogus"),
			lstep("lease", "list", "extra"),
			lstep("lease", "list", "-w", "yaml"),
			lstep("lease", "keep-alive"),
			lstep("lease", "keep-alive", "zz"),
			lstep("lease", "keep-alive", "1", "2", "--once"),
			{Args: []string{"--endpoints=127.0.0.1:1", "--command-timeout=1s", "lease", "grant", "10"}, NoEndpoints: true},
			{Args: []string{"--endpoints=127.0.0.1:1", "--command-timeout=1s", "lease", "revoke", "10"}, NoEndpoints: true},
		},
	)...)

	// keep-alive ends when its lease is revoked, which it learns at its
	// next renewal, a third of the TTL later; signals end it at once.
	for _, f := range []string{"simple", "json", "fields", "protobuf"} {
		lt.run(lstep("lease", "grant", "12"))
		id := lt.last()
		bp := lt.startBG(twinStep{Args: []string{"lease", "keep-alive", id, "-w", f}, Mask: leaseMasks()})
		bp.waitLines(1)
		lt.run(lstep("lease", "revoke", id))
		bp.wait()
	}
	lt.run(lstep("lease", "grant", "60"))
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		bp := lt.startBG(lstep("lease", "keep-alive", lt.last()))
		bp.waitLines(1)
		bp.stop(sig)
	}
}

// keepAliveSteps runs lease keep-alive (until killed) on id in every format.
func keepAliveSteps(id string) []twinStep {
	var out []twinStep
	for _, st := range leaseFormats(nil, "lease", "keep-alive", id) {
		st.Timeout, st.Killed = 4*time.Second, true
		out = append(out, st)
	}
	return out
}
