package api

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"

	"github.com/keeldb/keel/member"
)

// snapshotMethod is the one streaming RPC a learner serves.
const snapshotMethod = "/etcdserverpb.Maintenance/Snapshot"

// learnerUnaryInterceptor refuses, while this member is a learner, every
// unary RPC etcd refuses on a learner: all but Status and serializable
// Range, with rpctypes.ErrGRPCNotSupportedForLearner.
func learnerUnaryInterceptor(m *member.Member) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if m.IsLearner() && !learnerServes(req) {
			return nil, rpctypes.ErrGRPCNotSupportedForLearner
		}
		return handler(ctx, req)
	}
}

// learnerStreamInterceptor refuses every streaming RPC but Snapshot while
// this member is a learner, as etcd does.
func learnerStreamInterceptor(m *member.Member) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if m.IsLearner() && info.FullMethod != snapshotMethod {
			return rpctypes.ErrGRPCNotSupportedForLearner
		}
		return handler(srv, ss)
	}
}

// learnerServes reports whether a learner answers req.
func learnerServes(req any) bool {
	switch r := req.(type) {
	case *pb.StatusRequest:
		return true
	case *pb.RangeRequest:
		return r.Serializable
	}
	return false
}
