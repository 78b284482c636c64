package mvcc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/keeldb/keel/storage"
)

// setApplied records an applied index as the apply loop would, so that the
// engine's state can be streamed and installed.
func setApplied(t *testing.T, e *storage.Engine, index uint64) {
	t.Helper()
	b := e.DB().NewBatch()
	defer b.Close()
	if err := storage.SetApplied(b, index); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

// installFrom replaces dst's state with src's through a staged state stream,
// as a follower installs a leader's snapshot.
func installFrom(t *testing.T, fs vfs.FS, dst, src *storage.Engine, index uint64) {
	t.Helper()
	st, err := src.OpenState()
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	f, err := fs.Create("staged.snap", vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, st); err != nil {
		t.Fatal(err)
	}
	f.Sync()
	f.Close()
	l, err := storage.OpenRaftLog(dst)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.InstallSnapshot("staged.snap", &raftpb.SnapshotMetadata{Index: new(index), Term: new(uint64(1))}); err != nil {
		t.Fatal(err)
	}
}

func rangeAll(t *testing.T, s *Store, rev int64) string {
	t.Helper()
	res, err := get(t, s, []byte{0}, []byte{}, rev)
	if err != nil {
		return err.Error()
	}
	out := fmt.Sprintf("rev %d:", res.Rev)
	for _, kv := range res.KVs {
		out += " " + kvString(kv)
	}
	return out
}

func revHistory(t *testing.T, s *Store, from int64) string {
	t.Helper()
	evs, last, err := s.History(context.Background(), from, s.Rev(), 1000)
	if err != nil {
		return err.Error()
	}
	out := fmt.Sprintf("up to %d:", last)
	for _, e := range evs {
		out += fmt.Sprintf(" %v %s", e.Type, kvString(e.KV))
	}
	return out
}

// TestReloadAdoptsAnInstalledStateAndPinsReadsUntilThen follows a store
// whose state is replaced by a leader's that has moved on and compacted:
// until Reload, reads see the old state whole; after it, the store has the
// leader's revisions, reads and history, and reads at revisions the leader
// compacted fail as compacted.
func TestReloadAdoptsAnInstalledStateAndPinsReadsUntilThen(t *testing.T) {
	leader, le := openTestStore(t, vfs.NewMem())
	fs := vfs.NewMem()
	follower, fe := openTestStore(t, fs)
	// The follower has the first revisions of the leader's history.
	for _, s := range []*Store{leader, follower} {
		put(t, s, "a", "1") // 2
		put(t, s, "b", "1") // 3
		del(t, s, "a", "")  // 4
	}
	put(t, leader, "c", "1") // 5
	put(t, leader, "b", "2") // 6
	write(t, leader, func(tx *Txn) {
		if err := tx.w.Compact(5); err != nil {
			t.Fatal(err)
		}
	})
	<-leader.WaitCompactions()
	put(t, leader, "d", "1") // 7
	setApplied(t, le, 40)

	oldView := follower.Read()
	wantOld := rangeAll(t, follower, 0)
	wantOldHistory := revHistory(t, follower, 2)

	follower.BeginRestore()
	installFrom(t, fs, fe, le, 40)
	if got := rangeAll(t, follower, 0); got != wantOld {
		t.Errorf("read during the restore: %s, want the old state %s", got, wantOld)
	}
	if got := revHistory(t, follower, 2); got != wantOldHistory {
		t.Errorf("history during the restore: %s, want the old %s", got, wantOldHistory)
	}

	if err := follower.Reload(); err != nil {
		t.Fatal(err)
	}
	if follower.Rev() != leader.Rev() || follower.CompactRev() != leader.CompactRev() {
		t.Fatalf("after Reload: revision %d compacted %d, want the leader's %d and %d",
			follower.Rev(), follower.CompactRev(), leader.Rev(), leader.CompactRev())
	}
	for rev := int64(5); rev <= leader.Rev(); rev++ {
		if got, want := rangeAll(t, follower, rev), rangeAll(t, leader, rev); got != want {
			t.Errorf("read at %d after Reload: %s, want the leader's %s", rev, got, want)
		}
	}
	if got, want := revHistory(t, follower, 5), revHistory(t, leader, 5); got != want {
		t.Errorf("history after Reload: %s, want the leader's %s", got, want)
	}
	if _, err := oldView.Range(context.Background(), []byte("a"), nil, RangeOptions{}); !errors.Is(err, ErrCompacted) {
		t.Errorf("read at a revision the leader compacted, from a view opened before: %v, want ErrCompacted", err)
	}

	// The follower goes on from the leader's revision, and compacts.
	put(t, follower, "e", "1")
	write(t, follower, func(tx *Txn) {
		if err := tx.w.Compact(7); err != nil {
			t.Fatal(err)
		}
	})
	<-follower.WaitCompactions()
	if got := rangeAll(t, follower, 0); got != `rev 8: "b"=2/3/6/2 "c"=1/5/5/1 "d"=1/7/7/1 "e"=1/8/8/1` {
		t.Errorf("after writing on the restored store: %s", got)
	}
}

// TestReloadResumesTheInstalledStatesCompaction installs a state whose
// compaction was scheduled but not finished: the follower finishes it.
func TestReloadResumesTheInstalledStatesCompaction(t *testing.T) {
	leader, le := openTestStore(t, vfs.NewMem())
	put(t, leader, "a", "1") // 2
	put(t, leader, "a", "2") // 3
	put(t, leader, "a", "3") // 4
	// Record a compaction as scheduled only, as a leader streaming its
	// state mid-compaction would.
	b := le.DB().NewBatch()
	if err := putInt(b, keyScheduledCompact, 3); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	b.Close()
	setApplied(t, le, 10)

	fs := vfs.NewMem()
	follower, fe := openTestStore(t, fs)
	follower.BeginRestore()
	installFrom(t, fs, fe, le, 10)
	if err := follower.Reload(); err != nil {
		t.Fatal(err)
	}
	<-follower.WaitCompactions()
	if finished, _, err := getInt(fe.DB(), keyFinishedCompact); err != nil || finished != 3 {
		t.Fatalf("finished compaction after Reload: %d %v, want 3", finished, err)
	}
	if got := rangeAll(t, follower, 3); got != `rev 4: "a"=2/2/3/2` {
		t.Errorf("read at the compacted revision: %s", got)
	}
}
