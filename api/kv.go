// Package api adapts the member to etcd's wire API: the gRPC services
// (KV, Maintenance, Cluster) and the HTTP endpoints of the client port. It
// validates requests, maps errors to etcd's, and fills response headers; the
// work itself is the member's.
package api

import (
	"context"
	"errors"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keeldb/keel/apply"
	"github.com/keeldb/keel/auth"
	"github.com/keeldb/keel/member"
	"github.com/keeldb/keel/mvcc"
)

type kvServer struct {
	pb.UnimplementedKVServer
	m         *member.Member
	ids       *identitySource
	maxTxnOps int
}

// fillHeader completes a response header as etcd does: cluster and member
// IDs, the current term, and the current revision unless one is set.
func fillHeader(m *member.Member, h *pb.ResponseHeader) {
	h.ClusterId = m.ClusterID()
	h.MemberId = m.ID()
	h.RaftTerm = m.Term()
	if h.Revision == 0 {
		h.Revision = m.Rev()
	}
}

func (s *kvServer) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := checkRange(r); err != nil {
		return nil, err
	}
	resp, err := s.m.Range(ctx, r, func() (func() error, error) { return s.rangeCheck(ctx, r) })
	if err != nil {
		return nil, toGRPCError(err)
	}
	fillHeader(s.m, resp.Header)
	return resp, nil
}

// rangeCheck is the member.ReadCheck of r: read permission on its keys.
func (s *kvServer) rangeCheck(ctx context.Context, r *pb.RangeRequest) (func() error, error) {
	return s.ids.readCheck(ctx, func(as *auth.Store, ai *auth.AuthInfo) error {
		return as.IsRangePermitted(ai, r.Key, r.RangeEnd)
	})
}

func (s *kvServer) RangeStream(r *pb.RangeRequest, stream pb.KV_RangeStreamServer) error {
	if err := checkRange(r); err != nil {
		return err
	}
	if !apply.IsDefaultOrdering(r) {
		return status.Error(codes.Unimplemented, "RangeStream does not support custom sort orders")
	}
	if apply.HasRevisionFilters(r) {
		return status.Error(codes.Unimplemented, "RangeStream does not support revision filters")
	}
	ctx := stream.Context()
	err := s.m.RangeStream(ctx, r, func() (func() error, error) { return s.rangeCheck(ctx, r) }, func(resp *pb.RangeResponse) error {
		if resp.Header != nil {
			rev := resp.Header.Revision
			fillHeader(s.m, resp.Header)
			resp.Header.Revision = rev
		}
		return stream.Send(&pb.RangeStreamResponse{RangeResponse: resp})
	})
	if err != nil {
		return toGRPCError(err)
	}
	return nil
}

func (s *kvServer) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	if err := checkPut(r); err != nil {
		return nil, err
	}
	ai, err := s.ids.authInfo(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := s.m.Put(ctx, ai, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	fillHeader(s.m, resp.Header)
	return resp, nil
}

func (s *kvServer) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if err := checkDelete(r); err != nil {
		return nil, err
	}
	ai, err := s.ids.authInfo(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := s.m.DeleteRange(ctx, ai, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	fillHeader(s.m, resp.Header)
	return resp, nil
}

func (s *kvServer) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	if err := checkTxn(r, s.maxTxnOps); err != nil {
		return nil, err
	}
	// Checked after the size check so a huge txn cannot make this quadratic.
	if _, _, err := checkDuplicates(r.Success); err != nil {
		return nil, err
	}
	if _, _, err := checkDuplicates(r.Failure); err != nil {
		return nil, err
	}
	if apply.IsTxnReadOnly(r) {
		return s.readTxn(ctx, r)
	}
	ai, err := s.ids.authInfo(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := s.m.Txn(ctx, ai, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	fillHeader(s.m, resp.Header)
	return resp, nil
}

// readTxn serves a read-only txn, whose permissions are checked by the
// serving member, as etcd does.
func (s *kvServer) readTxn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	resp, err := s.m.ReadTxn(ctx, r, func() (func() error, error) {
		return s.ids.readCheck(ctx, func(as *auth.Store, ai *auth.AuthInfo) error {
			return apply.CheckTxn(as, ai, s.m.LeaseKeys, r)
		})
	})
	if err != nil {
		return nil, toGRPCError(err)
	}
	fillHeader(s.m, resp.Header)
	return resp, nil
}

func (s *kvServer) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	if err := s.ids.requireAdmin(ctx); err != nil {
		return nil, err
	}
	resp, err := s.m.Compact(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	fillHeader(s.m, resp.Header)
	return resp, nil
}

// toGRPCError maps a member error to the gRPC error etcd returns for it.
func toGRPCError(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err // gRPC turns these into Canceled and DeadlineExceeded
	}
	switch {
	case errors.Is(err, mvcc.ErrCompacted):
		return rpctypes.ErrGRPCCompacted
	case errors.Is(err, mvcc.ErrFutureRev):
		return rpctypes.ErrGRPCFutureRev
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Unknown, err.Error())
}
