package compat

import (
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// These tests check the harness's own helpers; they start no server.

func nestedTxn(member uint64, innerRev int64) *pb.TxnResponse {
	return &pb.TxnResponse{
		Header:    &pb.ResponseHeader{ClusterId: member + 1, MemberId: member, Revision: 7, RaftTerm: 2},
		Succeeded: true,
		Responses: []*pb.ResponseOp{{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: &pb.TxnResponse{
			Header: &pb.ResponseHeader{ClusterId: member, MemberId: member, Revision: innerRev},
			Responses: []*pb.ResponseOp{{Response: &pb.ResponseOp_ResponsePut{ResponsePut: &pb.PutResponse{
				Header: &pb.ResponseHeader{MemberId: member, Revision: innerRev},
			}}}},
		}}}},
	}
}

func TestResultIgnoresMemberAndClusterIDsAtEveryDepth(t *testing.T) {
	a, b := newResult(nestedTxn(1, 7), nil), newResult(nestedTxn(2, 7), nil)
	if !a.equal(b) {
		t.Fatalf("responses that differ only in member and cluster ids compare unequal:\n%s", diff(a, b))
	}
}

func TestResultComparesNestedRevisions(t *testing.T) {
	a, b := newResult(nestedTxn(1, 7), nil), newResult(nestedTxn(1, 6), nil)
	if a.equal(b) {
		t.Fatal("responses with different nested revisions compare equal")
	}
	if d := diff(a, b); !strings.Contains(d, "revision") {
		t.Fatalf("diff does not name the revision:\n%s", d)
	}
}

func TestResultLeavesTheOriginalResponseAlone(t *testing.T) {
	r := nestedTxn(3, 7)
	newResult(r, nil)
	if r.Header.MemberId != 3 || r.Responses[0].GetResponseTxn().Header.MemberId != 3 {
		t.Fatal("newResult changed the response it was given")
	}
}

func TestResultComparesErrorsByCodeAndMessage(t *testing.T) {
	compacted := newResult(nil, rpctypes.ErrGRPCCompacted)
	same := newResult(nil, status.Error(codes.OutOfRange, "etcdserver: mvcc: required revision has been compacted"))
	otherCode := newResult(nil, status.Error(codes.InvalidArgument, "etcdserver: mvcc: required revision has been compacted"))
	otherMsg := newResult(nil, status.Error(codes.OutOfRange, "etcdserver: mvcc: required revision is a future revision"))
	ok := newResult(&pb.RangeResponse{Header: &pb.ResponseHeader{}}, nil)
	if !compacted.equal(same) {
		t.Errorf("same code and message compare unequal: %v vs %v", compacted, same)
	}
	for _, o := range []result{otherCode, otherMsg, ok} {
		if compacted.equal(o) || o.equal(compacted) {
			t.Errorf("%v compares equal to %v", compacted, o)
		}
	}
}

func TestShortenCutsLongBytes(t *testing.T) {
	m := &pb.PutRequest{Key: []byte("k"), Value: []byte(strings.Repeat("x", 1000))}
	s := formatMsg(m)
	if !strings.Contains(s, "(1000 bytes)") || len(s) > 200 {
		t.Fatalf("long value not shortened: %s", s)
	}
	if len(m.Value) != 1000 {
		t.Fatal("shorten changed its argument")
	}
}

func kv(key string, version int64) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{Key: []byte(key), Version: version}
}

func TestSameUpToTies(t *testing.T) {
	byVersion := op{rng: &pb.RangeRequest{Key: []byte("a"), SortTarget: pb.RangeRequest_VERSION, SortOrder: pb.RangeRequest_ASCEND}}
	res := func(kvs ...*mvccpb.KeyValue) result {
		return newResult(&pb.RangeResponse{Kvs: kvs, Count: int64(len(kvs))}, nil)
	}
	if !sameUpToTies(byVersion, res(kv("a", 1), kv("b", 1), kv("c", 2)), res(kv("b", 1), kv("a", 1), kv("c", 2))) {
		t.Error("tie-only difference not recognised")
	}
	if sameUpToTies(byVersion, res(kv("a", 1), kv("c", 2)), res(kv("c", 2), kv("a", 1))) {
		t.Error("a wrong sort order taken for a tie")
	}
	byKey := op{rng: &pb.RangeRequest{Key: []byte("a")}}
	if sameUpToTies(byKey, res(kv("a", 1), kv("b", 1)), res(kv("b", 1), kv("a", 1))) {
		t.Error("an unsorted range cannot have ties")
	}
}

func TestGeneratorIsDeterministic(t *testing.T) {
	a, b := newGenerator(42), newGenerator(42)
	for i := range 3000 {
		x, y := a.next(i), b.next(i)
		if formatMsg(x.request()) != formatMsg(y.request()) {
			t.Fatalf("op %d differs between two generators of the same seed", i)
		}
	}
}

func TestMaskTable(t *testing.T) {
	ascii := "+----+--------+\n| ID |  NAME  |\n+----+--------+\n| 8e | compat |\n+----+--------+\n"
	box := "┌──────────────────┬────────┐\n│        ID        │  NAME  │\n├──────────────────┼────────┤\n│ 9ee625d16825185a │ compat │\n└──────────────────┴────────┘\n"
	want := "ID | NAME\n* | compat\n"
	for _, in := range []string{ascii, box} {
		if got := maskOutput(in); got != want {
			t.Errorf("maskOutput(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMaskJSON(t *testing.T) {
	in := `{"header":{"cluster_id":14841639068965178418,"member_id":10276657743932975437,"revision":5,"raft_term":2},"kvs":[{"key":"Zm9v","version":3}]}` + "\n" +
		`[{"Endpoint":"127.0.0.1:4321","Status":{"version":"3.7.3","raftIndex":9,"raftTerm":2}}]` + "\n"
	want := `{"header":{"cluster_id":"*","member_id":"*","raft_term":2,"revision":5},"kvs":[{"key":"Zm9v","version":3}]}` + "\n" +
		`[{"Endpoint":"*","Status":{"raftIndex":"*","raftTerm":2,"version":"*"}}]` + "\n"
	if got := maskOutput(in); got != want {
		t.Errorf("maskOutput:\n got %s\nwant %s", got, want)
	}
}

func TestMaskFields(t *testing.T) {
	in := "\"ClusterID\" : 123\n\"Revision\" : 5\n\"Version\" : 3\n\"Version\" : \"3.7.3\"\n\"PeerURL\" : \"http://127.0.0.1:2380\"\n"
	want := "\"ClusterID\" : *\n\"Revision\" : 5\n\"Version\" : 3\n\"Version\" : *\n\"PeerURL\" : *\n"
	if got := maskOutput(in); got != want {
		t.Errorf("maskOutput:\n got %q\nwant %q", got, want)
	}
}

func putEvent(key string, rev int64) *mvccpb.Event {
	return &mvccpb.Event{Type: mvccpb.Event_PUT, Kv: &mvccpb.KeyValue{Key: []byte(key), ModRevision: rev, CreateRevision: rev, Version: 1}}
}

func eventResponse(id, header int64, evs ...*mvccpb.Event) *pb.WatchResponse {
	return &pb.WatchResponse{Header: &pb.ResponseHeader{Revision: header}, WatchId: id, Events: evs}
}

func TestWatchConnAttributesResponsesInStreamOrder(t *testing.T) {
	c := &watchConn{active: map[int64]*watchLog{}, changed: make(chan struct{})}
	first, refused := &watchLog{}, &watchLog{}
	c.pending = []*watchLog{first, refused}

	c.recordLocked(&pb.WatchResponse{WatchId: 0, Created: true})
	c.recordLocked(eventResponse(0, 3, putEvent("a", 3)))
	c.recordLocked(&pb.WatchResponse{WatchId: -1, Created: true, Canceled: true, CancelReason: "mvcc: watcher range is empty"})
	c.recordLocked(&pb.WatchResponse{WatchId: 0, Canceled: true, CompactRevision: 9})
	if !first.compacted || first.acked || c.active[0] != first {
		t.Fatalf("a cancel for compaction must keep the watch id held until the client cancels: %+v", first)
	}
	c.recordLocked(&pb.WatchResponse{WatchId: 0, Canceled: true})
	if !first.acked || c.active[0] != nil {
		t.Fatalf("the cancel acknowledgement must free the watch id: %+v", first)
	}
	if len(first.items) != 4 || first.lastRev != 3 {
		t.Errorf("first watcher: %d items, last revision %d; want 4 items, revision 3", len(first.items), first.lastRev)
	}
	if !refused.failed || len(refused.items) != 1 {
		t.Errorf("refused watcher: %+v", refused)
	}
	c.recordLocked(eventResponse(0, 4, putEvent("a", 4)))
	c.recordLocked(&pb.WatchResponse{WatchId: 5, Created: true})
	if o := c.takeOrphans(); len(o) != 2 {
		t.Errorf("got %d orphans, want the event after the cancel and the unrequested created response", len(o))
	}
	for _, l := range []*watchLog{first, refused} {
		if len(l.problems) > 0 {
			t.Errorf("unexpected problems: %v", l.problems)
		}
	}
}

func TestWatchLogFindsBrokenResponseRules(t *testing.T) {
	for _, tc := range []struct {
		name      string
		responses []*pb.WatchResponse
		problem   string // "" if none
	}{
		{"two revisions in one response", []*pb.WatchResponse{eventResponse(0, 6, putEvent("a", 5), putEvent("b", 5), putEvent("a", 6))}, ""},
		{"header above the events", []*pb.WatchResponse{eventResponse(0, 9, putEvent("a", 5))}, ""},
		{"a revision split", []*pb.WatchResponse{eventResponse(0, 5, putEvent("a", 5)), eventResponse(0, 5, putEvent("b", 5))}, "split"},
		{"out of order", []*pb.WatchResponse{eventResponse(0, 6, putEvent("a", 6)), eventResponse(0, 6, putEvent("b", 5))}, "after one of revision 6"},
		{"header below the events", []*pb.WatchResponse{eventResponse(0, 4, putEvent("a", 5))}, "header revision 4"},
		{"compact revision on events", []*pb.WatchResponse{{Header: &pb.ResponseHeader{Revision: 5}, CompactRevision: 2, Events: []*mvccpb.Event{putEvent("a", 5)}}}, "compact_revision 2"},
	} {
		l := &watchLog{}
		for _, r := range tc.responses {
			l.addEvents(r)
		}
		switch {
		case tc.problem == "" && len(l.problems) > 0:
			t.Errorf("%s: unexpected problems %v", tc.name, l.problems)
		case tc.problem != "" && (len(l.problems) == 0 || !strings.Contains(l.problems[0], tc.problem)):
			t.Errorf("%s: problems %v, want one about %q", tc.name, l.problems, tc.problem)
		}
	}
}

func TestQuiesceTarget(t *testing.T) {
	noPut := []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NOPUT}
	noDelete := []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NODELETE}
	for _, tc := range []struct {
		req  *pb.WatchCreateRequest
		want int64
	}{
		{&pb.WatchCreateRequest{}, 11},
		{&pb.WatchCreateRequest{Filters: noPut}, 11},
		{&pb.WatchCreateRequest{Filters: noDelete}, 10},
		{&pb.WatchCreateRequest{Filters: append(noPut, noDelete...)}, 0},
		{&pb.WatchCreateRequest{StartRevision: 11}, 11},
		{&pb.WatchCreateRequest{StartRevision: 11, Filters: noDelete}, 0},
		{&pb.WatchCreateRequest{StartRevision: 12}, 0},
		{&pb.WatchCreateRequest{StartRevision: 3, Filters: noDelete}, 10},
	} {
		if got := quiesceTarget(tc.req, 10, 11); got != tc.want {
			t.Errorf("quiesceTarget(%v, 10, 11) = %d, want %d", tc.req, got, tc.want)
		}
	}
}

func TestWatchKindReadsRequestsAsEtcdDoes(t *testing.T) {
	for _, tc := range []struct {
		key, end string
		want     string
	}{
		{"", "", "single key"},
		{"a", "", "single key"},
		{"", "\x00", "every key"},
		{"\x00", "\x00", "every key"},
		{"a", "\x00", "from key"},
		{"a", "b", "prefix"},
		{"a", "a\x00", "single key as a range"},
		{"a", "c", "range"},
		{"b", "a", "empty or inverted range"},
		{"a", "a", "empty or inverted range"},
	} {
		r := &pb.WatchCreateRequest{Key: []byte(tc.key), RangeEnd: []byte(tc.end)}
		if got := watchKind(r); got != tc.want {
			t.Errorf("watchKind(%q, %q) = %q, want %q", tc.key, tc.end, got, tc.want)
		}
	}
}

func TestMapLeaseIDsEverywhere(t *testing.T) {
	ids := map[int64]int64{100: 200}
	txn := &pb.TxnRequest{
		Compare: []*pb.Compare{{Target: pb.Compare_LEASE, TargetUnion: &pb.Compare_Lease{Lease: 100}}},
		Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{
			Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("k"), Lease: 100}}}},
		}}}},
		Failure: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("k"), Lease: 7}}}},
	}
	mapLeaseIDs(txn.ProtoReflect(), ids)
	if got := txn.Compare[0].GetLease(); got != 200 {
		t.Errorf("compare lease = %d, want 200", got)
	}
	if got := txn.Success[0].GetRequestTxn().Success[0].GetRequestPut().Lease; got != 200 {
		t.Errorf("nested put lease = %d, want 200", got)
	}
	if got := txn.Failure[0].GetRequestPut().Lease; got != 7 {
		t.Errorf("a lease not in the map changed to %d", got)
	}

	wr := &pb.WatchResponse{Events: []*mvccpb.Event{{Kv: &mvccpb.KeyValue{Lease: 100}, PrevKv: &mvccpb.KeyValue{Lease: 100}}}}
	mapLeaseIDs(wr.ProtoReflect(), ids)
	if wr.Events[0].Kv.Lease != 200 || wr.Events[0].PrevKv.Lease != 200 {
		t.Errorf("event leases not mapped: %v", wr)
	}
	for _, m := range []proto.Message{
		&pb.LeaseGrantResponse{ID: 100}, &pb.LeaseTimeToLiveResponse{ID: 100},
		&pb.LeaseKeepAliveResponse{ID: 100}, &pb.LeaseRevokeRequest{ID: 100},
		&pb.LeaseLeasesResponse{Leases: []*pb.LeaseStatus{{ID: 100}}},
	} {
		mapLeaseIDs(m.ProtoReflect(), ids)
		if strings.Contains(formatMsg(m), "100") {
			t.Errorf("%T not mapped: %s", m, formatMsg(m))
		}
	}
}

func TestLeaseResultComparesUpToOrderAndRemainingTTL(t *testing.T) {
	ttl := func(remaining int64, keys ...string) result {
		r := &pb.LeaseTimeToLiveResponse{Header: &pb.ResponseHeader{Revision: 4}, ID: 1, TTL: remaining, GrantedTTL: 600}
		for _, k := range keys {
			r.Keys = append(r.Keys, []byte(k))
		}
		return leaseResult(newResult(r, nil), nil)
	}
	a, b := ttl(599, "b", "a"), ttl(598, "a", "b")
	alignRemainingTTL(a, b)
	if !a.equal(b) {
		t.Errorf("TTLs 1 s apart with keys in another order compare unequal:\n%s", diff(a, b))
	}
	a, b = ttl(599, "a"), ttl(597, "a")
	alignRemainingTTL(a, b)
	if a.equal(b) {
		t.Error("TTLs 2 s apart compare equal")
	}

	leases := func(ids ...int64) result {
		r := &pb.LeaseLeasesResponse{}
		for _, id := range ids {
			r.Leases = append(r.Leases, &pb.LeaseStatus{ID: id})
		}
		return leaseResult(newResult(r, nil), map[int64]int64{50: 5})
	}
	if a, b := leases(3, 1, 50), leases(1, 5, 3); !a.equal(b) {
		t.Errorf("the same leases in another order compare unequal:\n%s", diff(a, b))
	}
}

func TestLeaseGeneratorIsDeterministic(t *testing.T) {
	a, b := newLeaseGen(42), newLeaseGen(42)
	// Both see the same answers: grants succeed with the requested ID (or a
	// made-up generated one) and TTL, everything else succeeds.
	answer := func(i int, o leaseOp) proto.Message {
		switch r := o.req.(type) {
		case *pb.LeaseGrantRequest:
			id := r.ID
			if id == 0 {
				id = 1<<50 + int64(i)
			}
			return &pb.LeaseGrantResponse{ID: id, TTL: max(r.TTL, 2)}
		default:
			return &pb.PutResponse{}
		}
	}
	for i := range 3000 {
		x, y := a.next(i), b.next(i)
		if x.kind() != y.kind() || x.note != y.note || formatMsg(x.req) != formatMsg(y.req) {
			t.Fatalf("op %d differs between two generators of the same seed", i)
		}
		a.observe(x, answer(i, x), nil)
		b.observe(y, answer(i, y), nil)
	}
}
