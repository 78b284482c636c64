package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/keeldb/keel/config"
	"github.com/keeldb/keel/internal/keeltest"
	"github.com/keeldb/keel/server"
)

// corruptCheckInterval is the --corrupt-check-time of these tests.
const corruptCheckInterval = 100 * time.Millisecond

// countLogs counts the entries logged with msg that match (all if nil).
func countLogs(logs *observer.ObservedLogs, msg string, match func(observer.LoggedEntry) bool) int {
	n := 0
	for _, e := range logs.FilterMessage(msg).All() {
		if match == nil || match(e) {
			n++
		}
	}
	return n
}

// pollUntil polls cond every 50ms until it holds, failing the test after
// catchUpTimeout.
func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(catchUpTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond) // poll interval, bounded by the deadline
	}
}

// TestCorruptionChecksFindADamagedMember damages one follower's key space
// behind Raft's back: with the initial check it refuses to start with
// etcd's error and its data stays as it was; started without it, the
// leader's periodic check raises CORRUPT for that member, after which
// writes fail with etcd's "corrupt cluster" and reads are served, as in
// etcd; with the damaged member gone, disarming clears the alarm. A healthy
// cluster runs the same checks without raising anything.
func TestCorruptionChecksFindADamagedMember(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	c := keeltest.StartCluster(t, 3, keeltest.WithLogger(zap.New(core)), keeltest.WithConfig(func(cfg *config.Config) {
		cfg.InitialCorruptCheck = true
		cfg.CorruptCheckTime = corruptCheckInterval
	}))
	cli := c.Leader(t).Client
	for i := range 10 {
		put(t, cli, fmt.Sprintf("k%d", i), "good")
	}
	f := followers(t, c)[0]
	for _, m := range c.Running() {
		waitServes(t, m, "k9")
	}

	// Healthy: the leader compares both followers, again and again, and
	// raises nothing.
	checkedAll := func(e observer.LoggedEntry) bool { return e.ContextMap()["number-of-peers-checked"] == int64(2) }
	pollUntil(t, "two checks of both followers", func() bool { return countLogs(logs, "finished peer corruption check", checkedAll) >= 2 })
	if list, err := cli.AlarmList(ctx(t)); err != nil || len(list.Alarms) != 0 {
		t.Fatalf("healthy cluster: alarms %v, %v; want none", list, err)
	}

	// An undamaged member passes the initial check on restart.
	healthy := followers(t, c)[1]
	healthy.Restart(t)
	pollUntil(t, "the initial check of the healthy member", func() bool {
		return logs.FilterMessage("initial corruption checking passed; no corruption").Len() == 1
	})

	// Damage the follower's newest version of k3 while it is stopped.
	id := f.Server.MemberID()
	f.Stop()
	if _, err := keeltest.DamageValue(f.Config.DataDir, "k3", "evil"); err != nil {
		t.Fatal(err)
	}

	// The initial check refuses it, with etcd's error.
	core2, startLogs := observer.New(zapcore.InfoLevel)
	srv, err := server.Start(f.Config, zap.New(core2))
	if err == nil {
		srv.Stop()
		t.Fatal("the damaged member started despite the initial corruption check")
	}
	want := fmt.Sprintf("%x found data inconsistency with peers", id)
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("start of the damaged member: %v, want %q", err, want)
	}
	if startLogs.FilterMessage("found different hash values from remote peer").Len() != 2 ||
		startLogs.FilterMessage("checkInitialHashKV failed").Len() != 1 {
		t.Errorf("want both peers' mismatches and the failure logged, got %v", startLogs.All())
	}

	// Started without the check, it serves its damaged data untouched
	// (the refused start changed nothing), and the leader blames it.
	f.Config.InitialCorruptCheck = false
	f.Restart(t)
	got, err := f.Client.Get(ctx(t), "k3", clientv3.WithSerializable())
	if err != nil || len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "evil" {
		t.Fatalf("damaged member's k3: %v, %v; want the damaged value", got, err)
	}
	var alarms []*pb.AlarmMember
	pollUntil(t, "the CORRUPT alarm", func() bool {
		list, err := cli.AlarmList(ctx(t))
		if err != nil {
			return false
		}
		alarms = list.Alarms
		return len(alarms) > 0
	})
	if len(alarms) != 1 || alarms[0].MemberID != id || alarms[0].Alarm != pb.AlarmType_CORRUPT {
		t.Fatalf("alarms %v, want CORRUPT for the damaged member %x only", alarms, id)
	}

	// etcd's effects: writes and compactions refused, reads served.
	_, err = cli.Put(ctx(t), "k0", "after")
	wantErr(t, err, rpctypes.ErrGRPCCorrupt)
	_, err = cli.Delete(ctx(t), "k1")
	wantErr(t, err, rpctypes.ErrGRPCCorrupt)
	if got := get(t, cli, "k3"); len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "good" {
		t.Fatalf("read under CORRUPT: %v, want k3=good", got.Kvs)
	}

	// The operator takes the damaged member out and disarms: writes work
	// again and the remaining members' checks stay quiet.
	f.Stop()
	disarm, err := cli.AlarmDisarm(ctx(t), &clientv3.AlarmMember{MemberID: id, Alarm: pb.AlarmType_CORRUPT})
	if err != nil || len(disarm.Alarms) != 1 || disarm.Alarms[0].MemberID != id {
		t.Fatalf("disarm: %v, %v; want the CORRUPT alarm of %x", disarm, err, id)
	}
	put(t, cli, "k0", "after")
	before := countLogs(logs, "finished peer corruption check", nil)
	pollUntil(t, "two more checks", func() bool { return countLogs(logs, "finished peer corruption check", nil) >= before+2 })
	if list, err := cli.AlarmList(ctx(t)); err != nil || len(list.Alarms) != 0 {
		t.Fatalf("after disarm: alarms %v, %v; want none", list, err)
	}
}

// TestCompactHashCheckFindsADamagedMember: with the CompactHashCheck gate
// the leader compares the members' hashes at each new compaction
// revision; a follower whose data was damaged before the compaction gets
// the CORRUPT alarm (two of three members agree, so the third is blamed).
func TestCompactHashCheckFindsADamagedMember(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	c := keeltest.StartCluster(t, 3, keeltest.WithLogger(zap.New(core)), keeltest.WithConfig(func(cfg *config.Config) {
		cfg.CompactHashCheck = true
		cfg.CompactHashCheckTime = corruptCheckInterval
	}))
	cli := c.Leader(t).Client
	for i := range 5 {
		put(t, cli, fmt.Sprintf("k%d", i), "good")
	}
	f := followers(t, c)[0]
	for _, m := range c.Running() {
		waitServes(t, m, "k4")
	}
	if _, err := cli.Compact(ctx(t), rev(t, cli)); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, "a compaction checked on every member", func() bool {
		return logs.FilterMessage("successfully checked hash on whole cluster").Len() > 0
	})

	id := f.Server.MemberID()
	f.Stop()
	if _, err := keeltest.DamageValue(f.Config.DataDir, "k2", "evil"); err != nil {
		t.Fatal(err)
	}
	f.Restart(t)
	last := put(t, cli, "k9", "good")
	waitServes(t, f, "k9")
	if _, err := cli.Compact(ctx(t), last); err != nil {
		t.Fatal(err)
	}
	var alarms []*pb.AlarmMember
	pollUntil(t, "the CORRUPT alarm", func() bool {
		list, err := cli.AlarmList(ctx(t))
		if err != nil {
			return false
		}
		alarms = list.Alarms
		return len(alarms) > 0
	})
	if len(alarms) != 1 || alarms[0].MemberID != id || alarms[0].Alarm != pb.AlarmType_CORRUPT {
		t.Fatalf("alarms %v, want CORRUPT for the damaged member %x only", alarms, id)
	}
}
