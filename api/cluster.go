package api

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/keeldb/keel/apply"
	"github.com/keeldb/keel/member"
)

// clusterServer is etcd's Cluster service. Every response carries a header
// without revision, and every change answers with the members right after
// it. While auth is enabled, changes need the root role and the list a
// user, as in etcd.
type clusterServer struct {
	pb.UnimplementedClusterServer
	m   *member.Member
	ids *identitySource
}

func (s *clusterServer) MemberAdd(ctx context.Context, r *pb.MemberAddRequest) (*pb.MemberAddResponse, error) {
	if err := s.ids.requireAdmin(ctx); err != nil {
		return nil, err
	}
	added, members, err := s.m.MemberAdd(ctx, r.PeerURLs, r.IsLearner)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.MemberAddResponse{Header: s.header(), Member: added, Members: members}, nil
}

func (s *clusterServer) MemberRemove(ctx context.Context, r *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
	if err := s.ids.requireAdmin(ctx); err != nil {
		return nil, err
	}
	members, err := s.m.MemberRemove(ctx, r.ID)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.MemberRemoveResponse{Header: s.header(), Members: members}, nil
}

func (s *clusterServer) MemberUpdate(ctx context.Context, r *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error) {
	if err := s.ids.requireAdmin(ctx); err != nil {
		return nil, err
	}
	members, err := s.m.MemberUpdate(ctx, r.ID, r.PeerURLs)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.MemberUpdateResponse{Header: s.header(), Members: members}, nil
}

func (s *clusterServer) MemberPromote(ctx context.Context, r *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	if err := s.ids.requireAdmin(ctx); err != nil {
		return nil, err
	}
	members, err := s.m.MemberPromote(ctx, r.ID)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.MemberPromoteResponse{Header: s.header(), Members: members}, nil
}

func (s *clusterServer) MemberList(ctx context.Context, r *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	members, err := s.m.Members(ctx, r.Linearizable)
	if err != nil {
		return nil, toGRPCError(err)
	}
	// etcd asks for a user after the ReadIndex round.
	if _, err := s.ids.requireUser(ctx); err != nil {
		return nil, err
	}
	return &pb.MemberListResponse{Header: s.header(), Members: apply.ProtoMembers(members)}, nil
}

// header is the header etcd puts on Cluster responses: no revision.
func (s *clusterServer) header() *pb.ResponseHeader {
	return &pb.ResponseHeader{ClusterId: s.m.ClusterID(), MemberId: s.m.ID(), RaftTerm: s.m.Term()}
}
