package member

import (
	"context"
	"errors"
	"io"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/keeldb/keel/apply"
)

// PeerHandler answers what other members send this one over the peer
// transport: Raft messages and snapshots, and the requests only a leader
// can serve, which followers forward to it. It never forwards a request
// again, so a request that reaches a member that no longer leads is
// answered with etcd's "not leader" and the sender retries.
type PeerHandler struct{ m *Member }

// PeerHandler returns the handler the peer transport delivers to.
func (m *Member) PeerHandler() *PeerHandler { return &PeerHandler{m} }

// Process hands a Raft message from a peer to Raft.
func (h *PeerHandler) Process(ctx context.Context, msg *raftpb.Message) error {
	if err := h.m.raft.Step(ctx, msg); err != nil {
		if errors.Is(err, raft.ErrStopped) {
			return rpctypes.ErrGRPCStopped
		}
		return err
	}
	return nil
}

// ProcessSnapshot hands over a snapshot whose state was received into path.
func (h *PeerHandler) ProcessSnapshot(ctx context.Context, msg *raftpb.Message, path string) error {
	return h.m.ProcessSnapshot(ctx, msg, path)
}

// OpenSnapshot returns the state to send with the snapshot message msg.
func (h *PeerHandler) OpenSnapshot(msg *raftpb.Message) (io.ReadCloser, error) {
	return h.m.OpenSnapshot(msg)
}

// ReportUnreachable tells Raft that peer id could not be reached.
func (h *PeerHandler) ReportUnreachable(id uint64) { h.m.raft.ReportUnreachable(id) }

// ReportSnapshot tells Raft how sending a snapshot to peer id ended.
func (h *PeerHandler) ReportSnapshot(id uint64, status raft.SnapshotStatus) {
	h.m.raft.ReportSnapshot(id, status)
}

// IsRemoved reports whether member id was removed from the cluster.
func (h *PeerHandler) IsRemoved(id uint64) bool { return h.m.cluster.IsRemoved(id) }

// MemberList answers a member that is joining: the cluster ID and the
// members as this member knows them.
func (h *PeerHandler) MemberList(ctx context.Context) (*pb.MemberListResponse, error) {
	m := h.m
	return &pb.MemberListResponse{
		Header:  &pb.ResponseHeader{ClusterId: m.ClusterID(), MemberId: m.ID(), RaftTerm: m.Term()},
		Members: apply.ProtoMembers(m.cluster.Members()),
	}, nil
}

// LeaseRenew renews a lease for a follower's keepalive stream; only the
// leader's lessor can.
func (h *PeerHandler) LeaseRenew(ctx context.Context, id int64) (int64, error) {
	return h.m.leaseRenewLocal(ctx, id)
}

// LeaseTimeToLive answers a follower's TimeToLive; only the leader can.
func (h *PeerHandler) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	return h.m.leaseTimeToLiveLocal(ctx, r)
}

// MemberPromote promotes a learner for a follower that received the
// request; only the leader knows whether the learner caught up.
func (h *PeerHandler) MemberPromote(ctx context.Context, id uint64) ([]*pb.Member, error) {
	return h.m.PromoteOnLeader(ctx, id)
}
