package lease

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// start is where fake clocks begin.
var start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// waitTimeout bounds every wait for another goroutine in these tests.
const waitTimeout = 10 * time.Second

type env struct {
	t     *testing.T
	db    *pebble.DB
	clock *FakeClock
	cfg   Config
	l     *Lessor
}

// newEnv opens an in-memory database and a lessor over it on a fake clock.
func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	db, err := pebble.Open("db", &pebble.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e := &env{t: t, db: db, clock: NewFakeClock(start), cfg: cfg}
	e.cfg.Clock = e.clock
	e.reload()
	return e
}

// reload loads the lessor again from the database, as a restart does.
func (e *env) reload() {
	e.t.Helper()
	l, err := Load(e.db, e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.l = l
}

// apply runs f in one committed batch, as the apply loop does.
func (e *env) apply(f func(b *pebble.Batch) error) {
	e.t.Helper()
	b := e.db.NewIndexedBatch()
	defer b.Close()
	if err := f(b); err != nil {
		e.t.Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) grant(id, ttl int64) int64 {
	e.t.Helper()
	var granted int64
	e.apply(func(b *pebble.Batch) (err error) {
		granted, err = e.l.Grant(b, id, ttl)
		return err
	})
	return granted
}

func (e *env) revoke(id int64) [][]byte {
	e.t.Helper()
	var keys [][]byte
	e.apply(func(b *pebble.Batch) (err error) {
		keys, err = e.l.Revoke(b, id)
		return err
	})
	return keys
}

func (e *env) checkpoint(id, remaining int64) {
	e.t.Helper()
	e.apply(func(b *pebble.Batch) error { return e.l.Checkpoint(b, id, remaining) })
}

// expired returns the leases due for revocation now.
func (e *env) expired() []int64 { return e.l.takeExpired(1 << 20) }

func (e *env) ttl(id int64) int64 {
	e.t.Helper()
	ttl, _, err := e.l.TimeToLive(id)
	if err != nil {
		e.t.Fatalf("TimeToLive(%x): %v", id, err)
	}
	return ttl
}

func TestLeaseNeverExpiresBeforeItsTTL(t *testing.T) {
	e := newEnv(t, Config{})
	e.l.Promote(0)
	e.grant(1, 10)
	for range 99 {
		e.clock.Advance(100 * time.Millisecond)
		if ids := e.expired(); len(ids) != 0 {
			t.Fatalf("lease expired after %v, before its TTL of 10s", e.clock.Now().Sub(start))
		}
	}
	e.clock.Advance(100 * time.Millisecond)
	if ids := e.expired(); !slices.Equal(ids, []int64{1}) {
		t.Fatalf("expired at its TTL: %v, want [1]", ids)
	}
}

func TestLeaseExpiresOneTTLAfterTheLastKeepalive(t *testing.T) {
	e := newEnv(t, Config{})
	e.l.Promote(0)
	e.grant(1, 10)
	for range 5 {
		e.clock.Advance(9 * time.Second)
		ttl, err := e.l.Renew(context.Background(), 1)
		if err != nil || ttl != 10 {
			t.Fatalf("Renew = %d, %v; want 10, nil", ttl, err)
		}
		if ids := e.expired(); len(ids) != 0 {
			t.Fatalf("kept-alive lease expired: %v", ids)
		}
	}
	e.clock.Advance(10*time.Second - time.Nanosecond)
	if ids := e.expired(); len(ids) != 0 {
		t.Fatalf("lease expired before its TTL after the last keepalive: %v", ids)
	}
	e.clock.Advance(time.Nanosecond)
	if ids := e.expired(); !slices.Equal(ids, []int64{1}) {
		t.Fatalf("expired = %v, want [1]", ids)
	}
}

func TestPromoteExtendsEveryLeaseByTheElectionTimeout(t *testing.T) {
	e := newEnv(t, Config{})
	e.grant(1, 10) // granted on a follower: no expiry yet
	e.clock.Advance(time.Hour)
	if ids := e.l.takeExpired(10); len(ids) != 0 {
		t.Fatalf("a follower expired leases: %v", ids)
	}
	if _, _, err := e.l.TimeToLive(1); !errors.Is(err, ErrNotPrimary) {
		t.Fatalf("TimeToLive on a follower: %v, want ErrNotPrimary", err)
	}
	e.l.Promote(time.Second)
	if ttl := e.ttl(1); ttl != 11 {
		t.Fatalf("TTL after promotion = %d, want 11 (10 + 1s election timeout)", ttl)
	}
	e.clock.Advance(11*time.Second - time.Millisecond)
	if ids := e.expired(); len(ids) != 0 {
		t.Fatalf("lease expired before TTL + extension: %v", ids)
	}
	e.clock.Advance(time.Millisecond)
	if ids := e.expired(); !slices.Equal(ids, []int64{1}) {
		t.Fatalf("expired = %v, want [1]", ids)
	}
}

func TestDemotedLessorStopsExpiringAndRenewing(t *testing.T) {
	e := newEnv(t, Config{})
	e.l.Promote(0)
	e.grant(1, 10)
	e.l.Demote()
	e.clock.Advance(time.Minute)
	if ids := e.expired(); len(ids) != 0 {
		t.Fatalf("demoted lessor expired %v", ids)
	}
	if _, err := e.l.Renew(context.Background(), 1); !errors.Is(err, ErrNotPrimary) {
		t.Fatalf("Renew on a demoted lessor: %v, want ErrNotPrimary", err)
	}
	select {
	case <-e.l.Promoted():
		t.Fatal("Promoted is closed after Demote")
	default:
	}
	e.l.Promote(0)
	<-e.l.Promoted()
	if ttl := e.ttl(1); ttl != 10 {
		t.Fatalf("TTL after promotion = %d, want 10", ttl)
	}
}

func TestGrantFollowsEtcdRules(t *testing.T) {
	e := newEnv(t, Config{MinTTL: 5})
	for _, tc := range []struct {
		ttl, want int64
	}{{1, 5}, {0, 5}, {-7, 5}, {5, 5}, {6, 6}, {MaxTTL, MaxTTL}} {
		id := 100 + tc.ttl
		if got := e.grant(id, tc.ttl); got != tc.want {
			t.Errorf("Grant(ttl %d) granted %d, want %d", tc.ttl, got, tc.want)
		}
	}
	b := e.db.NewIndexedBatch()
	defer b.Close()
	for _, tc := range []struct {
		id, ttl int64
		want    error
	}{
		{0, 10, ErrNotFound},
		{0, MaxTTL + 1, ErrNotFound}, // the ID is checked first
		{1, MaxTTL + 1, ErrTTLTooLarge},
		{105, MaxTTL + 1, ErrTTLTooLarge}, // then the TTL
		{105, 10, ErrExists},
	} {
		if _, err := e.l.Grant(b, tc.id, tc.ttl); !errors.Is(err, tc.want) {
			t.Errorf("Grant(%d, %d) = %v, want %v", tc.id, tc.ttl, err, tc.want)
		}
	}
	if _, err := e.l.Revoke(b, 42); !errors.Is(err, ErrNotFound) {
		t.Errorf("Revoke of an unknown lease = %v, want ErrNotFound", err)
	}
}

func TestLoadRaisesStoredTTLsToTheMinimum(t *testing.T) {
	e := newEnv(t, Config{MinTTL: 2})
	e.grant(1, 3)
	e.cfg.MinTTL = 4
	e.reload()
	e.l.Promote(0)
	if ttl, granted, _ := e.l.TimeToLive(1); ttl != 4 || granted != 4 {
		t.Fatalf("TimeToLive after a reload with a larger minimum = %d/%d, want 4/4", ttl, granted)
	}
}

func TestLeasesAndAttachmentsSurviveReload(t *testing.T) {
	e := newEnv(t, Config{})
	e.grant(1, 30)
	e.grant(-5, 40) // clients may choose negative IDs
	e.apply(func(b *pebble.Batch) error {
		for _, k := range []string{"b", "a", "c"} {
			if err := e.l.Attach(b, 1, []byte(k)); err != nil {
				return err
			}
		}
		if err := e.l.Attach(b, -5, []byte("z")); err != nil {
			return err
		}
		return e.l.Detach(b, 1, []byte("c"))
	})
	e.reload()
	if ids := e.l.Leases(); !slices.Equal(ids, []int64{-5, 1}) {
		t.Fatalf("Leases after reload = %v", ids)
	}
	keys, err := e.l.Keys(e.db, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprintf("%q", keys); got != `["a" "b"]` {
		t.Fatalf("keys of lease 1 = %s, want [a b]", got)
	}
	if got := e.revoke(-5); fmt.Sprintf("%q", got) != `["z"]` {
		t.Fatalf("Revoke(-5) returned keys %q", got)
	}
	if keys, _ := e.l.Keys(e.db, -5); len(keys) != 0 {
		t.Fatalf("markers of a revoked lease remain: %q", keys)
	}
	e.reload()
	if ids := e.l.Leases(); !slices.Equal(ids, []int64{1}) {
		t.Fatalf("Leases after revoke and reload = %v", ids)
	}
}

func TestAttachToUnknownLeaseFails(t *testing.T) {
	e := newEnv(t, Config{})
	b := e.db.NewIndexedBatch()
	defer b.Close()
	if err := e.l.Attach(b, 9, []byte("k")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Attach to an unknown lease = %v, want ErrNotFound", err)
	}
	if err := e.l.Detach(b, 9, []byte("k")); err != nil {
		t.Fatalf("Detach from an unknown lease = %v, want nil", err)
	}
}

func TestRevokeSeesAttachmentsEarlierInTheBatch(t *testing.T) {
	e := newEnv(t, Config{})
	var keys [][]byte
	e.apply(func(b *pebble.Batch) (err error) {
		if _, err = e.l.Grant(b, 1, 10); err != nil {
			return err
		}
		if err = e.l.Attach(b, 1, []byte("k")); err != nil {
			return err
		}
		if keys, err = e.l.Revoke(b, 1); err != nil {
			return err
		}
		// Granted again in the same batch: it starts with no keys.
		if _, err = e.l.Grant(b, 1, 10); err != nil {
			return err
		}
		return e.l.Attach(b, 1, []byte("m"))
	})
	if fmt.Sprintf("%q", keys) != `["k"]` {
		t.Fatalf("Revoke found keys %q, want [k]", keys)
	}
	if got, _ := e.l.Keys(e.db, 1); fmt.Sprintf("%q", got) != `["m"]` {
		t.Fatalf("keys of the re-granted lease = %q, want [m]", got)
	}
}

// fakeProposer applies what the lessor proposes at once, as a one-member
// cluster would, and records it.
type fakeProposer struct {
	e       *env
	revokes chan []int64
	cps     chan []Checkpoint
	// noRevoke makes Revoke record without revoking (a lost proposal).
	noRevoke bool
}

func newFakeProposer() *fakeProposer {
	return &fakeProposer{revokes: make(chan []int64, 100), cps: make(chan []Checkpoint, 100)}
}

func (p *fakeProposer) Revoke(ctx context.Context, ids []int64) {
	if !p.noRevoke {
		for _, id := range ids {
			p.e.revoke(id)
		}
	}
	p.revokes <- ids
}

func (p *fakeProposer) Checkpoint(ctx context.Context, cps []Checkpoint) error {
	for _, c := range cps {
		p.e.checkpoint(c.ID, c.RemainingTTL)
	}
	p.cps <- cps
	return nil
}

// newRunEnv returns an env whose lessor has p as its proposer.
func newRunEnv(t *testing.T, cfg Config, p *fakeProposer) *env {
	cfg.Proposer = p
	e := newEnv(t, cfg)
	p.e = e
	return e
}

// run runs the lessor's Run loop until the test ends.
func (e *env) run() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.l.Run(ctx) }()
	e.t.Cleanup(func() { cancel(); <-done })
}

// waitTimers waits until Run waits on a timer of the fake clock.
func (e *env) waitTimers(n int) {
	e.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for e.clock.Timers() < n {
		if time.Now().After(deadline) {
			e.t.Fatalf("Run did not start waiting within %v", waitTimeout)
		}
		time.Sleep(time.Millisecond)
	}
}

func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("nothing received within %v", waitTimeout)
		panic("unreachable")
	}
}

func TestRunRevokesExpiredLeasesThroughTheProposer(t *testing.T) {
	p := newFakeProposer()
	e := newRunEnv(t, Config{}, p)
	e.l.Promote(0)
	e.grant(1, 10)
	e.grant(2, 20)
	e.run()
	e.waitTimers(1)
	e.clock.Advance(10 * time.Second)
	if ids := recv(t, p.revokes); !slices.Equal(ids, []int64{1}) {
		t.Fatalf("first revocation %v, want [1]", ids)
	}
	e.waitTimers(1)
	if len(p.revokes) != 0 {
		t.Fatalf("lease 2 revoked before its TTL: %v", <-p.revokes)
	}
	e.clock.Advance(10 * time.Second)
	if ids := recv(t, p.revokes); !slices.Equal(ids, []int64{2}) {
		t.Fatalf("second revocation %v, want [2]", ids)
	}
	if ids := e.l.Leases(); len(ids) != 0 {
		t.Fatalf("leases left: %v", ids)
	}
}

func TestRunHandsOutAnUnrevokedLeaseAgainAfterTheRetryInterval(t *testing.T) {
	p := newFakeProposer()
	p.noRevoke = true
	e := newRunEnv(t, Config{RetryInterval: 3 * time.Second}, p)
	e.l.Promote(0)
	e.grant(1, 10)
	e.run()
	e.waitTimers(1)
	e.clock.Advance(10 * time.Second)
	recv(t, p.revokes)
	e.waitTimers(1)
	e.clock.Advance(3*time.Second - time.Millisecond)
	e.waitTimers(1)
	if len(p.revokes) != 0 {
		t.Fatal("handed out again before the retry interval")
	}
	e.clock.Advance(time.Millisecond)
	if ids := recv(t, p.revokes); !slices.Equal(ids, []int64{1}) {
		t.Fatalf("retry %v, want [1]", ids)
	}
}

func TestRunRevokesAtMostTheRevokeRate(t *testing.T) {
	p := newFakeProposer()
	e := newRunEnv(t, Config{RevokeRate: 10}, p)
	e.l.Promote(0)
	for id := range int64(12) {
		e.grant(id+1, 10)
	}
	e.run()
	e.waitTimers(1)
	e.clock.Advance(10 * time.Second)
	var got []int64
	for round, want := range []int{5, 5, 2} {
		if round > 0 {
			// Run waits out the half-second round before the next.
			e.waitTimers(1)
			if len(p.revokes) != 0 {
				t.Fatalf("round %d started before half a second passed", round)
			}
			e.clock.Advance(500 * time.Millisecond)
		}
		ids := recv(t, p.revokes)
		if len(ids) != want {
			t.Fatalf("round %d revoked %d leases, want %d", round, len(ids), want)
		}
		got = append(got, ids...)
	}
	slices.Sort(got)
	if len(slices.Compact(got)) != 12 {
		t.Fatalf("revoked %v, want each of the 12 leases once", got)
	}
}

func TestPromoteSpreadsExpiriesToTheRevokeRate(t *testing.T) {
	e := newEnv(t, Config{RevokeRate: 8})
	for id := range int64(8) {
		e.grant(id+1, 10)
	}
	e.l.Promote(0)
	// At most 3/4 of the rate expire per second: consecutive expiries are
	// at least 1s/6 apart, and none is earlier than the TTL.
	var exps []time.Time
	for _, le := range e.l.leases {
		exps = append(exps, le.expiry)
	}
	slices.SortFunc(exps, func(a, b time.Time) int { return a.Compare(b) })
	if first := exps[0].Sub(start); first != 10*time.Second {
		t.Fatalf("first expiry after %v, want 10s", first)
	}
	for i := 1; i < len(exps); i++ {
		if gap := exps[i].Sub(exps[i-1]); gap < time.Second/6 {
			t.Fatalf("expiries %d and %d are %v apart, want at least %v", i-1, i, gap, time.Second/6)
		}
	}
	e.clock.Advance(10*time.Second - time.Nanosecond)
	if ids := e.expired(); len(ids) != 0 {
		t.Fatalf("leases expired before their TTL: %v", ids)
	}
	e.clock.Advance(time.Second + time.Nanosecond)
	if n := len(e.expired()); n < 6 || n > 7 {
		t.Fatalf("%d leases expired within the first second, want 6 or 7 (both ends included)", n)
	}
}

func TestPromoteBelowTheRevokeRateKeepsExpiries(t *testing.T) {
	e := newEnv(t, Config{RevokeRate: 8})
	for id := range int64(7) {
		e.grant(id+1, 10)
	}
	e.l.Promote(0)
	e.clock.Advance(10 * time.Second)
	if n := len(e.expired()); n != 7 {
		t.Fatalf("%d leases expired at their TTL, want all 7", n)
	}
}

func TestCheckpointedRemainingTTLSurvivesRestart(t *testing.T) {
	p := newFakeProposer()
	e := newRunEnv(t, Config{CheckpointInterval: 10 * time.Second}, p)
	e.l.Promote(0)
	e.grant(1, 100)
	e.grant(2, 10) // not longer than the interval: never checkpointed
	e.run()
	e.waitTimers(1)
	e.clock.Advance(10 * time.Second)
	if cps := recv(t, p.cps); !slices.Equal(cps, []Checkpoint{{ID: 1, RemainingTTL: 90}}) {
		t.Fatalf("checkpoints %v, want [{1 90}]", cps)
	}
	e.clock.Advance(time.Second) // lease 2 expires meanwhile; its revoke is irrelevant here
	// A restart: the lessor comes back from disk and is promoted.
	e.l.Demote()
	e.cfg.Proposer = nil
	e.reload()
	e.l.Promote(time.Second)
	if ttl, granted, err := e.l.TimeToLive(1); err != nil || ttl != 91 || granted != 100 {
		t.Fatalf("after restart TimeToLive = %d/%d, %v; want 91/100 (checkpointed 90 + 1s extension)", ttl, granted, err)
	}
}

func TestCheckpointsRepeatEveryIntervalAndSkipFullTTL(t *testing.T) {
	p := newFakeProposer()
	e := newRunEnv(t, Config{CheckpointInterval: 10 * time.Second}, p)
	e.l.Promote(0)
	e.grant(1, 100)
	e.run()
	for _, want := range []int64{90, 80} {
		e.waitTimers(1)
		e.clock.Advance(10 * time.Second)
		if cps := recv(t, p.cps); !slices.Equal(cps, []Checkpoint{{ID: 1, RemainingTTL: want}}) {
			t.Fatalf("checkpoints %v, want [{1 %d}]", cps, want)
		}
	}
}

func TestKeepaliveClearsTheCheckpointedRemainingTTL(t *testing.T) {
	p := newFakeProposer()
	e := newRunEnv(t, Config{CheckpointInterval: 10 * time.Second}, p)
	e.l.Promote(0)
	e.grant(1, 100)
	e.clock.Advance(10 * time.Second)
	cps := e.l.dueCheckpoints(MaxCheckpointBatch)
	if !slices.Equal(cps, []Checkpoint{{ID: 1, RemainingTTL: 90}}) {
		t.Fatalf("due checkpoints %v", cps)
	}
	e.checkpoint(1, 90)
	if ttl, err := e.l.Renew(context.Background(), 1); err != nil || ttl != 100 {
		t.Fatalf("Renew = %d, %v", ttl, err)
	}
	if cps := recv(t, p.cps); !slices.Equal(cps, []Checkpoint{{ID: 1, RemainingTTL: 0}}) {
		t.Fatalf("keepalive proposed %v, want a clearing checkpoint [{1 0}]", cps)
	}
	// A second keepalive has nothing to clear.
	if _, err := e.l.Renew(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	if len(p.cps) != 0 {
		t.Fatalf("second keepalive proposed %v", <-p.cps)
	}
	e.l.Demote()
	e.cfg.Proposer = nil
	e.reload()
	e.l.Promote(0)
	if ttl := e.ttl(1); ttl != 100 {
		t.Fatalf("TTL after restart = %d, want the full 100", ttl)
	}
}

func TestRenewOfAnExpiredLeaseWaitsForItsRevocation(t *testing.T) {
	e := newEnv(t, Config{})
	e.l.Promote(0)
	e.grant(1, 10)
	e.clock.Advance(10 * time.Second)
	type result struct {
		ttl int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		ttl, err := e.l.Renew(context.Background(), 1)
		done <- result{ttl, err}
	}()
	e.revoke(1)
	if r := recv(t, done); !errors.Is(r.err, ErrNotFound) {
		t.Fatalf("Renew of a lease revoked on expiry = %d, %v; want ErrNotFound", r.ttl, r.err)
	}

	e.grant(2, 10)
	e.clock.Advance(10 * time.Second)
	go func() {
		ttl, err := e.l.Renew(context.Background(), 2)
		done <- result{ttl, err}
	}()
	e.l.Demote()
	if r := recv(t, done); !errors.Is(r.err, ErrNotPrimary) {
		t.Fatalf("Renew of an expired lease across a demotion = %v, want ErrNotPrimary", r.err)
	}
}

func TestLeasesListsTheSoonestToExpireFirst(t *testing.T) {
	e := newEnv(t, Config{})
	e.l.Promote(0)
	e.grant(3, 30)
	e.grant(1, 50)
	e.grant(2, 10)
	e.grant(4, 30)
	if ids := e.l.Leases(); !slices.Equal(ids, []int64{2, 3, 4, 1}) {
		t.Fatalf("Leases = %v, want [2 3 4 1]", ids)
	}
}

func TestTimeToLiveTruncatesToWholeSeconds(t *testing.T) {
	e := newEnv(t, Config{})
	e.l.Promote(0)
	e.grant(1, 10)
	e.clock.Advance(1500 * time.Millisecond)
	if ttl := e.ttl(1); ttl != 8 {
		t.Fatalf("TTL after 1.5s of 10s = %d, want 8", ttl)
	}
}
