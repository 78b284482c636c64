package integration

import (
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// memberStatus asks the member for Maintenance.Status and fails the test on error.
func memberStatus(t *testing.T, m *member) *clientv3.StatusResponse {
	t.Helper()
	resp, err := m.cli().Status(ctx(t), m.endpoint())
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	return resp
}

// TestStatus checks Maintenance.Status of a one-member cluster: version,
// sizes, leader, Raft indexes and term, errors, learner flag, quota and
// storage version; and that the indexes move with writes.
func TestStatus(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	put(t, cli, "a", "1")
	s := memberStatus(t, m)
	if s.Version != "3.7.3" {
		t.Errorf("version %q, want 3.7.3", s.Version)
	}
	if s.DbSize <= 0 || s.DbSizeInUse <= 0 || s.DbSizeInUse > s.DbSize {
		t.Errorf("db size %d, in use %d: want 0 < in use <= size", s.DbSize, s.DbSizeInUse)
	}
	if s.Leader == 0 || s.Leader != s.Header.MemberId {
		t.Errorf("leader %x, want the member itself (%x)", s.Leader, s.Header.MemberId)
	}
	if s.RaftTerm == 0 || s.RaftTerm != s.Header.RaftTerm {
		t.Errorf("raft term %d, header term %d: want equal and > 0", s.RaftTerm, s.Header.RaftTerm)
	}
	if s.RaftIndex == 0 || s.RaftAppliedIndex == 0 || s.RaftAppliedIndex > s.RaftIndex {
		t.Errorf("raft index %d, applied index %d: want 0 < applied <= index", s.RaftIndex, s.RaftAppliedIndex)
	}
	if len(s.Errors) != 0 {
		t.Errorf("errors %q, want none", s.Errors)
	}
	if s.IsLearner {
		t.Error("is_learner is set on the only member")
	}
	if s.DbSizeQuota != 2<<30 {
		t.Errorf("db size quota %d, want the default %d", s.DbSizeQuota, 2<<30)
	}
	if s.StorageVersion != "3.7.0" {
		t.Errorf("storage version %q, want 3.7.0", s.StorageVersion)
	}
	if s.DowngradeInfo == nil || s.DowngradeInfo.Enabled || s.DowngradeInfo.TargetVersion != "" {
		t.Errorf("downgrade info %v, want present and disabled", s.DowngradeInfo)
	}
	if s.Header.Revision != 2 || s.Header.ClusterId == 0 {
		t.Errorf("header %v, want revision 2 and a cluster id", s.Header)
	}

	// A write moves both indexes; the write is applied once acknowledged.
	put(t, cli, "b", "2")
	s2 := memberStatus(t, m)
	if s2.RaftIndex <= s.RaftIndex || s2.RaftAppliedIndex <= s.RaftAppliedIndex {
		t.Errorf("after a write: index %d -> %d, applied %d -> %d; want both to grow", s.RaftIndex, s2.RaftIndex, s.RaftAppliedIndex, s2.RaftAppliedIndex)
	}
	if s2.Header.Revision != 3 || s2.RaftTerm != s.RaftTerm {
		t.Errorf("after a write: revision %d term %d, want 3 and %d", s2.Header.Revision, s2.RaftTerm, s.RaftTerm)
	}
	// A read moves neither the revision nor the term.
	get(t, cli, "a")
	if s3 := memberStatus(t, m); s3.Header.Revision != 3 || s3.RaftTerm != s.RaftTerm {
		t.Errorf("after a read: revision %d term %d, want 3 and %d", s3.Header.Revision, s3.RaftTerm, s.RaftTerm)
	}
}

// TestMemberList checks Cluster.MemberList of a one-member cluster, both
// linearizable (the client's default) and serializable: the member's id,
// name, peer and client URLs, and a header without revision.
func TestMemberList(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	put(t, m.cli(), "a", "1")
	s := memberStatus(t, m)
	for _, tt := range []struct {
		name string
		opts []clientv3.OpOption
	}{
		{"linearizable", nil},
		{"serializable", []clientv3.OpOption{clientv3.WithSerializable()}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := m.cli().MemberList(ctx(t), tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Members) != 1 {
				t.Fatalf("%d members, want 1: %v", len(resp.Members), resp.Members)
			}
			mem := resp.Members[0]
			if mem.ID != s.Header.MemberId || mem.Name != "default" || mem.IsLearner {
				t.Errorf("member %v: want id %x, name default, not a learner", mem, s.Header.MemberId)
			}
			if len(mem.PeerURLs) != 1 || mem.PeerURLs[0] != m.peerURL() {
				t.Errorf("peer URLs %q, want [%s]", mem.PeerURLs, m.peerURL())
			}
			if len(mem.ClientURLs) != 1 || mem.ClientURLs[0] != m.endpoint() {
				t.Errorf("client URLs %q, want [%s]", mem.ClientURLs, m.endpoint())
			}
			h := resp.Header
			if h.ClusterId != s.Header.ClusterId || h.MemberId != s.Header.MemberId || h.RaftTerm != s.Header.RaftTerm {
				t.Errorf("header %v, want cluster %x member %x term %d", h, s.Header.ClusterId, s.Header.MemberId, s.Header.RaftTerm)
			}
			if h.Revision != 0 {
				t.Errorf("header revision %d, want none (etcd leaves it unset on Cluster responses)", h.Revision)
			}
		})
	}
}

// TestResponseHeaders checks that every KV response carries the cluster id,
// the member id, the current term and the revision, the same ids as Status.
func TestResponseHeaders(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	s := memberStatus(t, m)
	check := func(t *testing.T, what string, h *pb.ResponseHeader, rev int64) {
		t.Helper()
		if h == nil {
			t.Fatalf("%s: no header", what)
		}
		if h.ClusterId != s.Header.ClusterId || h.MemberId != s.Header.MemberId || h.RaftTerm != s.RaftTerm || h.Revision != rev {
			t.Errorf("%s: header %v, want cluster %x member %x term %d revision %d", what, h, s.Header.ClusterId, s.Header.MemberId, s.RaftTerm, rev)
		}
	}
	if s.Header.ClusterId == 0 || s.Header.MemberId == 0 || s.RaftTerm == 0 {
		t.Fatalf("status header %v: want ids and a term", s.Header)
	}
	pr, err := cli.Put(ctx(t), "a", "1")
	if err != nil {
		t.Fatal(err)
	}
	check(t, "put", pr.Header, 2)
	gr, err := cli.Get(ctx(t), "a")
	if err != nil {
		t.Fatal(err)
	}
	check(t, "range", gr.Header, 2)
	gr, err = cli.Get(ctx(t), "a", clientv3.WithSerializable(), clientv3.WithRev(1))
	if err != nil {
		t.Fatal(err)
	}
	check(t, "serializable range at an old revision", gr.Header, 2)
	tr, err := cli.Txn(ctx(t)).Then(clientv3.OpPut("b", "2")).Commit()
	if err != nil {
		t.Fatal(err)
	}
	check(t, "write txn", tr.Header, 3)
	tr, err = cli.Txn(ctx(t)).Then(clientv3.OpGet("b")).Commit()
	if err != nil {
		t.Fatal(err)
	}
	check(t, "read-only txn", tr.Header, 3)
	dr, err := cli.Delete(ctx(t), "a")
	if err != nil {
		t.Fatal(err)
	}
	check(t, "delete", dr.Header, 4)
	dr, err = cli.Delete(ctx(t), "missing")
	if err != nil {
		t.Fatal(err)
	}
	check(t, "delete of nothing", dr.Header, 4)
	cr, err := cli.Compact(ctx(t), 3)
	if err != nil {
		t.Fatal(err)
	}
	check(t, "compact", cr.Header, 4)
	check(t, "status", memberStatus(t, m).Header, 4)
}

// TestClientSyncAndVersionCheck checks the client features that read the
// cluster: Sync replaces the endpoints by the members' client URLs, and
// RejectOldCluster accepts the server's version.
func TestClientSyncAndVersionCheck(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.newClient(t, func(c *clientv3.Config) { c.RejectOldCluster = true })
	if err := cli.Sync(ctx(t)); err != nil {
		t.Fatalf("sync: %v", err)
	}
	if eps := cli.Endpoints(); len(eps) != 1 || eps[0] != m.endpoint() {
		t.Fatalf("endpoints after sync %q, want [%s]", eps, m.endpoint())
	}
	put(t, cli, "a", "1")
}

// TestGRPCHealthService checks the standard gRPC health service on the
// client port, which probes use.
func TestGRPCHealthService(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	resp, err := healthpb.NewHealthClient(m.cli().ActiveConnection()).Check(ctx(t), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("status %v, want SERVING", resp.Status)
	}
}
