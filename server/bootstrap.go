package server

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3"
	"go.uber.org/zap"

	"github.com/keeldb/keel/membership"
	"github.com/keeldb/keel/storage"
	"github.com/keeldb/keel/transport"
)

const (
	// bootstrappedCheckTimeout bounds how long a member bootstrapping a new
	// cluster asks the other initial members whether it already started
	// once (etcd's default --bootstrap-timeout).
	bootstrappedCheckTimeout = time.Second
	// fetchMembersTimeout bounds, per peer URL, how long a joining member
	// waits for the cluster's member list (etcd waits as long).
	fetchMembersTimeout = 10 * time.Second
)

// bootstrapPlan is how an empty data dir becomes a member: its identity,
// the Raft peers to start a new cluster with (none when joining), and the
// other members the transport must reach.
type bootstrapPlan struct {
	ident   storage.Identity
	peers   []raft.Peer
	remotes []*membership.Member
	join    bool
}

// planBootstrap checks that the configuration can bootstrap this member
// and works out how, without touching the data dir: for
// --initial-cluster-state=new from --initial-cluster alone (IDs as etcd
// derives them), for existing by asking the running members.
func (s *Server) planBootstrap() (*bootstrapPlan, error) {
	// DNS SRV and v3 discovery give the initial cluster (discovery.go).
	if err := s.discoverInitialCluster(); err != nil {
		return nil, err
	}
	cfg := s.cfg
	if err := cfg.VerifyBootstrap(); err != nil {
		return nil, err
	}
	initial, err := cfg.InitialClusterMap()
	if err != nil {
		return nil, err
	}
	members, self, err := bootstrapMembers(initial, cfg.InitialClusterToken, cfg.Name)
	if err != nil {
		return nil, err
	}
	var remoteURLs []string
	for _, m := range members {
		if m != self {
			remoteURLs = append(remoteURLs, m.PeerURLs...)
		}
	}
	slices.Sort(remoteURLs)
	if cfg.InitialClusterState == "existing" {
		return s.planJoin(self, members, remoteURLs)
	}
	if err := s.checkNotBootstrapped(self, remoteURLs); err != nil {
		return nil, err
	}
	if len(cfg.Discovery.Endpoints) > 0 {
		if members, err = s.joinDiscovery(self); err != nil {
			return nil, err
		}
	}
	plan := &bootstrapPlan{ident: storage.Identity{MemberID: self.ID, ClusterID: membership.ClusterID(members)}}
	for _, m := range members {
		// The context is what the bootstrap conf change records: the
		// member with its name from --initial-cluster, as in etcd.
		ctx, err := m.Marshal()
		if err != nil {
			return nil, err
		}
		plan.peers = append(plan.peers, raft.Peer{ID: m.ID, Context: ctx})
		plan.remotes = append(plan.remotes, m)
	}
	return plan, nil
}

// bootstrapMembers makes the members of a new cluster from its initial
// cluster, IDs derived from the peer URLs and token as etcd derives them,
// ordered by ID: every member appends the bootstrap conf changes in this
// order, so it must be the same everywhere. self is the member named name,
// nil if none.
func bootstrapMembers(initial map[string][]url.URL, token, name string) (members []*membership.Member, self *membership.Member, err error) {
	for n, urls := range initial {
		m := membership.NewMember(n, urlStrings(urls), token, nil)
		if m.ID == raft.None {
			return nil, nil, fmt.Errorf("cannot use %x as member id", raft.None)
		}
		if slices.ContainsFunc(members, func(o *membership.Member) bool { return o.ID == m.ID }) {
			return nil, nil, fmt.Errorf("member exists with identical ID %x", m.ID)
		}
		members = append(members, m)
		if n == name {
			self = m
		}
	}
	slices.SortFunc(members, func(a, b *membership.Member) int { return cmp.Compare(a.ID, b.ID) })
	return members, self, nil
}

// checkNotBootstrapped refuses to bootstrap a new cluster as a member that
// the other initial members already know as started: its data dir was lost
// or wiped, and starting it afresh would make it vote twice. Members that
// cannot be reached are not asked; as in etcd, this is a best effort.
func (s *Server) checkNotBootstrapped(self *membership.Member, remoteURLs []string) error {
	if len(remoteURLs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), bootstrappedCheckTimeout)
	defer cancel()
	resp, err := transport.FetchMembers(ctx, remoteURLs, s.peerClientTLS(), zap.NewNop())
	if err != nil {
		return nil
	}
	for _, m := range resp.GetMembers() {
		if m.GetID() == self.ID && len(m.GetClientURLs()) > 0 {
			return fmt.Errorf("member %x has already been bootstrapped", self.ID)
		}
	}
	return nil
}

// planJoin works out how this member joins the running cluster that the
// other members of --initial-cluster belong to: the cluster must already
// list a member with exactly our peer URLs (added with `member add`), which
// has not started yet; its ID becomes ours. As in etcd, --initial-cluster
// must list exactly the cluster's members.
func (s *Server) planJoin(self *membership.Member, local []*membership.Member, remoteURLs []string) (*bootstrapPlan, error) {
	cfg := s.cfg
	if len(remoteURLs) == 0 {
		return nil, fmt.Errorf("--initial-cluster-state=existing but --initial-cluster names no member besides %q: "+
			"list the running members so that this member can reach them", cfg.Name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(len(remoteURLs))*fetchMembersTimeout)
	defer cancel()
	// A peer that has not yet applied the `member add` (a follower a
	// moment behind the member that answered it) does not list this
	// member: ask the next one rather than refuse a valid join.
	listsSelf := func(resp *pb.MemberListResponse) bool {
		return slices.ContainsFunc(resp.GetMembers(), func(m *pb.Member) bool { return slices.Equal(fromProto(m).PeerURLs, self.PeerURLs) })
	}
	resp, err := transport.FetchMembersWhere(ctx, remoteURLs, listsSelf, s.peerClientTLS(), s.lg)
	if err != nil {
		return nil, fmt.Errorf("cannot fetch cluster info from peer urls: %w", err)
	}
	cid := resp.GetHeader().GetClusterId()
	var existing []*membership.Member
	for _, m := range resp.GetMembers() {
		existing = append(existing, fromProto(m))
	}
	var found *membership.Member
	for _, m := range existing {
		if slices.Equal(m.PeerURLs, self.PeerURLs) {
			found = m
		}
	}
	if found == nil {
		return nil, fmt.Errorf("cluster %x has no member with the peer URLs %s of this member (%q): "+
			"add it first with `etcdctl member add %s --peer-urls=%s`, then start it with the --initial-cluster that command prints",
			cid, strings.Join(self.PeerURLs, ","), cfg.Name, cfg.Name, strings.Join(self.PeerURLs, ","))
	}
	if found.Name != "" && found.Name != cfg.Name {
		return nil, fmt.Errorf("member %x with peer URLs %s is named %q in cluster %x, not %q (--name): "+
			"it has already been bootstrapped; start it with its own data dir, or remove it and add it again to start it afresh",
			found.ID, strings.Join(found.PeerURLs, ","), found.Name, cid, cfg.Name)
	}
	if len(found.ClientURLs) > 0 {
		return nil, fmt.Errorf("member %x has already been bootstrapped: start it with its data dir, "+
			"or remove it from the cluster (member remove %x) and add it again to start it afresh", found.ID, found.ID)
	}
	if err := matchExisting(local, existing); err != nil {
		return nil, fmt.Errorf("error validating peerURLs of cluster %x: %w; --initial-cluster must list every member of the cluster with its peer URLs, "+
			"as `member add` prints it", cid, err)
	}
	return &bootstrapPlan{
		ident:   storage.Identity{MemberID: found.ID, ClusterID: cid},
		remotes: existing,
		join:    true,
	}, nil
}

// matchExisting checks, as etcd does, that the members of --initial-cluster
// are the cluster's members: as many, and each member's peer URLs listed.
func matchExisting(local, existing []*membership.Member) error {
	if len(local) != len(existing) {
		return errors.New("member count is unequal")
	}
	for _, e := range existing {
		if !slices.ContainsFunc(local, func(l *membership.Member) bool { return slices.Equal(l.PeerURLs, e.PeerURLs) }) {
			return fmt.Errorf("PeerURLs: no match found for existing member (%x, %v)", e.ID, e.PeerURLs)
		}
	}
	return nil
}

// bootstrap initialises the empty data dir as plan says: it records the
// member's identity, synced, before Raft writes anything.
func (s *Server) bootstrap(plan *bootstrapPlan) error {
	cfg := s.cfg
	b := s.engine.DB().NewBatch()
	defer b.Close()
	if err := storage.SetIdentity(b, plan.ident); err != nil {
		return err
	}
	if plan.join {
		peers, err := json.Marshal(plan.remotes)
		if err != nil {
			return err
		}
		if err := storage.SetJoinPeers(b, peers); err != nil {
			return err
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("initialise data dir: %w", err)
	}
	msg := "bootstrapping a new cluster"
	if plan.join {
		msg = "joining an existing cluster"
	}
	s.lg.Info(msg, zap.String("data-dir", cfg.DataDir), zap.String("initial-cluster-token", cfg.InitialClusterToken),
		zap.String("initial-cluster", cfg.InitialCluster),
		zap.String("local-member-id", fmt.Sprintf("%x", plan.ident.MemberID)), zap.String("cluster-id", fmt.Sprintf("%x", plan.ident.ClusterID)))
	return nil
}

// restartPeers returns the members a restarting member's transport must
// reach: those of its stored membership, and for a member that joined, the
// members it learned when it joined that its membership does not know yet
// (it may have stopped before the log or a snapshot told it about them).
func (s *Server) restartPeers(ident storage.Identity) ([]*membership.Member, error) {
	cl, err := membership.Load(s.engine.DB(), ident.ClusterID)
	if err != nil {
		return nil, err
	}
	members := cl.Members()
	v, joined, err := s.engine.JoinPeers()
	if err != nil || !joined || cl.Member(ident.MemberID) != nil {
		return members, err
	}
	var learned []*membership.Member
	if err := json.Unmarshal(v, &learned); err != nil {
		return nil, fmt.Errorf("the members recorded when this member joined are corrupt: %w", err)
	}
	for _, m := range learned {
		if cl.Member(m.ID) == nil && !cl.IsRemoved(m.ID) {
			members = append(members, m)
		}
	}
	return members, nil
}

// fromProto converts a member of a MemberList answer, peer URLs sorted.
func fromProto(m *pb.Member) *membership.Member {
	urls := slices.Clone(m.GetPeerURLs())
	slices.Sort(urls)
	return &membership.Member{ID: m.GetID(), Name: m.GetName(), PeerURLs: urls, ClientURLs: m.GetClientURLs(), IsLearner: m.GetIsLearner()}
}
