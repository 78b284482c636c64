package member

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/keeldb/keel/apply"
	"github.com/keeldb/keel/membership"
)

// ErrRemoved is why a member stops once it learns that it was removed from
// the cluster (Err returns it). Its data dir can never serve again.
var ErrRemoved = errors.New("the member has been permanently removed from the cluster")

const (
	// healthInterval is how long a peer must have been connected to count
	// as healthy in the strict reconfiguration checks (etcd's
	// HealthInterval).
	healthInterval = 5 * time.Second
	// learnerReadyRatio is how much of the leader's log a learner must have
	// replicated before it may be promoted (etcd's threshold).
	learnerReadyRatio = 0.9
	// removedStopDelay is how long a member that applied its own removal
	// keeps running, so that the leader can tell the others that the
	// removal committed and the proposer gets its answer.
	removedStopDelay = time.Second
)

// IsLearner reports whether this member is a learner of the cluster.
func (m *Member) IsLearner() bool {
	self := m.cluster.Member(m.cfg.ID)
	return self != nil && self.IsLearner
}

// MemberAdd adds a member with peerURLs, as a learner if isLearner, and
// returns it and the members after the change. The ID is derived from the
// URLs and the current time, as etcd derives it. With strict
// reconfiguration checks a voter is only added when the cluster keeps a
// quorum of started and connected members.
func (m *Member) MemberAdd(ctx context.Context, peerURLs []string, isLearner bool) (*pb.Member, []*pb.Member, error) {
	urls, err := membership.ParsePeerURLs(peerURLs)
	if err != nil {
		return nil, nil, rpctypes.ErrGRPCMemberBadURLs
	}
	now := time.Now()
	mem := membership.NewMember("", urls, "", &now)
	mem.IsLearner = isLearner
	data, err := json.Marshal(mem)
	if err != nil {
		return nil, nil, err
	}
	if err := m.mayAddMember(mem); err != nil {
		return nil, nil, err
	}
	typ := raftpb.ConfChangeType_ConfChangeAddNode
	if isLearner {
		typ = raftpb.ConfChangeType_ConfChangeAddLearnerNode
	}
	if voters := len(m.cluster.VotingMembers()); !isLearner && voters == 1 {
		m.lg.Warn("adding a second voting member: until it has started and caught up, and for as long as the cluster has two voting members, "+
			"the cluster loses quorum if either member is down; add the member as a learner (member add --learner) and promote it once it has caught up to avoid this",
			zap.String("local-member-id", idString(m.cfg.ID)), zap.String("added-member-id", idString(mem.ID)), zap.Strings("added-member-peer-urls", urls))
	}
	members, err := m.configure(ctx, &raftpb.ConfChange{Type: typ.Enum(), NodeId: proto.Uint64(mem.ID), Context: data})
	if err != nil {
		return nil, nil, err
	}
	return &pb.Member{ID: mem.ID, PeerURLs: mem.PeerURLs, IsLearner: mem.IsLearner}, members, nil
}

// mayAddMember applies etcd's strict reconfiguration checks to adding mem.
func (m *Member) mayAddMember(mem *membership.Member) error {
	if !m.cfg.StrictReconfigCheck {
		return nil
	}
	if !mem.IsLearner && !m.cluster.ReadyToAddVoter() {
		m.lg.Warn("rejecting member add request; not enough healthy members",
			zap.String("local-member-id", idString(m.cfg.ID)), zap.String("requested-member-add", fmt.Sprintf("%+v", *mem)),
			zap.Error(rpctypes.ErrGRPCMemberNotEnoughStarted))
		return rpctypes.ErrGRPCMemberNotEnoughStarted
	}
	// The new member counts as down until it has started.
	voters := m.cluster.VotingMembers()
	if len(voters) > 1 && m.connectedSince(time.Now().Add(-healthInterval), voters) < quorum(len(voters)+1) {
		m.lg.Warn("rejecting member add request; local member has not been connected to majority peers, reconfigure breaks active quorum",
			zap.String("local-member-id", idString(m.cfg.ID)), zap.String("requested-member-add", fmt.Sprintf("%+v", *mem)),
			zap.Error(rpctypes.ErrGRPCUnhealthy))
		return rpctypes.ErrGRPCUnhealthy
	}
	return nil
}

// MemberRemove removes member id and returns the members after the change.
// Removing this member itself, even the leader, works: it stops shortly
// after the removal is applied (see Err). An unknown ID fails with
// rpctypes.ErrGRPCMemberNotFound once the change is applied, as in etcd.
func (m *Member) MemberRemove(ctx context.Context, id uint64) ([]*pb.Member, error) {
	if err := m.mayRemoveMember(id); err != nil {
		return nil, err
	}
	return m.configure(ctx, &raftpb.ConfChange{Type: raftpb.ConfChangeType_ConfChangeRemoveNode.Enum(), NodeId: proto.Uint64(id)})
}

// mayRemoveMember applies etcd's strict reconfiguration checks to removing
// member id: learners can always go; a voter only if the remaining voters
// keep a quorum of started members and, unless the voter is down anyway, a
// quorum of members this one is connected to.
func (m *Member) mayRemoveMember(id uint64) error {
	if !m.cfg.StrictReconfigCheck {
		return nil
	}
	if mem := m.cluster.Member(id); mem != nil && mem.IsLearner {
		return nil
	}
	if !m.cluster.ReadyToRemoveVoter(id) {
		m.lg.Warn("rejecting member remove request; not enough healthy members",
			zap.String("local-member-id", idString(m.cfg.ID)), zap.String("requested-member-remove-id", idString(id)),
			zap.Error(rpctypes.ErrGRPCMemberNotEnoughStarted))
		return rpctypes.ErrGRPCMemberNotEnoughStarted
	}
	if id != m.cfg.ID && m.activeSince(id).IsZero() {
		return nil // a member that is down is not part of the active quorum
	}
	voters := m.cluster.VotingMembers()
	active := m.connectedSince(time.Now().Add(-healthInterval), voters)
	if active-1 < 1+(len(voters)-1)/2 {
		m.lg.Warn("rejecting member remove request; local member has not been connected to all peers, reconfigure breaks active quorum",
			zap.String("local-member-id", idString(m.cfg.ID)), zap.String("requested-member-remove", idString(id)),
			zap.Int("active-peers", active), zap.Error(rpctypes.ErrGRPCUnhealthy))
		return rpctypes.ErrGRPCUnhealthy
	}
	return nil
}

// MemberUpdate replaces the peer URLs of member id and returns the members
// after the change. The URLs are taken as given, as etcd takes them.
func (m *Member) MemberUpdate(ctx context.Context, id uint64, peerURLs []string) ([]*pb.Member, error) {
	data, err := json.Marshal(&membership.Member{ID: id, PeerURLs: peerURLs})
	if err != nil {
		return nil, err
	}
	return m.configure(ctx, &raftpb.ConfChange{Type: raftpb.ConfChangeType_ConfChangeUpdateNode.Enum(), NodeId: proto.Uint64(id), Context: data})
}

// MemberPromote promotes learner id to a voting member and returns the
// members after the change. Only the leader knows whether the learner has
// caught up, so a follower forwards the request to the leader, following
// leader changes until the request timeout.
func (m *Member) MemberPromote(ctx context.Context, id uint64) ([]*pb.Member, error) {
	var members []*pb.Member
	err := m.onLeader(ctx, func(ctx context.Context) (err error) {
		members, err = m.PromoteOnLeader(ctx, id)
		return err
	}, func(ctx context.Context, lead uint64) (err error) {
		members, err = m.cfg.Transport.MemberPromote(ctx, lead, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return members, nil
}

// PromoteOnLeader promotes learner id if this member leads and the learner
// has replicated at least 90% of the leader's log; it never forwards. On a
// follower it fails with rpctypes.ErrGRPCNotLeader. This is what a leader
// answers to a promotion forwarded by a follower.
func (m *Member) PromoteOnLeader(ctx context.Context, id uint64) ([]*pb.Member, error) {
	if err := m.learnerReady(ctx, id); err != nil {
		return nil, err
	}
	if m.cfg.StrictReconfigCheck && !m.cluster.ReadyToPromote() {
		m.lg.Warn("rejecting member promote request; not enough healthy members",
			zap.String("local-member-id", idString(m.cfg.ID)), zap.String("requested-member-remove-id", idString(id)),
			zap.Error(rpctypes.ErrGRPCMemberNotEnoughStarted))
		return nil, rpctypes.ErrGRPCMemberNotEnoughStarted
	}
	data, err := json.Marshal(&membership.ConfChangeContext{Member: membership.Member{ID: id}, IsPromote: true})
	if err != nil {
		return nil, err
	}
	members, err := m.configure(ctx, &raftpb.ConfChange{Type: raftpb.ConfChangeType_ConfChangeAddNode.Enum(), NodeId: proto.Uint64(id), Context: data})
	if err == nil {
		m.cfg.Metrics.LearnerPromoted()
	}
	return members, err
}

// learnerReady checks, on the leader, that member id is a learner whose
// replication has caught up with the leader's log.
func (m *Member) learnerReady(ctx context.Context, id uint64) error {
	if err := m.waitAppliedCommitted(ctx); err != nil {
		return err
	}
	st := m.raft.Status()
	if st.Progress == nil {
		return rpctypes.ErrGRPCNotLeader
	}
	pr, ok := st.Progress[id]
	if !ok {
		return rpctypes.ErrGRPCMemberNotFound
	}
	if mem := m.cluster.Member(id); mem != nil && !mem.IsLearner {
		// etcd finds this when the promotion is applied; a voter's match
		// can trail the leader's by a few entries, so answering it here
		// keeps the answer the same however busy the cluster is.
		return rpctypes.ErrGRPCMemberNotLearner
	}
	leaderMatch := st.Progress[st.ID].Match
	if ratio := float64(pr.Match) / float64(leaderMatch); ratio < learnerReadyRatio {
		m.lg.Error("rejecting promote learner: learner is not ready",
			zap.Float64("learner-ready-percent", ratio), zap.Float64("ready-percent-threshold", learnerReadyRatio))
		return rpctypes.ErrGRPCLearnerNotReady
	}
	return nil
}

// waitAppliedCommitted waits until everything committed when it was called
// has been applied, bounded by the request timeout.
func (m *Member) waitAppliedCommitted(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, m.requestTimeout())
	defer cancel()
	if err := m.waitApplied(cctx, m.raft.CommittedIndex()); err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return rpctypes.ErrGRPCTimeoutWaitAppliedIndex
		}
		return err
	}
	return nil
}

// configure proposes the conf change cc and waits until it is applied. It
// returns the members right after the change, or the reason every member
// refused it (an rpctypes error).
func (m *Member) configure(ctx context.Context, cc *raftpb.ConfChange) ([]*pb.Member, error) {
	id := m.reqIDs.next()
	cc.Id = proto.Uint64(id)
	res, err := m.proposeAndWait(ctx, id, func(ctx context.Context) error { return m.raft.ProposeConfChange(ctx, cc) })
	if err != nil {
		return nil, err
	}
	if res.Err != nil {
		return nil, res.Err
	}
	m.lg.Info("applied a configuration change through raft", zap.String("local-member-id", idString(m.cfg.ID)),
		zap.String("raft-conf-change", cc.GetType().String()), zap.String("raft-conf-change-node-id", idString(cc.GetNodeId())))
	return res.Resp.(*pb.MemberListResponse).Members, nil
}

// activeSince returns since when the transport has been connected to peer
// id; the zero time without a transport.
func (m *Member) activeSince(id uint64) time.Time {
	if m.cfg.Transport == nil {
		return time.Time{}
	}
	return m.cfg.Transport.ActiveSince(id)
}

// connectedSince counts the members this one has been connected to since
// before since, itself included.
func (m *Member) connectedSince(since time.Time, members []*membership.Member) int {
	n := 0
	for _, mem := range members {
		if mem.ID == m.cfg.ID {
			n++
			continue
		}
		if t := m.activeSince(mem.ID); !t.IsZero() && t.Before(since) {
			n++
		}
	}
	return n
}

func quorum(n int) int { return n/2 + 1 }

// confChangeApplied brings the peer transport in line with a conf change
// the apply loop just applied (cc and its result from
// apply.ApplyConfChange), logs it, and schedules this member's stop if it
// removed this member. Called from the apply loop only.
func (m *Member) confChangeApplied(cc *raftpb.ConfChange, res *apply.Result) {
	cid, self := idString(m.cfg.ClusterID), idString(m.cfg.ID)
	if res.Err != nil {
		m.lg.Error("Validation on configuration change failed", zap.String("raft-conf-change", cc.GetType().String()), zap.Error(res.Err))
		return
	}
	id := cc.GetNodeId()
	switch cc.GetType() {
	case raftpb.ConfChangeType_ConfChangeAddNode, raftpb.ConfChangeType_ConfChangeAddLearnerNode:
		ctx, err := membership.DecodeConfChangeContext(cc)
		if err != nil {
			return // refused by apply.ApplyConfChange already
		}
		if ctx.IsPromote {
			m.lg.Info("promote member", zap.String("cluster-id", cid), zap.String("local-member-id", self), zap.String("promoted-member-id", idString(id)))
			return
		}
		m.lg.Info("added member", zap.String("cluster-id", cid), zap.String("local-member-id", self),
			zap.String("added-peer-id", idString(id)), zap.Strings("added-peer-peer-urls", ctx.PeerURLs),
			zap.Bool("added-peer-is-learner", cc.GetType() == raftpb.ConfChangeType_ConfChangeAddLearnerNode))
		if id != m.cfg.ID && m.cfg.Transport != nil {
			m.cfg.Transport.AddPeer(id, ctx.PeerURLs)
		}
	case raftpb.ConfChangeType_ConfChangeRemoveNode:
		m.lg.Info("removed member", zap.String("cluster-id", cid), zap.String("local-member-id", self),
			zap.String("removed-remote-peer-id", idString(id)))
		if id == m.cfg.ID {
			m.stopRemovedLater()
			return
		}
		if m.cfg.Transport != nil {
			m.cfg.Transport.RemovePeer(id)
		}
	case raftpb.ConfChangeType_ConfChangeUpdateNode:
		ctx, err := membership.DecodeConfChangeContext(cc)
		if err != nil {
			return
		}
		m.lg.Info("updated member", zap.String("cluster-id", cid), zap.String("local-member-id", self),
			zap.String("updated-remote-peer-id", idString(id)), zap.Strings("updated-remote-peer-urls", ctx.PeerURLs))
		if id != m.cfg.ID && m.cfg.Transport != nil {
			m.cfg.Transport.UpdatePeer(id, ctx.PeerURLs)
		}
	}
}

// syncPeers brings the peer transport in line with the membership after
// it was replaced wholesale (a snapshot installed; before is the membership
// until then): every other member is added or updated, every member that
// left is removed. Called from the apply loop only.
func (m *Member) syncPeers(before []*membership.Member) {
	if m.cfg.Transport == nil {
		return
	}
	now := make(map[uint64]bool)
	for _, mem := range m.cluster.Members() {
		now[mem.ID] = true
		if mem.ID != m.cfg.ID {
			m.cfg.Transport.AddPeer(mem.ID, mem.PeerURLs)
		}
	}
	for _, mem := range before {
		if !now[mem.ID] && mem.ID != m.cfg.ID {
			m.cfg.Transport.RemovePeer(mem.ID)
		}
	}
	if m.cluster.IsRemoved(m.cfg.ID) {
		m.stopRemovedLater()
	}
}

// stopRemovedLater stops the member with ErrRemoved after
// removedStopDelay, unless it stops before. Called from the apply loop.
func (m *Member) stopRemovedLater() {
	m.removeOnce.Do(func() {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			t := time.NewTimer(removedStopDelay)
			defer t.Stop()
			select {
			case <-t.C:
				m.Removed()
			case <-m.stopc:
			}
		}()
	})
}

// Removed stops the member because it was removed from the cluster: it
// applied its own removal, or a peer refused it as removed (the transport
// calls this). Err then returns ErrRemoved. Safe to call more than once and
// from any goroutine; it does not wait for the member to stop (see Done).
func (m *Member) Removed() {
	select {
	case <-m.stopc:
		return // stopped already
	default:
	}
	m.errMu.Lock()
	first := m.err == nil
	if first {
		m.err = ErrRemoved
	}
	m.errMu.Unlock()
	if first {
		m.lg.Warn("server error", zap.Error(ErrRemoved))
		m.lg.Warn("data-dir used by this member must be removed")
	}
	m.stopOnce.Do(func() { close(m.stopc) })
}
