package member

import (
	"context"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/keeldb/keel/raftnode"
)

// PeerTransport carries Raft messages to the other members. The member
// keeps its peer set in step with the membership: every applied conf change
// adds, updates or removes the peer it names (never the local member).
//
// Implemented by *transport.Transport; nil for a member that runs alone and
// never had peers.
type PeerTransport interface {
	raftnode.Transport
	// AddPeer starts sending to member id at urls; adding a known peer
	// updates its URLs.
	AddPeer(id uint64, urls []string)
	// UpdatePeer changes the URLs of peer id.
	UpdatePeer(id uint64, urls []string)
	// RemovePeer stops sending to peer id and drops what is queued for it.
	RemovePeer(id uint64)
	// ActiveSince returns when the stream to peer id last became healthy,
	// or the zero time if it is not connected now.
	ActiveSince(id uint64) time.Time

	// LeaseRenew, LeaseTimeToLive and MemberPromote forward a request that
	// only the leader can answer to member to (the leader).
	LeaseRenew(ctx context.Context, to uint64, id int64) (int64, error)
	LeaseTimeToLive(ctx context.Context, to uint64, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error)
	MemberPromote(ctx context.Context, to uint64, id uint64) ([]*pb.Member, error)
	// HashKV asks member to for the hash of its key space at rev, for the
	// corruption checks; a compacted or future rev is refused with
	// rpctypes.ErrGRPCCompacted or rpctypes.ErrGRPCFutureRev.
	HashKV(ctx context.Context, to uint64, rev int64) (*pb.HashKVResponse, error)
}
