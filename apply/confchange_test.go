package apply

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/keeldb/keel/membership"
)

// confChange applies one conf change in its own batch and returns the
// result; cc is left as Raft must see it.
func (e *applyEnv) confChange(cc *raftpb.ConfChange) *Result {
	e.t.Helper()
	b := e.db.NewIndexedBatch()
	defer b.Close()
	res, err := e.a.ApplyConfChange(b, cc)
	if err != nil {
		e.t.Fatalf("apply conf change %v: %v", cc, err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		e.t.Fatal(err)
	}
	return res
}

func newConfChange(t *testing.T, typ raftpb.ConfChangeType, id uint64, ctx any) *raftpb.ConfChange {
	t.Helper()
	cc := &raftpb.ConfChange{Type: typ.Enum(), NodeId: proto.Uint64(id)}
	if ctx != nil {
		data, err := json.Marshal(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cc.Context = data
	}
	return cc
}

func members(t *testing.T, res *Result) []*pb.Member {
	t.Helper()
	if res.Err != nil {
		t.Fatalf("conf change failed: %v", res.Err)
	}
	return res.Resp.(*pb.MemberListResponse).Members
}

func TestConfChangesChangeTheMembership(t *testing.T) {
	e := newApplyEnv(t)
	add, addLearner := raftpb.ConfChangeType_ConfChangeAddNode, raftpb.ConfChangeType_ConfChangeAddLearnerNode
	ms := members(t, e.confChange(newConfChange(t, add, 1, &membership.Member{ID: 1, Name: "one", PeerURLs: []string{"http://a:1"}})))
	if len(ms) != 1 || ms[0].ID != 1 || ms[0].Name != "one" || ms[0].IsLearner {
		t.Fatalf("after adding 1: %v", ms)
	}
	ms = members(t, e.confChange(newConfChange(t, addLearner, 2, &membership.Member{ID: 2, PeerURLs: []string{"http://b:1"}, IsLearner: true})))
	if len(ms) != 2 || !ms[1].IsLearner {
		t.Fatalf("after adding learner 2: %v", ms)
	}
	ms = members(t, e.confChange(newConfChange(t, add, 2, &membership.ConfChangeContext{Member: membership.Member{ID: 2}, IsPromote: true})))
	if ms[1].IsLearner {
		t.Fatalf("after promoting 2: %v", ms)
	}
	ms = members(t, e.confChange(newConfChange(t, raftpb.ConfChangeType_ConfChangeUpdateNode, 2, &membership.Member{ID: 2, PeerURLs: []string{"http://b:2"}})))
	if got := ms[1].PeerURLs; len(got) != 1 || got[0] != "http://b:2" {
		t.Fatalf("after updating 2: %v", ms)
	}
	cc := newConfChange(t, raftpb.ConfChangeType_ConfChangeRemoveNode, 2, nil)
	ms = members(t, e.confChange(cc))
	if len(ms) != 1 || cc.GetNodeId() != 2 {
		t.Fatalf("after removing 2: %v (node id %d)", ms, cc.GetNodeId())
	}
	if !e.a.cluster.IsRemoved(2) {
		t.Error("2 is not recorded as removed")
	}
}

// An invalid conf change reaches Raft with node ID None, so that Raft
// ignores it, and its proposer gets etcd's error.
func TestInvalidConfChangeIsANoOpWithEtcdsError(t *testing.T) {
	e := newApplyEnv(t)
	add := raftpb.ConfChangeType_ConfChangeAddNode
	members(t, e.confChange(newConfChange(t, add, 1, &membership.Member{ID: 1, PeerURLs: []string{"http://a:1"}})))
	members(t, e.confChange(newConfChange(t, add, 2, &membership.Member{ID: 2, PeerURLs: []string{"http://b:1"}})))
	members(t, e.confChange(newConfChange(t, raftpb.ConfChangeType_ConfChangeRemoveNode, 2, nil)))
	for _, tc := range []struct {
		name string
		cc   *raftpb.ConfChange
		want error
	}{
		{"existing ID", newConfChange(t, add, 1, &membership.Member{ID: 1, PeerURLs: []string{"http://z:1"}}), rpctypes.ErrGRPCMemberExist},
		{"removed ID", newConfChange(t, add, 2, &membership.Member{ID: 2, PeerURLs: []string{"http://z:1"}}), rpctypes.ErrGRPCMemberNotFound},
		{"peer URL taken", newConfChange(t, add, 3, &membership.Member{ID: 3, PeerURLs: []string{"http://a:1"}}), rpctypes.ErrGRPCPeerURLExist},
		{"remove unknown", newConfChange(t, raftpb.ConfChangeType_ConfChangeRemoveNode, 9, nil), rpctypes.ErrGRPCMemberNotFound},
		{"update unknown", newConfChange(t, raftpb.ConfChangeType_ConfChangeUpdateNode, 9, &membership.Member{ID: 9}), rpctypes.ErrGRPCMemberNotFound},
		{"promote voter", newConfChange(t, add, 1, &membership.ConfChangeContext{Member: membership.Member{ID: 1}, IsPromote: true}), rpctypes.ErrGRPCMemberNotLearner},
	} {
		res := e.confChange(tc.cc)
		if !errors.Is(res.Err, tc.want) {
			t.Errorf("%s: err %v, want %v", tc.name, res.Err, tc.want)
		}
		if tc.cc.GetNodeId() != raft.None {
			t.Errorf("%s: node ID %x left for Raft, want None", tc.name, tc.cc.GetNodeId())
		}
	}
	if n := len(e.a.cluster.Members()); n != 1 {
		t.Errorf("%d members after refused changes, want 1", n)
	}
}
