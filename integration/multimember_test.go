package integration

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keeldb/keel/config"
	"github.com/keeldb/keel/internal/keeltest"
)

// catchUpTimeout bounds how long a test waits for a member to catch up.
const catchUpTimeout = 30 * time.Second

// followers returns the running members of c that do not lead.
func followers(t *testing.T, c *keeltest.Cluster) []*keeltest.Member {
	t.Helper()
	lead := c.Leader(t)
	var out []*keeltest.Member
	for _, m := range c.Running() {
		if m != lead {
			out = append(out, m)
		}
	}
	return out
}

// waitServes polls m with serializable gets until key is there.
func waitServes(t *testing.T, m *keeltest.Member, key string) {
	t.Helper()
	deadline := time.Now().Add(catchUpTimeout)
	for {
		resp, err := m.Client.Get(ctx(t), key, clientv3.WithSerializable())
		if err == nil && len(resp.Kvs) == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("member %s never caught up to %q: %v %v", m.Config.Name, key, resp, err)
		}
		time.Sleep(50 * time.Millisecond) // poll interval, bounded by the deadline
	}
}

// checkSameKeySpace checks that a and b hold the same keys at the same
// revision and, unless a is a learner (which serves only serializable
// reads), that their HashKV agree at it.
func checkSameKeySpace(t *testing.T, a, b *keeltest.Member) {
	t.Helper()
	ra, err := a.Client.Get(ctx(t), "", clientv3.WithPrefix(), clientv3.WithSerializable())
	if err != nil {
		t.Fatal(err)
	}
	rb, err := b.Client.Get(ctx(t), "", clientv3.WithPrefix(), clientv3.WithSerializable(), clientv3.WithRev(ra.Header.Revision))
	if err != nil {
		t.Fatal(err)
	}
	if len(ra.Kvs) != len(rb.Kvs) {
		t.Fatalf("%s has %d keys at %d, %s %d", a.Config.Name, len(ra.Kvs), ra.Header.Revision, b.Config.Name, len(rb.Kvs))
	}
	for i := range ra.Kvs {
		if ra.Kvs[i].String() != rb.Kvs[i].String() {
			t.Fatalf("key %d differs: %v vs %v", i, ra.Kvs[i], rb.Kvs[i])
		}
	}
	if st, err := a.Client.Status(ctx(t), a.Endpoint); err != nil || st.IsLearner {
		return
	}
	ha, err := a.Client.HashKV(ctx(t), a.Endpoint, ra.Header.Revision)
	if err != nil {
		t.Fatal(err)
	}
	hb, err := b.Client.HashKV(ctx(t), b.Endpoint, ra.Header.Revision)
	if err != nil {
		t.Fatal(err)
	}
	if ha.Hash != hb.Hash || ha.CompactRevision != hb.CompactRevision || ha.HashRevision != hb.HashRevision {
		t.Fatalf("HashKV at %d differs: %s %d/%d/%d, %s %d/%d/%d", ra.Header.Revision,
			a.Config.Name, ha.Hash, ha.CompactRevision, ha.HashRevision, b.Config.Name, hb.Hash, hb.CompactRevision, hb.HashRevision)
	}
}

// TestClusterLaggingFollowerCatchesUpFromASnapshot stops a follower while
// the others write, snapshot, compact the Raft log past it and compact the
// key space, then restarts it: it must receive the leader's state as a
// snapshot and end with the same keys, leases and hash.
func TestClusterLaggingFollowerCatchesUpFromASnapshot(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3, keeltest.WithSnapshotCount(20), keeltest.WithConfig(func(cfg *config.Config) { cfg.SnapshotCatchUpEntries = 5 }))
	lead := c.Leader(t)
	lag := followers(t, c)[0]
	cli := lead.Client
	put(t, cli, "k-first", "v")
	lag.Stop()
	lresp, err := cli.Grant(ctx(t), 1000)
	if err != nil {
		t.Fatal(err)
	}
	put(t, cli, "leased", "x", clientv3.WithLease(lresp.ID))
	var last int64
	for i := range 200 {
		last = put(t, cli, fmt.Sprintf("k%03d", i), "v")
	}
	if _, err := cli.Compact(ctx(t), last-50, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	put(t, cli, "k-last", "v")
	lag.Restart(t)
	waitServes(t, lag, "k-last")
	checkSameKeySpace(t, lag, lead)
	ttl, err := lag.Client.TimeToLive(ctx(t), lresp.ID, clientv3.WithAttachedKeys())
	if err != nil || len(ttl.Keys) != 1 || string(ttl.Keys[0]) != "leased" {
		t.Fatalf("lease through the caught-up follower: %v %v", ttl, err)
	}
	if _, err := lag.Client.Get(ctx(t), "k000", clientv3.WithRev(last-60)); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Fatalf("read below the compaction on the caught-up follower: %v, want %v", err, rpctypes.ErrCompacted)
	}
	put(t, lag.Client, "after", "1") // and it takes writes
	waitServes(t, lead, "after")
	// The metrics saw it: the leader recorded Raft snapshots, the
	// follower received and synced the state.
	if v := value(scrape(t, lead.Endpoint), "etcd_snap_fsync_duration_seconds", nil); v < 1 {
		t.Errorf("leader: etcd_snap_fsync_duration_seconds counted %v Raft snapshots after 200 writes at --snapshot-count 20", v)
	}
	lagged := scrape(t, lag.Endpoint)
	for _, name := range []string{"etcd_snap_db_save_total_duration_seconds", "etcd_snap_db_fsync_duration_seconds"} {
		if v := value(lagged, name, nil); v < 1 {
			t.Errorf("follower: %s counted %v after catching up from a snapshot", name, v)
		}
	}
}

// TestClusterJoiningLearnerCatchesUpFromASnapshot adds a learner to a
// cluster whose Raft log no longer starts at the beginning: the learner can
// only catch up from a snapshot.
func TestClusterJoiningLearnerCatchesUpFromASnapshot(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3, keeltest.WithSnapshotCount(20), keeltest.WithConfig(func(cfg *config.Config) { cfg.SnapshotCatchUpEntries = 5 }))
	cli := c.Members[0].Client
	for i := range 100 {
		put(t, cli, fmt.Sprintf("k%03d", i), "v")
	}
	peer, err := keeltest.NewPeerURL()
	if err != nil {
		t.Fatal(err)
	}
	if err := retryUnhealthy(t, func() error { _, err := cli.MemberAddAsLearner(ctx(t), []string{peer}); return err }); err != nil {
		t.Fatal(err)
	}
	learner := c.Join(t, "m4", peer)
	waitServes(t, learner, "k099")
	checkSameKeySpace(t, learner, c.Members[0])
}

// TestClusterLeasesWorkThroughFollowers grants, keeps alive, inspects and
// revokes a lease through a follower: keepalives and TimeToLive are
// forwarded to the leader, whose lessor alone knows the remaining TTL.
func TestClusterLeasesWorkThroughFollowers(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	f := followers(t, c)[0]
	cli := f.Client
	g, err := cli.Grant(ctx(t), 30)
	if err != nil {
		t.Fatal(err)
	}
	put(t, cli, "lk", "v", clientv3.WithLease(g.ID))
	ka, err := cli.KeepAliveOnce(ctx(t), g.ID)
	if err != nil || ka.TTL != 30 {
		t.Fatalf("keepalive through a follower: %v %v", ka, err)
	}
	ttl, err := cli.TimeToLive(ctx(t), g.ID, clientv3.WithAttachedKeys())
	if err != nil || ttl.GrantedTTL != 30 || ttl.TTL <= 0 || len(ttl.Keys) != 1 {
		t.Fatalf("TimeToLive through a follower: %v %v", ttl, err)
	}
	if _, err := cli.KeepAliveOnce(ctx(t), g.ID+1); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Fatalf("keepalive of an unknown lease through a follower: %v, want %v", err, rpctypes.ErrLeaseNotFound)
	}
	if r, err := cli.TimeToLive(ctx(t), g.ID+1); err != nil || r.TTL != -1 {
		t.Fatalf("TimeToLive of an unknown lease through a follower: %v %v, want TTL -1 as etcd", r, err)
	}
	if _, err := cli.Revoke(ctx(t), g.ID); err != nil {
		t.Fatal(err)
	}
	resp, err := c.Leader(t).Client.Get(ctx(t), "lk")
	if err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("key of the revoked lease: %v %v", resp, err)
	}
}

// TestClusterMoveLeaderHandsLeadershipOver moves leadership to a follower
// and checks etcd's refusals: asked of a follower, or for a member that is
// not a voter.
func TestClusterMoveLeaderHandsLeadershipOver(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	lead := c.Leader(t)
	target := followers(t, c)[0]
	if _, err := target.Client.MoveLeader(ctx(t), target.Server.MemberID()); !errors.Is(err, rpctypes.ErrNotLeader) {
		t.Fatalf("move-leader asked of a follower: %v, want %v", err, rpctypes.ErrNotLeader)
	}
	if _, err := lead.Client.MoveLeader(ctx(t), 12345); !errors.Is(err, rpctypes.ErrBadLeaderTransferee) {
		t.Fatalf("move-leader to an unknown member: %v, want %v", err, rpctypes.ErrBadLeaderTransferee)
	}
	if _, err := lead.Client.MoveLeader(ctx(t), target.Server.MemberID()); err != nil {
		t.Fatal(err)
	}
	for _, m := range c.Running() {
		st, err := m.Client.Status(ctx(t), m.Endpoint)
		if err != nil {
			t.Fatal(err)
		}
		if m == lead || m == target {
			// Both took part in the transfer, so both know its outcome.
			if st.Leader != target.Server.MemberID() {
				t.Fatalf("%s reports leader %x after the transfer, want %x", m.Config.Name, st.Leader, target.Server.MemberID())
			}
		}
	}
	put(t, lead.Client, "after-move", "1")
}

// TestClusterFollowerReadsAreLinearizable writes through one member and
// reads through another at once: a linearizable read must see the write.
func TestClusterFollowerReadsAreLinearizable(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	fs := followers(t, c)
	for i := range 50 {
		w, r := fs[i%2], fs[(i+1)%2]
		rev := put(t, w.Client, "lin", fmt.Sprint(i))
		resp, err := r.Client.Get(ctx(t), "lin")
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != fmt.Sprint(i) || resp.Header.Revision < rev {
			t.Fatalf("read %d through %s after the write at %d through %s: %v", i, r.Config.Name, rev, w.Config.Name, resp)
		}
	}
	checkSameKeySpace(t, fs[0], fs[1])
}

// TestClusterWatchOnAFollowerSeesWritesThroughOthers watches through one
// follower while another member writes: every event arrives, in order.
func TestClusterWatchOnAFollowerSeesWritesThroughOthers(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	fs := followers(t, c)
	wctx, cancel := context.WithCancel(ctx(t))
	defer cancel()
	wch := fs[0].Client.Watch(clientv3.WithRequireLeader(wctx), "w/", clientv3.WithPrefix(), clientv3.WithPrevKV())
	const n = 20
	var revs []int64
	for i := range n {
		revs = append(revs, put(t, c.Leader(t).Client, fmt.Sprintf("w/%d", i%3), fmt.Sprint(i)))
	}
	var got []int64
	timeout := time.After(catchUpTimeout)
	for len(got) < n {
		select {
		case resp, ok := <-wch:
			if !ok || resp.Err() != nil {
				t.Fatalf("watch through a follower ended: %v", resp.Err())
			}
			for _, ev := range resp.Events {
				got = append(got, ev.Kv.ModRevision)
			}
		case <-timeout:
			t.Fatalf("watch through a follower got %d of %d events", len(got), n)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(revs) {
		t.Fatalf("events at revisions %v, writes at %v", got, revs)
	}
}

// TestClusterExpiredLeaseIsRevokedOnEveryMember lets a lease expire: the
// leader revokes it through Raft, so its key disappears on every member.
func TestClusterExpiredLeaseIsRevokedOnEveryMember(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	f := followers(t, c)[0]
	g, err := f.Client.Grant(ctx(t), 2) // etcd's minimum TTL for a 1 s election timeout
	if err != nil {
		t.Fatal(err)
	}
	put(t, f.Client, "short", "v", clientv3.WithLease(g.ID))
	for _, m := range c.Running() {
		deadline := time.Now().Add(catchUpTimeout)
		for {
			resp, err := m.Client.Get(ctx(t), "short", clientv3.WithSerializable())
			if err == nil && len(resp.Kvs) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("key of an expired lease still on %s: %v %v", m.Config.Name, resp, err)
			}
			time.Sleep(100 * time.Millisecond) // poll interval, bounded by the deadline
		}
	}
	if r, err := f.Client.TimeToLive(ctx(t), g.ID); err != nil || r.TTL != -1 {
		t.Fatalf("TimeToLive of the expired lease: %v %v, want TTL -1", r, err)
	}
}
