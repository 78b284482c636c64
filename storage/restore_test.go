package storage

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3/raftpb"
)

func TestInitRestoredStartsTheLogAtTheSnapshot(t *testing.T) {
	e, err := Open("db", Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	meta := &raftpb.SnapshotMetadata{Index: new(uint64(3)), Term: new(uint64(1)), ConfState: &raftpb.ConfState{Voters: []uint64{5, 6, 7}}}
	b := e.DB().NewBatch()
	if err := e.InitRestored(b, Identity{MemberID: 6, ClusterID: 99}, meta); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	b.Close()
	id, ok, err := e.Identity()
	if err != nil || !ok || id != (Identity{MemberID: 6, ClusterID: 99}) {
		t.Fatalf("identity %+v %v %v", id, ok, err)
	}
	if applied, err := e.Applied(); err != nil || applied != 3 {
		t.Fatalf("applied %d %v, want 3", applied, err)
	}
	l, err := OpenRaftLog(e)
	if err != nil {
		t.Fatal(err)
	}
	hs, cs, err := l.InitialState()
	if err != nil {
		t.Fatal(err)
	}
	if hs.GetTerm() != 1 || hs.GetCommit() != 3 || hs.GetVote() != 0 || fmt.Sprint(cs.GetVoters()) != "[5 6 7]" {
		t.Fatalf("hard state %v conf state %v", hs, cs)
	}
	first, _ := l.FirstIndex()
	last, _ := l.LastIndex()
	term, err := l.Term(3)
	if first != 4 || last != 3 || err != nil || term != 1 {
		t.Fatalf("log [%d, %d], term(3) = %d %v", first, last, term, err)
	}
	// A second restore into the same engine is refused.
	b = e.DB().NewBatch()
	defer b.Close()
	if err := e.InitRestored(b, Identity{MemberID: 6, ClusterID: 99}, meta); err == nil || !strings.Contains(err.Error(), "already holds Raft state") {
		t.Fatalf("InitRestored over Raft state: %v", err)
	}
	if err := e.InitRestored(b, Identity{MemberID: 6, ClusterID: 99}, &raftpb.SnapshotMetadata{}); err == nil {
		t.Fatal("InitRestored at index 0 succeeded")
	}
}

func TestOpenReadOnlyReadsTheStateAndRefusesAPendingInstall(t *testing.T) {
	src, want := sourceState(t)
	fs := vfs.NewCrashableMem()
	e, err := Open("db", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	fillEngine(t, e, "new", 120)
	state := dump(t, e.DB(), isStateKey)
	e.Close()
	ro, err := OpenReadOnly("db", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	var got []kv
	if err := ro.EachState(func(k, v []byte) error {
		got = append(got, kv{string(k), string(v)})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ro.Close()
	if fmt.Sprint(got) != fmt.Sprint(state) || len(got) != len(want) {
		t.Fatalf("read-only state: %d records, want %d", len(got), len(state))
	}

	// A data dir with an interrupted install is refused.
	stage(t, fs, src)
	f, l := follower(t, fs)
	var crashed *vfs.MemFS
	f.test.at = func(stage string) {
		if stage == "marked" {
			crashed = fs.CrashClone(vfs.CrashCloneCfg{})
		}
	}
	if err := l.InstallSnapshot(stagedPath, snapMeta()); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := OpenReadOnly("db", Options{FS: crashed}); !errors.Is(err, ErrInstallPending) {
		t.Fatalf("open read-only with an interrupted install: %v", err)
	}
	if _, err := OpenReadOnly("missing", Options{FS: fs}); err == nil {
		t.Fatal("open read-only of a missing dir succeeded")
	}
}
