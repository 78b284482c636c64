package api

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"

	"github.com/keeldb/keel/member"
)

// authServer is etcd's Auth service. Every request but Authenticate goes
// through Raft on behalf of the caller's identity; whether the caller may
// make it (root, mostly) is decided when it is applied (see apply/auth.go).
type authServer struct {
	pb.UnimplementedAuthServer
	m   *member.Member
	ids *identitySource
}

// authRequest proposes req for the caller and returns its typed response
// with the header filled.
func authRequest[R interface {
	proto.Message
	GetHeader() *pb.ResponseHeader
}](ctx context.Context, s *authServer, req *pb.InternalRaftRequest) (R, error) {
	var zero R
	ai, err := s.ids.authInfo(ctx)
	if err != nil {
		return zero, err
	}
	resp, err := s.m.AuthRequest(ctx, ai, req)
	if err != nil {
		return zero, toGRPCError(err)
	}
	out := resp.(R)
	fillHeader(s.m, out.GetHeader())
	return out, nil
}

func (s *authServer) Authenticate(ctx context.Context, r *pb.AuthenticateRequest) (*pb.AuthenticateResponse, error) {
	resp, err := s.m.Authenticate(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	fillHeader(s.m, resp.Header)
	return resp, nil
}

func (s *authServer) AuthEnable(ctx context.Context, r *pb.AuthEnableRequest) (*pb.AuthEnableResponse, error) {
	return authRequest[*pb.AuthEnableResponse](ctx, s, &pb.InternalRaftRequest{AuthEnable: r})
}

func (s *authServer) AuthDisable(ctx context.Context, r *pb.AuthDisableRequest) (*pb.AuthDisableResponse, error) {
	return authRequest[*pb.AuthDisableResponse](ctx, s, &pb.InternalRaftRequest{AuthDisable: r})
}

func (s *authServer) AuthStatus(ctx context.Context, r *pb.AuthStatusRequest) (*pb.AuthStatusResponse, error) {
	return authRequest[*pb.AuthStatusResponse](ctx, s, &pb.InternalRaftRequest{AuthStatus: r})
}

func (s *authServer) UserAdd(ctx context.Context, r *pb.AuthUserAddRequest) (*pb.AuthUserAddResponse, error) {
	return authRequest[*pb.AuthUserAddResponse](ctx, s, &pb.InternalRaftRequest{AuthUserAdd: r})
}

func (s *authServer) UserGet(ctx context.Context, r *pb.AuthUserGetRequest) (*pb.AuthUserGetResponse, error) {
	return authRequest[*pb.AuthUserGetResponse](ctx, s, &pb.InternalRaftRequest{AuthUserGet: r})
}

func (s *authServer) UserList(ctx context.Context, r *pb.AuthUserListRequest) (*pb.AuthUserListResponse, error) {
	return authRequest[*pb.AuthUserListResponse](ctx, s, &pb.InternalRaftRequest{AuthUserList: r})
}

func (s *authServer) UserDelete(ctx context.Context, r *pb.AuthUserDeleteRequest) (*pb.AuthUserDeleteResponse, error) {
	return authRequest[*pb.AuthUserDeleteResponse](ctx, s, &pb.InternalRaftRequest{AuthUserDelete: r})
}

func (s *authServer) UserChangePassword(ctx context.Context, r *pb.AuthUserChangePasswordRequest) (*pb.AuthUserChangePasswordResponse, error) {
	return authRequest[*pb.AuthUserChangePasswordResponse](ctx, s, &pb.InternalRaftRequest{AuthUserChangePassword: r})
}

func (s *authServer) UserGrantRole(ctx context.Context, r *pb.AuthUserGrantRoleRequest) (*pb.AuthUserGrantRoleResponse, error) {
	return authRequest[*pb.AuthUserGrantRoleResponse](ctx, s, &pb.InternalRaftRequest{AuthUserGrantRole: r})
}

func (s *authServer) UserRevokeRole(ctx context.Context, r *pb.AuthUserRevokeRoleRequest) (*pb.AuthUserRevokeRoleResponse, error) {
	return authRequest[*pb.AuthUserRevokeRoleResponse](ctx, s, &pb.InternalRaftRequest{AuthUserRevokeRole: r})
}

func (s *authServer) RoleAdd(ctx context.Context, r *pb.AuthRoleAddRequest) (*pb.AuthRoleAddResponse, error) {
	return authRequest[*pb.AuthRoleAddResponse](ctx, s, &pb.InternalRaftRequest{AuthRoleAdd: r})
}

func (s *authServer) RoleGet(ctx context.Context, r *pb.AuthRoleGetRequest) (*pb.AuthRoleGetResponse, error) {
	return authRequest[*pb.AuthRoleGetResponse](ctx, s, &pb.InternalRaftRequest{AuthRoleGet: r})
}

func (s *authServer) RoleList(ctx context.Context, r *pb.AuthRoleListRequest) (*pb.AuthRoleListResponse, error) {
	return authRequest[*pb.AuthRoleListResponse](ctx, s, &pb.InternalRaftRequest{AuthRoleList: r})
}

func (s *authServer) RoleDelete(ctx context.Context, r *pb.AuthRoleDeleteRequest) (*pb.AuthRoleDeleteResponse, error) {
	return authRequest[*pb.AuthRoleDeleteResponse](ctx, s, &pb.InternalRaftRequest{AuthRoleDelete: r})
}

func (s *authServer) RoleGrantPermission(ctx context.Context, r *pb.AuthRoleGrantPermissionRequest) (*pb.AuthRoleGrantPermissionResponse, error) {
	return authRequest[*pb.AuthRoleGrantPermissionResponse](ctx, s, &pb.InternalRaftRequest{AuthRoleGrantPermission: r})
}

func (s *authServer) RoleRevokePermission(ctx context.Context, r *pb.AuthRoleRevokePermissionRequest) (*pb.AuthRoleRevokePermissionResponse, error) {
	return authRequest[*pb.AuthRoleRevokePermissionResponse](ctx, s, &pb.InternalRaftRequest{AuthRoleRevokePermission: r})
}
