package member

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"

	"github.com/keeldb/keel/lease"
	"github.com/keeldb/keel/mvcc"
	"github.com/keeldb/keel/storage"
)

// snapshotFollower is a member that has joined a cluster but heard from
// nobody yet: a learner with an empty engine and no transport. Its Raft
// accepts a snapshot stepped into it as one from the leader.
type snapshotFollower struct {
	t      *testing.T
	cfg    Config
	fs     vfs.FS
	engine *storage.Engine
	m      *Member
}

func startSnapshotFollower(t *testing.T, id, clusterID uint64) *snapshotFollower {
	t.Helper()
	fs := vfs.NewMem()
	engine, err := storage.Open("db", storage.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	f := &snapshotFollower{t: t, fs: fs, engine: engine}
	f.cfg = Config{
		ID:                     id,
		ClusterID:              clusterID,
		Name:                   "follower",
		Engine:                 engine,
		TickInterval:           10 * time.Millisecond,
		ElectionTicks:          10,
		SnapshotCount:          1 << 20,
		SnapshotCatchUpEntries: 1000,
		MaxRequestBytes:        1.5 * 1024 * 1024,
		LeaseClock:             lease.NewFakeClock(time.Unix(1e9, 0)),
		Logger:                 zap.NewNop(),
	}
	t.Cleanup(func() {
		if f.m != nil {
			f.m.Stop()
		}
		engine.Close()
	})
	f.start()
	return f
}

func (f *snapshotFollower) start() {
	f.t.Helper()
	m, err := Start(f.cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	f.m = m
}

// receive stages the leader's state for msg as the transport does and
// hands both to the follower.
func (f *snapshotFollower) receive(ctx context.Context, msg *raftpb.Message, state io.Reader, path string) {
	f.t.Helper()
	if err := f.fs.MkdirAll("snap", 0o700); err != nil {
		f.t.Fatal(err)
	}
	file, err := f.fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := io.Copy(file, state); err != nil {
		f.t.Fatal(err)
	}
	if err := file.Sync(); err != nil {
		f.t.Fatal(err)
	}
	file.Close()
	if err := f.m.ProcessSnapshot(ctx, msg, path); err != nil {
		f.t.Fatalf("ProcessSnapshot: %v", err)
	}
}

// waitApplied waits, bounded, until the follower has applied index.
func (f *snapshotFollower) waitApplied(index uint64) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), leaseTestTimeout)
	defer cancel()
	if err := f.m.waitApplied(ctx, index); err != nil {
		f.t.Fatalf("follower did not apply index %d (at %d): %v", index, f.m.AppliedIndex(), err)
	}
}

func serializableRange(t *testing.T, m *Member, rev int64) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), leaseTestTimeout)
	defer cancel()
	resp, err := m.Range(ctx, &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev, Serializable: true}, Unchecked)
	if err != nil {
		return err.Error()
	}
	out := fmt.Sprintf("revision %d:", resp.Header.Revision)
	for _, kv := range resp.Kvs {
		out += fmt.Sprintf(" %s=%s/%d/%d/%d/%x", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease)
	}
	return out
}

// TestSnapshotCarriesTheWholeStateToAFollower streams a leader's state
// with OpenSnapshot into a new learner through ProcessSnapshot, and so
// through Raft and the apply loop as a snapshot from the leader would go:
// the learner ends with the leader's keys at every live revision, its
// compacted revision, leases with their keys, membership and applied
// index, and keeps them across a restart.
func TestSnapshotCarriesTheWholeStateToAFollower(t *testing.T) {
	lm := startLeaseMember(t, 0)
	leader := lm.m
	ctx := lm.ctx()
	for _, k := range []string{"a", "b", "c", "d"} {
		if _, err := leader.Put(ctx, nil, &pb.PutRequest{Key: []byte(k), Value: []byte("v1-" + k)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := leader.DeleteRange(ctx, nil, &pb.DeleteRangeRequest{Key: []byte("b")}); err != nil {
		t.Fatal(err)
	}
	const leaseID = 7
	if _, err := leader.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: leaseID, TTL: 100}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"l2", "l1"} {
		if _, err := leader.Put(ctx, nil, &pb.PutRequest{Key: []byte(k), Value: []byte("leased"), Lease: leaseID}); err != nil {
			t.Fatal(err)
		}
	}
	compactRev := leader.Rev()
	if _, err := leader.Put(ctx, nil, &pb.PutRequest{Key: []byte("a"), Value: []byte("v2-a")}); err != nil {
		t.Fatal(err)
	}
	if _, err := leader.Compact(ctx, &pb.CompactionRequest{Revision: compactRev, Physical: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := leader.Put(ctx, nil, &pb.PutRequest{Key: []byte("e"), Value: []byte("v1-e")}); err != nil {
		t.Fatal(err)
	}
	learner, _, err := leader.MemberAdd(ctx, []string{"http://127.0.0.1:2390"}, true)
	if err != nil {
		t.Fatal(err)
	}

	f := startSnapshotFollower(t, learner.ID, leader.ClusterID())
	// Raft asks for a snapshot with whatever its storage recorded last;
	// OpenSnapshot describes the state it streams instead.
	msg := &raftpb.Message{
		Type: raftpb.MessageType_MsgSnap.Enum(), From: new(leader.ID()), To: new(learner.ID), Term: new(leader.Term()),
		Snapshot: &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: new(uint64(1)), Term: new(uint64(1))}},
	}
	state, err := leader.OpenSnapshot(msg)
	if err != nil {
		t.Fatal(err)
	}
	meta := msg.GetSnapshot().GetMetadata()
	applied := leader.AppliedIndex()
	if meta.GetIndex() != applied || meta.GetTerm() != leader.Term() || !slices.Contains(meta.GetConfState().GetLearners(), learner.ID) {
		t.Fatalf("snapshot metadata after OpenSnapshot: %v; want the applied index %d in term %d with the learner in the conf state",
			meta, applied, leader.Term())
	}
	const staged = "snap/received.snap"
	f.receive(ctx, msg, state, staged)
	state.Close()
	f.waitApplied(applied)

	check := func(when string) {
		t.Helper()
		if got, want := f.m.Rev(), leader.Rev(); got != want {
			t.Errorf("%s: follower at revision %d, leader at %d", when, got, want)
		}
		if got, want := f.m.kv.CompactRev(), leader.kv.CompactRev(); got != want {
			t.Errorf("%s: follower compacted to %d, leader to %d", when, got, want)
		}
		for rev := compactRev; rev <= leader.Rev(); rev++ {
			if got, want := serializableRange(t, f.m, rev), serializableRange(t, leader, rev); got != want {
				t.Errorf("%s: range at %d on the follower: %s\nleader: %s", when, rev, got, want)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), leaseTestTimeout)
		defer cancel()
		if _, err := f.m.Range(ctx, &pb.RangeRequest{Key: []byte("a"), Revision: compactRev - 1, Serializable: true}, Unchecked); !errors.Is(err, mvcc.ErrCompacted) {
			t.Errorf("%s: read below the compacted revision on the follower: %v", when, err)
		}
		fh, _, err := f.m.HashKV(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		lh, _, err := leader.HashKV(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		if fh != lh {
			t.Errorf("%s: HashKV differs: follower %+v, leader %+v", when, fh, lh)
		}
		if got := f.m.lessor.Leases(); !slices.Equal(got, []int64{leaseID}) {
			t.Errorf("%s: follower's leases %v", when, got)
		}
		// What a lessor promoted on the follower would answer.
		fl, err := lease.Load(f.engine.DB(), lease.Config{Clock: lease.NewFakeClock(time.Unix(0, 0))})
		if err != nil {
			t.Fatal(err)
		}
		fl.Promote(0)
		ttl, granted, err := fl.TimeToLive(leaseID)
		keys, _ := fl.Keys(f.engine.DB(), leaseID)
		want := lm.timeToLive(leaseID, true)
		if err != nil || ttl != want.TTL || granted != want.GrantedTTL || fmt.Sprintf("%s", keys) != fmt.Sprintf("%s", want.Keys) {
			t.Errorf("%s: lease on the follower: ttl %d granted %d keys %s (%v); leader: %v", when, ttl, granted, keys, err, want)
		}
		var fm, lmem []string
		for _, mem := range f.m.cluster.Members() {
			fm = append(fm, fmt.Sprintf("%x/%v", mem.ID, mem.IsLearner))
		}
		for _, mem := range leader.cluster.Members() {
			lmem = append(lmem, fmt.Sprintf("%x/%v", mem.ID, mem.IsLearner))
		}
		if fmt.Sprint(fm) != fmt.Sprint(lmem) {
			t.Errorf("%s: follower's members %v, leader's %v", when, fm, lmem)
		}
	}
	check("after the snapshot")
	if _, err := f.fs.Stat(staged); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the staged state is still there after the install (%v)", err)
	}
	if f.m.snapshotIndexForTest() != applied {
		t.Errorf("follower's snapshot index %d, want %d", f.m.snapshotIndexForTest(), applied)
	}

	f.m.Stop()
	f.m = nil
	f.start()
	f.waitApplied(applied)
	check("after a restart")
}

// snapshotIndexForTest reads the snapshot index the Raft log recorded.
func (m *Member) snapshotIndexForTest() uint64 { return m.log.SnapshotIndex() }

// TestSnapshotBehindTheStreamedStateSkipsToIt covers a snapshot whose
// state is further ahead than its index (a leader that did not describe the
// state it streamed): the follower takes the state's applied index, a later
// snapshot at or below it only moves the Raft log, and a restart, where the
// commit index is behind the applied index, resumes.
func TestSnapshotBehindTheStreamedStateSkipsToIt(t *testing.T) {
	lm := startLeaseMember(t, 0)
	leader := lm.m
	ctx := lm.ctx()
	learner, _, err := leader.MemberAdd(ctx, []string{"http://127.0.0.1:2390"}, true)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := leader.Put(ctx, nil, &pb.PutRequest{Key: fmt.Appendf(nil, "k%d", i), Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	f := startSnapshotFollower(t, learner.ID, leader.ClusterID())
	snapshotAt := func(index uint64) (*raftpb.Message, *storage.StateStream) {
		t.Helper()
		st, err := leader.engine.OpenState()
		if err != nil {
			t.Fatal(err)
		}
		term, err := leader.log.Term(index)
		if err != nil {
			t.Fatal(err)
		}
		return &raftpb.Message{
			Type: raftpb.MessageType_MsgSnap.Enum(), From: new(leader.ID()), To: new(learner.ID), Term: new(leader.Term()),
			Snapshot: &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: new(index), Term: new(term), ConfState: st.ConfState()}},
		}, st
	}
	applied := leader.AppliedIndex()
	msg, st := snapshotAt(applied - 3)
	f.receive(ctx, msg, st, "snap/first.snap")
	st.Close()
	f.waitApplied(applied)
	if got, want := serializableRange(t, f.m, 0), serializableRange(t, leader, 0); got != want {
		t.Fatalf("follower after the snapshot: %s\nleader: %s", got, want)
	}

	// A snapshot between the first one and the state's applied index.
	msg, st = snapshotAt(applied - 1)
	f.receive(ctx, msg, st, "snap/second.snap")
	st.Close()
	deadline := time.Now().Add(leaseTestTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for f.m.snapshotIndexForTest() != applied-1 {
		if time.Now().After(deadline) {
			t.Fatalf("the second snapshot was not taken: snapshot index %d", f.m.snapshotIndexForTest())
		}
		<-tick.C
	}
	if f.m.AppliedIndex() != applied {
		t.Errorf("applied index %d after a snapshot behind it, want %d", f.m.AppliedIndex(), applied)
	}
	if _, err := f.fs.Stat("snap/second.snap"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the second snapshot's state file is still there (%v)", err)
	}

	f.m.Stop()
	f.m = nil
	f.start()
	f.waitApplied(applied)
	if got, want := serializableRange(t, f.m, 0), serializableRange(t, leader, 0); got != want {
		t.Fatalf("follower after a restart: %s\nleader: %s", got, want)
	}
}
