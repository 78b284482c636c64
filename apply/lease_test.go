package apply

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

	"github.com/keeldb/keel/alarm"
	"github.com/keeldb/keel/auth"
	"github.com/keeldb/keel/lease"
	"github.com/keeldb/keel/membership"
	"github.com/keeldb/keel/mvcc"
	"github.com/keeldb/keel/storage"
)

type applyEnv struct {
	t      *testing.T
	db     *pebble.DB
	kv     *mvcc.Store
	lessor *lease.Lessor
	auth   *auth.Store
	a      *Applier
}

func newApplyEnv(t *testing.T) *applyEnv {
	t.Helper()
	e, err := storage.Open("db", storage.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	kv, err := mvcc.Open(e.DB(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kv.Close(); e.Close() })
	cluster, err := membership.Load(e.DB(), 1)
	if err != nil {
		t.Fatal(err)
	}
	alarms, err := alarm.Load(e.DB())
	if err != nil {
		t.Fatal(err)
	}
	lessor, err := lease.Load(e.DB(), lease.Config{MinTTL: 2})
	if err != nil {
		t.Fatal(err)
	}
	as, err := auth.Load(e.DB(), auth.Options{Token: "simple", BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	return &applyEnv{t: t, db: e.DB(), kv: kv, lessor: lessor, auth: as, a: New(kv, cluster, alarms, lessor, as)}
}

// batch applies reqs in one apply batch, as the apply loop does with the
// entries of one Ready, and returns their results and the events written.
func (e *applyEnv) batch(reqs ...*pb.InternalRaftRequest) ([]*Result, []mvcc.Event) {
	e.t.Helper()
	b := e.db.NewIndexedBatch()
	defer b.Close()
	w := e.kv.NewWriter(b)
	defer w.Release()
	var res []*Result
	for _, r := range reqs {
		out, err := e.a.Apply(context.Background(), w, b, r)
		if err != nil {
			e.t.Fatalf("apply %v: %v", r, err)
		}
		res = append(res, out)
	}
	if err := w.Finish(); err != nil {
		e.t.Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		e.t.Fatal(err)
	}
	e.kv.Committed(w)
	return res, w.Events()
}

// do applies one request in its own batch and fails the test on a request
// error.
func (e *applyEnv) do(r *pb.InternalRaftRequest) *Result {
	e.t.Helper()
	res, _ := e.batch(r)
	if res[0].Err != nil {
		e.t.Fatalf("%v: %v", r, res[0].Err)
	}
	return res[0]
}

func grantReq(id, ttl int64) *pb.InternalRaftRequest {
	return &pb.InternalRaftRequest{LeaseGrant: &pb.LeaseGrantRequest{ID: id, TTL: ttl}}
}

func revokeReq(id int64) *pb.InternalRaftRequest {
	return &pb.InternalRaftRequest{LeaseRevoke: &pb.LeaseRevokeRequest{ID: id}}
}

func putReq(k string, lease int64) *pb.InternalRaftRequest {
	return &pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte(k), Value: []byte("v"), Lease: lease}}
}

func delReq(k string) *pb.InternalRaftRequest {
	return &pb.InternalRaftRequest{DeleteRange: &pb.DeleteRangeRequest{Key: []byte(k)}}
}

// keys returns the keys attached to lease id, as "[a b]".
func (e *applyEnv) keys(id int64) string {
	e.t.Helper()
	ks, err := e.lessor.Keys(e.db, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return fmt.Sprintf("%s", ks)
}

// live returns the live keys and their leases, as "[a:1 b:0]".
func (e *applyEnv) live() string {
	e.t.Helper()
	rr, err := e.kv.Read().Range(context.Background(), []byte{0}, []byte{}, mvcc.RangeOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, kv := range rr.KVs {
		out = append(out, fmt.Sprintf("%s:%d", kv.Key, kv.Lease))
	}
	return fmt.Sprint(out)
}

func TestRevokeDeletesAttachedKeysInOneRevision(t *testing.T) {
	e := newApplyEnv(t)
	e.do(grantReq(1, 10))
	e.do(putReq("c", 1))
	e.do(putReq("a", 1))
	e.do(putReq("b", 1))
	e.do(putReq("d", 0))
	before := e.kv.Rev()
	res, evs := e.batch(revokeReq(1))
	if res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	if rev := res[0].Resp.(*pb.LeaseRevokeResponse).Header.Revision; rev != before+1 {
		t.Fatalf("revoke header revision %d, want %d", rev, before+1)
	}
	if e.kv.Rev() != before+1 {
		t.Fatalf("store revision %d after revoke, want %d", e.kv.Rev(), before+1)
	}
	var got []string
	for _, ev := range evs {
		if ev.Type != mvccpb.DELETE || ev.Rev() != before+1 {
			t.Fatalf("revoke wrote %v at %d, want deletes at %d", ev.Type, ev.Rev(), before+1)
		}
		got = append(got, string(ev.KV.Key))
	}
	if fmt.Sprint(got) != "[a b c]" {
		t.Fatalf("revoke deleted %v, want [a b c] in key order", got)
	}
	if live := e.live(); live != "[d:0]" {
		t.Fatalf("live keys %s, want [d:0]", live)
	}
	if e.lessor.Exists(1) || e.keys(1) != "[]" {
		t.Fatalf("lease 1 survives its revoke (keys %s)", e.keys(1))
	}
}

func TestRevokeOfLeaseWithoutKeysKeepsTheRevision(t *testing.T) {
	e := newApplyEnv(t)
	e.do(putReq("x", 0))
	e.do(grantReq(1, 10))
	before := e.kv.Rev()
	res := e.do(revokeReq(1))
	if rev := res.Resp.(*pb.LeaseRevokeResponse).Header.Revision; rev != before || e.kv.Rev() != before {
		t.Fatalf("revoke of a lease without keys: header %d, store %d; want both %d", rev, e.kv.Rev(), before)
	}
}

func TestGrantAnswersWithTheRevisionAndTheRaisedTTL(t *testing.T) {
	e := newApplyEnv(t)
	e.do(putReq("x", 0))
	res := e.do(grantReq(7, 1))
	resp := res.Resp.(*pb.LeaseGrantResponse)
	if resp.ID != 7 || resp.TTL != 2 || resp.Header.Revision != e.kv.Rev() {
		t.Fatalf("grant response %v, want ID 7, TTL 2 (the minimum), revision %d", resp, e.kv.Rev())
	}
}

func TestLeaseRequestErrorsAreEtcds(t *testing.T) {
	e := newApplyEnv(t)
	e.do(grantReq(1, 10))
	for _, tc := range []struct {
		name string
		r    *pb.InternalRaftRequest
		want error
	}{
		{"grant of a granted ID", grantReq(1, 10), rpctypes.ErrGRPCLeaseExist},
		{"grant beyond the maximum TTL", grantReq(2, lease.MaxTTL+1), rpctypes.ErrGRPCLeaseTTLTooLarge},
		{"revoke of an unknown lease", revokeReq(3), rpctypes.ErrGRPCLeaseNotFound},
		{"put with an unknown lease", putReq("k", 3), rpctypes.ErrGRPCLeaseNotFound},
		{"txn put with an unknown lease", &pb.InternalRaftRequest{Txn: &pb.TxnRequest{Success: []*pb.RequestOp{
			{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("k"), Lease: 3}}}}}}, rpctypes.ErrGRPCLeaseNotFound},
	} {
		res, _ := e.batch(tc.r)
		if !errors.Is(res[0].Err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, res[0].Err, tc.want)
		}
	}
	if e.kv.Rev() != 1 {
		t.Fatalf("failed requests changed the revision to %d", e.kv.Rev())
	}
}

func TestPutWithAnotherLeaseMovesTheKey(t *testing.T) {
	e := newApplyEnv(t)
	e.do(grantReq(1, 10))
	e.do(grantReq(2, 10))
	e.do(putReq("k", 1))
	e.do(putReq("k", 2))
	if e.keys(1) != "[]" || e.keys(2) != "[k]" {
		t.Fatalf("after moving k: lease 1 %s, lease 2 %s", e.keys(1), e.keys(2))
	}
	e.do(revokeReq(1))
	if live := e.live(); live != "[k:2]" {
		t.Fatalf("revoking the old lease deleted the moved key: %s", live)
	}
	e.do(revokeReq(2))
	if live := e.live(); live != "[]" {
		t.Fatalf("revoking the new lease kept the key: %s", live)
	}
}

func TestPutWithoutLeaseDetachesAndIgnoreLeaseKeeps(t *testing.T) {
	e := newApplyEnv(t)
	e.do(grantReq(1, 10))
	e.do(putReq("a", 1))
	e.do(putReq("b", 1))
	e.do(putReq("a", 0))
	e.do(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("b"), Value: []byte("w"), IgnoreLease: true}})
	if e.keys(1) != "[b]" {
		t.Fatalf("lease 1 keys %s, want [b]", e.keys(1))
	}
	if live := e.live(); live != "[a:0 b:1]" {
		t.Fatalf("live %s, want [a:0 b:1]", live)
	}
	e.do(revokeReq(1))
	if live := e.live(); live != "[a:0]" {
		t.Fatalf("live after revoke %s, want [a:0]", live)
	}
}

func TestDeleteDetachesTheKey(t *testing.T) {
	e := newApplyEnv(t)
	e.do(grantReq(1, 10))
	e.do(putReq("a", 1))
	e.do(putReq("b", 1))
	e.do(&pb.InternalRaftRequest{DeleteRange: &pb.DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte("c")}})
	if e.keys(1) != "[]" {
		t.Fatalf("deleted keys still attached: %s", e.keys(1))
	}
	e.do(putReq("a", 0)) // recreated without a lease: the revoke must not touch it
	before := e.kv.Rev()
	e.do(revokeReq(1))
	if e.kv.Rev() != before || e.live() != "[a:0]" {
		t.Fatalf("revoke after the deletes: revision %d (want %d), live %s", e.kv.Rev(), before, e.live())
	}
}

func TestTxnAttachesDetachesAndComparesLeases(t *testing.T) {
	e := newApplyEnv(t)
	e.do(grantReq(1, 10))
	e.do(grantReq(2, 10))
	e.do(putReq("y", 2))
	put := func(k string, l int64) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(k), Lease: l}}}
	}
	txn := &pb.TxnRequest{
		Compare: []*pb.Compare{{Key: []byte("y"), Target: pb.Compare_LEASE, Result: pb.Compare_EQUAL,
			TargetUnion: &pb.Compare_Lease{Lease: 2}}},
		Success: []*pb.RequestOp{
			put("x", 1),
			{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("y")}}},
			{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Success: []*pb.RequestOp{put("z", 2)}}}},
		},
	}
	res := e.do(&pb.InternalRaftRequest{Txn: txn})
	if !res.Resp.(*pb.TxnResponse).Succeeded {
		t.Fatal("compare on the lease failed")
	}
	if e.keys(1) != "[x]" || e.keys(2) != "[z]" {
		t.Fatalf("after the txn: lease 1 %s, lease 2 %s; want [x] and [z]", e.keys(1), e.keys(2))
	}
	txn.Compare[0].TargetUnion = &pb.Compare_Lease{Lease: 1}
	txn.Compare[0].Key = []byte("z")
	txn.Compare[0].Result = pb.Compare_NOT_EQUAL
	txn.Success = nil
	if res := e.do(&pb.InternalRaftRequest{Txn: txn}); !res.Resp.(*pb.TxnResponse).Succeeded {
		t.Fatal("compare lease(z) != 1 failed")
	}
}

func TestRevokeSeesKeysPutEarlierInTheSameBatch(t *testing.T) {
	e := newApplyEnv(t)
	res, _ := e.batch(grantReq(1, 10), putReq("a", 1), putReq("b", 0), revokeReq(1), grantReq(1, 10), putReq("c", 1))
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("request %d: %v", i, r.Err)
		}
	}
	if live := e.live(); live != "[b:0 c:1]" {
		t.Fatalf("live %s, want [b:0 c:1]", live)
	}
	if e.keys(1) != "[c]" {
		t.Fatalf("re-granted lease keys %s, want [c]", e.keys(1))
	}
}

func TestCheckpointIsAppliedAndUnknownLeasesIgnored(t *testing.T) {
	e := newApplyEnv(t)
	e.do(grantReq(1, 100))
	res := e.do(&pb.InternalRaftRequest{LeaseCheckpoint: &pb.LeaseCheckpointRequest{Checkpoints: []*pb.LeaseCheckpoint{
		{ID: 9, Remaining_TTL: 5}, {ID: 1, Remaining_TTL: 40}}}})
	if _, ok := res.Resp.(*pb.LeaseCheckpointResponse); !ok {
		t.Fatalf("checkpoint answered %T", res.Resp)
	}
	l, err := lease.Load(e.db, lease.Config{Clock: lease.NewFakeClock(time.Unix(0, 0))})
	if err != nil {
		t.Fatal(err)
	}
	l.Promote(0)
	if ttl, _, err := l.TimeToLive(1); err != nil || ttl != 40 {
		t.Fatalf("reloaded remaining TTL %d, %v; want 40", ttl, err)
	}
	if l.Exists(9) {
		t.Fatal("a checkpoint created an unknown lease")
	}
}

func TestAlarmsRefuseLeaseRequestsAsEtcd(t *testing.T) {
	e := newApplyEnv(t)
	e.do(grantReq(1, 10))
	alarmReq := func(a pb.AlarmType, act pb.AlarmRequest_AlarmAction) *pb.InternalRaftRequest {
		return &pb.InternalRaftRequest{Alarm: &pb.AlarmRequest{Action: act, MemberID: 1, Alarm: a}}
	}
	e.do(alarmReq(pb.AlarmType_NOSPACE, pb.AlarmRequest_ACTIVATE))
	if res, _ := e.batch(grantReq(2, 10)); !errors.Is(res[0].Err, rpctypes.ErrGRPCNoSpace) {
		t.Fatalf("grant under NOSPACE: %v", res[0].Err)
	}
	e.do(&pb.InternalRaftRequest{LeaseCheckpoint: &pb.LeaseCheckpointRequest{Checkpoints: []*pb.LeaseCheckpoint{{ID: 1, Remaining_TTL: 3}}}})
	e.do(revokeReq(1)) // revoking frees space: allowed
	e.do(alarmReq(pb.AlarmType_NOSPACE, pb.AlarmRequest_DEACTIVATE))
	e.do(grantReq(3, 10))
	e.do(alarmReq(pb.AlarmType_CORRUPT, pb.AlarmRequest_ACTIVATE))
	for _, r := range []*pb.InternalRaftRequest{grantReq(4, 10), revokeReq(3)} {
		if res, _ := e.batch(r); !errors.Is(res[0].Err, rpctypes.ErrGRPCCorrupt) {
			t.Fatalf("%v under CORRUPT: %v", r, res[0].Err)
		}
	}
	if !e.lessor.Exists(3) {
		t.Fatal("revoke applied under CORRUPT")
	}
}
