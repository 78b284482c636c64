package grpcproxy

import (
	"context"
	"errors"
	"io"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
)

// The Cluster, Maintenance and Auth services pass through to the cluster
// unchanged (the client's token travels with each call), except MemberList
// when the proxy advertises a client URL: it then names the proxy, as
// etcd's proxy does, so that clients syncing their endpoints stay on it;
// with a resolver prefix, it names every proxy registered there.

type clusterProxy struct {
	pb.UnimplementedClusterServer
	p *Proxy
	c pb.ClusterClient
}

func (x *clusterProxy) MemberList(ctx context.Context, r *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	if adv := x.p.cfg.AdvertiseClientURL; adv != "" {
		if prefix := x.p.cfg.ResolverPrefix; prefix != "" {
			if ms, err := registeredMembers(ctx, x.p.cfg.Client, prefix); err == nil && len(ms) > 0 {
				return &pb.MemberListResponse{Members: ms}, nil
			}
			// None registered yet: the proxy itself.
		}
		return &pb.MemberListResponse{Members: []*pb.Member{{Name: hostname(), ClientURLs: []string{adv}}}}, nil
	}
	return x.c.MemberList(upstream(ctx), r)
}

type maintenanceProxy struct {
	pb.UnimplementedMaintenanceServer
	p *Proxy
	c pb.MaintenanceClient
}

func (x *maintenanceProxy) Snapshot(r *pb.SnapshotRequest, srv grpc.ServerStreamingServer[pb.SnapshotResponse]) error {
	ctx, cancel := context.WithCancel(upstream(srv.Context()))
	defer cancel()
	up, err := x.c.Snapshot(ctx, r)
	if err != nil {
		return err
	}
	for {
		resp, err := up.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := srv.Send(resp); err != nil {
			return err
		}
	}
}

type authProxy struct {
	pb.UnimplementedAuthServer
	p *Proxy
	c pb.AuthClient
}

func (x *clusterProxy) MemberAdd(ctx context.Context, r *pb.MemberAddRequest) (*pb.MemberAddResponse, error) {
	return x.c.MemberAdd(upstream(ctx), r)
}

func (x *clusterProxy) MemberRemove(ctx context.Context, r *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
	return x.c.MemberRemove(upstream(ctx), r)
}

func (x *clusterProxy) MemberUpdate(ctx context.Context, r *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error) {
	return x.c.MemberUpdate(upstream(ctx), r)
}

func (x *clusterProxy) MemberPromote(ctx context.Context, r *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	return x.c.MemberPromote(upstream(ctx), r)
}

func (x *maintenanceProxy) Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	return x.c.Alarm(upstream(ctx), r)
}

func (x *maintenanceProxy) Status(ctx context.Context, r *pb.StatusRequest) (*pb.StatusResponse, error) {
	return x.c.Status(upstream(ctx), r)
}

func (x *maintenanceProxy) Defragment(ctx context.Context, r *pb.DefragmentRequest) (*pb.DefragmentResponse, error) {
	return x.c.Defragment(upstream(ctx), r)
}

func (x *maintenanceProxy) Hash(ctx context.Context, r *pb.HashRequest) (*pb.HashResponse, error) {
	return x.c.Hash(upstream(ctx), r)
}

func (x *maintenanceProxy) HashKV(ctx context.Context, r *pb.HashKVRequest) (*pb.HashKVResponse, error) {
	return x.c.HashKV(upstream(ctx), r)
}

func (x *maintenanceProxy) MoveLeader(ctx context.Context, r *pb.MoveLeaderRequest) (*pb.MoveLeaderResponse, error) {
	return x.c.MoveLeader(upstream(ctx), r)
}

func (x *maintenanceProxy) Downgrade(ctx context.Context, r *pb.DowngradeRequest) (*pb.DowngradeResponse, error) {
	return x.c.Downgrade(upstream(ctx), r)
}

func (x *authProxy) AuthEnable(ctx context.Context, r *pb.AuthEnableRequest) (*pb.AuthEnableResponse, error) {
	resp, err := x.c.AuthEnable(upstream(ctx), r)
	// Cached answers were read without permission checks: from now on
	// tokenless reads must fail, so none may be served from the cache.
	x.p.cache.clear()
	return resp, err
}

func (x *authProxy) AuthDisable(ctx context.Context, r *pb.AuthDisableRequest) (*pb.AuthDisableResponse, error) {
	return x.c.AuthDisable(upstream(ctx), r)
}

func (x *authProxy) AuthStatus(ctx context.Context, r *pb.AuthStatusRequest) (*pb.AuthStatusResponse, error) {
	return x.c.AuthStatus(upstream(ctx), r)
}

func (x *authProxy) Authenticate(ctx context.Context, r *pb.AuthenticateRequest) (*pb.AuthenticateResponse, error) {
	return x.c.Authenticate(upstream(ctx), r)
}

func (x *authProxy) UserAdd(ctx context.Context, r *pb.AuthUserAddRequest) (*pb.AuthUserAddResponse, error) {
	return x.c.UserAdd(upstream(ctx), r)
}

func (x *authProxy) UserGet(ctx context.Context, r *pb.AuthUserGetRequest) (*pb.AuthUserGetResponse, error) {
	return x.c.UserGet(upstream(ctx), r)
}

func (x *authProxy) UserList(ctx context.Context, r *pb.AuthUserListRequest) (*pb.AuthUserListResponse, error) {
	return x.c.UserList(upstream(ctx), r)
}

func (x *authProxy) UserDelete(ctx context.Context, r *pb.AuthUserDeleteRequest) (*pb.AuthUserDeleteResponse, error) {
	return x.c.UserDelete(upstream(ctx), r)
}

func (x *authProxy) UserChangePassword(ctx context.Context, r *pb.AuthUserChangePasswordRequest) (*pb.AuthUserChangePasswordResponse, error) {
	return x.c.UserChangePassword(upstream(ctx), r)
}

func (x *authProxy) UserGrantRole(ctx context.Context, r *pb.AuthUserGrantRoleRequest) (*pb.AuthUserGrantRoleResponse, error) {
	return x.c.UserGrantRole(upstream(ctx), r)
}

func (x *authProxy) UserRevokeRole(ctx context.Context, r *pb.AuthUserRevokeRoleRequest) (*pb.AuthUserRevokeRoleResponse, error) {
	return x.c.UserRevokeRole(upstream(ctx), r)
}

func (x *authProxy) RoleAdd(ctx context.Context, r *pb.AuthRoleAddRequest) (*pb.AuthRoleAddResponse, error) {
	return x.c.RoleAdd(upstream(ctx), r)
}

func (x *authProxy) RoleGet(ctx context.Context, r *pb.AuthRoleGetRequest) (*pb.AuthRoleGetResponse, error) {
	return x.c.RoleGet(upstream(ctx), r)
}

func (x *authProxy) RoleList(ctx context.Context, r *pb.AuthRoleListRequest) (*pb.AuthRoleListResponse, error) {
	return x.c.RoleList(upstream(ctx), r)
}

func (x *authProxy) RoleDelete(ctx context.Context, r *pb.AuthRoleDeleteRequest) (*pb.AuthRoleDeleteResponse, error) {
	return x.c.RoleDelete(upstream(ctx), r)
}

func (x *authProxy) RoleGrantPermission(ctx context.Context, r *pb.AuthRoleGrantPermissionRequest) (*pb.AuthRoleGrantPermissionResponse, error) {
	return x.c.RoleGrantPermission(upstream(ctx), r)
}

func (x *authProxy) RoleRevokePermission(ctx context.Context, r *pb.AuthRoleRevokePermissionRequest) (*pb.AuthRoleRevokePermissionResponse, error) {
	return x.c.RoleRevokePermission(upstream(ctx), r)
}
