package member

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/keeldb/keel/mvcc"
)

func TestInitialCheckRefusesOnlyComparableMismatch(t *testing.T) {
	local := mvcc.KVHash{Hash: 7, Revision: 10, CompactRevision: 4}
	for _, c := range []struct {
		name  string
		peers []PeerHash
		want  string
	}{
		{"equal", []PeerHash{{ID: 2, Revision: 10, Hash: local}}, ""},
		{"other compaction", []PeerHash{{ID: 2, Revision: 10, Hash: mvcc.KVHash{Hash: 8, Revision: 10, CompactRevision: 5}}}, ""},
		{"mismatch", []PeerHash{
			{ID: 2, Revision: 10, Hash: local},
			{ID: 3, Revision: 10, Hash: mvcc.KVHash{Hash: 8, Revision: 10, CompactRevision: 4}},
		}, "1a found data inconsistency with peers"},
		{"no peers answered", nil, ""},
	} {
		err := initialCheckVerdict(zap.NewNop(), 0x1a, local, c.peers)
		if got := ""; err != nil {
			got = err.Error()
			if got != c.want {
				t.Errorf("%s: %q, want %q", c.name, got, c.want)
			}
		} else if c.want != "" {
			t.Errorf("%s: no error, want %q", c.name, c.want)
		}
	}
}

func TestPeriodicCheckBlamesTheMemberThatDiffers(t *testing.T) {
	h := mvcc.KVHash{Hash: 7, Revision: 10, CompactRevision: 4}
	same := func(id uint64) PeerHash { return PeerHash{ID: id, Revision: 10, Hash: h} }
	for _, c := range []struct {
		name          string
		before, after mvcc.KVHash
		rev           int64
		peers         []PeerHash
		want          uint64
		corrupt       bool
	}{
		{"all equal", h, h, 10, []PeerHash{same(2), same(3)}, 0, false},
		{"peer hash differs", h, h, 10, []PeerHash{same(2), {ID: 3, Revision: 10, Hash: mvcc.KVHash{Hash: 9, Revision: 10, CompactRevision: 4}}}, 3, true},
		{"peer behind, other compaction", h, h, 12, []PeerHash{{ID: 2, Revision: 9, Hash: mvcc.KVHash{Hash: 9, Revision: 10, CompactRevision: 3}}}, 0, false},
		{"peer ahead of leader", h, h, 10, []PeerHash{{ID: 2, Revision: 11, Hash: h}}, 2, true},
		{"peer compacted further", h, h, 10, []PeerHash{{ID: 2, Revision: 10, Hash: mvcc.KVHash{Hash: 9, Revision: 10, CompactRevision: 6}}}, 2, true},
		{"leader's own hash changed", h, mvcc.KVHash{Hash: 8, Revision: 10, CompactRevision: 4}, 10, []PeerHash{same(2)}, 1, true},
	} {
		id, corrupt := periodicCheckVerdict(zap.NewNop(), 1, c.before, c.after, c.rev, c.peers)
		if id != c.want || corrupt != c.corrupt {
			t.Errorf("%s: (%d, %v), want (%d, %v)", c.name, id, corrupt, c.want, c.corrupt)
		}
	}
}

// fakeHashSource is a member whose own hashes and whose peers' answers the
// test sets.
type fakeHashSource struct {
	local   []mvcc.KVHash // successive answers of localHash(0); the last repeats
	calls   int
	compact int64
	atRev   map[int64]mvcc.KVHash // localHash(rev) for rev > 0
	peers   func(rev int64) []peerHashResult
	asked   []int64 // revisions the peers were asked for
	readErr error
	raised  []uint64
}

func (f *fakeHashSource) localHash(_ context.Context, rev int64) (mvcc.KVHash, int64, error) {
	if rev > 0 {
		h, ok := f.atRev[rev]
		if !ok {
			return mvcc.KVHash{}, 0, mvcc.ErrCompacted
		}
		return h, rev, nil
	}
	h := f.local[min(f.calls, len(f.local)-1)]
	f.calls++
	return h, h.Revision, nil
}

func (f *fakeHashSource) compactRevision() int64 { return f.compact }

func (f *fakeHashSource) peerHashes(rev int64) []peerHashResult {
	f.asked = append(f.asked, rev)
	if f.peers == nil {
		return nil
	}
	return f.peers(rev)
}

func (f *fakeHashSource) linearizableRead(context.Context) error { return f.readErr }
func (f *fakeHashSource) raiseCorrupt(id uint64)                 { f.raised = append(f.raised, id) }

func answer(id uint64, rev int64, h mvcc.KVHash) peerHashResult {
	return peerHashResult{id: id, urls: []string{"http://peer"}, hash: &PeerHash{ID: id, Revision: rev, Hash: h}}
}

func newTestChecker(src hashSource) (*corruptionChecker, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.InfoLevel)
	return &corruptionChecker{lg: zap.New(core), self: 1, timeout: time.Second, src: src}, logs
}

func TestInitialCheckAsksPeersAtItsRevisionAndSkipsSilentOnes(t *testing.T) {
	h := mvcc.KVHash{Hash: 7, Revision: 10, CompactRevision: 4}
	bad := mvcc.KVHash{Hash: 8, Revision: 10, CompactRevision: 4}
	for _, c := range []struct {
		name    string
		peers   []peerHashResult
		wantErr string
		wantLog string
	}{
		{"all agree", []peerHashResult{answer(2, 10, h), answer(3, 12, h)}, "", "initial corruption checking passed; no corruption"},
		{"a peer is down", []peerHashResult{answer(2, 10, h), {id: 3, err: errors.New("connection refused")}}, "", "initial corruption checking passed; no corruption"},
		{"a peer is slow", []peerHashResult{{id: 2, err: rpctypes.ErrGRPCFutureRev}, answer(3, 10, h)}, "", "cannot fetch hash from slow remote peer"},
		{"the member is behind", []peerHashResult{{id: 2, err: rpctypes.ErrGRPCCompacted}}, "", "cannot fetch hash from remote peer; local member is behind"},
		{"a peer differs", []peerHashResult{answer(2, 10, h), answer(3, 10, bad)}, "1 found data inconsistency with peers", "found different hash values from remote peer"},
	} {
		src := &fakeHashSource{local: []mvcc.KVHash{h}, peers: func(int64) []peerHashResult { return c.peers }}
		chk, logs := newTestChecker(src)
		err := chk.initialCheck(context.Background())
		if got := ""; err != nil {
			got = err.Error()
			if got != c.wantErr {
				t.Errorf("%s: error %q, want %q", c.name, got, c.wantErr)
			}
		} else if c.wantErr != "" {
			t.Errorf("%s: no error, want %q", c.name, c.wantErr)
		}
		if !slices.Equal(src.asked, []int64{10}) {
			t.Errorf("%s: peers asked at %v, want at the local revision 10", c.name, src.asked)
		}
		if logs.FilterMessage(c.wantLog).Len() != 1 {
			t.Errorf("%s: no log %q in %v", c.name, c.wantLog, logs.All())
		}
		if len(src.raised) != 0 {
			t.Errorf("%s: the initial check raised alarms %v", c.name, src.raised)
		}
	}
}

func TestPeriodicCheckRaisesCorruptForTheFollowerThatDiffers(t *testing.T) {
	h := mvcc.KVHash{Hash: 7, Revision: 10, CompactRevision: 4}
	h2 := mvcc.KVHash{Hash: 9, Revision: 11, CompactRevision: 4} // a write since
	src := &fakeHashSource{local: []mvcc.KVHash{h, h2}, peers: func(rev int64) []peerHashResult {
		return []peerHashResult{
			{id: 2, err: errors.New("unreachable")},
			answer(3, 10, mvcc.KVHash{Hash: 8, Revision: 10, CompactRevision: 4}),
			answer(4, 11, mvcc.KVHash{Hash: 6, Revision: 10, CompactRevision: 4}),
		}
	}}
	chk, logs := newTestChecker(src)
	if err := chk.periodicCheck(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(src.asked, []int64{10}) || !slices.Equal(src.raised, []uint64{3}) {
		t.Fatalf("asked at %v and raised %v; want asked at 10, one alarm for member 3", src.asked, src.raised)
	}
	if logs.FilterMessage("same compact revision then hashes must match").Len() != 2 {
		t.Errorf("want both differing followers logged: %v", logs.All())
	}
	if l := logs.FilterMessage("finished peer corruption check").All(); len(l) != 1 || l[0].ContextMap()["number-of-peers-checked"] != int64(2) {
		t.Errorf("want the pass to report 2 peers checked: %v", l)
	}

	// A healthy cluster raises nothing; a failed linearizable read stops
	// the pass before it compares anything.
	src = &fakeHashSource{local: []mvcc.KVHash{h, h2}, peers: func(int64) []peerHashResult { return []peerHashResult{answer(2, 10, h), answer(3, 11, h)} }}
	chk, _ = newTestChecker(src)
	if err := chk.periodicCheck(context.Background()); err != nil || len(src.raised) != 0 {
		t.Fatalf("healthy cluster: err %v, raised %v", err, src.raised)
	}
	src.readErr = rpctypes.ErrGRPCTimeout
	if err := chk.periodicCheck(context.Background()); !errors.Is(err, rpctypes.ErrGRPCTimeout) || len(src.raised) != 0 {
		t.Fatalf("failed read: err %v, raised %v", err, src.raised)
	}
}

func TestCompactHashCheckBlamesTheMinority(t *testing.T) {
	at := func(hash uint32) mvcc.KVHash { return mvcc.KVHash{Hash: hash, Revision: 20, CompactRevision: 20} }
	for _, c := range []struct {
		name      string
		peers     []peerHashResult
		want      []uint64
		recorded  bool // the revision counts as checked
		checkedOK bool
	}{
		{"all equal", []peerHashResult{answer(2, 30, at(5)), answer(3, 30, at(5))}, nil, true, true},
		{"one follower differs", []peerHashResult{answer(2, 30, at(5)), answer(3, 30, at(6))}, []uint64{3}, false, true},
		{"the leader differs", []peerHashResult{answer(2, 30, at(6)), answer(3, 30, at(6))}, []uint64{1}, false, true},
		{"no quorum", []peerHashResult{answer(2, 30, at(6)), answer(3, 30, at(7))}, []uint64{0}, false, true},
		{"a follower not compacted yet", []peerHashResult{answer(2, 30, at(5)), answer(3, 30, mvcc.KVHash{Hash: 9, Revision: 20, CompactRevision: 10})}, nil, false, false},
		{"a follower silent", []peerHashResult{answer(2, 30, at(5)), {id: 3, err: rpctypes.ErrGRPCCompacted}}, nil, false, false},
	} {
		src := &fakeHashSource{compact: 20, atRev: map[int64]mvcc.KVHash{20: at(5)}, peers: func(int64) []peerHashResult { return c.peers }}
		chk, _ := newTestChecker(src)
		chk.compactHashCheck(context.Background())
		if !slices.Equal(src.raised, c.want) {
			t.Errorf("%s: raised %v, want %v", c.name, src.raised, c.want)
		}
		if got := chk.latestRevisionChecked == 20; got != c.recorded {
			t.Errorf("%s: revision recorded as checked: %v, want %v", c.name, got, c.recorded)
		}
		// A second pass asks again unless the revision was checked.
		chk.compactHashCheck(context.Background())
		if wantAsks := map[bool]int{true: 1, false: 2}[c.recorded]; len(src.asked) != wantAsks {
			t.Errorf("%s: peers asked %d times over two passes, want %d", c.name, len(src.asked), wantAsks)
		}
	}
}

func TestPeerHandlerHashKVAnswersAsEtcdsPeerEndpoint(t *testing.T) {
	lm := startLeaseMember(t, 0)
	for i := range 5 {
		if _, err := lm.m.Put(lm.ctx(), lm.root(), &pb.PutRequest{Key: []byte{'k', byte('0' + i)}, Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := lm.m.Compact(lm.ctx(), &pb.CompactionRequest{Revision: 3, Physical: true}); err != nil {
		t.Fatal(err)
	}
	h := lm.m.PeerHandler()
	cur := lm.m.Rev()
	local, _, err := lm.m.HashKV(lm.ctx(), 4)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := h.HashKV(lm.ctx(), 4)
	if err != nil || resp.Header.Revision != cur || resp.Hash != local.Hash || resp.HashRevision != 4 || resp.CompactRevision != 3 {
		t.Fatalf("HashKV(4): got %v, %v; want hash %d of revision 4 over compaction 3, header revision %d", resp, err, local.Hash, cur)
	}
	if _, err := h.HashKV(lm.ctx(), 2); !errors.Is(err, rpctypes.ErrGRPCCompacted) {
		t.Fatalf("HashKV of a compacted revision: %v, want ErrGRPCCompacted", err)
	}
	if _, err := h.HashKV(lm.ctx(), cur+1); !errors.Is(err, rpctypes.ErrGRPCFutureRev) {
		t.Fatalf("HashKV of a future revision: %v, want ErrGRPCFutureRev", err)
	}
}

func TestRaisedCorruptAlarmRefusesWritesButServesReads(t *testing.T) {
	lm := startLeaseMember(t, 0)
	if _, err := lm.m.Put(lm.ctx(), lm.root(), &pb.PutRequest{Key: []byte("k"), Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	memberHashSource{lm.m}.raiseCorrupt(7)
	want := []*pb.AlarmMember{{MemberID: 7, Alarm: pb.AlarmType_CORRUPT}}
	if got := lm.m.Alarms(); len(got) != 1 || got[0].MemberID != 7 || got[0].Alarm != pb.AlarmType_CORRUPT {
		t.Fatalf("alarms %v, want %v", got, want)
	}
	if _, err := lm.m.Put(lm.ctx(), lm.root(), &pb.PutRequest{Key: []byte("k"), Value: []byte("w")}); !errors.Is(err, rpctypes.ErrGRPCCorrupt) {
		t.Fatalf("put under CORRUPT: %v, want %v", err, rpctypes.ErrGRPCCorrupt)
	}
	resp, err := lm.m.Range(lm.ctx(), &pb.RangeRequest{Key: []byte("k")}, Unchecked)
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("linearizable read under CORRUPT: %v, %v; want k=v, as etcd serves reads", resp, err)
	}
}
