package compat

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// defaultLeaseOps is TestDifferentialLease's number of operations unless -ops
// says otherwise.
const defaultLeaseOps = 2000

// maxLeaseTTL is etcd's largest grantable TTL, in seconds.
const maxLeaseTTL = 9_000_000_000

// safeTTL is the smallest TTL the lease test keeps a lease for: no lease may
// expire during a run, or the two sides would diverge by timing. A lease
// granted with less (a TTL below the minimum is raised to etcd's minimum,
// 2 s with the default election timeout) is revoked by the very next ops.
const safeTTL = 60

// leaseKeys is the lease test's key space: small, so that keys move between
// leases and revokes delete several keys.
var leaseKeys = []string{"l/a", "l/b", "l/c", "l/d", "l/e", "l/f", "m/a", "m/b", "m/c", "n", "n/1", "o"}

// TestDifferentialLease sends the same seeded sequence of lease and KV
// requests to etcd and keel: LeaseGrant with client-chosen IDs (in use,
// negative, huge), with server-generated IDs (mapped between the sides by
// the order of the grants), with TTLs below the minimum, at the maximum and
// too large; LeaseRevoke, LeaseTimeToLive with and without keys,
// LeaseLeases, one LeaseKeepAlive per stream; puts that attach keys to
// leases, move them between leases, detach them, keep them (ignore_lease),
// or name leases that do not exist; deletes; txns that compare leases.
// Responses must be equal field by field, up to:
//   - lease IDs the servers generated, compared through the mapping;
//   - LeaseTimeToLive's remaining TTL, which depends on timing: at most 1 s
//     apart;
//   - LeaseTimeToLive's keys and LeaseLeases's leases, which etcd lists in
//     map order and by expiry: compared sorted.
//
// After every revoke, a range over every key checks that both deleted the
// same keys. Two watchers (every key with prev_kv; the deletes under "l/")
// must see the same events, revokes' deletes included.
func TestDifferentialLease(t *testing.T) {
	seed := resolveSeed(t)
	n := resolveOps(t, defaultLeaseOps)
	ref, sut := startPair(t)
	t.Logf("seed %d, %d ops, %s vs %s", seed, n, ref.name, sut.name)

	const test = "TestDifferentialLease"
	gen := newLeaseGen(seed)
	ids := newLeaseIDs()
	h := newWatchHarness(t, test, seed, ref, sut, 1)
	h.total = n
	h.normSut = ids.inRefTerms
	rev := int64(1)
	opOfRev := map[int64]int{}
	h.opOfRev = func(r int64) int {
		if i, ok := opOfRev[r]; ok {
			return i
		}
		return -1
	}
	outcomes := map[string]int{}
	run := func(i int, o leaseOp) result {
		raw, rawSut := runLeaseBoth(ref, sut, o, ids)
		ids.learn(o, raw, rawSut)
		a, b := leaseResult(raw, nil), leaseResult(rawSut, ids.toRef)
		ttlNote := alignRemainingTTL(a, b)
		if !a.equal(b) {
			hint := "Lease IDs the servers generated are shown in " + ref.name + "'s terms" + ttlNote + ".\n"
			t.Fatal(mismatchReport(test, ref.name, sut.name, seed, i, h.rerunOps(i), o.kind()+o.noteSuffix(), o.req, a, b, hint))
		}
		gen.observe(o, raw.resp, raw.err)
		outcome := raw.outcome()
		if hd := headerOf(raw.resp); hd != nil && hd.Revision > rev {
			rev = hd.Revision
			opOfRev[rev] = i
			if _, ok := o.req.(*pb.LeaseRevokeRequest); ok {
				outcome += ", keys deleted"
			}
		}
		outcomes[o.kind()+o.noteSuffix()+" "+outcome]++
		return raw
	}
	h.write = func(i int, txn *pb.TxnRequest, note string) int64 {
		run(i, leaseOp{req: txn, note: note})
		return rev
	}
	h.open(0, 0, &pb.WatchCreateRequest{Key: []byte{0}, RangeEnd: []byte{0}, PrevKv: true}, "every key, prev_kv")
	h.open(0, 0, &pb.WatchCreateRequest{Key: []byte("l/"), RangeEnd: []byte("l0"),
		Filters: []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NOPUT}}, "prefix l/, deletes only")

	start := time.Now()
	for i := range n {
		run(i, gen.next(i))
	}
	h.quiesce(n, "at the end")
	t.Logf("%d ops in %v, final revision %d, %d leases live, %d generated IDs mapped",
		n, time.Since(start).Round(time.Millisecond), rev, len(gen.live), len(ids.toRef))
	logOutcomes(t, outcomes)
	logWatchOutcomes(t, h)
}

// leaseOp is one request of the lease test: a KV or a Lease request, with the
// reference's lease IDs.
type leaseOp struct {
	req  proto.Message
	note string // why this op is special, if it is
}

func (o leaseOp) kind() string {
	k := strings.TrimSuffix(string(o.req.ProtoReflect().Descriptor().Name()), "Request")
	if k == "LeaseKeepAlive" {
		k += " (once)"
	}
	return k
}

func (o leaseOp) noteSuffix() string {
	if o.note == "" {
		return ""
	}
	return ", " + o.note
}

// runLeaseBoth sends o to both sides concurrently, to the sut with its own
// IDs for the leases it generated.
func runLeaseBoth(ref, sut *target, o leaseOp, ids *leaseIDs) (a, b result) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	sutReq := ids.inSutTerms(o.req)
	done := make(chan result, 1)
	go func() { done <- newResult(sendRequest(ctx, sut, sutReq)) }()
	a = newResult(sendRequest(ctx, ref, o.req))
	b = <-done
	return a, b
}

// sendRequest sends a KV or Lease request through the raw gRPC stub of its
// service.
func sendRequest(ctx context.Context, tg *target, req proto.Message) (proto.Message, error) {
	switch r := req.(type) {
	case *pb.PutRequest:
		return nilIfErr(tg.kv.Put(ctx, r))
	case *pb.DeleteRangeRequest:
		return nilIfErr(tg.kv.DeleteRange(ctx, r))
	case *pb.RangeRequest:
		return nilIfErr(tg.kv.Range(ctx, r))
	case *pb.TxnRequest:
		return nilIfErr(tg.kv.Txn(ctx, r))
	case *pb.LeaseGrantRequest:
		return nilIfErr(tg.lease.LeaseGrant(ctx, r))
	case *pb.LeaseRevokeRequest:
		return nilIfErr(tg.lease.LeaseRevoke(ctx, r))
	case *pb.LeaseTimeToLiveRequest:
		return nilIfErr(tg.lease.LeaseTimeToLive(ctx, r))
	case *pb.LeaseLeasesRequest:
		return nilIfErr(tg.lease.LeaseLeases(ctx, r))
	case *pb.LeaseKeepAliveRequest:
		return keepAliveOnce(ctx, tg.lease, r)
	default:
		return nil, fmt.Errorf("sendRequest: no service for %T", req)
	}
}

// keepAliveOnce sends one keep-alive on a new LeaseKeepAlive stream and
// returns the first answer.
func keepAliveOnce(ctx context.Context, lc pb.LeaseClient, r *pb.LeaseKeepAliveRequest) (proto.Message, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := lc.LeaseKeepAlive(ctx)
	if err != nil {
		return nil, err
	}
	// io.EOF from Send means the server ended the stream; Recv has its status.
	if err := s.Send(r); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	resp, err := s.Recv()
	if err != nil {
		return nil, err
	}
	_ = s.CloseSend()
	return resp, nil
}

// leaseIDs maps between the lease IDs the two sides generated for the same
// grant (LeaseGrant with ID 0). Client-chosen IDs are the same on both sides
// and are not in the maps.
type leaseIDs struct {
	toSut map[int64]int64 // the reference's generated ID -> the sut's
	toRef map[int64]int64 // the inverse
}

func newLeaseIDs() *leaseIDs {
	return &leaseIDs{toSut: map[int64]int64{}, toRef: map[int64]int64{}}
}

// learn records the IDs both sides generated for o, if o is a grant of a
// generated ID that both sides answered.
func (m *leaseIDs) learn(o leaseOp, a, b result) {
	g, ok := o.req.(*pb.LeaseGrantRequest)
	if !ok || g.ID != 0 || a.err != nil || b.err != nil {
		return
	}
	ra, rb := a.resp.(*pb.LeaseGrantResponse).ID, b.resp.(*pb.LeaseGrantResponse).ID
	m.toSut[ra] = rb
	m.toRef[rb] = ra
}

// inSutTerms returns a copy of a request with the sut's IDs.
func (m *leaseIDs) inSutTerms(req proto.Message) proto.Message {
	c := proto.Clone(req)
	mapLeaseIDs(c.ProtoReflect(), m.toSut)
	return c
}

// inRefTerms returns a copy of a message from the sut with the reference's
// IDs.
func (m *leaseIDs) inRefTerms(msg proto.Message) proto.Message {
	c := proto.Clone(msg)
	mapLeaseIDs(c.ProtoReflect(), m.toRef)
	return c
}

// mapLeaseIDs replaces, everywhere in m, the lease IDs that ids maps: the
// int64 fields named "lease" (KeyValue, PutRequest, Compare) and "ID" (the
// Lease service's requests and responses, LeaseStatus).
func mapLeaseIDs(m protoreflect.Message, ids map[int64]int64) {
	if len(ids) == 0 {
		return
	}
	type set struct {
		fd protoreflect.FieldDescriptor
		v  protoreflect.Value
	}
	var sets []set
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
		case fd.IsList():
			if fd.Kind() == protoreflect.MessageKind {
				l := v.List()
				for i := range l.Len() {
					mapLeaseIDs(l.Get(i).Message(), ids)
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			mapLeaseIDs(v.Message(), ids)
		case fd.Kind() == protoreflect.Int64Kind && (fd.Name() == "lease" || fd.Name() == "ID"):
			if to, ok := ids[v.Int()]; ok {
				sets = append(sets, set{fd, protoreflect.ValueOfInt64(to)})
			}
		}
		return true
	})
	for _, s := range sets {
		m.Set(s.fd, s.v)
	}
}

// leaseResult returns r ready to compare: lease IDs mapped by ids (nil: none),
// LeaseTimeToLive's keys and LeaseLeases's leases sorted.
func leaseResult(r result, ids map[int64]int64) result {
	if r.err != nil {
		return r
	}
	m := proto.Clone(r.resp)
	mapLeaseIDs(m.ProtoReflect(), ids)
	switch x := m.(type) {
	case *pb.LeaseTimeToLiveResponse:
		slices.SortFunc(x.Keys, bytes.Compare)
	case *pb.LeaseLeasesResponse:
		slices.SortFunc(x.Leases, func(a, b *pb.LeaseStatus) int { return cmp.Compare(a.ID, b.ID) })
	}
	return result{resp: m}
}

// alignRemainingTTL sets b's remaining TTL to a's if both are
// LeaseTimeToLive answers at most 1 s apart, and says so for reports.
func alignRemainingTTL(a, b result) string {
	ta, okA := a.resp.(*pb.LeaseTimeToLiveResponse)
	tb, okB := b.resp.(*pb.LeaseTimeToLiveResponse)
	if !okA || !okB {
		return ""
	}
	if d := ta.TTL - tb.TTL; d >= -1 && d <= 1 {
		tb.TTL = ta.TTL
		return fmt.Sprintf("; remaining TTLs %d and %d are within 1 s, shown equal", ta.TTL, ta.TTL-d)
	}
	return ""
}

// leaseGen draws the lease test's sequence from a seed. Its view of the leases
// (which are live, which were revoked) comes from the reference side's
// responses, so the sequence is a function of the seed and etcd's behaviour.
type leaseGen struct {
	rnd       *rand.Rand
	live      []int64        // granted and not revoked, in grant order (reference IDs)
	gone      []int64        // revoked
	generated map[int64]bool // the IDs the reference generated
	forced    []leaseOp      // ops that must come next, in order
}

func newLeaseGen(seed int64) *leaseGen {
	return &leaseGen{rnd: rand.New(rand.NewPCG(uint64(seed), 0x6c65617365)), generated: map[int64]bool{}}
}

func (l *leaseGen) pct() int          { return l.rnd.IntN(100) }
func (l *leaseGen) chance(p int) bool { return l.rnd.IntN(1000) < p } // p per mille

// maxLive bounds the live leases; beyond it, grants become revokes.
const maxLive = 50

// next returns the op at index i. The sequence does not depend on its
// length.
func (l *leaseGen) next(int) leaseOp {
	if len(l.forced) > 0 {
		o := l.forced[0]
		l.forced = l.forced[1:]
		return o
	}
	switch p := l.rnd.IntN(1000); {
	case p < 80 && len(l.live) < maxLive:
		return l.grant(false)
	case p < 120 && len(l.live) < maxLive:
		return l.grant(true)
	case p < 170:
		return l.revoke()
	case p < 230:
		return l.timeToLive()
	case p < 250:
		return leaseOp{req: &pb.LeaseLeasesRequest{}}
	case p < 290:
		return l.keepAlive()
	case p < 640:
		return leaseOp{req: l.put(false)}
	case p < 710:
		return leaseOp{req: l.del()}
	case p < 940:
		return leaseOp{req: l.txn()}
	default:
		return leaseOp{req: l.rangeReq()}
	}
}

// observe updates the generator's view from the reference side's answer.
func (l *leaseGen) observe(o leaseOp, resp proto.Message, err error) {
	if err != nil {
		return
	}
	switch r := o.req.(type) {
	case *pb.LeaseGrantRequest:
		g := resp.(*pb.LeaseGrantResponse)
		l.live = append(l.live, g.ID)
		if r.ID == 0 {
			l.generated[g.ID] = true
		}
		if g.TTL < safeTTL {
			l.forced = append(l.forced,
				leaseOp{req: &pb.LeaseTimeToLiveRequest{ID: g.ID, Keys: true}, note: "granted below the minimum TTL"},
				leaseOp{req: &pb.LeaseRevokeRequest{ID: g.ID}, note: "before it expires"})
		}
	case *pb.LeaseRevokeRequest:
		if i := slices.Index(l.live, r.ID); i >= 0 {
			l.live = slices.Delete(l.live, i, i+1)
		}
		l.gone = append(l.gone, r.ID)
		l.forced = append(l.forced, leaseOp{
			req:  &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}},
			note: "every key, after a revoke"})
	}
}

func (l *leaseGen) pick(ids []int64) int64 { return ids[l.rnd.IntN(len(ids))] }

// someLease returns a lease ID to name in a request: mostly a live one, else
// a revoked one or one never granted.
func (l *leaseGen) someLease() (int64, string) {
	switch p := l.pct(); {
	case p < 80 && len(l.live) > 0:
		return l.pick(l.live), ""
	case p < 90 && len(l.gone) > 0:
		return l.pick(l.gone), "a revoked lease"
	default:
		return 5000 + l.rnd.Int64N(10), "a lease never granted"
	}
}

func (l *leaseGen) grant(generated bool) leaseOp {
	r := &pb.LeaseGrantRequest{}
	var notes []string
	if generated {
		notes = append(notes, "generated ID")
	} else {
		switch p := l.pct(); {
		case p < 70:
			r.ID = 1 + l.rnd.Int64N(40)
		case p < 82 && len(l.live) > 0:
			r.ID = l.pick(l.live)
			notes = append(notes, "an ID in use")
		case p < 90:
			r.ID = -1 - l.rnd.Int64N(5)
			notes = append(notes, "a negative ID")
		default:
			r.ID = 1<<62 + l.rnd.Int64N(5)
			notes = append(notes, "a huge ID")
		}
	}
	switch p := l.pct(); {
	case p < 72:
		r.TTL = []int64{600, 3600, 86400}[l.rnd.IntN(3)]
	case p < 80:
		r.TTL = maxLeaseTTL
		notes = append(notes, "the largest TTL")
	case p < 88:
		r.TTL = []int64{maxLeaseTTL + 1, 1 << 40, math.MaxInt64}[l.rnd.IntN(3)]
		notes = append(notes, "too large a TTL")
	default:
		r.TTL = []int64{1, 0, -5}[l.rnd.IntN(3)]
		notes = append(notes, "a TTL below the minimum")
	}
	return leaseOp{req: r, note: strings.Join(notes, ", ")}
}

func (l *leaseGen) revoke() leaseOp {
	id, note := l.someLease()
	return leaseOp{req: &pb.LeaseRevokeRequest{ID: id}, note: note}
}

func (l *leaseGen) timeToLive() leaseOp {
	id, note := l.someLease()
	r := &pb.LeaseTimeToLiveRequest{ID: id, Keys: l.pct() < 50}
	if r.Keys {
		note = strings.TrimPrefix(note+", with keys", ", ")
	}
	return leaseOp{req: r, note: note}
}

func (l *leaseGen) keepAlive() leaseOp {
	id, note := l.someLease()
	return leaseOp{req: &pb.LeaseKeepAliveRequest{ID: id}, note: note}
}

func (l *leaseGen) key() []byte { return []byte(leaseKeys[l.rnd.IntN(len(leaseKeys))]) }

// put draws a put that attaches its key to a lease, detaches it, keeps its
// lease (ignore_lease), moves the key keeping its value (ignore_value), or,
// more rarely inside txns, names a lease that is not there or both a lease
// and ignore_lease.
func (l *leaseGen) put(inTxn bool) *pb.PutRequest {
	r := &pb.PutRequest{Key: l.key(), Value: fmt.Appendf(nil, "v%d", l.rnd.IntN(1000)), PrevKv: l.chance(300)}
	bad := 14 // percent of puts that must fail
	if inTxn {
		bad = 3
	}
	switch p := l.pct(); {
	case p < bad:
		switch l.rnd.IntN(3) {
		case 0:
			r.Lease = 5000 + l.rnd.Int64N(10)
		case 1:
			r.Lease, _ = l.someLease()
		default:
			r.IgnoreLease, r.Lease = true, 1+l.rnd.Int64N(40)
		}
	case p < 60:
		if len(l.live) > 0 {
			r.Lease = l.pick(l.live)
		}
	case p < 75:
		// lease 0: detaches the key
	case p < 90:
		r.IgnoreLease = true
	default:
		r.IgnoreValue, r.Value = true, nil
		if len(l.live) > 0 {
			r.Lease = l.pick(l.live)
		}
	}
	return r
}

func (l *leaseGen) del() *pb.DeleteRangeRequest {
	r := &pb.DeleteRangeRequest{Key: l.key(), PrevKv: l.chance(400)}
	switch p := l.pct(); {
	case p < 70:
	case p < 95:
		r.Key = r.Key[:2]
		r.RangeEnd = []byte(clientv3.GetPrefixRangeEnd(string(r.Key)))
	default:
		r.Key, r.RangeEnd = []byte{0}, []byte{0}
	}
	return r
}

func (l *leaseGen) rangeReq() *pb.RangeRequest {
	r := &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}
	if l.pct() < 40 {
		r.Key, r.RangeEnd = []byte("l/"), []byte("l0")
	}
	return r
}

// compare draws a txn compare, mostly on a key's lease.
func (l *leaseGen) compare() *pb.Compare {
	key := l.key()
	c := &pb.Compare{Key: key, Result: pb.Compare_CompareResult(l.rnd.IntN(4))}
	if l.pct() < 15 {
		c.Key = key[:1]
		c.RangeEnd = []byte(clientv3.GetPrefixRangeEnd(string(c.Key)))
	}
	if l.pct() < 25 {
		c.Target = pb.Compare_VERSION
		c.TargetUnion = &pb.Compare_Version{Version: l.rnd.Int64N(4)}
		return c
	}
	c.Target = pb.Compare_LEASE
	var id int64
	if l.pct() < 70 {
		id, _ = l.someLease()
	}
	// The sides generate different IDs, so LESS and GREATER are only
	// decided alike where the order of the IDs is the same on both sides:
	// between IDs below 1<<62 that were not generated, and between those
	// and the generated ones (which are larger: etcd's have the member ID in
	// their high bits). Generated and huge client-chosen IDs are compared
	// for equality only.
	if (c.Result == pb.Compare_LESS || c.Result == pb.Compare_GREATER) && (l.generated[id] || id >= 1<<62) {
		id = 1 + l.rnd.Int64N(40)
	}
	c.TargetUnion = &pb.Compare_Lease{Lease: id}
	return c
}

// txn draws a txn with lease compares and branches of puts (with leases),
// deletes and ranges, each on a key of its own so that no branch has
// duplicate keys.
func (l *leaseGen) txn() *pb.TxnRequest {
	r := &pb.TxnRequest{}
	for range l.rnd.IntN(3) {
		r.Compare = append(r.Compare, l.compare())
	}
	branch := func() []*pb.RequestOp {
		var ops []*pb.RequestOp
		used := map[string]bool{}
		for range l.rnd.IntN(4) {
			switch p := l.pct(); {
			case p < 60:
				put := l.put(true)
				if used[string(put.Key)] {
					continue
				}
				used[string(put.Key)] = true
				ops = append(ops, &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: put}})
			case p < 80:
				key := l.key()
				if used[string(key)] {
					continue
				}
				used[string(key)] = true
				ops = append(ops, &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{
					RequestDeleteRange: &pb.DeleteRangeRequest{Key: key, PrevKv: l.chance(500)}}})
			default:
				ops = append(ops, &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: l.rangeReq()}})
			}
		}
		return ops
	}
	r.Success = branch()
	r.Failure = branch()
	return r
}
