package metrics

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/keeldb/keel/config"
)

func TestTwoMembersInOneProcessDoNotShare(t *testing.T) {
	a, b := New(Options{}), New(Options{})
	a.LeaderChanged(1, true, true)
	a.SetMember(0xabc, 100)
	if got := testutil.ToFloat64(a.leaderChanges); got != 1 {
		t.Errorf("a: leader changes %v, want 1", got)
	}
	if got := testutil.ToFloat64(b.leaderChanges); got != 0 {
		t.Errorf("b counted a's leader change: %v", got)
	}
	if got := testutil.ToFloat64(a.serverID.WithLabelValues("abc")); got != 1 {
		t.Errorf("etcd_server_id{server_id=abc} = %v", got)
	}
}

func TestNilMetricsHooksDoNothing(t *testing.T) {
	var m *Metrics
	m.LeaderChanged(1, false, true)
	m.WALSaved(time.Millisecond, true, 10)
	m.Applied("Put", true, time.Millisecond)
	m.SnapshotApplying()()
	m.HeartbeatSendFailed()
	m.ReadIndexFailed()
	m.ReadIndexSlow()
	m.Hashed(true, time.Millisecond)
	m.LeaseGranted(5)
	m.LeaseRevoked()
	m.LeaseRenewed()
	m.LeaseExpired()
	m.PeerKnown(1, 2, true)
	m.Request("Put", true, time.Millisecond)
	m.RangeRead(true, time.Millisecond)
	m.Health(false)
	m.BackendCommit(time.Millisecond)
	m.DefragStarted()()
	m.ProposalStarted()(true)
	m.StoreOps(Ops{Puts: 1})
	m.PeerSent(1, 10)
	m.PeerReceived(1, 10)
	m.PeerSendFailed(1, 1)
	m.PeerReceiveFailed(1)
	m.PeerRTT(1, time.Millisecond)
	m.PeerActive(1, 2, true)
	m.LearnerPromoted()
	m.BackendSnapshot(time.Millisecond)
	m.SnapshotSaved(time.Millisecond)
	m.SnapshotReceived(time.Second, time.Millisecond)
	m.CompactionBatch(time.Millisecond)
	m.Compacted(3, time.Second)
	m.WatchSent(WatchEvents, 2, time.Millisecond)
	m.SetState(State{})
	m.SetMember(1, 1)
	m.InitGRPC(nil)
	if m.GRPCUnary() != nil || m.GRPCStream() != nil || m.GRPCStatsHandler() != nil {
		t.Error("nil metrics returned interceptors")
	}
}

func TestLeaderChangesCountOnlyNewLeaders(t *testing.T) {
	m := New(Options{})
	m.LeaderChanged(1, false, true) // a leader appears
	m.LeaderChanged(0, false, true) // lost: not a change to count
	m.LeaderChanged(2, true, true)  // a new one
	m.LeaderChanged(2, true, false) // state change, same leader
	if got := testutil.ToFloat64(m.leaderChanges); got != 2 {
		t.Errorf("leader changes %v, want 2", got)
	}
	if testutil.ToFloat64(m.hasLeader) != 1 || testutil.ToFloat64(m.isLeader) != 1 {
		t.Error("has_leader and is_leader should be 1")
	}
}

func TestProposalsPendingAndFailed(t *testing.T) {
	m := New(Options{})
	ok, bad := m.ProposalStarted(), m.ProposalStarted()
	if got := testutil.ToFloat64(m.proposalsPending); got != 2 {
		t.Errorf("pending %v, want 2", got)
	}
	ok(false)
	bad(true)
	if testutil.ToFloat64(m.proposalsPending) != 0 || testutil.ToFloat64(m.proposalsFailed) != 1 {
		t.Errorf("pending %v failed %v, want 0 and 1", testutil.ToFloat64(m.proposalsPending), testutil.ToFloat64(m.proposalsFailed))
	}
}

func TestStoreOpsCountsTxnsAsEtcd(t *testing.T) {
	m := New(Options{})
	m.StoreOps(Ops{Puts: 1, PutBytes: 5})
	m.StoreOps(Ops{Ranges: 1, Puts: 1, Deletes: 1})
	if got := testutil.ToFloat64(m.txnTotal); got != 1 {
		t.Errorf("txn_total %v, want 1 (only requests of several operations)", got)
	}
	if testutil.ToFloat64(m.putTotal) != 2 || testutil.ToFloat64(m.putSize) != 5 {
		t.Errorf("put_total %v, put size %v", testutil.ToFloat64(m.putTotal), testutil.ToFloat64(m.putSize))
	}
}

func TestExtensiveAddsHandlingHistogram(t *testing.T) {
	for _, ext := range []bool{false, true} {
		m := New(Options{Extensive: ext})
		gs := grpc.NewServer()
		healthpb.RegisterHealthServer(gs, health.NewServer())
		m.InitGRPC(gs)
		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		body := rec.Body.String()
		if !strings.Contains(body, "# TYPE etcd_server_has_leader gauge") ||
			!strings.Contains(body, `grpc_server_started_total{grpc_method="Check",grpc_service="grpc.health.v1.Health",grpc_type="unary"} 0`) {
			t.Fatalf("etcd_server_has_leader or the initialised gRPC series missing:\n%s", body)
		}
		if got := strings.Contains(body, "# TYPE grpc_server_handling_seconds histogram"); got != ext {
			t.Errorf("extensive=%v: handling histogram shown: %v", ext, got)
		}
	}
}

func TestWALSavedCountsFsyncOnlyWhenSynced(t *testing.T) {
	m := New(Options{})
	m.WALSaved(time.Millisecond, false, 10)
	m.WALSaved(time.Millisecond, true, 5)
	if got := testutil.CollectAndCount(m.walFsync); got != 1 {
		t.Fatalf("fsync histogram has %d series", got)
	}
	if got := testutil.ToFloat64(m.walWriteBytes); got != 15 {
		t.Errorf("wal_write_bytes_total %v, want 15", got)
	}
	var n uint64
	for _, h := range []interface{ Write(*dto.Metric) error }{m.walFsync, m.walWrite} {
		var d dto.Metric
		if err := h.Write(&d); err != nil {
			t.Fatal(err)
		}
		n = n*10 + d.GetHistogram().GetSampleCount()
	}
	if n != 12 {
		t.Errorf("fsync and write sample counts %d, want 1 and 2", n)
	}
}

func TestPeerGoingDownCountsADisconnection(t *testing.T) {
	m := New(Options{})
	m.PeerKnown(1, 2, true)
	m.PeerActive(1, 2, true)
	m.PeerActive(1, 2, false)
	if got := testutil.ToFloat64(m.disconnectedPeer.WithLabelValues("1", "2")); got != 1 {
		t.Errorf("disconnected_peers_total %v, want 1", got)
	}
	m.PeerKnown(1, 2, false)
	if got := testutil.CollectAndCount(m.knownPeers); got != 0 {
		t.Errorf("known_peers keeps %d series for a removed peer", got)
	}
}

func TestFeatureGatesAreLabelled(t *testing.T) {
	m := New(Options{Features: []config.FeatureGate{{Name: "CompactHashCheck", Stage: "ALPHA", Enabled: true}, {Name: "FastLeaseKeepAlive", Stage: "BETA"}}})
	want := `
# HELP etcd_server_feature_enabled 1 for each feature gate that is on, 0 for each that is off, labelled with its name and maturity.
# TYPE etcd_server_feature_enabled gauge
etcd_server_feature_enabled{name="CompactHashCheck",stage="ALPHA"} 1
etcd_server_feature_enabled{name="FastLeaseKeepAlive",stage="BETA"} 0
`
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(want), "etcd_server_feature_enabled"); err != nil {
		t.Error(err)
	}
}

func TestCompactionsAreRecorded(t *testing.T) {
	m := New(Options{})
	m.CompactionBatch(3 * time.Millisecond)
	m.CompactionBatch(5 * time.Millisecond)
	before := time.Now().Unix()
	m.Compacted(1500, 2*time.Second)
	if got := testutil.ToFloat64(m.compactionKeys); got != 1500 {
		t.Errorf("db_compaction_keys_total %v, want 1500", got)
	}
	if got := testutil.ToFloat64(m.compactionLast); got < float64(before) {
		t.Errorf("db_compaction_last %v, before %d", got, before)
	}
	var pause, total dto.Metric
	if err := m.compactionPause.Write(&pause); err != nil {
		t.Fatal(err)
	}
	if err := m.compactionTotal.Write(&total); err != nil {
		t.Fatal(err)
	}
	if pause.GetHistogram().GetSampleCount() != 2 || pause.GetHistogram().GetSampleSum() != 8 {
		t.Errorf("pause histogram: %d samples summing to %v ms, want 2 and 8", pause.GetHistogram().GetSampleCount(), pause.GetHistogram().GetSampleSum())
	}
	if total.GetHistogram().GetSampleSum() != 2000 {
		t.Errorf("total duration %v ms, want 2000", total.GetHistogram().GetSampleSum())
	}
}

func TestWatchSendsAreSortedByKind(t *testing.T) {
	m := New(Options{})
	m.WatchSent(WatchControl, 0, time.Millisecond)
	m.WatchSent(WatchProgress, 0, time.Millisecond)
	m.WatchSent(WatchEvents, 4, 8*time.Millisecond)
	m.WatchSent(WatchEvents, 0, time.Millisecond) // no events: no per-event sample
	for _, c := range []struct {
		h    interface{ Write(*dto.Metric) error }
		n    uint64
		name string
	}{{m.watchSendControl, 1, "control"}, {m.watchSendProgress, 1, "progress"}, {m.watchSendEvents, 2, "events"}, {m.watchSendPerEvent, 1, "per event"}} {
		var d dto.Metric
		if err := c.h.Write(&d); err != nil {
			t.Fatal(err)
		}
		if got := d.GetHistogram().GetSampleCount(); got != c.n {
			t.Errorf("%s: %d samples, want %d", c.name, got, c.n)
		}
	}
	var per dto.Metric
	if err := m.watchSendPerEvent.Write(&per); err != nil {
		t.Fatal(err)
	}
	if got := per.GetHistogram().GetSampleSum(); got != 0.002 {
		t.Errorf("per-event duration %v, want 0.002", got)
	}
}
