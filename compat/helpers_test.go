package compat

import (
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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
