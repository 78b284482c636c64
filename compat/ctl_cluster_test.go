package compat

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
)

// Golden tests of the cluster maintenance commands: member, endpoint, alarm,
// defrag and move-leader.

// maskMemberIDs hides member and cluster IDs, in decimal or hexadecimal: a
// member added by a test gets a new random ID on each twin. The twins' own
// IDs are equal, and the placeholders keep equal IDs equal, so a swapped or
// wrong ID still shows.
var maskMemberIDs = regexp.MustCompile(`\b[0-9a-f]{12,20}\b`)

// memberStep is a step whose arguments differ between the twins (they name
// a member a test added, whose ID is random): args gives each side's.
func (tw *ctlTwins) memberStep(st twinStep, args func(side int) []string) {
	tw.t.Helper()
	var runs [2]twinRun
	argv := [2][]string{args(0), args(1)}
	if slices.Contains(argv[0], "add") {
		startOfFreshSecond() // see twinStep.SameSecond
	}
	for side := range runs {
		s := st
		s.Args = argv[side]
		runs[side] = tw.exec(side, s)
	}
	if diff := compareCtlRuns(runs[0], runs[1]); diff != "" {
		tw.t.Fatalf("%v: %s\netcdctl printed:\n--- stdout\n%s--- stderr\n%s--- exit %d\nkeelctl printed:\n--- stdout\n%s--- stderr\n%s--- exit %d",
			argv[0], diff, runs[0].stdout, runs[0].stderr, runs[0].code, runs[1].stdout, runs[1].stderr, runs[1].code)
	}
}

// memberIDOf is the hexadecimal ID, on one side, of the member with peerURL,
// read with etcdctl from member list.
func (tw *ctlTwins) memberIDOf(side int, peerURL string) string {
	tw.t.Helper()
	ep := tw.etcdctlEP
	if side == 1 {
		ep = tw.keelctlEP
	}
	out, _, _, err := runCtlRaw(tw.etcdctl, "--endpoints="+ep, "member", "list", "-w", "json", "--hex")
	if err != nil {
		tw.t.Fatalf("member list: %v\n%s", err, out)
	}
	var l struct {
		Members []struct {
			ID       string   `json:"ID"`
			PeerURLs []string `json:"peerURLs"`
		} `json:"members"`
	}
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		tw.t.Fatalf("member list: %v\n%s", err, out)
	}
	for _, m := range l.Members {
		if strings.Join(m.PeerURLs, ",") == peerURL {
			return m.ID
		}
	}
	tw.t.Fatalf("side %d: no member with peer URL %s in %s", side, peerURL, out)
	return ""
}

func masked(st twinStep) twinStep {
	st.Mask = append(st.Mask, maskMemberIDs)
	st.SameSecond = st.SameSecond || slices.Contains(st.Args, "add")
	return st
}

func maskedAll(steps []twinStep) []twinStep {
	for i := range steps {
		steps[i] = masked(steps[i])
	}
	return steps
}

// runCtlRaw runs a CLI binary with args and returns its standard output,
// standard error and exit code, unnormalised.
func runCtlRaw(bin string, args ...string) (stdout, stderr string, code int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), etcdctlTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = dropPrefix(os.Environ(), "ETCDCTL_")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	if cmd.ProcessState != nil {
		code = cmd.ProcessState.ExitCode()
		if code > 0 {
			err = nil
		}
	}
	return o.String(), e.String(), code, err
}

// protoStep runs a -w protobuf command line whose response holds a member ID
// that differs between the twins: the binary output cannot be masked, so
// each side's output is decoded into a fresh msg and compared as JSON, with
// the IDs masked. args gives each side's arguments (after --endpoints).
func (tw *ctlTwins) protoStep(msg func() proto.Message, args func(side int) []string) {
	tw.t.Helper()
	var runs [2]twinRun
	argv := [2][]string{args(0), args(1)}
	if slices.Contains(argv[0], "add") {
		startOfFreshSecond() // see twinStep.SameSecond
	}
	for side := range runs {
		bin, ep := tw.etcdctl, tw.etcdctlEP
		if side == 1 {
			bin, ep = tw.keelctl, tw.keelctlEP
		}
		a := append([]string{"--endpoints=" + ep}, argv[side]...)
		out, errOut, code, err := runCtlRaw(bin, a...)
		if err != nil {
			tw.t.Fatalf("%s %v: %v", bin, a, err)
		}
		if code == 0 {
			m := msg()
			if err := proto.Unmarshal([]byte(out), m); err != nil {
				tw.t.Fatalf("%s %v: output is not a %T: %v", bin, a, m, err)
			}
			b, _ := json.Marshal(m)
			out = string(b)
		}
		st := twinStep{Mask: []*regexp.Regexp{maskMemberIDs}}
		runs[side] = twinRun{code: code, stdout: tw.normalise(side, st, out, ep), stderr: normaliseStderr(tw.normalise(side, st, errOut, ep))}
	}
	if diff := compareCtlRuns(runs[0], runs[1]); diff != "" {
		tw.t.Fatalf("%v: %s\netcdctl printed:\n--- stdout\n%s--- stderr\n%s--- exit %d\nkeelctl printed:\n--- stdout\n%s--- stderr\n%s--- exit %d",
			argv[0], diff, runs[0].stdout, runs[0].stderr, runs[0].code, runs[1].stdout, runs[1].stderr, runs[1].code)
	}
}

func TestCtlMember(t *testing.T) {
	tw := newCtlTwins(t)
	tw.run(maskedAll(seq(
		withFormats("member", "list"),
		withFormats("member", "list", "--hex"),
		[]twinStep{
			line("member", "list", "--consistency", "s"),
			line("member", "list", "--consistency", "x"),
			line("member", "list", "-w", "yaml"),
			line("member", "add"),
			line("member", "add", "n2", "http://127.0.0.1:2390"),
			line("member", "add", "n2", "x", "HTTP://a", "https://b"),
			line("member", "add", "n2"),
			line("member", "add", "n2", "--peer-urls", "not a url"),
			line("member", "add", "n2", "--peer-urls", ctlTwinAdvertisePeerURL, "--learner"),
			line("member", "remove"),
			line("member", "remove", "a", "b"),
			line("member", "remove", "zz"),
			line("member", "remove", "1234"),
			line("member", "update", "zz", "--peer-urls", "http://127.0.0.1:2391"),
			line("member", "update", "1234"),
			line("member", "update", "1234", "--peer-urls", "http://127.0.0.1:2391"),
			line("member", "promote"),
			line("member", "promote", "1234"),
			line("member", "promote", "1234", "-w", "json"),
		},
	))...)
	// A removed member's ID cannot come back, and an ID is a hash of the
	// peer URLs and the second it is added: each round adds other URLs.
	for i, f := range formats {
		learner, moved := fmt.Sprintf("http://127.0.0.1:%d", 2400+2*i), fmt.Sprintf("http://127.0.0.1:%d", 2401+2*i)
		addArgs := []string{"member", "add", "n2", "--learner", "--peer-urls", learner, "-w", f}
		if f == "protobuf" {
			tw.protoStep(func() proto.Message { return &pb.MemberAddResponse{} }, func(int) []string { return addArgs })
		} else {
			tw.run(masked(line(addArgs...)))
		}
		tw.run(maskedAll(seq(
			withFormats("member", "list"),
			[]twinStep{
				line("member", "add", "n3", "--learner", "--peer-urls", "http://127.0.0.1:2392"),
				line("member", "update", "1234", "--peer-urls", learner),
			},
		))...)
		tw.memberSteps(f, learner, []string{"update", "{id}", "--peer-urls", moved}, func() proto.Message { return &pb.MemberUpdateResponse{} })
		tw.memberSteps(f, moved, []string{"promote", "{id}"}, func() proto.Message { return &pb.MemberPromoteResponse{} })
		tw.memberSteps(f, moved, []string{"remove", "{id}"}, func() proto.Message { return &pb.MemberRemoveResponse{} })
	}
	learner, moved := "http://127.0.0.1:2390", "http://127.0.0.1:2391"
	tw.run(maskedAll([]twinStep{
		line("member", "add", "n2", "--learner", "--peer-urls", learner, "-w", "json", "--hex"),
		line("member", "list", "-w", "table"),
	})...)
	tw.memberSteps("json", learner, []string{"update", "{id}", "--peer-urls", moved, "--hex"}, nil)
	tw.memberSteps("json", moved, []string{"remove", "{id}", "--hex"}, nil)
	tw.memberSteps("fields", ctlTwinAdvertisePeerURL, []string{"update", "{id}", "--peer-urls", learner}, nil)
	tw.run(maskedAll(seq(
		withFormats("member", "list"),
		[]twinStep{
			// Refused: the one voting member cannot be removed, and a
			// second voting member would not be started.
			line("member", "add", "n2", "--peer-urls", moved),
		},
	))...)
}

// memberSteps runs member args (with "{id}" replaced by each side's ID of the
// member with peerURL) in format f; -w protobuf output is compared decoded
// into msg.
func (tw *ctlTwins) memberSteps(f, peerURL string, args []string, msg func() proto.Message) {
	tw.t.Helper()
	sideArgs := func(side int) []string {
		id := tw.memberIDOf(side, peerURL)
		out := []string{"member"}
		for _, a := range args {
			out = append(out, strings.ReplaceAll(a, "{id}", id))
		}
		return append(out, "-w", f)
	}
	if f == "protobuf" {
		tw.protoStep(msg, sideArgs)
		return
	}
	tw.memberStep(masked(twinStep{}), sideArgs)
}

// maskDuration hides a timing such as endpoint health's "took".
var maskDuration = regexp.MustCompile(`\b[0-9.]+(?:µs|ns|ms|s)\b`)

func tookMasked(steps []twinStep) []twinStep {
	for i := range steps {
		steps[i].Mask = append(steps[i].Mask, maskDuration)
	}
	return steps
}

// runTable runs steps whose -w table output has values that legitimately
// differ in columns cols (from 1, increasing): their width changes the
// table's borders, so those columns are blanked, borders included, before
// the comparison.
func (tw *ctlTwins) runTable(cols []int, steps ...twinStep) {
	tw.t.Helper()
	sep := regexp.MustCompile(`[│┬┼┴┌├└┐┤┘]`)
	blank := func(s string) string {
		lines := strings.Split(s, "\n")
		for i, l := range lines {
			idx := sep.FindAllStringIndex(l, -1)
			for j := len(cols) - 1; j >= 0; j-- {
				if c := cols[j]; len(idx) > c {
					l = l[:idx[c-1][1]] + "<blank>" + l[idx[c][0]:]
				}
			}
			lines[i] = l
		}
		return strings.Join(lines, "\n")
	}
	for _, st := range steps {
		want, got := tw.exec(0, st), tw.exec(1, st)
		want.stdout, got.stdout = blank(want.stdout), blank(got.stdout)
		if diff := compareCtlRuns(want, got); diff != "" {
			tw.t.Fatalf("%v: %s\netcdctl printed:\n%s%s\nkeelctl printed:\n%s%s", st.Args, diff, want.stdout, want.stderr, got.stdout, got.stderr)
		}
	}
}

// The database size and the size in use (and so the share not in use)
// differ between two identical servers given the same requests.
var (
	maskDBSizeSimple = regexp.MustCompile(`(?m)^(?:[^,]*, ){4}([^,]*, [^,]*, [^,]*),`)
	maskDBSizeJSON   = regexp.MustCompile(`"(?:dbSize|dbSizeInUse|DBSize|DBSizeInUse)" ?: ?(\d+)`)
)

func dbSizeMasked(steps []twinStep) []twinStep {
	for i := range steps {
		steps[i].Mask = append(steps[i].Mask, maskDBSizeSimple, maskDBSizeJSON)
	}
	return steps
}

func TestCtlEndpoint(t *testing.T) {
	tw := newCtlTwins(t)
	dead := func(args ...string) twinStep {
		return twinStep{NoEndpoints: true, Args: append([]string{"--endpoints=" + deadEndpoint, "--command-timeout=1s"}, args...),
			Mask: []*regexp.Regexp{maskDuration}}
	}
	tw.run(seq(
		[]twinStep{line("put", "a", "1"), line("put", "b", "2"), line("del", "a")},
		tookMasked(withFormats("endpoint", "health")[:4]),
		tookMasked(withFormats("endpoint", "health", "--cluster")[:4]),
		dbSizeMasked(withFormats("endpoint", "status")[:4]),
		dbSizeMasked(withFormats("endpoint", "status", "--cluster")[:4]),
		dbSizeMasked(withFormats("endpoint", "status", "--hex")[:4]),
		withFormats("endpoint", "hashkv"),
		withFormats("endpoint", "hashkv", "--cluster"),
		withFormats("endpoint", "hashkv", "--rev", "2"),
		[]twinStep{
			line("endpoint", "hashkv", "--rev", "100"),
			line("endpoint", "hashkv", "--rev", "100", "-w", "json"),
			line("endpoint", "status", "-w", "yaml"),
			line("endpoint", "health", "-w", "yaml"),
			line("endpoint", "hashkv", "-w", "yaml"),
			dbSizeMasked([]twinStep{line("endpoint", "status", "extra")})[0],
			dead("endpoint", "health"),
			dead("endpoint", "health", "-w", "json"),
			dead("endpoint", "status"),
			dead("endpoint", "status", "-w", "json"),
			dead("endpoint", "hashkv"),
			dead("endpoint", "hashkv", "-w", "fields"),
			dead("endpoint", "health", "--cluster"),
			dead("endpoint", "status", "--cluster"),
		},
	)...)
	tw.runTable([]int{5, 6, 7}, line("endpoint", "status", "-w", "table"), line("endpoint", "status", "--cluster", "-w", "table"))
	tw.compact(3)
	tw.run(line("endpoint", "hashkv", "--rev", "2"), line("endpoint", "hashkv", "--rev", "3", "-w", "fields"))
	tw.runTable([]int{3}, line("endpoint", "health", "-w", "table"), line("endpoint", "health", "--cluster", "-w", "table"),
		dead("endpoint", "health", "-w", "table"))
}

// compact compacts both twins at rev, through the Go client (compaction is
// not a command of this file).
func (tw *ctlTwins) compact(rev int64) {
	tw.t.Helper()
	for _, ep := range []string{tw.etcdctlEP, tw.keelctlEP} {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: etcdctlTimeout})
		if err != nil {
			tw.t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), etcdctlTimeout)
		_, err = c.Compact(ctx, rev, clientv3.WithCompactPhysical())
		cancel()
		c.Close()
		if err != nil {
			tw.t.Fatalf("compact %s at %d: %v", ep, rev, err)
		}
	}
}

// maskAlarmSpace hides the space between the fields of an alarm in the
// simple format: protobuf's text form doubles it at random, seeded by the
// binary, so two builds of etcdctl differ there too.
var maskAlarmSpace = regexp.MustCompile(`memberID:\d+( +)alarm:`)

// raiseAlarm raises alarm on both twins, for their own member, through the
// gRPC API (no command raises one).
func (tw *ctlTwins) raiseAlarm(alarm pb.AlarmType) {
	tw.t.Helper()
	for _, ep := range []string{tw.etcdctlEP, tw.keelctlEP} {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: etcdctlTimeout})
		if err != nil {
			tw.t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), etcdctlTimeout)
		st, err := c.Status(ctx, ep)
		if err == nil {
			_, err = pb.NewMaintenanceClient(c.ActiveConnection()).Alarm(ctx, &pb.AlarmRequest{
				Action: pb.AlarmRequest_ACTIVATE, MemberID: st.Header.MemberId, Alarm: alarm})
		}
		cancel()
		c.Close()
		if err != nil {
			tw.t.Fatalf("raise %v on %s: %v", alarm, ep, err)
		}
	}
}

func alarmMasked(steps []twinStep) []twinStep {
	for i := range steps {
		steps[i].Mask = append(steps[i].Mask, maskAlarmSpace)
	}
	return steps
}

func TestCtlAlarm(t *testing.T) {
	tw := newCtlTwins(t)
	tw.run(seq(
		withFormats("alarm", "list"),
		withFormats("alarm", "disarm"),
		[]twinStep{
			line("alarm", "list", "x"),
			line("alarm", "disarm", "x"),
			line("alarm", "list", "--hex", "-w", "fields"),
		},
	)...)
	tw.raiseAlarm(pb.AlarmType_NOSPACE)
	tw.run(seq(
		alarmMasked(withFormats("alarm", "list")),
		[]twinStep{line("alarm", "list", "--hex", "-w", "fields")},
		tookMasked(withFormats("endpoint", "health")[:4]),
		[]twinStep{line("put", "k", "v")},
		alarmMasked(withFormats("alarm", "disarm")[:1]),
		withFormats("alarm", "list"),
		[]twinStep{line("put", "k", "v")},
	)...)
	tw.raiseAlarm(pb.AlarmType_CORRUPT)
	tw.run(seq(
		alarmMasked(withFormats("alarm", "list")),
		tookMasked(withFormats("endpoint", "health")[:4]),
		alarmMasked(withFormats("alarm", "disarm")[1:]),
		withFormats("alarm", "list"),
	)...)
}

func TestCtlDefrag(t *testing.T) {
	tw := newCtlTwins(t)
	tw.run(tookMasked(seq(
		withFormats("defrag"),
		withFormats("defrag", "--cluster"),
		[]twinStep{
			line("defrag", "extra"),
			{NoEndpoints: true, Args: []string{"--endpoints=" + deadEndpoint, "--command-timeout=1s", "defrag"}},
			{NoEndpoints: true, Args: []string{"--endpoints=" + deadEndpoint, "--command-timeout=1s", "defrag", "--cluster"}},
		},
	))...)
}

func TestCtlMoveLeader(t *testing.T) {
	tw := newCtlTwins(t)
	self := tw.memberIDOf(0, ctlTwinAdvertisePeerURL)
	tw.run(seq(
		withFormats("move-leader", self),
		withFormats("move-leader", "1234"),
		[]twinStep{
			line("move-leader"),
			line("move-leader", "1", "2"),
			line("move-leader", "zz"),
			line("move-leader", "1234", "-w", "yaml"),
			{NoEndpoints: true, Args: []string{"--endpoints=" + deadEndpoint, "--command-timeout=1s", "move-leader", "1234"}},
		},
	)...)
}
