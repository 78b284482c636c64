package integration

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"google.golang.org/grpc"
)

// The recipes of go.etcd.io/etcd/client/v3/concurrency (sessions, mutexes,
// elections) are built on leases, txns and watches; these tests run them
// unchanged against the member.

// newSession opens a session on cli with a ttl-second lease; the test's
// cleanup closes it (revoking the lease) before the client goes.
func newSession(t *testing.T, cli *clientv3.Client, ttl int) *concurrency.Session {
	t.Helper()
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(ttl))
	if err != nil {
		t.Fatalf("new session: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// keyExists reports whether key exists.
func keyExists(t *testing.T, cli *clientv3.Client, key string) bool {
	t.Helper()
	return len(get(t, cli, key).Kvs) == 1
}

// async runs f in a goroutine and returns a channel that yields its error.
func async(f func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	return ch
}

// wantPending fails the test if ch has already yielded.
func wantPending(t *testing.T, what string, ch <-chan error) {
	t.Helper()
	select {
	case err := <-ch:
		t.Fatalf("%s returned early: %v", what, err)
	default:
	}
}

// result waits for the error ch yields, failing the test after opTimeout.
func result(t *testing.T, what string, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(opTimeout):
		t.Fatalf("%s: no result within %v", what, opTimeout)
		return nil
	}
}

// clientSignallingTxns connects one more client that signals on the
// returned channel each time one of its Txn calls has been answered: the
// caller has the answer in hand, whatever happens to its context next.
func clientSignallingTxns(t *testing.T, m *member) (*clientv3.Client, <-chan struct{}) {
	t.Helper()
	answered := make(chan struct{}, 16)
	signal := func(c context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		err := invoker(c, method, req, reply, cc, opts...)
		if err == nil && method == "/etcdserverpb.KV/Txn" {
			select {
			case answered <- struct{}{}:
			default:
			}
		}
		return err
	}
	cli := m.newClient(t, func(c *clientv3.Config) {
		c.DialOptions = append(c.DialOptions, grpc.WithChainUnaryInterceptor(signal))
	})
	return cli, answered
}

// TestRecipeSessionKeepsLeaseAliveAndCloseRevokes checks a session: its
// lease lives well past its TTL while the session is open, with the key
// attached to it; Close revokes the lease, deleting the key, and ends the
// session.
func TestRecipeSessionKeepsLeaseAliveAndCloseRevokes(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	s := newSession(t, m.newClient(t), minLeaseTTL)
	put(t, cli, "owned", "v", clientv3.WithLease(s.Lease()))
	if ttl := timeToLive(t, cli, s.Lease()); ttl.GrantedTTL != minLeaseTTL {
		t.Fatalf("session lease granted %d, want %d", ttl.GrantedTTL, minLeaseTTL)
	}

	// Watch the lease for three TTLs: the session renews it all along.
	const watchFor = 3 * minLeaseTTL * time.Second
	const pollInterval = 200 * time.Millisecond
	for end := time.Now().Add(watchFor); time.Now().Before(end); time.Sleep(pollInterval) {
		if ttl := timeToLive(t, cli, s.Lease()); ttl.TTL < 0 {
			t.Fatalf("session lease gone while the session is open")
		}
		select {
		case <-s.Done():
			t.Fatal("session ended while open")
		default:
		}
	}
	if !keyExists(t, cli, "owned") {
		t.Fatal("key of the open session's lease is gone")
	}

	if err := s.Close(); err != nil {
		t.Fatalf("close session: %v", err)
	}
	waitClosed(t, "done channel of the closed session", s.Done(), opTimeout)
	wantLeaseGone(t, cli, s.Lease())
	if keyExists(t, cli, "owned") {
		t.Fatal("key of the closed session's lease is still there")
	}
}

// TestRecipeSessionEndsWhenLeaseRevoked checks that a session whose lease
// someone else revokes notices at its next renewal and ends.
func TestRecipeSessionEndsWhenLeaseRevoked(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	s := newSession(t, m.newClient(t), minLeaseTTL)
	revoke(t, m.cli(), s.Lease())
	waitClosed(t, "done channel of the session whose lease was revoked", s.Done(), opTimeout)
	if err := s.Ctx().Err(); err == nil {
		t.Fatal("context of the ended session not cancelled")
	}
}

// TestRecipeMutexLockTryLockUnlock checks a mutex between two sessions:
// TryLock fails while the other holds the lock; Lock waits until the holder
// unlocks; IsOwner guards a txn only for the holder; the lock keys are the
// prefix plus the session's lease id in hex.
func TestRecipeMutexLockTryLockUnlock(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	s1 := newSession(t, m.newClient(t), 10)
	s2 := newSession(t, m.newClient(t), 10)
	m1 := concurrency.NewMutex(s1, "/lock")
	m2 := concurrency.NewMutex(s2, "/lock")

	if err := m1.Lock(ctx(t)); err != nil {
		t.Fatalf("lock: %v", err)
	}
	if want := fmt.Sprintf("/lock/%x", s1.Lease()); m1.Key() != want {
		t.Fatalf("lock key %q, want %q", m1.Key(), want)
	}
	if h := m1.Header(); h == nil || h.Revision != rev(t, cli) {
		t.Fatalf("lock header %v, want the current revision", h)
	}
	wantKVs(t, get(t, cli, m1.Key()).Kvs, leased(kv(m1.Key(), "", 2, 2, 1), s1.Lease()))
	// Locking again from the holding session succeeds at once.
	if err := m1.TryLock(ctx(t)); err != nil {
		t.Fatalf("try lock by the holder: %v", err)
	}
	if err := m2.TryLock(ctx(t)); !errors.Is(err, concurrency.ErrLocked) {
		t.Fatalf("try lock of a held mutex: %v, want %v", err, concurrency.ErrLocked)
	}
	// The failed TryLock took its key back.
	if r := get(t, cli, "/lock/", clientv3.WithPrefix()); len(r.Kvs) != 1 {
		t.Fatalf("lock keys after a failed try lock: %v", keys(r.Kvs))
	}
	if tr := commit(t, cli.Txn(ctx(t)).If(m1.IsOwner()).Then(clientv3.OpPut("guarded", "1"))); !tr.Succeeded {
		t.Fatal("txn guarded by the holder's IsOwner failed")
	}

	locked := async(func() error { return m2.Lock(ctx(t)) })
	waitFor(t, "waiter's lock key", opTimeout, func() bool { return keyExists(t, cli, fmt.Sprintf("/lock/%x", s2.Lease())) })
	wantPending(t, "lock of a held mutex", locked)

	if err := m1.Unlock(ctx(t)); err != nil {
		t.Fatalf("unlock: %v", err)
	}
	if err := result(t, "waiter's lock", locked); err != nil {
		t.Fatalf("waiter's lock: %v", err)
	}
	if tr := commit(t, cli.Txn(ctx(t)).If(m1.IsOwner()).Then(clientv3.OpPut("guarded", "2"))); tr.Succeeded {
		t.Fatal("txn guarded by the former holder's IsOwner succeeded")
	}
	if tr := commit(t, cli.Txn(ctx(t)).If(m2.IsOwner()).Then(clientv3.OpPut("guarded", "3"))); !tr.Succeeded {
		t.Fatal("txn guarded by the new holder's IsOwner failed")
	}
	if err := m1.Unlock(ctx(t)); !errors.Is(err, concurrency.ErrLockReleased) {
		t.Fatalf("second unlock: %v, want %v", err, concurrency.ErrLockReleased)
	}
	if err := m2.Unlock(ctx(t)); err != nil {
		t.Fatalf("unlock by the second holder: %v", err)
	}
	if err := m1.TryLock(ctx(t)); err != nil {
		t.Fatalf("try lock of a free mutex: %v", err)
	}
}

// TestRecipeMutexExcludesConcurrentHolders runs a bounded number of
// workers, each with its own client and session, that increment a counter
// with a plain read and write while holding the mutex: no two ever hold it
// at once and no increment is lost.
func TestRecipeMutexExcludesConcurrentHolders(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	const workers, rounds = 4, 5
	put(t, m.cli(), "counter", "0")
	var holders atomic.Int32
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		cli := m.newClient(t)
		mu := concurrency.NewMutex(newSession(t, cli, 10), "/lock")
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = func() error {
				for range rounds {
					if err := mu.Lock(ctx(t)); err != nil {
						return fmt.Errorf("lock: %w", err)
					}
					if n := holders.Add(1); n != 1 {
						return fmt.Errorf("%d holders at once", n)
					}
					r, err := cli.Get(ctx(t), "counter")
					if err != nil {
						return err
					}
					n, err := strconv.Atoi(string(r.Kvs[0].Value))
					if err != nil {
						return err
					}
					if _, err := cli.Put(ctx(t), "counter", strconv.Itoa(n+1)); err != nil {
						return err
					}
					holders.Add(-1)
					if err := mu.Unlock(ctx(t)); err != nil {
						return fmt.Errorf("unlock: %w", err)
					}
				}
				return nil
			}()
		}()
	}
	wg.Wait()
	for w, err := range errs {
		if err != nil {
			t.Fatalf("worker %d: %v", w, err)
		}
	}
	if got := string(get(t, m.cli(), "counter").Kvs[0].Value); got != strconv.Itoa(workers*rounds) {
		t.Fatalf("counter %s after %d locked increments", got, workers*rounds)
	}
}

// TestRecipeMutexPassesToWaiterWhenHoldersLeaseRevoked checks that a holder
// whose session lease is revoked loses the lock: its key goes with the
// lease, the waiter gets the lock, the old holder's IsOwner no longer holds,
// and it cannot lock again with its dead lease.
func TestRecipeMutexPassesToWaiterWhenHoldersLeaseRevoked(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	s1 := newSession(t, m.newClient(t), 10)
	s2 := newSession(t, m.newClient(t), 10)
	m1 := concurrency.NewMutex(s1, "/lock")
	m2 := concurrency.NewMutex(s2, "/lock")
	if err := m1.Lock(ctx(t)); err != nil {
		t.Fatal(err)
	}
	locked := async(func() error { return m2.Lock(ctx(t)) })
	waitFor(t, "waiter's lock key", opTimeout, func() bool { return keyExists(t, cli, fmt.Sprintf("/lock/%x", s2.Lease())) })
	wantPending(t, "lock of a held mutex", locked)

	revoke(t, cli, s1.Lease())
	if err := result(t, "waiter's lock", locked); err != nil {
		t.Fatalf("waiter's lock after the holder's lease was revoked: %v", err)
	}
	if keyExists(t, cli, m1.Key()) {
		t.Fatal("lock key of the revoked session is still there")
	}
	if tr := commit(t, cli.Txn(ctx(t)).If(m1.IsOwner())); tr.Succeeded {
		t.Fatal("the revoked holder's IsOwner still holds")
	}
	if tr := commit(t, cli.Txn(ctx(t)).If(m2.IsOwner())); !tr.Succeeded {
		t.Fatal("the waiter's IsOwner does not hold")
	}
	waitClosed(t, "done channel of the revoked session", s1.Done(), opTimeout)
	err := concurrency.NewMutex(s1, "/lock").Lock(ctx(t))
	wantErr(t, err, rpctypes.ErrGRPCLeaseNotFound)
}

// TestRecipeElection runs an election between two candidates with an
// observer: Campaign, Leader, Proclaim, Resign, Observe; the waiting
// candidate takes over when the leader resigns, and again when the new
// leader's session closes; Proclaim by a non-leader fails; Leader of an
// empty election fails.
func TestRecipeElection(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	s1 := newSession(t, m.newClient(t), 10)
	s2 := newSession(t, m.newClient(t), 10)
	s3 := newSession(t, m.newClient(t), 10)
	e1 := concurrency.NewElection(s1, "/election")
	e2 := concurrency.NewElection(s2, "/election")
	watcher := concurrency.NewElection(s3, "/election")

	if _, err := watcher.Leader(ctx(t)); !errors.Is(err, concurrency.ErrElectionNoLeader) {
		t.Fatalf("leader of an empty election: %v, want %v", err, concurrency.ErrElectionNoLeader)
	}
	if err := watcher.Proclaim(ctx(t), "x"); !errors.Is(err, concurrency.ErrElectionNotLeader) {
		t.Fatalf("proclaim by a non-candidate: %v, want %v", err, concurrency.ErrElectionNotLeader)
	}
	octx, stopObserving := context.WithCancel(ctx(t))
	defer stopObserving()
	observed := watcher.Observe(octx)
	// wantObserved fails the test unless the observer reports val next.
	wantObserved := func(val string) {
		t.Helper()
		select {
		case r, ok := <-observed:
			if !ok {
				t.Fatalf("observer closed, want %q", val)
			}
			if len(r.Kvs) != 1 || string(r.Kvs[0].Value) != val {
				t.Fatalf("observed %v, want %q", r.Kvs, val)
			}
		case <-time.After(opTimeout):
			t.Fatalf("observer did not report %q", val)
		}
	}
	// wantLeader fails the test unless Leader answers key=val.
	wantLeader := func(key, val string) {
		t.Helper()
		r, err := watcher.Leader(ctx(t))
		if err != nil {
			t.Fatalf("leader: %v", err)
		}
		if len(r.Kvs) != 1 || string(r.Kvs[0].Key) != key || string(r.Kvs[0].Value) != val {
			t.Fatalf("leader %v, want %s=%q", r.Kvs, key, val)
		}
	}

	if err := e1.Campaign(ctx(t), "a"); err != nil {
		t.Fatalf("campaign: %v", err)
	}
	if want := fmt.Sprintf("/election/%x", s1.Lease()); e1.Key() != want {
		t.Fatalf("leader key %q, want %q", e1.Key(), want)
	}
	wantKVs(t, get(t, cli, e1.Key()).Kvs, leased(kv(e1.Key(), "a", e1.Rev(), e1.Rev(), 1), s1.Lease()))
	wantLeader(e1.Key(), "a")
	wantObserved("a")

	campaign2 := async(func() error { return e2.Campaign(ctx(t), "b") })
	key2 := fmt.Sprintf("/election/%x", s2.Lease())
	waitFor(t, "second candidate's key", opTimeout, func() bool { return keyExists(t, cli, key2) })
	wantPending(t, "campaign against a leader", campaign2)

	if err := e1.Proclaim(ctx(t), "a2"); err != nil {
		t.Fatalf("proclaim: %v", err)
	}
	wantLeader(e1.Key(), "a2")
	wantObserved("a2")

	// The leader resigns: the waiting candidate takes over.
	if err := e1.Resign(ctx(t)); err != nil {
		t.Fatalf("resign: %v", err)
	}
	if err := result(t, "second campaign", campaign2); err != nil {
		t.Fatalf("second campaign: %v", err)
	}
	wantLeader(key2, "b")
	wantObserved("b")

	// The first candidate campaigns again and waits; the new leader's
	// session closes, and with its lease its key goes: the first takes over.
	campaign1 := async(func() error { return e1.Campaign(ctx(t), "a3") })
	key1 := fmt.Sprintf("/election/%x", s1.Lease())
	waitFor(t, "first candidate's new key", opTimeout, func() bool { return keyExists(t, cli, key1) })
	wantPending(t, "campaign against a leader", campaign1)
	if err := s2.Close(); err != nil {
		t.Fatalf("close the leader's session: %v", err)
	}
	if err := result(t, "campaign after the leader's session closed", campaign1); err != nil {
		t.Fatalf("campaign after the leader's session closed: %v", err)
	}
	wantLeader(key1, "a3")
	wantObserved("a3")
	if err := e2.Proclaim(ctx(t), "stale"); !errors.Is(err, concurrency.ErrElectionNotLeader) {
		t.Fatalf("proclaim by the deposed leader: %v, want %v", err, concurrency.ErrElectionNotLeader)
	}

	stopObserving()
	waitClosed(t, "observer after cancel", observed, opTimeout)
}

// TestRecipeElectionCancelledCampaignWithdraws checks that a candidate whose
// Campaign is cancelled while waiting withdraws its key, so it never becomes
// leader.
func TestRecipeElectionCancelledCampaignWithdraws(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	s1 := newSession(t, m.newClient(t), 10)
	cli2, txnAnswered := clientSignallingTxns(t, m)
	s2 := newSession(t, cli2, 10)
	e1 := concurrency.NewElection(s1, "/election")
	e2 := concurrency.NewElection(s2, "/election")
	if err := e1.Campaign(ctx(t), "a"); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx(t))
	campaign2 := async(func() error { return e2.Campaign(cctx, "b") })
	// Cancel once the candidate has its key and knows it: Campaign's txn
	// has been answered, so Campaign is waiting for the leader to go. (A
	// cancel that interrupts the txn itself leaves the key behind; that
	// is the client's behaviour, not the server's.)
	select {
	case <-txnAnswered:
	case <-time.After(opTimeout):
		t.Fatal("second candidate's campaign txn not answered")
	}
	key2 := fmt.Sprintf("/election/%x", s2.Lease())
	if !keyExists(t, cli, key2) {
		t.Fatal("second candidate's key missing after its campaign txn")
	}
	wantPending(t, "campaign against a leader", campaign2)
	cancel()
	if err := result(t, "cancelled campaign", campaign2); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled campaign: %v, want %v", err, context.Canceled)
	}
	waitFor(t, "cancelled candidate's key removed", opTimeout, func() bool { return !keyExists(t, cli, key2) })
	if err := e1.Resign(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := e1.Leader(ctx(t)); !errors.Is(err, concurrency.ErrElectionNoLeader) {
		t.Fatalf("leader after the only leader resigned: %v, want %v", err, concurrency.ErrElectionNoLeader)
	}
}
