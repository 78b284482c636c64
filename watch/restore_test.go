package watch

import (
	"fmt"
	"io"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"

	"github.com/keeldb/keel/mvcc"
	"github.com/keeldb/keel/storage"
)

// snapshotFixture is a follower's hub and store over an engine whose state
// can be replaced by a leader's, and the leader's store.
type snapshotFixture struct {
	*fixture
	fs       vfs.FS
	engine   *storage.Engine
	leader   *fixture
	leaderDB *storage.Engine
}

func newSnapshotFixture(t *testing.T) *snapshotFixture {
	t.Helper()
	open := func(fs vfs.FS) (*fixture, *storage.Engine) {
		e, err := storage.Open("db", storage.Options{FS: fs})
		if err != nil {
			t.Fatal(err)
		}
		s, err := mvcc.Open(e.DB(), zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		h := NewHub(s, Config{MaxRequestBytes: 1 << 20})
		t.Cleanup(func() { h.Stop(); s.Close(); e.Close() })
		return &fixture{t: t, db: e.DB(), store: s, hub: h}, e
	}
	sf := &snapshotFixture{fs: vfs.NewMem()}
	sf.fixture, sf.engine = open(sf.fs)
	sf.leader, sf.leaderDB = open(vfs.NewMem())
	return sf
}

// both applies the same batch on the follower and the leader.
func (sf *snapshotFixture) both(txns ...func(tx *mvcc.Txn)) {
	sf.batch(txns...)
	sf.leader.batch(txns...)
}

// install replaces the follower's state with the leader's and resyncs the
// follower's store and hub, in the apply loop's order.
func (sf *snapshotFixture) install() {
	t := sf.t
	t.Helper()
	b := sf.leader.db.NewBatch()
	if err := storage.SetApplied(b, 100); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	b.Close()
	st, err := sf.leaderDB.OpenState()
	if err != nil {
		t.Fatal(err)
	}
	f, err := sf.fs.Create("staged.snap", vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, st); err != nil {
		t.Fatal(err)
	}
	st.Close()
	f.Close()
	l, err := storage.OpenRaftLog(sf.engine)
	if err != nil {
		t.Fatal(err)
	}
	sf.store.BeginRestore()
	if err := l.InstallSnapshot("staged.snap", &raftpb.SnapshotMetadata{Index: new(uint64(100)), Term: new(uint64(1))}); err != nil {
		t.Fatal(err)
	}
	if err := sf.store.Reload(); err != nil {
		t.Fatal(err)
	}
	sf.hub.Restore()
}

// TestRestoreCatchesWatchersUpFromTheInstalledHistory: watchers of a
// follower whose state jumps ahead by a snapshot get every change they
// missed, in order, from the new state's history, then follow new writes.
func TestRestoreCatchesWatchersUpFromTheInstalledHistory(t *testing.T) {
	sf := newSnapshotFixture(t)
	for i := range 3 {
		sf.both(putTx(fmt.Sprintf("k%d", i), "v")) // revisions 2..4
	}
	s := sf.stream()
	s.Create(&pb.WatchCreateRequest{Key: []byte("k"), RangeEnd: []byte("l")})
	s.Create(&pb.WatchCreateRequest{Key: []byte("k"), RangeEnd: []byte("l"), StartRevision: 50})
	collect(t, s, func(rs []*pb.WatchResponse) bool { return len(rs) >= 2 }) // created
	const n = 3 * testRecentEvents
	for i := 3; i < n; i++ {
		sf.leader.batch(putTx(fmt.Sprintf("k%d", i), "v"))
	}
	sf.install()
	if sf.hub.Rev() != int64(n+1) {
		t.Fatalf("hub at revision %d after Restore, want the leader's %d", sf.hub.Rev(), n+1)
	}
	// The second watcher waited for revision 50, which the install passed.
	const fromFifty = n + 1 - 50 + 1
	rs := collect(t, s, func(rs []*pb.WatchResponse) bool {
		return len(events(rs, 0)) >= n-3 && len(events(rs, 1)) >= fromFifty
	})
	for id, want := range map[int64]struct {
		from int64
		n    int
	}{0: {5, n - 3}, 1: {50, fromFifty}} {
		evs := events(rs, id)
		if len(evs) != want.n {
			t.Fatalf("watcher %d got %d events after the install, want %d", id, len(evs), want.n)
		}
		for i, e := range evs {
			if e.Kv.ModRevision != want.from+int64(i) || string(e.Kv.Key) != fmt.Sprintf("k%d", want.from-2+int64(i)) {
				t.Fatalf("watcher %d: event %d is %s@%d, want k%d@%d", id, i, e.Kv.Key, e.Kv.ModRevision, want.from-2+int64(i), want.from+int64(i))
			}
		}
	}
	// Synced again: a new write reaches both.
	sf.batch(putTx("k-new", "v"))
	rs = collect(t, s, func(rs []*pb.WatchResponse) bool { return len(events(rs, 0)) >= 1 && len(events(rs, 1)) >= 1 })
	for id := range int64(2) {
		if evs := events(rs, id); len(evs) != 1 || evs[0].Kv.ModRevision != int64(n+2) {
			t.Fatalf("watcher %d after the install and a new write got %v", id, evs)
		}
	}
}

// TestRestoreCancelsWatchersTheInstalledStateCompacted: a watcher waiting
// for a revision the leader has compacted is cancelled with the compacted
// revision, as etcd does.
func TestRestoreCancelsWatchersTheInstalledStateCompacted(t *testing.T) {
	sf := newSnapshotFixture(t)
	sf.both(putTx("k0", "v"))
	s := sf.stream()
	s.Create(&pb.WatchCreateRequest{Key: []byte("k0")})
	collect(t, s, func(rs []*pb.WatchResponse) bool { return len(rs) >= 1 })
	for i := range 10 {
		sf.leader.batch(putTx(fmt.Sprintf("k%d", i), "v"))
	}
	b := sf.leader.db.NewIndexedBatch()
	w := sf.leader.store.NewWriter(b)
	if err := w.Compact(8); err != nil {
		t.Fatal(err)
	}
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	sf.leader.store.Committed(w)
	b.Close()
	<-sf.leader.store.WaitCompactions()
	sf.install()
	rs := collect(t, s, func(rs []*pb.WatchResponse) bool { return len(rs) >= 1 })
	if !rs[0].Canceled || rs[0].CompactRevision != 8 {
		t.Fatalf("want the watcher cancelled at compact revision 8, got %v", rs[0])
	}
}
