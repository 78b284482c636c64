package api

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/keeldb/keel/member"
	"github.com/keeldb/keel/membership"
)

type clusterServer struct {
	pb.UnimplementedClusterServer
	m *member.Member
}

func (s *clusterServer) MemberList(ctx context.Context, r *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	members, err := s.m.Members(ctx, r.Linearizable)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.MemberListResponse{Header: s.header(), Members: toProtoMembers(members)}, nil
}

// header is the header etcd puts on Cluster responses: no revision.
func (s *clusterServer) header() *pb.ResponseHeader {
	return &pb.ResponseHeader{ClusterId: s.m.ClusterID(), MemberId: s.m.ID(), RaftTerm: s.m.Term()}
}

func toProtoMembers(ms []*membership.Member) []*pb.Member {
	out := make([]*pb.Member, len(ms))
	for i, m := range ms {
		out[i] = &pb.Member{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, IsLearner: m.IsLearner}
	}
	return out
}
