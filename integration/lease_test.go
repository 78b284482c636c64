package integration

import (
	"context"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// leased returns kv with its lease field set.
func leased(kv *mvccpb.KeyValue, id clientv3.LeaseID) *mvccpb.KeyValue {
	kv.Lease = int64(id)
	return kv
}

// unknownLease is an id no test grants.
const unknownLease clientv3.LeaseID = 0x7e57

// TestLeaseGrantAssignsIDAndReportsTTL checks Grant's answer: a positive
// server-chosen id that differs between grants, or the id the client chose;
// the TTL; an empty error; a full header at the unchanged revision.
func TestLeaseGrantAssignsIDAndReportsTTL(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	id := identityOf(t, m)

	r1, err := cli.Grant(ctx(t), 10)
	if err != nil {
		t.Fatal(err)
	}
	if r1.ID <= 0 || r1.TTL != 10 || r1.Error != "" {
		t.Fatalf("grant: id %d ttl %d error %q, want a positive id, ttl 10, no error", r1.ID, r1.TTL, r1.Error)
	}
	wantHeader(t, "grant", r1.ResponseHeader, id, 1)
	r2, err := cli.Grant(ctx(t), 10)
	if err != nil {
		t.Fatal(err)
	}
	if r2.ID <= 0 || r2.ID == r1.ID {
		t.Fatalf("second grant got id %d, first had %d: want another positive id", r2.ID, r1.ID)
	}

	// A client may choose the id (the high-level client cannot).
	start := time.Now()
	raw, err := leaseStub(m).LeaseGrant(ctx(t), &pb.LeaseGrantRequest{ID: 0x1234, TTL: 30})
	if err != nil {
		t.Fatal(err)
	}
	if raw.ID != 0x1234 || raw.TTL != 30 || raw.Error != "" {
		t.Fatalf("grant with id 0x1234: id %x ttl %d error %q", raw.ID, raw.TTL, raw.Error)
	}
	wantHeader(t, "raw grant", raw.Header, id, 1)

	ttl, err := cli.TimeToLive(ctx(t), 0x1234)
	if err != nil {
		t.Fatal(err)
	}
	if ttl.ID != 0x1234 || ttl.GrantedTTL != 30 || len(ttl.Keys) != 0 {
		t.Fatalf("time to live: id %x granted %d keys %q, want 0x1234, 30, none", ttl.ID, ttl.GrantedTTL, ttl.Keys)
	}
	wantRemainingTTL(t, "time to live after grant", ttl.TTL, 30, time.Since(start))
	wantHeader(t, "time to live", ttl.ResponseHeader, id, 1)

	// Granting writes no key: the revision stays.
	if got := rev(t, cli); got != 1 {
		t.Fatalf("revision %d after grants, want 1", got)
	}
	wantLeaseIDs(t, cli, r1.ID, r2.ID, 0x1234)
}

// TestLeaseGrantRaisesTTLToMinimum checks that a TTL below etcd's minimum
// (zero and negative ones too) is raised to it, in the answer and in the
// lease itself.
func TestLeaseGrantRaisesTTLToMinimum(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	for _, tt := range []struct{ ask, want int64 }{
		{-5, minLeaseTTL}, {0, minLeaseTTL}, {1, minLeaseTTL}, {minLeaseTTL, minLeaseTTL}, {minLeaseTTL + 1, minLeaseTTL + 1},
	} {
		resp, err := cli.Grant(ctx(t), tt.ask)
		if err != nil {
			t.Fatalf("grant ttl %d: %v", tt.ask, err)
		}
		if resp.TTL != tt.want {
			t.Errorf("grant ttl %d: granted %d, want %d", tt.ask, resp.TTL, tt.want)
		}
		if got := timeToLive(t, cli, resp.ID).GrantedTTL; got != tt.want {
			t.Errorf("grant ttl %d: time to live says granted %d, want %d", tt.ask, got, tt.want)
		}
	}
}

// TestLeaseGrantErrors covers Grant's refusals: an id already in use and a
// TTL above the maximum (checked first); and the edge cases it accepts: the
// maximum TTL itself and a negative client-chosen id.
func TestLeaseGrantErrors(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	ls := leaseStub(m)
	if _, err := ls.LeaseGrant(ctx(t), &pb.LeaseGrantRequest{ID: 7, TTL: 10}); err != nil {
		t.Fatal(err)
	}
	_, err := ls.LeaseGrant(ctx(t), &pb.LeaseGrantRequest{ID: 7, TTL: 20})
	wantErr(t, err, rpctypes.ErrGRPCLeaseExist)
	if got := timeToLive(t, cli, 7).GrantedTTL; got != 10 {
		t.Fatalf("lease 7 granted %d after a refused second grant, want 10", got)
	}

	_, err = cli.Grant(ctx(t), maxLeaseTTL+1)
	wantErr(t, err, rpctypes.ErrGRPCLeaseTTLTooLarge)
	_, err = ls.LeaseGrant(ctx(t), &pb.LeaseGrantRequest{ID: 8, TTL: maxLeaseTTL + 1})
	wantErr(t, err, rpctypes.ErrGRPCLeaseTTLTooLarge)
	// The TTL is checked before the id.
	_, err = ls.LeaseGrant(ctx(t), &pb.LeaseGrantRequest{ID: 7, TTL: maxLeaseTTL + 1})
	wantErr(t, err, rpctypes.ErrGRPCLeaseTTLTooLarge)

	start := time.Now()
	maxResp, err := cli.Grant(ctx(t), maxLeaseTTL)
	if err != nil {
		t.Fatalf("grant of the maximum ttl: %v", err)
	}
	if maxResp.TTL != maxLeaseTTL {
		t.Fatalf("grant of the maximum ttl granted %d", maxResp.TTL)
	}
	ttl := timeToLive(t, cli, maxResp.ID)
	if ttl.GrantedTTL != maxLeaseTTL {
		t.Fatalf("time to live of the maximum ttl lease: granted %d", ttl.GrantedTTL)
	}
	wantRemainingTTL(t, "maximum ttl lease", ttl.TTL, maxLeaseTTL, time.Since(start))

	// etcd takes any non-zero id the client chooses, negative ones too, and
	// keys can be attached to such a lease.
	neg, err := ls.LeaseGrant(ctx(t), &pb.LeaseGrantRequest{ID: -3, TTL: 10})
	if err != nil {
		t.Fatalf("grant with id -3: %v", err)
	}
	if neg.ID != -3 || neg.TTL != 10 {
		t.Fatalf("grant with id -3: id %d ttl %d", neg.ID, neg.TTL)
	}
	put(t, cli, "neg", "v", clientv3.WithLease(-3))
	wantLeaseKeys(t, cli, -3, "neg")

	wantLeaseIDs(t, cli, 7, maxResp.ID, -3)
	if got := rev(t, cli); got != 2 {
		t.Fatalf("revision %d, want 2 (one put)", got)
	}
}

// TestLeaseRevokeDeletesAttachedKeysInOneRevision checks that Revoke deletes
// every key attached to the lease, and only those, in one new revision, in
// key order; that revoking a lease without keys writes no revision; and that
// revoking an unknown lease fails.
func TestLeaseRevokeDeletesAttachedKeysInOneRevision(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	id := identityOf(t, m)
	l := grant(t, cli, 60)
	other := grant(t, cli, 60)
	put(t, cli, "k/c", "c", clientv3.WithLease(l))     // rev 2
	put(t, cli, "k/a", "a", clientv3.WithLease(l))     // rev 3
	put(t, cli, "k/x", "x")                            // rev 4
	put(t, cli, "k/b", "b", clientv3.WithLease(l))     // rev 5
	put(t, cli, "k/d", "d", clientv3.WithLease(other)) // rev 6
	put(t, cli, "k/a", "a2", clientv3.WithLease(l))    // rev 7: an update keeps the key attached
	wantLeaseKeys(t, cli, l, "k/a", "k/b", "k/c")

	resp, err := cli.Revoke(ctx(t), l)
	if err != nil {
		t.Fatal(err)
	}
	wantHeader(t, "revoke", resp.Header, id, 8)
	wantKVs(t, get(t, cli, "k/", clientv3.WithPrefix()).Kvs,
		leased(kv("k/d", "d", 6, 6, 1), other), kv("k/x", "x", 4, 4, 1))
	wantKVs(t, get(t, cli, "k/", clientv3.WithPrefix(), clientv3.WithRev(7)).Kvs,
		leased(kv("k/a", "a2", 3, 7, 2), l), leased(kv("k/b", "b", 5, 5, 1), l), leased(kv("k/c", "c", 2, 2, 1), l),
		leased(kv("k/d", "d", 6, 6, 1), other), kv("k/x", "x", 4, 4, 1))
	wantLeaseGone(t, cli, l)
	wantLeaseIDs(t, cli, other)

	_, err = cli.Revoke(ctx(t), l)
	wantErr(t, err, rpctypes.ErrGRPCLeaseNotFound)
	_, err = cli.Revoke(ctx(t), 0)
	wantErr(t, err, rpctypes.ErrGRPCLeaseNotFound)
	_, err = leaseStub(m).LeaseRevoke(ctx(t), &pb.LeaseRevokeRequest{ID: int64(unknownLease)})
	wantErr(t, err, rpctypes.ErrGRPCLeaseNotFound)

	// A lease without keys goes without a new revision.
	empty := grant(t, cli, 60)
	resp, err = cli.Revoke(ctx(t), empty)
	if err != nil {
		t.Fatal(err)
	}
	wantHeader(t, "revoke of a lease without keys", resp.Header, id, 8)
	if got := rev(t, cli); got != 8 {
		t.Fatalf("revision %d after revoking a lease without keys, want 8", got)
	}

	// A watcher sees one delete per key, all at the revoke's revision, in
	// key order.
	wch := cli.Watch(ctx(t), "k/", clientv3.WithPrefix(), clientv3.WithRev(8), clientv3.WithPrevKV())
	evs, _ := nextEvents(t, wch, 3, opTimeout)
	wantDeletes(t, evs, 8, l, "k/a", "k/b", "k/c")
}

// TestLeaseKeepAliveOnceRenews checks KeepAliveOnce: it answers the lease's
// id and granted TTL with a full header and restarts the countdown; for an
// unknown or revoked lease the client reports lease not found.
func TestLeaseKeepAliveOnceRenews(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	id := identityOf(t, m)
	l := grant(t, cli, 10)
	put(t, cli, "k", "v", clientv3.WithLease(l)) // rev 2

	start := time.Now()
	ka, err := cli.KeepAliveOnce(ctx(t), l)
	if err != nil {
		t.Fatal(err)
	}
	if ka.ID != l || ka.TTL != 10 {
		t.Fatalf("keepalive: id %x ttl %d, want %x and 10", ka.ID, ka.TTL, l)
	}
	wantHeader(t, "keepalive", ka.ResponseHeader, id, 2)
	wantRemainingTTL(t, "time to live after keepalive", timeToLive(t, cli, l).TTL, 10, time.Since(start))

	_, err = cli.KeepAliveOnce(ctx(t), unknownLease)
	wantErr(t, err, rpctypes.ErrGRPCLeaseNotFound)
	revoke(t, cli, l)
	_, err = cli.KeepAliveOnce(ctx(t), l)
	wantErr(t, err, rpctypes.ErrGRPCLeaseNotFound)
}

// TestLeaseKeepAliveStreamAnswersEveryRequest drives the raw keepalive
// stream: one answer per request, in order, with the id echoed; the TTL for
// a live lease and TTL 0 for an unknown one (id 0 included), without ending
// the stream; the stream ends when the client closes its side.
func TestLeaseKeepAliveStreamAnswersEveryRequest(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	id := identityOf(t, m)
	l1 := grant(t, cli, 10)
	l2 := grant(t, cli, 20)
	put(t, cli, "k", "v") // rev 2

	stream, err := leaseStub(m).LeaseKeepAlive(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		id  clientv3.LeaseID
		ttl int64
	}{{l1, 10}, {unknownLease, 0}, {l2, 20}, {0, 0}, {l1, 10}} {
		if err := stream.Send(&pb.LeaseKeepAliveRequest{ID: int64(tt.id)}); err != nil {
			t.Fatalf("send keepalive of %x: %v", tt.id, err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("keepalive of %x: %v", tt.id, err)
		}
		if resp.ID != int64(tt.id) || resp.TTL != tt.ttl {
			t.Fatalf("keepalive of %x: id %x ttl %d, want ttl %d", tt.id, resp.ID, resp.TTL, tt.ttl)
		}
		wantHeader(t, "keepalive", resp.Header, id, 2)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("receive after close send: %v, want EOF", err)
	}
}

// TestLeaseKeepAliveChannelKeepsLeaseAlive checks the client's KeepAlive: it
// renews a third of the TTL apart, so the lease outlives its TTL many times
// over; the channel closes when the caller cancels, when the lease is
// revoked, and at once (with no answer) for an unknown lease.
func TestLeaseKeepAliveChannelKeepsLeaseAlive(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	l := grant(t, cli, minLeaseTTL)
	put(t, cli, "k", "v", clientv3.WithLease(l)) // rev 2
	wch := cli.Watch(ctx(t), "k", clientv3.WithRev(3))

	kctx, cancel := context.WithCancel(ctx(t))
	ch, err := cli.KeepAlive(kctx, l)
	if err != nil {
		t.Fatal(err)
	}
	// Five renewals, the first at once and then a third of the TTL apart,
	// span well over the TTL.
	const renewals = 5
	start := time.Now()
	timer := time.NewTimer(opTimeout)
	defer timer.Stop()
	for i := range renewals {
		select {
		case resp, ok := <-ch:
			if !ok {
				t.Fatalf("keepalive channel closed after %d renewals", i)
			}
			if resp.ID != l || resp.TTL != minLeaseTTL {
				t.Fatalf("renewal %d: id %x ttl %d, want %x and %d", i, resp.ID, resp.TTL, l, minLeaseTTL)
			}
		case <-timer.C:
			t.Fatalf("%d of %d renewals within %v", i, renewals, opTimeout)
		}
	}
	if spent := time.Since(start); spent < minLeaseTTL*time.Second {
		t.Fatalf("%d renewals took %v, less than the %d s TTL: the client renews a third of the TTL apart", renewals, spent, minLeaseTTL)
	}
	wantKVs(t, get(t, cli, "k").Kvs, leased(kv("k", "v", 2, 2, 1), l))
	if ttl := timeToLive(t, cli, l); ttl.TTL < 0 || ttl.GrantedTTL != minLeaseTTL {
		t.Fatalf("kept-alive lease: ttl %d granted %d", ttl.TTL, ttl.GrantedTTL)
	}
	select {
	case wr := <-wch:
		t.Fatalf("watch on the kept-alive key answered %v %v", wr.Events, wr.Err())
	default:
	}

	cancel()
	waitClosed(t, "keepalive channel after cancel", ch, opTimeout)

	// Revoking the lease ends a keepalive at the next renewal.
	ch, err = cli.KeepAlive(ctx(t), l)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case resp := <-ch:
		if resp == nil || resp.TTL != minLeaseTTL {
			t.Fatalf("first renewal %v", resp)
		}
	case <-time.After(opTimeout):
		t.Fatal("no renewal")
	}
	revoke(t, m.newClient(t), l)
	waitClosed(t, "keepalive channel of a revoked lease", ch, opTimeout)

	ch, err = cli.KeepAlive(ctx(t), unknownLease)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case resp, ok := <-ch:
		if ok {
			t.Fatalf("keepalive of an unknown lease answered %v", resp)
		}
	case <-time.After(opTimeout):
		t.Fatal("keepalive channel of an unknown lease not closed")
	}
}

// TestLeaseTimeToLiveReportsTTLAndKeys checks TimeToLive: remaining and
// granted TTL, the attached keys only when asked (as a set: etcd's order
// is random), keys leaving when deleted, and TTL -1 for an unknown lease.
func TestLeaseTimeToLiveReportsTTLAndKeys(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	id := identityOf(t, m)
	start := time.Now()
	l := grant(t, cli, 20)
	empty := grant(t, cli, 30)
	put(t, cli, "b", "1", clientv3.WithLease(l)) // rev 2
	put(t, cli, "a", "1", clientv3.WithLease(l)) // rev 3
	put(t, cli, "c", "1", clientv3.WithLease(l)) // rev 4
	put(t, cli, "x", "1")                        // rev 5

	resp, err := cli.TimeToLive(ctx(t), l)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ID != l || resp.GrantedTTL != 20 || resp.Keys != nil {
		t.Fatalf("time to live without keys: id %x granted %d keys %q, want %x, 20, none", resp.ID, resp.GrantedTTL, resp.Keys, l)
	}
	wantRemainingTTL(t, "time to live", resp.TTL, 20, time.Since(start))
	wantHeader(t, "time to live", resp.ResponseHeader, id, 5)
	wantLeaseKeys(t, cli, l, "a", "b", "c")
	raw, err := leaseStub(m).LeaseTimeToLive(ctx(t), &pb.LeaseTimeToLiveRequest{ID: int64(l), Keys: true})
	if err != nil {
		t.Fatal(err)
	}
	rawKeys := make([]string, len(raw.Keys))
	for i, k := range raw.Keys {
		rawKeys[i] = string(k)
	}
	slices.Sort(rawKeys)
	if raw.ID != int64(l) || raw.GrantedTTL != 20 || !slices.Equal(rawKeys, []string{"a", "b", "c"}) {
		t.Fatalf("raw time to live: %v", raw)
	}
	wantHeader(t, "raw time to live", raw.Header, id, 5)

	if _, err := cli.Delete(ctx(t), "b"); err != nil { // rev 6
		t.Fatal(err)
	}
	wantLeaseKeys(t, cli, l, "a", "c")
	wantLeaseKeys(t, cli, empty)
	if r := timeToLive(t, cli, empty); r.GrantedTTL != 30 || r.Keys != nil {
		t.Fatalf("time to live of a lease without keys: granted %d keys %q", r.GrantedTTL, r.Keys)
	}

	for _, opts := range [][]clientv3.LeaseOption{nil, {clientv3.WithAttachedKeys()}} {
		resp, err := cli.TimeToLive(ctx(t), unknownLease, opts...)
		if err != nil {
			t.Fatalf("time to live of an unknown lease: %v", err)
		}
		if resp.ID != unknownLease || resp.TTL != -1 || resp.GrantedTTL != 0 || resp.Keys != nil {
			t.Fatalf("time to live of an unknown lease: id %x ttl %d granted %d keys %q, want ttl -1", resp.ID, resp.TTL, resp.GrantedTTL, resp.Keys)
		}
		wantHeader(t, "time to live of an unknown lease", resp.ResponseHeader, id, 6)
	}
}

// TestLeaseLeasesListsLiveLeases checks Leases: empty on a fresh member,
// then every granted and not yet revoked lease, with a full header.
func TestLeaseLeasesListsLiveLeases(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	id := identityOf(t, m)
	resp, err := cli.Leases(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Leases) != 0 {
		t.Fatalf("leases of a fresh member: %v", resp.Leases)
	}
	wantHeader(t, "leases", resp.ResponseHeader, id, 1)

	a, b, c := grant(t, cli, 10), grant(t, cli, 100), grant(t, cli, 5)
	put(t, cli, "k", "v", clientv3.WithLease(b)) // rev 2
	wantLeaseIDs(t, cli, a, b, c)
	// etcd lists the soonest to expire first.
	resp, err = cli.Leases(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Leases; len(got) != 3 || got[0].ID != c || got[1].ID != a || got[2].ID != b {
		t.Fatalf("leases %v, want %x, %x, %x (soonest expiry first)", got, c, a, b)
	}
	revoke(t, cli, b) // rev 3
	wantLeaseIDs(t, cli, a, c)

	raw, err := leaseStub(m).LeaseLeases(ctx(t), &pb.LeaseLeasesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	wantHeader(t, "raw leases", raw.Header, id, 3)
	var got []clientv3.LeaseID
	for _, s := range raw.Leases {
		got = append(got, clientv3.LeaseID(s.ID))
	}
	slices.Sort(got)
	want := []clientv3.LeaseID{a, c}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("raw leases %x, want %x", got, want)
	}
}

// TestLeasePutAttachesMovesAndDetachesKeys checks how puts and deletes bind
// keys to leases: a put with a lease attaches the key; a put with another
// lease moves it; a put without a lease or a delete detaches it;
// ignore_lease keeps it; a put with an unknown or revoked lease fails and
// changes nothing. Revoking then deletes exactly the keys still attached.
func TestLeasePutAttachesMovesAndDetachesKeys(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	l1, l2, l3 := grant(t, cli, 60), grant(t, cli, 60), grant(t, cli, 60)

	put(t, cli, "a", "1", clientv3.WithLease(l1)) // rev 2
	wantKVs(t, get(t, cli, "a").Kvs, leased(kv("a", "1", 2, 2, 1), l1))
	wantLeaseKeys(t, cli, l1, "a")

	// Another lease takes the key over.
	pr, err := cli.Put(ctx(t), "a", "2", clientv3.WithLease(l2), clientv3.WithPrevKV()) // rev 3
	if err != nil {
		t.Fatal(err)
	}
	wantKVs(t, []*mvccpb.KeyValue{pr.PrevKv}, leased(kv("a", "1", 2, 2, 1), l1))
	wantKVs(t, get(t, cli, "a").Kvs, leased(kv("a", "2", 2, 3, 2), l2))
	wantLeaseKeys(t, cli, l1)
	wantLeaseKeys(t, cli, l2, "a")

	// A put without a lease detaches the key.
	put(t, cli, "b", "1", clientv3.WithLease(l2)) // rev 4
	put(t, cli, "b", "2")                         // rev 5
	wantKVs(t, get(t, cli, "b").Kvs, kv("b", "2", 4, 5, 2))
	wantLeaseKeys(t, cli, l2, "a")

	// A delete detaches the key; a new put of it does not attach it again.
	put(t, cli, "c", "1", clientv3.WithLease(l2))             // rev 6
	dr, err := cli.Delete(ctx(t), "c", clientv3.WithPrevKV()) // rev 7
	if err != nil {
		t.Fatal(err)
	}
	wantKVs(t, dr.PrevKvs, leased(kv("c", "1", 6, 6, 1), l2))
	wantLeaseKeys(t, cli, l2, "a")
	put(t, cli, "c", "2") // rev 8
	// So does a range delete, for every key it deletes.
	put(t, cli, "p/1", "1", clientv3.WithLease(l1))                            // rev 9
	put(t, cli, "p/2", "1", clientv3.WithLease(l1))                            // rev 10
	if _, err := cli.Delete(ctx(t), "p/", clientv3.WithPrefix()); err != nil { // rev 11
		t.Fatal(err)
	}
	wantLeaseKeys(t, cli, l1)

	// ignore_lease keeps the key's lease.
	put(t, cli, "d", "1", clientv3.WithLease(l3))     // rev 12
	put(t, cli, "d", "2", clientv3.WithIgnoreLease()) // rev 13
	wantKVs(t, get(t, cli, "d").Kvs, leased(kv("d", "2", 12, 13, 2), l3))
	wantLeaseKeys(t, cli, l3, "d")
	_, err = cli.Put(ctx(t), "missing", "v", clientv3.WithIgnoreLease())
	wantErr(t, err, rpctypes.ErrGRPCKeyNotFound)
	_, err = cli.Put(ctx(t), "e", "v", clientv3.WithLease(unknownLease))
	wantErr(t, err, rpctypes.ErrGRPCLeaseNotFound)

	// l1 lost all its keys: revoking it writes nothing.
	if got := revoke(t, cli, l1); got != 13 {
		t.Fatalf("revoke of a lease whose keys moved away or were deleted: revision %d, want 13", got)
	}
	if got := revoke(t, cli, l2); got != 14 {
		t.Fatalf("revoke of l2: revision %d, want 14", got)
	}
	if got := revoke(t, cli, l3); got != 15 {
		t.Fatalf("revoke of l3: revision %d, want 15", got)
	}
	wantKVs(t, get(t, cli, "", clientv3.WithFromKey()).Kvs, kv("b", "2", 4, 5, 2), kv("c", "2", 8, 8, 1))

	_, err = cli.Put(ctx(t), "f", "v", clientv3.WithLease(l1))
	wantErr(t, err, rpctypes.ErrGRPCLeaseNotFound)
	if got := rev(t, cli); got != 15 {
		t.Fatalf("revision %d after failed puts, want 15", got)
	}
}

// TestLeaseFieldInRangeResults checks where reads show a key's lease: in
// full ranges, at old revisions and in txns; not in keys-only ranges, which
// etcd answers from its index without the lease, unless they sort by value
// (then etcd reads the whole key-value and keeps the lease).
func TestLeaseFieldInRangeResults(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	l := grant(t, cli, 60)
	put(t, cli, "a", "3", clientv3.WithLease(l)) // rev 2
	put(t, cli, "b", "2")                        // rev 3
	put(t, cli, "c", "1", clientv3.WithLease(l)) // rev 4
	full := []*mvccpb.KeyValue{leased(kv("a", "3", 2, 2, 1), l), kv("b", "2", 3, 3, 1), leased(kv("c", "1", 4, 4, 1), l)}
	keysOnly := noValues(kv("a", "3", 2, 2, 1), kv("b", "2", 3, 3, 1), kv("c", "1", 4, 4, 1))
	keysOnlyLeased := noValues(full...)
	all := []clientv3.OpOption{clientv3.WithPrefix()}

	wantKVs(t, get(t, cli, "", all...).Kvs, full...)
	wantKVs(t, get(t, cli, "", append(all, clientv3.WithLimit(2))...).Kvs, full[:2]...)
	wantKVs(t, get(t, cli, "", append(all, clientv3.WithSerializable())...).Kvs, full...)
	wantKVs(t, get(t, cli, "a", clientv3.WithRev(2)).Kvs, full[0])
	wantKVs(t, get(t, cli, "", append(all, clientv3.WithKeysOnly())...).Kvs, keysOnly...)
	wantKVs(t, get(t, cli, "", append(all, clientv3.WithKeysOnly(), clientv3.WithRev(2))...).Kvs, keysOnly[0])
	wantKVs(t, get(t, cli, "", append(all, clientv3.WithKeysOnly(), clientv3.WithLimit(1))...).Kvs, keysOnly[0])
	for _, target := range []clientv3.SortTarget{clientv3.SortByKey, clientv3.SortByCreateRevision, clientv3.SortByModRevision, clientv3.SortByVersion} {
		got := get(t, cli, "", append(all, clientv3.WithKeysOnly(), clientv3.WithSort(target, clientv3.SortAscend))...).Kvs
		for _, kv := range got {
			if kv.Lease != 0 {
				t.Fatalf("keys-only range sorted by %v: %s carries a lease", target, kvString(kv))
			}
		}
	}
	wantKVs(t, get(t, cli, "", append(all, clientv3.WithKeysOnly(), clientv3.WithSort(clientv3.SortByValue, clientv3.SortAscend))...).Kvs,
		keysOnlyLeased[2], keysOnlyLeased[1], keysOnlyLeased[0])

	tr := commit(t, cli.Txn(ctx(t)).Then(clientv3.OpGet("", all...), clientv3.OpGet("", append(all, clientv3.WithKeysOnly())...)))
	wantKVs(t, tr.Responses[0].GetResponseRange().Kvs, full...)
	wantKVs(t, tr.Responses[1].GetResponseRange().Kvs, keysOnly...)

	// History keeps the lease a key had, after the lease is gone.
	revoke(t, cli, l) // rev 5
	wantKVs(t, get(t, cli, "", append(all, clientv3.WithRev(4))...).Kvs, full...)
	wantKVs(t, get(t, cli, "", all...).Kvs, kv("b", "2", 3, 3, 1))
}

// TestLeaseTxnComparesAndAttaches checks leases inside txns: compares on the
// LEASE target, puts that attach keys, and a put with a revoked lease that
// fails the whole txn.
func TestLeaseTxnComparesAndAttaches(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	l := grant(t, cli, 60)
	tr := commit(t, cli.Txn(ctx(t)).If(clientv3.Compare(clientv3.LeaseValue("k"), "=", 0)).
		Then(clientv3.OpPut("k", "1", clientv3.WithLease(l)), clientv3.OpPut("j", "1", clientv3.WithLease(l))))
	if !tr.Succeeded || tr.Header.Revision != 2 {
		t.Fatalf("txn putting with a lease: succeeded %v revision %d", tr.Succeeded, tr.Header.Revision)
	}
	wantLeaseKeys(t, cli, l, "j", "k")
	for _, tt := range []struct {
		cmp  clientv3.Cmp
		want bool
	}{
		{clientv3.Compare(clientv3.LeaseValue("k"), "=", l), true},
		{clientv3.Compare(clientv3.LeaseValue("k"), "=", int64(l)), true},
		{clientv3.Compare(clientv3.LeaseValue("k"), "!=", l), false},
		{clientv3.Compare(clientv3.LeaseValue("k"), ">", 0), true},
		{clientv3.Compare(clientv3.LeaseValue("k"), "<", l), false},
		{clientv3.Compare(clientv3.LeaseValue("k"), "<", l+1), true},
		{clientv3.Compare(clientv3.LeaseValue("j").WithPrefix(), "=", l), true},
		{clientv3.Compare(clientv3.LeaseValue("missing"), "=", 0), true},
	} {
		if got := commit(t, cli.Txn(ctx(t)).If(tt.cmp)).Succeeded; got != tt.want {
			t.Errorf("compare %v: succeeded %v, want %v", tt.cmp, got, tt.want)
		}
	}
	if got := revoke(t, cli, l); got != 3 {
		t.Fatalf("revoke: revision %d, want 3", got)
	}
	if tr := commit(t, cli.Txn(ctx(t)).If(clientv3.Compare(clientv3.LeaseValue("k"), "=", 0))); !tr.Succeeded {
		t.Fatal("compare on the lease of a revoked key: want 0")
	}
	_, err := cli.Txn(ctx(t)).Then(clientv3.OpPut("x", "1"), clientv3.OpPut("y", "1", clientv3.WithLease(l))).Commit()
	wantErr(t, err, rpctypes.ErrGRPCLeaseNotFound)
	if got := rev(t, cli); got != 3 {
		t.Fatalf("revision %d after the failed txn, want 3", got)
	}
}

// TestLeaseExpiresAfterTTLNotBefore lets leases expire and times the delete
// events: a lease never expires before its TTL has passed since it was
// granted or last renewed, and is gone at most one election timeout later.
// Its keys go in one revision, in key order. Lease a has the minimum TTL
// (asked for 1 s); lease b, granted with it, is renewed when a expires,
// which moves its expiry past the one it was granted with.
func TestLeaseExpiresAfterTTLNotBefore(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	// checkExpiry fails the test unless a delete seen at `at` came no
	// earlier than ttl after `sent` (when the grant or renewal was sent) and
	// no later than ttl plus the election timeout after `answered` (when it
	// was answered).
	checkExpiry := func(what string, at, sent, answered time.Time, ttl int64) {
		t.Helper()
		d := time.Duration(ttl) * time.Second
		t.Logf("%s expired %v after the renewal was sent, %v after it was answered", what, at.Sub(sent), at.Sub(answered))
		if at.Before(sent.Add(d)) {
			t.Fatalf("%s expired %v after it was renewed, before its %v TTL", what, at.Sub(sent), d)
		}
		if late := answered.Add(d + electionTimeout); at.After(late) {
			t.Fatalf("%s expired %v after it was renewed, more than its %v TTL plus the %v election timeout", what, at.Sub(answered), d, electionTimeout)
		}
	}
	const ttlB = 4 // long enough to outlive a by more than a's latest expiry

	sentA := time.Now()
	ga, err := cli.Grant(ctx(t), 1)
	answeredA := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	if ga.TTL != minLeaseTTL {
		t.Fatalf("grant ttl 1: granted %d, want %d", ga.TTL, minLeaseTTL)
	}
	gb, err := cli.Grant(ctx(t), ttlB)
	if err != nil {
		t.Fatal(err)
	}
	put(t, cli, "a/2", "v", clientv3.WithLease(ga.ID)) // rev 2
	put(t, cli, "a/1", "v", clientv3.WithLease(ga.ID)) // rev 3
	put(t, cli, "b/1", "v", clientv3.WithLease(gb.ID)) // rev 4
	wa := cli.Watch(ctx(t), "a/", clientv3.WithPrefix(), clientv3.WithRev(5))
	wb := cli.Watch(ctx(t), "b/", clientv3.WithPrefix(), clientv3.WithRev(5))

	evs, at := nextEvents(t, wa, 2, opTimeout)
	checkExpiry("lease a", at, sentA, answeredA, minLeaseTTL)
	wantDeletes(t, evs, 5, 0, "a/1", "a/2")
	wantLeaseGone(t, cli, ga.ID)
	_, err = cli.KeepAliveOnce(ctx(t), ga.ID)
	wantErr(t, err, rpctypes.ErrGRPCLeaseNotFound)
	_, err = cli.Revoke(ctx(t), ga.ID)
	wantErr(t, err, rpctypes.ErrGRPCLeaseNotFound)

	sentB := time.Now()
	ka, err := cli.KeepAliveOnce(ctx(t), gb.ID)
	answeredB := time.Now()
	if err != nil {
		t.Fatalf("renew lease b: %v", err)
	}
	if ka.TTL != ttlB {
		t.Fatalf("renew lease b: ttl %d, want %d", ka.TTL, ttlB)
	}
	evs, at = nextEvents(t, wb, 1, opTimeout)
	checkExpiry("lease b", at, sentB, answeredB, ttlB)
	wantDeletes(t, evs, 6, 0, "b/1")
	wantLeaseGone(t, cli, gb.ID)
	wantLeaseIDs(t, cli)
	if got := rev(t, cli); got != 6 {
		t.Fatalf("revision %d after two expiries, want 6", got)
	}
}

// TestLeaseSurvivesRestart restarts a member with leases: they are all
// still there with their TTLs and keys (attachments rebuilt from the keys,
// moves and detaches included); a short lease still expires after the
// restart, never earlier than its TTL after its last renewal; the others
// can still be renewed and revoked, and new grants get new ids.
func TestLeaseSurvivesRestart(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	const shortTTL = 5
	start := time.Now()
	long := grant(t, cli, 60)
	short := grant(t, cli, shortTTL)
	moved := grant(t, cli, 60)
	gone := grant(t, cli, 60)
	put(t, cli, "l/a", "v", clientv3.WithLease(long))    // rev 2
	put(t, cli, "l/b", "v", clientv3.WithLease(long))    // rev 3
	put(t, cli, "s/a", "v", clientv3.WithLease(short))   // rev 4
	put(t, cli, "m/x", "v", clientv3.WithLease(moved))   // rev 5
	put(t, cli, "m/x", "v2", clientv3.WithLease(long))   // rev 6
	if _, err := cli.Delete(ctx(t), "l/b"); err != nil { // rev 7
		t.Fatal(err)
	}
	put(t, cli, "l/b", "v2") // rev 8
	revoke(t, cli, gone)
	renewed := time.Now()
	if _, err := cli.KeepAliveOnce(ctx(t), short); err != nil {
		t.Fatal(err)
	}

	m.restart(t)
	served := time.Now()
	cli = m.cli()
	ws := cli.Watch(ctx(t), "s/", clientv3.WithPrefix(), clientv3.WithRev(9))

	wantLeaseIDs(t, cli, long, short, moved)
	ttl := timeToLive(t, cli, long)
	// etcd restarts every lease's countdown when the member becomes leader,
	// plus one election timeout: the remaining TTL may read the full 60.
	if lo := 60 - int64((time.Since(start)+time.Second-1)/time.Second); ttl.GrantedTTL != 60 || ttl.TTL < lo || ttl.TTL > 60 {
		t.Fatalf("long lease after restart: granted %d remaining %d, want 60 and %d..60", ttl.GrantedTTL, ttl.TTL, lo)
	}
	wantLeaseKeys(t, cli, long, "l/a", "m/x")
	wantLeaseKeys(t, cli, moved)
	wantLeaseKeys(t, cli, short, "s/a")
	if ttl := timeToLive(t, cli, short); ttl.GrantedTTL != shortTTL {
		t.Fatalf("short lease after restart: granted %d", ttl.GrantedTTL)
	}
	wantKVs(t, get(t, cli, "", clientv3.WithFromKey()).Kvs,
		leased(kv("l/a", "v", 2, 2, 1), long), kv("l/b", "v2", 8, 8, 1), leased(kv("m/x", "v2", 5, 6, 2), long), leased(kv("s/a", "v", 4, 4, 1), short))

	// The short lease expires, no earlier than its TTL after the renewal
	// before the restart. etcd counts the TTL afresh from when the
	// restarted member became leader, plus one election timeout, and
	// revokes within another.
	evs, at := nextEvents(t, ws, 1, opTimeout)
	t.Logf("short lease expired %v after its last renewal, %v after the restarted member served", at.Sub(renewed), at.Sub(served))
	if at.Before(renewed.Add(shortTTL * time.Second)) {
		t.Fatalf("short lease expired %v after its last renewal, before its %d s TTL", at.Sub(renewed), shortTTL)
	}
	if late := served.Add(shortTTL*time.Second + 2*electionTimeout); at.After(late) {
		t.Fatalf("short lease expired %v after the restarted member served, more than its %d s TTL plus two election timeouts", at.Sub(served), shortTTL)
	}
	wantDeletes(t, evs, 9, 0, "s/a")
	wantLeaseGone(t, cli, short)

	ka, err := cli.KeepAliveOnce(ctx(t), long)
	if err != nil || ka.TTL != 60 {
		t.Fatalf("renew after restart: %v %v", ka, err)
	}
	if got := revoke(t, cli, long); got != 10 {
		t.Fatalf("revoke after restart: revision %d, want 10", got)
	}
	wantKVs(t, get(t, cli, "", clientv3.WithFromKey()).Kvs, kv("l/b", "v2", 8, 8, 1))
	fresh := grant(t, cli, 60)
	if fresh == long || fresh == short || fresh == moved || fresh == gone {
		t.Fatalf("grant after restart reused id %x", fresh)
	}
	wantLeaseIDs(t, cli, moved, fresh)
}

// TestLeaseGrantRefusedUnderNoSpaceAlarm checks leases under a NOSPACE
// alarm: Grant is refused like a put, while renewals, TimeToLive and
// Revoke (which only deletes) go on.
func TestLeaseGrantRefusedUnderNoSpaceAlarm(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	l := grant(t, cli, 60)
	put(t, cli, "k", "v", clientv3.WithLease(l)) // rev 2
	raiseAlarm(t, m, pb.AlarmType_NOSPACE)
	_, err := cli.Grant(ctx(t), 60)
	wantErr(t, err, rpctypes.ErrGRPCNoSpace)
	if ka, err := cli.KeepAliveOnce(ctx(t), l); err != nil || ka.TTL != 60 {
		t.Fatalf("renew under NOSPACE: %v %v", ka, err)
	}
	wantLeaseKeys(t, cli, l, "k")
	if got := revoke(t, cli, l); got != 3 {
		t.Fatalf("revoke under NOSPACE: revision %d, want 3", got)
	}
	disarmAlarm(t, m, pb.AlarmType_NOSPACE)
	wantLeaseIDs(t, cli, grant(t, cli, 60))
}
