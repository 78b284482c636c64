package integration

import (
	"fmt"
	"os"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keeldb/keel/internal/keeltest"
)

// snapshotOf reads every key at every revision from 1 to the current one,
// as one string per revision, plus the current revision.
func snapshotOf(t *testing.T, cli *clientv3.Client, from int64) (map[int64]string, int64) {
	t.Helper()
	cur := rev(t, cli)
	out := make(map[int64]string)
	for r := from; r <= cur; r++ {
		out[r] = kvsString(get(t, cli, "", clientv3.WithPrefix(), clientv3.WithRev(r)).Kvs)
	}
	return out, cur
}

// TestRestartKeepsDataAndRevisions checks that a clean restart keeps every
// key, every old revision, the compaction, the member and cluster ids, and
// that the revision continues where it was while the term grows.
func TestRestartKeepsDataAndRevisions(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	put(t, cli, "a", "1")
	put(t, cli, "b", "1")
	put(t, cli, "a", "2")
	if _, err := cli.Delete(ctx(t), "b"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Txn(ctx(t)).Then(clientv3.OpPut("c", "1"), clientv3.OpPut("d", "1"), clientv3.OpDelete("a")).Commit(); err != nil {
		t.Fatal(err)
	}
	put(t, cli, "a", "3")
	put(t, cli, "e", "")
	if _, err := cli.Compact(ctx(t), 3); err != nil {
		t.Fatal(err)
	}
	before, cur := snapshotOf(t, cli, 3)
	s1 := memberStatus(t, m)

	m.restart(t)
	cli = m.cli()

	after, cur2 := snapshotOf(t, cli, 3)
	if cur2 != cur {
		t.Fatalf("revision %d after restart, want %d", cur2, cur)
	}
	for r := int64(3); r <= cur; r++ {
		if before[r] != after[r] {
			t.Errorf("at revision %d after restart:\n  %s\nbefore:\n  %s", r, after[r], before[r])
		}
	}
	_, err := cli.Get(ctx(t), "a", clientv3.WithRev(2))
	wantErr(t, err, rpctypes.ErrGRPCCompacted)
	_, err = cli.Compact(ctx(t), 3)
	wantErr(t, err, rpctypes.ErrGRPCCompacted)

	s2 := memberStatus(t, m)
	if s2.Header.ClusterId != s1.Header.ClusterId || s2.Header.MemberId != s1.Header.MemberId {
		t.Errorf("ids changed over a restart: cluster %x -> %x, member %x -> %x", s1.Header.ClusterId, s2.Header.ClusterId, s1.Header.MemberId, s2.Header.MemberId)
	}
	// A fresh one-member cluster elects itself in term 2; every restart is
	// one more election.
	if s1.RaftTerm != 2 || s2.RaftTerm != s1.RaftTerm+1 {
		t.Errorf("raft term %d before and %d after restart, want 2 and 3", s1.RaftTerm, s2.RaftTerm)
	}
	if s2.Leader != s2.Header.MemberId {
		t.Errorf("leader %x after restart, want the member %x", s2.Leader, s2.Header.MemberId)
	}
	if s2.RaftAppliedIndex < s1.RaftAppliedIndex {
		t.Errorf("applied index %d after restart, was %d", s2.RaftAppliedIndex, s1.RaftAppliedIndex)
	}

	// Writes continue from the same revision and versions.
	pr, err := cli.Put(ctx(t), "a", "4", clientv3.WithPrevKV())
	if err != nil {
		t.Fatal(err)
	}
	if pr.Header.Revision != cur+1 || pr.Header.RaftTerm != s2.RaftTerm {
		t.Fatalf("put after restart: revision %d term %d, want %d and %d", pr.Header.Revision, pr.Header.RaftTerm, cur+1, s2.RaftTerm)
	}
	wantKVs(t, get(t, cli, "a").Kvs, kv("a", "4", 7, cur+1, 2))

	// The member list shows the member with its (possibly new) client URL.
	ml, err := cli.MemberList(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(ml.Members) != 1 || ml.Members[0].ID != s1.Header.MemberId || len(ml.Members[0].ClientURLs) != 1 || ml.Members[0].ClientURLs[0] != m.endpoint() {
		t.Fatalf("members after restart %v, want one with id %x and client URL %s", ml.Members, s1.Header.MemberId, m.endpoint())
	}
}

// TestRestartTwiceWithoutWrites checks that restarts with nothing written in
// between keep the revision and keep growing the term.
func TestRestartTwiceWithoutWrites(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	put(t, m.cli(), "a", "1")
	terms := []uint64{memberStatus(t, m).RaftTerm}
	for range 2 {
		m.restart(t)
		s := memberStatus(t, m)
		if s.Header.Revision != 2 {
			t.Fatalf("revision %d after restart, want 2", s.Header.Revision)
		}
		terms = append(terms, s.RaftTerm)
	}
	if !(terms[0] < terms[1] && terms[1] < terms[2]) {
		t.Fatalf("terms over two restarts %v, want increasing", terms)
	}
	wantKVs(t, get(t, m.cli(), "a").Kvs, kv("a", "1", 2, 2, 1))
}

// TestRestartAfterSnapshots writes many more entries than --snapshot-count,
// so the member snapshots and compacts its Raft log several times, then
// restarts and checks every key and the applied index.
func TestRestartAfterSnapshots(t *testing.T) {
	t.Parallel()
	const writes = 200
	m := startMember(t, withSnapshotCount(20))
	cli := m.cli()
	for i := range writes {
		if got := put(t, cli, fmt.Sprintf("k%03d", i), fmt.Sprintf("v%d", i)); got != int64(i+2) {
			t.Fatalf("put %d at revision %d, want %d", i, got, i+2)
		}
	}
	before := memberStatus(t, m)
	m.restart(t)
	cli = m.cli()
	resp := get(t, cli, "k", clientv3.WithPrefix())
	if len(resp.Kvs) != writes || resp.Count != writes {
		t.Fatalf("%d keys (count %d) after restart, want %d", len(resp.Kvs), resp.Count, writes)
	}
	for i, kv := range resp.Kvs {
		k, v, r := fmt.Sprintf("k%03d", i), fmt.Sprintf("v%d", i), int64(i+2)
		if string(kv.Key) != k || string(kv.Value) != v || kv.CreateRevision != r || kv.ModRevision != r || kv.Version != 1 {
			t.Fatalf("key %d after restart: %s, want %q=%q at %d", i, kvString(kv), k, v, r)
		}
	}
	if resp.Header.Revision != writes+1 {
		t.Fatalf("revision %d after restart, want %d", resp.Header.Revision, writes+1)
	}
	after := memberStatus(t, m)
	if after.RaftAppliedIndex < writes || after.RaftAppliedIndex < before.RaftAppliedIndex {
		t.Fatalf("applied index %d after restart, want at least %d and at least %d", after.RaftAppliedIndex, writes, before.RaftAppliedIndex)
	}
	if after.RaftTerm <= before.RaftTerm {
		t.Fatalf("raft term %d after restart, want more than %d", after.RaftTerm, before.RaftTerm)
	}
	if got := put(t, cli, "k000", "again"); got != writes+2 {
		t.Fatalf("put after restart at %d, want %d", got, writes+2)
	}
	// Old revisions survived the snapshots too.
	wantKVs(t, get(t, cli, "k000", clientv3.WithRev(2)).Kvs, kv("k000", "v0", 2, 2, 1))
	wantKVs(t, get(t, cli, "k000").Kvs, kv("k000", "again", 2, writes+2, 2))
}

// TestRestartRightAfterCompaction restarts a member as soon as a (not
// physical) compaction is acknowledged, possibly before it has removed
// anything: the compaction must hold after the restart and every revision
// from it on must read as before.
func TestRestartRightAfterCompaction(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	for i := range 300 {
		if i%11 == 10 {
			if _, err := cli.Delete(ctx(t), fmt.Sprintf("k%d", i%10)); err != nil {
				t.Fatal(err)
			}
			continue
		}
		put(t, cli, fmt.Sprintf("k%d", i%10), fmt.Sprint(i))
	}
	const compactAt = 250
	before, cur := snapshotOf(t, cli, compactAt)
	if _, err := cli.Compact(ctx(t), compactAt); err != nil {
		t.Fatal(err)
	}
	m.restart(t)
	cli = m.cli()
	_, err := cli.Get(ctx(t), "k", clientv3.WithPrefix(), clientv3.WithRev(compactAt-1))
	wantErr(t, err, rpctypes.ErrGRPCCompacted)
	after, cur2 := snapshotOf(t, cli, compactAt)
	if cur2 != cur {
		t.Fatalf("revision %d after restart, want %d", cur2, cur)
	}
	for r := int64(compactAt); r <= cur; r++ {
		if before[r] != after[r] {
			t.Fatalf("at revision %d after restart:\n  %s\nbefore:\n  %s", r, after[r], before[r])
		}
	}
	// A physical compaction to the same point has nothing left to do but
	// still reports the revision as compacted.
	_, err = cli.Compact(ctx(t), compactAt, clientv3.WithCompactPhysical())
	wantErr(t, err, rpctypes.ErrGRPCCompacted)
}

// TestStartOnStoppedMembersDataDir starts a new keel member on the data dir
// of a stopped one (keeltest.WithDataDir): it is the same member, with the
// same data and revision. keel only: it drives keeltest directly.
func TestStartOnStoppedMembersDataDir(t *testing.T) {
	t.Parallel()
	if os.Getenv(etcdEnv) != "" {
		t.Skip("exercises keeltest's options, which only start keel")
	}
	dir := t.TempDir()
	first := keeltest.Start(t, keeltest.WithDataDir(dir), keeltest.WithName("infra1"))
	put(t, first.Client, "a", "1")
	put(t, first.Client, "a", "2")
	id := first.Server.MemberID()
	first.Stop()

	second := keeltest.Start(t, keeltest.WithDataDir(dir), keeltest.WithName("infra1"))
	if second.Server.MemberID() != id {
		t.Fatalf("member id %x on the same data dir, want %x", second.Server.MemberID(), id)
	}
	wantKVs(t, get(t, second.Client, "a").Kvs, kv("a", "2", 2, 3, 2))
	if got := put(t, second.Client, "b", "1"); got != 4 {
		t.Fatalf("put at %d, want 4", got)
	}
}
