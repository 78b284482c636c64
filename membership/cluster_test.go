package membership

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// The IDs below are what etcd 3.7.3 reported (etcdctl member list -w json)
// for a cluster started with --initial-cluster-token keel-id-test and
// --initial-cluster e1=http://127.0.0.1:41380,e2=http://127.0.0.1:41381,e3=http://127.0.0.1:41382,
// and for a learner added to it with `member add l1 --learner
// --peer-urls=http://127.0.0.1:41390` at Unix time 1795249359.
func TestMemberAndClusterIDsMatchEtcd(t *testing.T) {
	const token = "keel-id-test"
	want := map[string]uint64{
		"http://127.0.0.1:41380": 0xe40a1ce43238abef,
		"http://127.0.0.1:41381": 0xc880bb61ddd98a3e,
		"http://127.0.0.1:41382": 0x3b97aed62dc0ee2f,
	}
	var members []*Member
	for u, id := range want {
		m := NewMember("x", []string{u}, token, nil)
		if m.ID != id {
			t.Errorf("member ID for %s = %x, want %x", u, m.ID, id)
		}
		members = append(members, m)
	}
	if got := ClusterID(members); got != 0x0fb91b5fb05d3d5d {
		t.Errorf("cluster ID = %x, want fb91b5fb05d3d5d", got)
	}
	added := time.Unix(1795249359, 0)
	if got := MemberID([]string{"http://127.0.0.1:41390"}, "", &added); got != 0x578ecf473568885 {
		t.Errorf("runtime member ID = %x, want 578ecf473568885", got)
	}
}

func TestMemberIDIgnoresURLOrder(t *testing.T) {
	a := MemberID([]string{"http://10.0.0.1:2380", "http://10.0.0.2:2380"}, "tok", nil)
	b := MemberID([]string{"http://10.0.0.2:2380", "http://10.0.0.1:2380"}, "tok", nil)
	if a != b {
		t.Errorf("IDs differ with URL order: %x, %x", a, b)
	}
	if c := MemberID([]string{"http://10.0.0.1:2380", "http://10.0.0.2:2380"}, "other", nil); c == a {
		t.Error("a different token gives the same ID")
	}
}

func TestParsePeerURLs(t *testing.T) {
	got, err := ParsePeerURLs([]string{" http://10.0.0.2:2380", "http://10.0.0.1:2380"})
	if err != nil || !slices.Equal(got, []string{"http://10.0.0.1:2380", "http://10.0.0.2:2380"}) {
		t.Errorf("got %q, %v", got, err)
	}
	for _, bad := range [][]string{nil, {"10.0.0.1:2380"}, {"ftp://10.0.0.1:2380"}, {"http://10.0.0.1"}, {"http://10.0.0.1:2380/x"}} {
		if _, err := ParsePeerURLs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

func newTestCluster(t *testing.T) (*pebble.DB, *Cluster) {
	t.Helper()
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem(), Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c, err := Load(db, 7)
	if err != nil {
		t.Fatal(err)
	}
	return db, c
}

// commit runs f on a batch and commits it.
func commit(t *testing.T, db *pebble.DB, f func(b *pebble.Batch) error) {
	t.Helper()
	b := db.NewBatch()
	defer b.Close()
	if err := f(b); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

func confChange(t *testing.T, typ raftpb.ConfChangeType, id uint64, ctx any) *raftpb.ConfChange {
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

func TestValidateConfChangeRefusesWhatEtcdRefuses(t *testing.T) {
	db, c := newTestCluster(t)
	commit(t, db, func(b *pebble.Batch) error {
		if err := c.Add(b, &Member{ID: 1, Name: "a", PeerURLs: []string{"http://a:1"}}); err != nil {
			return err
		}
		if err := c.Add(b, &Member{ID: 2, PeerURLs: []string{"http://b:1"}, IsLearner: true}); err != nil {
			return err
		}
		if err := c.Add(b, &Member{ID: 3, PeerURLs: []string{"http://c:1"}}); err != nil {
			return err
		}
		return c.Remove(b, 3)
	})
	add, addLearner := raftpb.ConfChangeType_ConfChangeAddNode, raftpb.ConfChangeType_ConfChangeAddLearnerNode
	remove, update := raftpb.ConfChangeType_ConfChangeRemoveNode, raftpb.ConfChangeType_ConfChangeUpdateNode
	for _, tc := range []struct {
		name string
		cc   *raftpb.ConfChange
		want error
	}{
		{"add new", confChange(t, add, 4, &Member{ID: 4, PeerURLs: []string{"http://d:1"}}), nil},
		{"add existing ID", confChange(t, add, 1, &Member{ID: 1, PeerURLs: []string{"http://d:1"}}), ErrIDExists},
		{"add removed ID", confChange(t, add, 3, &Member{ID: 3, PeerURLs: []string{"http://d:1"}}), ErrIDRemoved},
		{"add taken peer URL", confChange(t, add, 4, &Member{ID: 4, PeerURLs: []string{"http://d:1", "http://a:1"}}), ErrPeerURLExists},
		{"add second learner", confChange(t, addLearner, 4, &Member{ID: 4, PeerURLs: []string{"http://d:1"}, IsLearner: true}), ErrTooManyLearners},
		{"context names another member", confChange(t, add, 4, &Member{ID: 5, PeerURLs: []string{"http://d:1"}}), ErrBadConfChange},
		{"context is not JSON", &raftpb.ConfChange{Type: add.Enum(), NodeId: proto.Uint64(4), Context: []byte("x")}, ErrBadConfChange},
		{"promote learner", confChange(t, add, 2, &ConfChangeContext{Member: Member{ID: 2}, IsPromote: true}), nil},
		{"promote voter", confChange(t, add, 1, &ConfChangeContext{Member: Member{ID: 1}, IsPromote: true}), ErrMemberNotLearner},
		{"promote unknown", confChange(t, add, 9, &ConfChangeContext{Member: Member{ID: 9}, IsPromote: true}), ErrIDNotFound},
		{"remove member", confChange(t, remove, 2, nil), nil},
		{"remove unknown", confChange(t, remove, 9, nil), ErrIDNotFound},
		{"remove removed", confChange(t, remove, 3, nil), ErrIDRemoved},
		{"update own URLs", confChange(t, update, 1, &Member{ID: 1, PeerURLs: []string{"http://a:1", "http://a:2"}}), nil},
		{"update to taken URL", confChange(t, update, 1, &Member{ID: 1, PeerURLs: []string{"http://b:1"}}), ErrPeerURLExists},
		{"update unknown", confChange(t, update, 9, &Member{ID: 9, PeerURLs: []string{"http://z:1"}}), ErrIDNotFound},
	} {
		if err := c.ValidateConfChange(tc.cc); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestRemovedMembersAndRefusedChangesSurviveReload(t *testing.T) {
	db, c := newTestCluster(t)
	commit(t, db, func(b *pebble.Batch) error {
		for id := uint64(1); id <= 3; id++ {
			if err := c.Add(b, &Member{ID: id, PeerURLs: []string{"http://m:" + string(rune('0'+id))}, IsLearner: id == 3}); err != nil {
				return err
			}
		}
		if err := c.Remove(b, 2); err != nil {
			return err
		}
		if err := c.Promote(b, 3); err != nil {
			return err
		}
		if err := c.UpdatePeerURLs(b, 1, []string{"http://n:1"}); err != nil {
			return err
		}
		if err := c.MarkRefused(b, 42); err != nil {
			return err
		}
		return c.SetAttributes(b, 1, "one", []string{"http://n:2379"})
	})
	check := func(c *Cluster) {
		t.Helper()
		if !c.IsRemoved(2) || c.IsRemoved(1) || c.Member(2) != nil {
			t.Errorf("removed: IsRemoved(2)=%v IsRemoved(1)=%v Member(2)=%v", c.IsRemoved(2), c.IsRemoved(1), c.Member(2))
		}
		if !c.IsRefused(42) || c.IsRefused(41) {
			t.Errorf("IsRefused(42)=%v IsRefused(41)=%v, want true, false", c.IsRefused(42), c.IsRefused(41))
		}
		if ids := c.RemovedIDs(); !slices.Equal(ids, []uint64{2}) {
			t.Errorf("RemovedIDs = %v, want [2]", ids)
		}
		m1, m3 := c.Member(1), c.Member(3)
		if m1 == nil || m1.Name != "one" || !slices.Equal(m1.PeerURLs, []string{"http://n:1"}) || !slices.Equal(m1.ClientURLs, []string{"http://n:2379"}) {
			t.Errorf("member 1 = %+v", m1)
		}
		if m3 == nil || m3.IsLearner {
			t.Errorf("member 3 = %+v, want a promoted voter", m3)
		}
		if got := len(c.Members()); got != 2 {
			t.Errorf("%d members, want 2", got)
		}
	}
	check(c)
	loaded, err := Load(db, 7)
	if err != nil {
		t.Fatal(err)
	}
	check(loaded)

	// Reload replaces what is in memory by what the database holds, e.g.
	// after a snapshot was installed under the cluster.
	other, c2 := newTestCluster(t)
	commit(t, other, func(b *pebble.Batch) error { return c2.Add(b, &Member{ID: 9, PeerURLs: []string{"http://z:1"}}) })
	if err := c2.Reload(db); err != nil {
		t.Fatal(err)
	}
	check(c2)
	if c2.Member(9) != nil {
		t.Error("member 9 survived a reload from a database without it")
	}
}

func TestAttributesOfRemovedMemberAreIgnored(t *testing.T) {
	db, c := newTestCluster(t)
	commit(t, db, func(b *pebble.Batch) error {
		if err := c.Add(b, &Member{ID: 1, PeerURLs: []string{"http://a:1"}}); err != nil {
			return err
		}
		return c.Remove(b, 1)
	})
	commit(t, db, func(b *pebble.Batch) error { return c.SetAttributes(b, 1, "late", nil) })
	if c.Member(1) != nil {
		t.Error("a removed member came back by publishing its attributes")
	}
	b := db.NewBatch()
	defer b.Close()
	if err := c.SetAttributes(b, 42, "x", nil); err == nil {
		t.Error("attributes of an unknown member were accepted")
	}
}

func TestStrictReconfigurationRules(t *testing.T) {
	// Each case: voters as started flags, then the verdicts.
	for _, tc := range []struct {
		name            string
		started         []bool // voters 1..n
		addVoter        bool
		removeVoter1    bool // remove voter 1
		removeUnstarted bool // remove the first voter that has not started
		promote         bool
	}{
		{"one started", []bool{true}, true, false, false, true},
		{"two started", []bool{true, true}, true, true, false, true},
		{"one of two started", []bool{true, false}, false, false, true, true},
		{"two of three started", []bool{true, true, false}, false, false, true, true},
		{"one of three started", []bool{true, false, false}, false, false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, c := newTestCluster(t)
			unstarted := uint64(0)
			commit(t, db, func(b *pebble.Batch) error {
				for i, s := range tc.started {
					id := uint64(i + 1)
					m := &Member{ID: id, PeerURLs: []string{"http://m:" + string(rune('1'+i))}}
					if s {
						m.Name = "m"
					} else if unstarted == 0 {
						unstarted = id
					}
					if err := c.Add(b, m); err != nil {
						return err
					}
				}
				// A learner never counts.
				return c.Add(b, &Member{ID: 100, PeerURLs: []string{"http://l:1"}, IsLearner: true})
			})
			if got := c.ReadyToAddVoter(); got != tc.addVoter {
				t.Errorf("ReadyToAddVoter = %v, want %v", got, tc.addVoter)
			}
			if got := c.ReadyToRemoveVoter(1); got != tc.removeVoter1 {
				t.Errorf("ReadyToRemoveVoter(1) = %v, want %v", got, tc.removeVoter1)
			}
			if unstarted != 0 {
				if got := c.ReadyToRemoveVoter(unstarted); got != tc.removeUnstarted {
					t.Errorf("ReadyToRemoveVoter(unstarted %d) = %v, want %v", unstarted, got, tc.removeUnstarted)
				}
			}
			if got := c.ReadyToPromote(); got != tc.promote {
				t.Errorf("ReadyToPromote = %v, want %v", got, tc.promote)
			}
		})
	}
}

func TestConfChangeContextEncodesLikeEtcd(t *testing.T) {
	data, err := json.Marshal(&ConfChangeContext{Member: Member{ID: 5}, IsPromote: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(data), `{"id":5,"peerURLs":null,"isPromote":true}`; got != want {
		t.Errorf("promote context %s, want %s", got, want)
	}
	// A plain member, as etcd proposes when adding one, decodes as a
	// context that is not a promotion.
	cc := &raftpb.ConfChange{NodeId: proto.Uint64(6), Context: []byte(`{"id":6,"peerURLs":["http://a:1"],"isLearner":true}`)}
	ctx, err := DecodeConfChangeContext(cc)
	if err != nil || ctx.IsPromote || !ctx.IsLearner || ctx.ID != 6 {
		t.Errorf("decoded %+v, %v", ctx, err)
	}
}
