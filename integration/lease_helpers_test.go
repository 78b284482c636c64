package integration

import (
	"slices"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Lease timing of a member started with etcd's defaults (100 ms heartbeat,
// 1000 ms election timeout), which every test member uses.
const (
	// electionTimeout is the member's election timeout. etcd's lessor looks
	// for expired leases every 500 ms and revokes them through Raft, so a
	// lease is gone within its TTL plus this much after its last renewal.
	electionTimeout = time.Second
	// minLeaseTTL is the shortest lease etcd grants: 1.5 election timeouts
	// (3*10/2 ticks of 100 ms), rounded up to whole seconds. Shorter TTLs,
	// zero and negative ones included, are raised to it.
	minLeaseTTL = 2
	// maxLeaseTTL is the longest TTL etcd grants, in seconds.
	maxLeaseTTL = 9_000_000_000
)

// leaseStub is the raw Lease stub on the member's client connection, for
// what the high-level client hides (client-chosen ids, the keepalive
// stream's answers to unknown leases).
func leaseStub(m *member) pb.LeaseClient { return pb.NewLeaseClient(m.cli().ActiveConnection()) }

// grant grants a lease of ttl seconds and fails the test on error.
func grant(t *testing.T, cli *clientv3.Client, ttl int64) clientv3.LeaseID {
	t.Helper()
	resp, err := cli.Grant(ctx(t), ttl)
	if err != nil {
		t.Fatalf("grant ttl %d: %v", ttl, err)
	}
	return resp.ID
}

// revoke revokes a lease, fails the test on error and returns the response
// revision.
func revoke(t *testing.T, cli *clientv3.Client, id clientv3.LeaseID) int64 {
	t.Helper()
	resp, err := cli.Revoke(ctx(t), id)
	if err != nil {
		t.Fatalf("revoke %x: %v", id, err)
	}
	return resp.Header.Revision
}

// timeToLive asks for a lease's time to live, with its keys.
func timeToLive(t *testing.T, cli *clientv3.Client, id clientv3.LeaseID) *clientv3.LeaseTimeToLiveResponse {
	t.Helper()
	resp, err := cli.TimeToLive(ctx(t), id, clientv3.WithAttachedKeys())
	if err != nil {
		t.Fatalf("time to live of %x: %v", id, err)
	}
	return resp
}

// leaseKeys returns the keys attached to a lease, sorted: etcd keeps them in
// a map and answers in no particular order.
func leaseKeys(t *testing.T, cli *clientv3.Client, id clientv3.LeaseID) []string {
	t.Helper()
	resp := timeToLive(t, cli, id)
	out := make([]string, len(resp.Keys))
	for i, k := range resp.Keys {
		out[i] = string(k)
	}
	slices.Sort(out)
	return out
}

// wantLeaseKeys fails the test unless the lease has exactly want attached.
func wantLeaseKeys(t *testing.T, cli *clientv3.Client, id clientv3.LeaseID, want ...string) {
	t.Helper()
	got := leaseKeys(t, cli, id)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("keys of lease %x: %q, want %q", id, got, want)
	}
}

// leaseIDs lists the member's leases, sorted: etcd lists them by expiry.
func leaseIDs(t *testing.T, cli *clientv3.Client) []clientv3.LeaseID {
	t.Helper()
	resp, err := cli.Leases(ctx(t))
	if err != nil {
		t.Fatalf("leases: %v", err)
	}
	out := make([]clientv3.LeaseID, len(resp.Leases))
	for i, l := range resp.Leases {
		out[i] = l.ID
	}
	slices.Sort(out)
	return out
}

// wantLeaseIDs fails the test unless the member has exactly the leases want.
func wantLeaseIDs(t *testing.T, cli *clientv3.Client, want ...clientv3.LeaseID) {
	t.Helper()
	got := leaseIDs(t, cli)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("leases %x, want %x", got, want)
	}
}

// wantLeaseGone fails the test unless the lease is unknown to the member:
// TimeToLive answers TTL -1 and Leases does not list it.
func wantLeaseGone(t *testing.T, cli *clientv3.Client, id clientv3.LeaseID) {
	t.Helper()
	resp := timeToLive(t, cli, id)
	if resp.ID != id || resp.TTL != -1 || resp.GrantedTTL != 0 || len(resp.Keys) != 0 {
		t.Fatalf("time to live of gone lease %x: id %x ttl %d granted %d keys %q, want id %x ttl -1 granted 0 no keys", id, resp.ID, resp.TTL, resp.GrantedTTL, resp.Keys, id)
	}
	if slices.Contains(leaseIDs(t, cli), id) {
		t.Fatalf("leases still list gone lease %x", id)
	}
}

// memberIdentity is what every response header carries besides the revision.
type memberIdentity struct {
	cluster, member, term uint64
}

// identityOf reads the member's ids and current term from Status.
func identityOf(t *testing.T, m *member) memberIdentity {
	t.Helper()
	s := memberStatus(t, m)
	if s.Header.ClusterId == 0 || s.Header.MemberId == 0 || s.RaftTerm == 0 {
		t.Fatalf("status header %v: want ids and a term", s.Header)
	}
	return memberIdentity{cluster: s.Header.ClusterId, member: s.Header.MemberId, term: s.RaftTerm}
}

// wantHeader fails the test unless h is a full response header of the
// member at revision rev.
func wantHeader(t *testing.T, what string, h *pb.ResponseHeader, id memberIdentity, rev int64) {
	t.Helper()
	if h == nil {
		t.Fatalf("%s: no header", what)
	}
	if h.ClusterId != id.cluster || h.MemberId != id.member || h.RaftTerm != id.term || h.Revision != rev {
		t.Fatalf("%s: header %v, want cluster %x member %x term %d revision %d", what, h, id.cluster, id.member, id.term, rev)
	}
}

// wantRemainingTTL fails the test unless a TimeToLive answer is what etcd
// gives for a lease of granted seconds last renewed (or granted) in a
// request sent elapsed before the answer arrived: the remaining time
// truncated to whole seconds, so at most granted-1 and at least
// granted-ceil(elapsed).
func wantRemainingTTL(t *testing.T, what string, ttl, granted int64, elapsed time.Duration) {
	t.Helper()
	lo := granted - int64((elapsed+time.Second-1)/time.Second)
	if ttl < lo || ttl > granted-1 {
		t.Fatalf("%s: remaining ttl %d of a %d s lease renewed %v ago, want %d..%d", what, ttl, granted, elapsed, lo, granted-1)
	}
}

// nextEvents receives from wch until it has n events and returns them with
// the time the last one arrived. It fails the test if the watch ends, reports
// an error, or the events do not come within timeout.
func nextEvents(t *testing.T, wch clientv3.WatchChan, n int, timeout time.Duration) ([]*clientv3.Event, time.Time) {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var evs []*clientv3.Event
	for len(evs) < n {
		select {
		case wr, ok := <-wch:
			if !ok {
				t.Fatalf("watch closed after %d of %d events", len(evs), n)
			}
			if err := wr.Err(); err != nil {
				t.Fatalf("watch failed after %d of %d events: %v", len(evs), n, err)
			}
			evs = append(evs, wr.Events...)
		case <-timer.C:
			t.Fatalf("%d of %d events within %v", len(evs), n, timeout)
		}
	}
	return evs, time.Now()
}

// wantDeletes fails the test unless evs are deletes of keys, in that order,
// all at revision rev, each with its previous value's lease when prevLease
// is not zero (the watch asked for prev_kv).
func wantDeletes(t *testing.T, evs []*clientv3.Event, rev int64, prevLease clientv3.LeaseID, keys ...string) {
	t.Helper()
	got := make([]string, len(evs))
	for i, ev := range evs {
		got[i] = string(ev.Kv.Key)
		if ev.Type != clientv3.EventTypeDelete || ev.Kv.ModRevision != rev {
			t.Fatalf("event %d: %v %s, want a delete at revision %d", i, ev.Type, kvString(ev.Kv), rev)
		}
		if prevLease != 0 && (ev.PrevKv == nil || ev.PrevKv.Lease != int64(prevLease)) {
			t.Fatalf("event %d: prev kv %v, want one with lease %d", i, ev.PrevKv, prevLease)
		}
	}
	if !slices.Equal(got, keys) {
		t.Fatalf("deleted keys %q, want %q in this order", got, keys)
	}
}

// waitClosed waits until ch is closed, draining values, and fails the test
// if that takes longer than timeout.
func waitClosed[T any](t *testing.T, what string, ch <-chan T, timeout time.Duration) {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timer.C:
			t.Fatalf("%s: not closed within %v", what, timeout)
		}
	}
}

// waitFor polls cond every pollInterval until it holds, failing the test
// with what if it does not within timeout.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	const pollInterval = 20 * time.Millisecond
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(pollInterval)
	}
}
