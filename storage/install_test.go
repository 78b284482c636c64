package storage

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

const stagedPath = "snap/state.snap"

// snapMeta is the snapshot the tests install: index 90, term 3.
func snapMeta() *raftpb.SnapshotMetadata {
	return &raftpb.SnapshotMetadata{Index: new(uint64(90)), Term: new(uint64(3)), ConfState: &raftpb.ConfState{Voters: []uint64{1, 2, 3}}}
}

// sourceState returns a leader's state ("new" keys, applied index 100).
func sourceState(t *testing.T) (*Engine, []kv) {
	t.Helper()
	src, err := Open("src", Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	fillEngine(t, src, "new", 120)
	return src, dump(t, src.DB(), isStateKey)
}

// stage writes src's state stream to stagedPath on fs, durably.
func stage(t *testing.T, fs vfs.FS, src *Engine) {
	t.Helper()
	if err := fs.MkdirAll("snap", 0o700); err != nil {
		t.Fatal(err)
	}
	f, err := fs.Create(stagedPath, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteState(src.DB(), f); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := syncDir(fs, "snap"); err != nil {
		t.Fatal(err)
	}
}

// follower opens a member's engine on fs holding old state ("old" keys,
// some that the snapshot also has), its own identity and a Raft log
// 41..60 with commit 50 in term 2.
func follower(t *testing.T, fs vfs.FS) (*Engine, *RaftLog) {
	t.Helper()
	e, l := openLog(t, fs)
	fillEngine(t, e, "old", 80)
	fillEngine(t, e, "new", 10)
	b := e.DB().NewBatch()
	if err := SetIdentity(b, Identity{MemberID: 9, ClusterID: 2}); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(nil); err != nil {
		t.Fatal(err)
	}
	b.Close()
	var ents []*raftpb.Entry
	for i := uint64(1); i <= 60; i++ {
		ents = append(ents, ent(i, 2, "x"))
	}
	hs := &raftpb.HardState{Term: new(uint64(2)), Vote: new(uint64(5)), Commit: new(uint64(50))}
	if err := l.Save(hs, ents, true); err != nil {
		t.Fatal(err)
	}
	if err := l.CreateSnapshot(40, 2, &raftpb.ConfState{Voters: []uint64{1, 2}}, 40); err != nil {
		t.Fatal(err)
	}
	return e, l
}

// checkInstalled checks that e holds exactly want as its state, its own
// identity, and a Raft log that starts after the snapshot.
func checkInstalled(t *testing.T, e *Engine, want []kv, fileGone bool) {
	t.Helper()
	if got := dump(t, e.DB(), isStateKey); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("state after the install has %d keys, want the snapshot's %d", len(got), len(want))
		for i := 0; i < len(got) && i < len(want); i++ {
			if got[i] != want[i] {
				t.Errorf("first difference at %d: %q = %q, want %q = %q", i, got[i].k, got[i].v, want[i].k, want[i].v)
				break
			}
		}
	}
	if id, ok, err := e.Identity(); err != nil || !ok || id.MemberID != 9 {
		t.Errorf("identity after the install: %+v %v %v, want the follower's own (member 9)", id, ok, err)
	}
	if pending, err := e.InstallPending(); err != nil || pending {
		t.Errorf("install marker still present (%v)", err)
	}
	l, err := OpenRaftLog(e)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := l.FirstIndex()
	last, _ := l.LastIndex()
	if first != 91 || last != 90 {
		t.Errorf("raft log spans [%d, %d] after the install, want empty after 90", first, last)
	}
	if term, err := l.Term(90); err != nil || term != 3 {
		t.Errorf("term of the snapshot index: %d %v, want 3", term, err)
	}
	if _, err := l.Entries(41, 61, 1<<20); err == nil {
		t.Errorf("old raft log entries are still readable")
	}
	snap, _ := l.Snapshot()
	if !proto.Equal(snap.GetMetadata(), snapMeta()) {
		t.Errorf("snapshot metadata %v, want %v", snap.GetMetadata(), snapMeta())
	}
	hs := l.HardState()
	if hs.GetCommit() != 90 || hs.GetTerm() != 3 || hs.GetVote() != 0 {
		t.Errorf("hard state %v after the install, want commit 90 in term 3 with no vote", hs)
	}
	hsRaw, cs, _ := l.InitialState()
	_ = hsRaw
	if fmt.Sprint(cs.Voters) != "[1 2 3]" {
		t.Errorf("conf state %v after the install, want the snapshot state's", cs)
	}
	if applied, err := e.Applied(); err != nil || applied != 100 {
		t.Errorf("applied index %d %v, want the streamed state's 100", applied, err)
	}
	if _, err := e.fs.Stat(stagedPath); fileGone && !errors.Is(err, os.ErrNotExist) {
		t.Errorf("staged state file still there after the install (%v)", err)
	}
}

func TestInstallSnapshotReplacesTheStateExactly(t *testing.T) {
	src, want := sourceState(t)
	fs := vfs.NewMem()
	stage(t, fs, src)
	e, l := follower(t, fs)
	defer e.Close()
	e.test.batchBytes = 4 << 10 // several batches
	if err := l.InstallSnapshot(stagedPath, snapMeta()); err != nil {
		t.Fatal(err)
	}
	checkInstalled(t, e, want, true)
	// The in-memory view was reloaded too: entries after the snapshot append.
	if err := l.Save(&raftpb.HardState{Term: new(uint64(3)), Commit: new(uint64(91))}, []*raftpb.Entry{ent(91, 3, "next")}, true); err != nil {
		t.Fatalf("append after the install: %v", err)
	}
	e.Close()
	reopened, err := Open("db", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer reopened.Close()
	if got := dump(t, reopened.DB(), isStateKey); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("state after a restart differs from the snapshot's")
	}
}

func TestInstallSnapshotRefusesBadStateAndKeepsTheOldOne(t *testing.T) {
	src, _ := sourceState(t)
	fs := vfs.NewMem()
	stage(t, fs, src)
	// Cut the staged file short.
	data, err := readFile(fs, stagedPath)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := fs.Create(stagedPath, vfs.WriteCategoryUnspecified)
	f.Write(data[:len(data)/2])
	f.Close()
	e, l := follower(t, fs)
	defer e.Close()
	before := dump(t, e.DB(), func([]byte) bool { return true })
	err = l.InstallSnapshot(stagedPath, snapMeta())
	if !errors.Is(err, ErrCorruptState) {
		t.Fatalf("install of a truncated state: %v, want ErrCorruptState", err)
	}
	if after := dump(t, e.DB(), func([]byte) bool { return true }); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("a refused install changed the database")
	}

	// A state applied before the snapshot's index is refused too.
	late := snapMeta()
	late.Index = new(uint64(101))
	stage(t, fs, src)
	if err := l.InstallSnapshot(stagedPath, late); err == nil || !strings.Contains(err.Error(), "before the snapshot's index") {
		t.Fatalf("install of a state behind the snapshot: %v", err)
	}
}

func readFile(fs vfs.FS, path string) ([]byte, error) {
	f, err := fs.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, st.Size())
	_, err = f.ReadAt(buf, 0)
	return buf, err
}

// TestInterruptedInstallIsRedoneAtOpen loses power at every point of an
// install (keeping none, half or all of what was not synced) and reopens the
// engine on what survived: before the marker is durable the old state is
// intact; from then on, opening finishes the install, with the same result
// as an uninterrupted one.
func TestInterruptedInstallIsRedoneAtOpen(t *testing.T) {
	src, want := sourceState(t)
	fs := vfs.NewCrashableMem()
	stage(t, fs, src)
	e, l := follower(t, fs)
	e.test.batchBytes = 4 << 10
	old := dump(t, e.DB(), func([]byte) bool { return true })
	type crash struct {
		stage    string
		unsynced int
		fs       *vfs.MemFS
	}
	var crashes []crash
	rng := rand.New(rand.NewPCG(1, 2))
	e.test.at = func(stage string) {
		for _, pct := range []int{0, 50, 100} {
			crashes = append(crashes, crash{stage, pct, fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: pct, RNG: rng})})
		}
	}
	if err := l.InstallSnapshot(stagedPath, snapMeta()); err != nil {
		t.Fatal(err)
	}
	e.Close()
	if len(crashes) < 4*3 {
		t.Fatalf("only %d crash points; the install should have several batches", len(crashes))
	}
	for _, c := range crashes {
		t.Run(fmt.Sprintf("%s-%d%%", c.stage, c.unsynced), func(t *testing.T) {
			e, err := Open("db", Options{FS: c.fs})
			if err != nil {
				t.Fatalf("open after a crash: %v", err)
			}
			defer e.Close()
			if c.stage == "checked" {
				if got := dump(t, e.DB(), func([]byte) bool { return true }); fmt.Sprint(got) != fmt.Sprint(old) {
					t.Errorf("a crash before the install began changed the database")
				}
				return
			}
			// A crash between the last batch and the file's removal
			// leaves the file behind; it is no longer needed.
			checkInstalled(t, e, want, c.stage != "done")
		})
	}
}

func TestInterruptedInstallWithoutItsFileFailsClearly(t *testing.T) {
	src, _ := sourceState(t)
	fs := vfs.NewCrashableMem()
	stage(t, fs, src)
	e, l := follower(t, fs)
	var crashed *vfs.MemFS
	e.test.at = func(stage string) {
		if stage == "marked" {
			crashed = fs.CrashClone(vfs.CrashCloneCfg{})
		}
	}
	if err := l.InstallSnapshot(stagedPath, snapMeta()); err != nil {
		t.Fatal(err)
	}
	e.Close()
	if err := crashed.Remove(stagedPath); err != nil {
		t.Fatal(err)
	}
	_, err := Open("db", Options{FS: crashed})
	if err == nil || !strings.Contains(err.Error(), "damaged") || !strings.Contains(err.Error(), "remove the data dir") {
		t.Fatalf("open with an interrupted install whose file is gone: %v", err)
	}
}

func TestApplySnapshotMovesOnlyTheRaftLog(t *testing.T) {
	fs := vfs.NewMem()
	e, l := follower(t, fs)
	defer e.Close()
	state := dump(t, e.DB(), isStateKey)
	if err := l.ApplySnapshot(snapMeta()); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, e.DB(), isStateKey); fmt.Sprint(got) != fmt.Sprint(state) {
		t.Errorf("ApplySnapshot changed the state")
	}
	first, _ := l.FirstIndex()
	last, _ := l.LastIndex()
	if first != 91 || last != 90 || l.HardState().GetCommit() != 90 || l.SnapshotIndex() != 90 {
		t.Errorf("raft log [%d, %d], commit %d, snapshot %d after ApplySnapshot at 90", first, last, l.HardState().GetCommit(), l.SnapshotIndex())
	}
}
