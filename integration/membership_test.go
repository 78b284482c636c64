package integration

import (
	"errors"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keeldb/keel/internal/keeltest"
	keelmember "github.com/keeldb/keel/member"
	"github.com/keeldb/keel/membership"
)

// The tests in this file run clusters of in-process keel members; their
// errors and responses were checked by hand against etcd 3.7.3 clusters
// driven with etcdctl (same codes and messages).

// changeTimeout bounds how long a test retries a membership change that
// etcd's strict reconfiguration check refuses until the members have been
// connected for its health interval (5s).
const changeTimeout = 30 * time.Second

func startCluster(t *testing.T, n int, opts ...keeltest.Option) *keeltest.Cluster {
	t.Helper()
	if os.Getenv(etcdEnv) != "" {
		t.Skip("in-process cluster tests run against keel only")
	}
	return keeltest.StartCluster(t, n, opts...)
}

// retryUnhealthy runs f until it no longer fails with "unhealthy cluster"
// (the strict reconfiguration check refuses changes until the peers have
// been connected for etcd's health interval), bounded by changeTimeout.
func retryUnhealthy(t *testing.T, f func() error) error {
	t.Helper()
	deadline := time.Now().Add(changeTimeout)
	for {
		err := f()
		if err == nil || rpctypes.ErrorDesc(err) != rpctypes.ErrorDesc(rpctypes.ErrGRPCUnhealthy) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond) // poll interval, bounded by the deadline
	}
}

// waitRemoved waits until m stops on its own because it was removed.
func waitRemoved(t *testing.T, m *keeltest.Member) {
	t.Helper()
	select {
	case <-m.Server.Done():
		if err := m.Server.Err(); !errors.Is(err, keelmember.ErrRemoved) {
			t.Fatalf("member %s stopped with %v, want %v", m.Config.Name, err, keelmember.ErrRemoved)
		}
	case <-time.After(changeTimeout):
		t.Fatalf("member %s still runs %v after its removal", m.Config.Name, changeTimeout)
	}
}

func memberIDs(ms []*pb.Member) []uint64 {
	ids := make([]uint64, len(ms))
	for i, m := range ms {
		ids[i] = m.ID
	}
	slices.Sort(ids)
	return ids
}

// TestClusterBootstrapsThreeMembersWithEtcdsIDs starts three members with
// --initial-cluster-state new and checks what every member reports: the
// same members with the IDs etcd derives from the flags, the same cluster
// ID, names and URLs; and that a write on one member is read on the others.
func TestClusterBootstrapsThreeMembersWithEtcdsIDs(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	var want []*membership.Member
	for _, m := range c.Members {
		want = append(want, membership.NewMember(m.Config.Name, []string{m.Config.InitialAdvertisePeerURLs[0].String()}, keeltest.ClusterToken, nil))
	}
	wantCID := membership.ClusterID(want)
	for _, m := range c.Members {
		for _, linearizable := range []bool{false, true} {
			var opts []clientv3.OpOption
			if !linearizable {
				opts = append(opts, clientv3.WithSerializable())
			}
			resp, err := m.Client.MemberList(ctx(t), opts...)
			if err != nil {
				t.Fatalf("%s: member list (linearizable %v): %v", m.Config.Name, linearizable, err)
			}
			if resp.Header.ClusterId != wantCID || resp.Header.MemberId != m.Server.MemberID() || resp.Header.RaftTerm == 0 {
				t.Errorf("%s: header %v, want cluster %x, member %x, a term", m.Config.Name, resp.Header, wantCID, m.Server.MemberID())
			}
			if len(resp.Members) != 3 {
				t.Fatalf("%s: %d members, want 3", m.Config.Name, len(resp.Members))
			}
			for _, w := range want {
				i := slices.IndexFunc(resp.Members, func(p *pb.Member) bool { return p.ID == w.ID })
				if i < 0 {
					t.Errorf("%s: no member %x (%s)", m.Config.Name, w.ID, w.Name)
					continue
				}
				got := resp.Members[i]
				if got.Name != w.Name || !slices.Equal(got.PeerURLs, w.PeerURLs) || len(got.ClientURLs) != 1 || got.IsLearner {
					t.Errorf("%s: member %v, want name %s, peer URLs %v, one client URL, voter", m.Config.Name, got, w.Name, w.PeerURLs)
				}
			}
		}
	}
	r := put(t, c.Members[0].Client, "k", "v")
	for _, m := range c.Members[1:] {
		resp := get(t, m.Client, "k")
		if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" || resp.Kvs[0].ModRevision != r {
			t.Errorf("%s: get k = %v, want v at revision %d", m.Config.Name, resp.Kvs, r)
		}
	}
}

// TestClusterLearnerJoinsAndIsPromoted adds a learner, starts it with
// --initial-cluster-state existing, checks what a learner refuses, and
// promotes it through a follower (which forwards to the leader).
func TestClusterLearnerJoinsAndIsPromoted(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	put(t, c.Members[0].Client, "before", "1")
	peer, err := keeltest.NewPeerURL()
	if err != nil {
		t.Fatal(err)
	}
	cli := c.Members[0].Client
	var add *clientv3.MemberAddResponse
	err = retryUnhealthy(t, func() (err error) {
		add, err = cli.MemberAddAsLearner(ctx(t), []string{peer})
		return err
	})
	if err != nil {
		t.Fatalf("member add --learner: %v", err)
	}
	if !add.Member.IsLearner || add.Member.Name != "" || !slices.Equal(add.Member.PeerURLs, []string{peer}) || len(add.Members) != 4 {
		t.Fatalf("member add response: member %v, %d members", add.Member, len(add.Members))
	}
	if add.Header.ClusterId == 0 || add.Header.MemberId != c.Members[0].Server.MemberID() {
		t.Errorf("member add header %v", add.Header)
	}
	// etcd allows one learner.
	other, err := keeltest.NewPeerURL()
	if err != nil {
		t.Fatal(err)
	}
	_, err = cli.MemberAddAsLearner(ctx(t), []string{other})
	wantErr(t, err, rpctypes.ErrGRPCTooManyLearners)

	learner := c.Join(t, "m4", peer)
	if learner.Server.MemberID() != add.Member.ID {
		t.Fatalf("joined as %x, want the added ID %x", learner.Server.MemberID(), add.Member.ID)
	}
	// A learner serves serializable reads and Status, nothing else.
	resp := get(t, learner.Client, "before", clientv3.WithSerializable())
	if len(resp.Kvs) != 1 {
		t.Errorf("serializable get on the learner: %v", resp.Kvs)
	}
	if _, err := learner.Client.Status(ctx(t), learner.Endpoint); err != nil {
		t.Errorf("status on the learner: %v", err)
	}
	_, err = learner.Client.Put(ctx(t), "k", "v")
	wantErr(t, err, rpctypes.ErrGRPCNotSupportedForLearner)
	_, err = learner.Client.Get(ctx(t), "before")
	wantErr(t, err, rpctypes.ErrGRPCNotSupportedForLearner)
	_, err = learner.Client.MemberList(ctx(t))
	wantErr(t, err, rpctypes.ErrGRPCNotSupportedForLearner)

	// Promote through a follower; the learner may still be catching up.
	lead := c.Leader(t)
	var follower *keeltest.Member
	for _, m := range c.Members[:3] {
		if m != lead {
			follower = m
			break
		}
	}
	deadline := time.Now().Add(changeTimeout)
	var promoted *clientv3.MemberPromoteResponse
	for {
		promoted, err = follower.Client.MemberPromote(ctx(t), add.Member.ID)
		if err == nil || rpctypes.ErrorDesc(err) != rpctypes.ErrorDesc(rpctypes.ErrGRPCLearnerNotReady) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond) // poll interval, bounded by the deadline
	}
	if err != nil {
		t.Fatalf("member promote: %v", err)
	}
	if promoted.Header.MemberId != follower.Server.MemberID() || len(promoted.Members) != 4 {
		t.Errorf("promote response: header %v, %d members", promoted.Header, len(promoted.Members))
	}
	for _, m := range promoted.Members {
		if m.IsLearner {
			t.Errorf("member %x is still a learner after the promotion", m.ID)
		}
	}
	_, err = cli.MemberPromote(ctx(t), add.Member.ID)
	wantErr(t, err, rpctypes.ErrGRPCMemberNotLearner)
	promotes := 0.0 // by whichever member led
	for _, m := range c.Members[:3] {
		promotes += value(scrape(t, m.Endpoint), "etcd_server_learner_promote_successes", nil)
	}
	if promotes != 1 {
		t.Errorf("etcd_server_learner_promote_successes sums to %v over the voters, want 1", promotes)
	}
	// Once it has applied its promotion, it takes writes.
	deadline = time.Now().Add(changeTimeout)
	for {
		st, err := learner.Client.Status(ctx(t), learner.Endpoint)
		if err != nil {
			t.Fatalf("status of the promoted member: %v", err)
		}
		if !st.IsLearner {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the promoted member still reports a learner after %v", changeTimeout)
		}
		time.Sleep(50 * time.Millisecond) // poll interval, bounded by the deadline
	}
	put(t, learner.Client, "after", "1")
	if got := get(t, c.Members[1].Client, "after"); len(got.Kvs) != 1 {
		t.Errorf("write through the promoted member not seen: %v", got.Kvs)
	}
}

// TestClusterRemovesAFollowerAndTheLeader removes a follower, then the
// leader: each stops on its own with keelmember.ErrRemoved, and the last member
// elects itself and serves.
func TestClusterRemovesAFollowerAndTheLeader(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	lead := c.Leader(t)
	var followers []*keeltest.Member
	for _, m := range c.Members {
		if m != lead {
			followers = append(followers, m)
		}
	}
	gone := followers[0]
	var resp *clientv3.MemberRemoveResponse
	err := retryUnhealthy(t, func() (err error) {
		resp, err = lead.Client.MemberRemove(ctx(t), gone.Server.MemberID())
		return err
	})
	if err != nil {
		t.Fatalf("remove follower: %v", err)
	}
	if ids := memberIDs(resp.Members); len(ids) != 2 || slices.Contains(ids, gone.Server.MemberID()) {
		t.Errorf("members after removing %x: %x", gone.Server.MemberID(), ids)
	}
	waitRemoved(t, gone)
	_, err = lead.Client.MemberRemove(ctx(t), gone.Server.MemberID())
	wantErr(t, err, rpctypes.ErrGRPCMemberNotFound)

	leadID := lead.Server.MemberID()
	err = retryUnhealthy(t, func() (err error) {
		resp, err = lead.Client.MemberRemove(ctx(t), leadID)
		return err
	})
	if err != nil {
		t.Fatalf("remove leader: %v", err)
	}
	if ids := memberIDs(resp.Members); len(ids) != 1 || ids[0] != followers[1].Server.MemberID() {
		t.Errorf("members after removing the leader: %x", ids)
	}
	waitRemoved(t, lead)
	// The last member elects itself once the removed leader is gone.
	last := c.Leader(t)
	if last != followers[1] {
		t.Fatalf("leader %s, want the last member %s", last.Config.Name, followers[1].Config.Name)
	}
	put(t, last.Client, "alone", "1")
	list, err := last.Client.MemberList(ctx(t))
	if err != nil || len(list.Members) != 1 {
		t.Fatalf("member list of the last member: %v, %v", list, err)
	}
}

// TestClusterMemberUpdateMovesAPeer changes a follower's peer URL and
// restarts it listening there: the others reach it at the new URL.
func TestClusterMemberUpdateMovesAPeer(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	m := c.Members[2]
	id := m.Server.MemberID()
	_, err := c.Members[0].Client.MemberUpdate(ctx(t), id, []string{c.Members[1].Config.InitialAdvertisePeerURLs[0].String()})
	wantErr(t, err, rpctypes.ErrGRPCPeerURLExist)
	_, err = c.Members[0].Client.MemberUpdate(ctx(t), 12345, []string{"http://127.0.0.1:1"})
	wantErr(t, err, rpctypes.ErrGRPCMemberNotFound)

	peer, err := keeltest.NewPeerURL()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Members[0].Client.MemberUpdate(ctx(t), id, []string{peer})
	if err != nil {
		t.Fatalf("member update: %v", err)
	}
	i := slices.IndexFunc(resp.Members, func(p *pb.Member) bool { return p.ID == id })
	if i < 0 || !slices.Equal(resp.Members[i].PeerURLs, []string{peer}) || resp.Members[i].Name != m.Config.Name {
		t.Fatalf("members after the update: %v", resp.Members)
	}
	m.Stop()
	u := m.Config.InitialAdvertisePeerURLs[0]
	u.Host = strings.TrimPrefix(peer, "http://")
	m.Config.ListenPeerURLs = []url.URL{u}
	m.Config.InitialAdvertisePeerURLs = []url.URL{u}
	m.Restart(t)
	// A write through the moved member needs the leader to reach it at
	// its new URL, and it to reach the leader.
	put(t, m.Client, "moved", "1")
	if got := get(t, m.Client, "moved"); len(got.Kvs) != 1 {
		t.Errorf("read after the move: %v", got.Kvs)
	}
}

// TestClusterMembershipErrors checks the errors of refused changes, with
// etcd's codes and messages.
func TestClusterMembershipErrors(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	cli := c.Members[0].Client
	_, err := cli.MemberRemove(ctx(t), 12345)
	wantErr(t, err, rpctypes.ErrGRPCMemberNotFound)
	err = retryUnhealthy(t, func() error {
		_, err := cli.MemberAdd(ctx(t), []string{c.Members[1].Config.InitialAdvertisePeerURLs[0].String()})
		return err
	})
	wantErr(t, err, rpctypes.ErrGRPCPeerURLExist)
	// The client checks URLs itself; the raw stub shows the server's check.
	_, err = pb.NewClusterClient(cli.ActiveConnection()).MemberAdd(ctx(t), &pb.MemberAddRequest{PeerURLs: []string{"127.0.0.1:2380"}})
	wantErr(t, err, rpctypes.ErrGRPCMemberBadURLs)
	_, err = cli.MemberPromote(ctx(t), c.Members[1].Server.MemberID())
	wantErr(t, err, rpctypes.ErrGRPCMemberNotLearner)
	_, err = cli.MemberPromote(ctx(t), 12345)
	wantErr(t, err, rpctypes.ErrGRPCMemberNotFound)

	// With one member down, adding a voter or removing a running voter
	// would leave no quorum among connected members. (A follower goes
	// down: a proposal forwarded to a leader that just died would only
	// time out.)
	lead := c.Leader(t)
	var followers []*keeltest.Member
	for _, m := range c.Members {
		if m != lead {
			followers = append(followers, m)
		}
	}
	cli = lead.Client
	down, up := followers[0], followers[1]
	downID := down.Server.MemberID()
	down.Stop()
	deadline := time.Now().Add(changeTimeout)
	for !lead.Server.PeerActiveSince(downID).IsZero() {
		if time.Now().After(deadline) {
			t.Fatalf("the leader still counts the stopped member as connected after %v", changeTimeout)
		}
		time.Sleep(10 * time.Millisecond) // poll interval, bounded by the deadline
	}
	peer, err := keeltest.NewPeerURL()
	if err != nil {
		t.Fatal(err)
	}
	_, err = cli.MemberAdd(ctx(t), []string{peer})
	wantErr(t, err, rpctypes.ErrGRPCUnhealthy)
	_, err = cli.MemberRemove(ctx(t), up.Server.MemberID())
	wantErr(t, err, rpctypes.ErrGRPCUnhealthy)
	// The member that is down can go.
	if _, err := cli.MemberRemove(ctx(t), downID); err != nil {
		t.Fatalf("remove the member that is down: %v", err)
	}
}

// TestClusterRefusesAVoterWithoutStartedQuorum grows a one-member cluster
// by a voter that never starts (keel warns that two members lose quorum if
// either is down), after which a further voter is refused because too few
// members have started.
func TestClusterRefusesAVoterWithoutStartedQuorum(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 1)
	cli := c.Members[0].Client
	p1, err := keeltest.NewPeerURL()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.MemberAdd(ctx(t), []string{p1}); err != nil {
		t.Fatalf("add a second voter: %v", err)
	}
	p2, err := keeltest.NewPeerURL()
	if err != nil {
		t.Fatal(err)
	}
	_, err = cli.MemberAdd(ctx(t), []string{p2})
	wantErr(t, err, rpctypes.ErrGRPCMemberNotEnoughStarted)
}

// TestClusterRefusesBadJoins starts members with --initial-cluster-state
// existing that must not join: not added, or already started once.
func TestClusterRefusesBadJoins(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	peer, err := keeltest.NewPeerURL()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartJoining("stranger", peer); err == nil || !strings.Contains(err.Error(), "member add") {
		t.Errorf("join without member add: %v, want a hint to run member add", err)
	}
	m3 := c.Members[2]
	m3Peer := m3.Config.InitialAdvertisePeerURLs[0].String()
	m3.Stop()
	if _, err := c.StartJoining("m3", m3Peer); err == nil || !strings.Contains(err.Error(), "has already been bootstrapped") {
		t.Errorf("join as a started member: %v, want already bootstrapped", err)
	}
	if _, err := c.StartJoining("imposter", m3Peer); err == nil || !strings.Contains(err.Error(), `is named "m3"`) {
		t.Errorf("join under another name: %v, want the name mismatch", err)
	}
}
