package lease

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/keeldb/keel/storage"
)

// replaceLeases makes dst's lease namespace a copy of src's, as a snapshot
// install replaces the state underneath a lessor.
func replaceLeases(t *testing.T, dst, src *pebble.DB) {
	t.Helper()
	lo, hi := []byte{storage.PrefixLease}, []byte{storage.PrefixLease + 1}
	b := dst.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(lo, hi, nil); err != nil {
		t.Fatal(err)
	}
	it, err := src.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		if err := b.Set(it.Key(), it.Value(), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

// TestReloadReplacesLeasesAndAttachments reloads a follower's lessor over a
// leader's leases: leases only the follower had are gone, the leader's are
// there with their checkpointed remaining TTLs and attached keys.
func TestReloadReplacesLeasesAndAttachments(t *testing.T) {
	follower := newEnv(t, Config{})
	follower.grant(1, 30)
	follower.grant(2, 40)
	leader := newEnv(t, Config{})
	leader.grant(2, 40)
	leader.checkpoint(2, 15)
	leader.grant(3, 50)
	leader.apply(func(b *pebble.Batch) error { return leader.l.Attach(b, 3, []byte("k")) })

	replaceLeases(t, follower.db, leader.db)
	if err := follower.l.Reload(follower.db); err != nil {
		t.Fatal(err)
	}
	if ids := follower.l.Leases(); !slices.Equal(ids, []int64{2, 3}) {
		t.Fatalf("leases after Reload = %v, want [2 3]", ids)
	}
	if _, _, err := follower.l.TimeToLive(2); !errors.Is(err, ErrNotPrimary) {
		t.Fatalf("TimeToLive on a follower after Reload: %v, want ErrNotPrimary", err)
	}
	if keys, _ := follower.l.Keys(follower.db, 3); len(keys) != 1 || string(keys[0]) != "k" {
		t.Fatalf("keys of lease 3 after Reload: %q", keys)
	}
	follower.l.Promote(0)
	if ttl := follower.ttl(2); ttl != 15 {
		t.Errorf("lease 2 after Reload and promotion has %ds left, want its checkpointed 15s", ttl)
	}
	if ttl := follower.ttl(3); ttl != 50 {
		t.Errorf("lease 3 after Reload and promotion has %ds left, want 50s", ttl)
	}
}

// TestReloadOnAPrimaryKeepsExpiriesOfLeasesThatStay covers a lessor still
// primary when the state is replaced: a lease that stays keeps its expiry,
// a new one expires after its TTL, and one that is gone never expires.
func TestReloadOnAPrimaryKeepsExpiriesOfLeasesThatStay(t *testing.T) {
	e := newEnv(t, Config{})
	e.grant(1, 10)
	e.grant(2, 20)
	e.l.Promote(0)
	e.clock.Advance(5 * time.Second)
	other := newEnv(t, Config{})
	other.grant(2, 20)
	other.grant(3, 30)
	replaceLeases(t, e.db, other.db)
	if err := e.l.Reload(e.db); err != nil {
		t.Fatal(err)
	}
	if ttl := e.ttl(2); ttl != 15 {
		t.Errorf("lease 2 has %ds left after Reload, want the 15s it had", ttl)
	}
	if ttl := e.ttl(3); ttl != 30 {
		t.Errorf("new lease 3 has %ds left after Reload, want 30s", ttl)
	}
	e.clock.Advance(60 * time.Second)
	if got := e.expired(); !slices.Equal(slices.Sorted(slices.Values(got)), []int64{2, 3}) {
		t.Errorf("expired after Reload: %v, want [2 3] (lease 1 is gone)", got)
	}
}
