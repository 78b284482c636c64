package member

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/raft/v3"
	"go.uber.org/zap"

	"github.com/keeldb/keel/lease"
	"github.com/keeldb/keel/membership"
	"github.com/keeldb/keel/storage"
)

// leaseTestTimeout bounds every wait in these tests.
const leaseTestTimeout = 10 * time.Second

// leaseMember is a one-member cluster on an in-memory engine whose lessor
// runs on a fake clock.
type leaseMember struct {
	t      *testing.T
	cfg    Config
	clock  *lease.FakeClock
	engine *storage.Engine
	m      *Member
}

func startLeaseMember(t *testing.T, checkpointInterval time.Duration) *leaseMember {
	t.Helper()
	return startLeaseMemberWith(t, checkpointInterval, nil)
}

// startLeaseMemberWith is startLeaseMember with edit applied to the
// member's Config first.
func startLeaseMemberWith(t *testing.T, checkpointInterval time.Duration, edit func(*Config)) *leaseMember {
	t.Helper()
	engine, err := storage.Open("db", storage.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	self := membership.NewMember("default", []string{"http://127.0.0.1:2380"}, "test", nil)
	ctx, err := self.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	lm := &leaseMember{t: t, engine: engine, clock: lease.NewFakeClock(time.Unix(1e9, 0))}
	lm.cfg = Config{
		ID:                      self.ID,
		ClusterID:               membership.ClusterID([]*membership.Member{self}),
		Name:                    "default",
		Engine:                  engine,
		Peers:                   []raft.Peer{{ID: self.ID, Context: ctx}},
		TickInterval:            10 * time.Millisecond,
		ElectionTicks:           10,
		SnapshotCount:           1 << 20,
		SnapshotCatchUpEntries:  1000,
		MaxRequestBytes:         1.5 * 1024 * 1024,
		LeaseCheckpointInterval: checkpointInterval,
		LeaseClock:              lm.clock,
		Logger:                  zap.NewNop(),
	}
	if edit != nil {
		edit(&lm.cfg)
	}
	t.Cleanup(func() {
		if lm.m != nil {
			lm.m.Stop()
		}
		engine.Close()
	})
	lm.start()
	return lm
}

// start starts the member and waits until it serves and its lessor is
// primary.
func (lm *leaseMember) start() {
	lm.t.Helper()
	m, err := Start(lm.cfg)
	if err != nil {
		lm.t.Fatal(err)
	}
	lm.m = m
	for _, ch := range []<-chan struct{}{m.ReadyNotify(), m.lessor.Promoted()} {
		select {
		case <-ch:
		case <-time.After(leaseTestTimeout):
			lm.t.Fatal("member did not become ready and primary")
		}
	}
}

// restart stops the member and starts it again on the same engine.
func (lm *leaseMember) restart() {
	lm.t.Helper()
	lm.m.Stop()
	lm.m = nil
	lm.cfg.Peers = nil
	lm.start()
}

func (lm *leaseMember) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), leaseTestTimeout)
	lm.t.Cleanup(cancel)
	return ctx
}

func (lm *leaseMember) timeToLive(id int64, keys bool) *pb.LeaseTimeToLiveResponse {
	lm.t.Helper()
	resp, err := lm.m.LeaseTimeToLive(lm.ctx(), &pb.LeaseTimeToLiveRequest{ID: id, Keys: keys}, Unchecked)
	if err != nil {
		lm.t.Fatalf("TimeToLive(%x): %v", id, err)
	}
	return resp
}

// remaining returns the remaining TTL checkpointed for lease id, as stored.
func (lm *leaseMember) remaining(id int64) int64 {
	l, err := lease.Load(lm.engine.DB(), lease.Config{Clock: lease.NewFakeClock(time.Unix(0, 0))})
	if err != nil {
		lm.t.Fatal(err)
	}
	l.Promote(0)
	ttl, granted, err := l.TimeToLive(id)
	if err != nil {
		lm.t.Fatal(err)
	}
	if ttl == granted {
		return 0
	}
	return ttl
}

func TestMemberGrantGeneratesPositiveIDsAndRaisesTheTTL(t *testing.T) {
	lm := startLeaseMember(t, 0)
	seen := map[int64]bool{}
	for range 3 {
		resp, err := lm.m.LeaseGrant(lm.ctx(), &pb.LeaseGrantRequest{TTL: 0})
		if err != nil {
			t.Fatal(err)
		}
		if resp.ID <= 0 || seen[resp.ID] {
			t.Fatalf("generated lease ID %x: not positive or not unique", resp.ID)
		}
		seen[resp.ID] = true
		// 10 ticks of 10ms: 1.5 election timeouts are 150ms, rounded up.
		if resp.TTL != 1 {
			t.Fatalf("granted TTL %d, want the minimum 1", resp.TTL)
		}
	}
}

func TestMemberLeaseLifecycle(t *testing.T) {
	lm := startLeaseMember(t, 0)
	const id = 42
	if _, err := lm.m.LeaseGrant(lm.ctx(), &pb.LeaseGrantRequest{ID: id, TTL: 30}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"b", "a"} {
		if _, err := lm.m.Put(lm.ctx(), nil, &pb.PutRequest{Key: []byte(k), Lease: id}); err != nil {
			t.Fatal(err)
		}
	}
	if resp := lm.timeToLive(id, true); resp.TTL != 30 || resp.GrantedTTL != 30 || fmt.Sprintf("%s", resp.Keys) != "[a b]" {
		t.Fatalf("TimeToLive = %v", resp)
	}
	lm.clock.Advance(20 * time.Second)
	if ttl, err := lm.m.LeaseRenew(lm.ctx(), id); err != nil || ttl != 30 {
		t.Fatalf("renew = %d, %v", ttl, err)
	}
	if resp := lm.timeToLive(id, false); resp.TTL != 30 {
		t.Fatalf("TTL after keepalive %d, want 30", resp.TTL)
	}
	if ids := lm.m.LeaseLeases(lm.ctx()).Leases; len(ids) != 1 || ids[0].ID != id {
		t.Fatalf("Leases = %v", ids)
	}
	// Expiry: the leader revokes the lease through Raft.
	rev := lm.m.Rev()
	lm.clock.Advance(30 * time.Second)
	deadline := time.Now().Add(leaseTestTimeout)
	for lm.m.lessor.Exists(id) {
		if time.Now().After(deadline) {
			t.Fatal("expired lease not revoked")
		}
		select {
		case <-lm.m.appliedNotify():
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := lm.m.linearizableReadNotify(lm.ctx()); err != nil {
		t.Fatal(err)
	}
	rr, err := lm.m.Range(lm.ctx(), &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}, Unchecked)
	if err != nil {
		t.Fatal(err)
	}
	if len(rr.Kvs) != 0 || lm.m.Rev() != rev+1 {
		t.Fatalf("after expiry: %d keys left, revision %d (want 0 keys, revision %d)", len(rr.Kvs), lm.m.Rev(), rev+1)
	}
	if _, err := lm.m.LeaseRenew(lm.ctx(), id); !errors.Is(err, rpctypes.ErrGRPCLeaseNotFound) {
		t.Fatalf("renew of the expired lease: %v", err)
	}
	if _, err := lm.m.LeaseTimeToLive(lm.ctx(), &pb.LeaseTimeToLiveRequest{ID: id}, Unchecked); !errors.Is(err, rpctypes.ErrGRPCLeaseNotFound) {
		t.Fatalf("TimeToLive of the expired lease: %v", err)
	}
}

func TestMemberLeasesAndRemainingTTLSurviveRestart(t *testing.T) {
	lm := startLeaseMember(t, 10*time.Second)
	const long, short = 1, 2
	for _, g := range []struct{ id, ttl int64 }{{long, 100}, {short, 8}} {
		if _, err := lm.m.LeaseGrant(lm.ctx(), &pb.LeaseGrantRequest{ID: g.id, TTL: g.ttl}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := lm.m.Put(lm.ctx(), nil, &pb.PutRequest{Key: []byte("k"), Lease: long}); err != nil {
		t.Fatal(err)
	}
	lm.clock.Advance(5 * time.Second)
	if _, err := lm.m.LeaseRenew(lm.ctx(), short); err != nil {
		t.Fatal(err)
	}
	lm.clock.Advance(5 * time.Second)
	// The leader checkpoints the long lease: 90s remain.
	deadline := time.Now().Add(leaseTestTimeout)
	for lm.remaining(long) != 90 {
		if time.Now().After(deadline) {
			t.Fatalf("remaining TTL checkpointed: %d, want 90", lm.remaining(long))
		}
		select {
		case <-lm.m.appliedNotify():
		case <-time.After(100 * time.Millisecond):
		}
	}
	lm.restart()
	// Promoted again with the election timeout (100ms) as extension: 90s
	// from the checkpoint, not the full 100s.
	if resp := lm.timeToLive(long, true); resp.TTL != 90 || resp.GrantedTTL != 100 || fmt.Sprintf("%s", resp.Keys) != "[k]" {
		t.Fatalf("after restart: TTL %d, granted %d, keys %s; want 90, 100, [k]", resp.TTL, resp.GrantedTTL, resp.Keys)
	}
	if resp := lm.timeToLive(short, false); resp.TTL != 8 {
		t.Fatalf("after restart the short lease has TTL %d, want its full 8", resp.TTL)
	}
	// A keepalive clears the checkpoint, so the next restart gives the full TTL.
	if ttl, err := lm.m.LeaseRenew(lm.ctx(), long); err != nil || ttl != 100 {
		t.Fatalf("renew = %d, %v", ttl, err)
	}
	if r := lm.remaining(long); r != 0 {
		t.Fatalf("keepalive left remaining TTL %d checkpointed", r)
	}
	lm.restart()
	if resp := lm.timeToLive(long, false); resp.TTL != 100 {
		t.Fatalf("after keepalive and restart TTL %d, want 100", resp.TTL)
	}
}
