package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

const (
	serviceName           = "keel.peer.v1.Peer"
	methodStream          = "/" + serviceName + "/Stream"
	methodSnapshot        = "/" + serviceName + "/Snapshot"
	methodLeaseRenew      = "/" + serviceName + "/LeaseRenew"
	methodLeaseTimeToLive = "/" + serviceName + "/LeaseTimeToLive"
	methodMemberPromote   = "/" + serviceName + "/MemberPromote"
	methodMembers         = "/" + serviceName + "/Members"
	methodHashKV          = "/" + serviceName + "/HashKV"
)

// Snapshot is client-streaming: the sender writes frames and the receiver
// answers once, with an empty frame or a status, when the sender is done or
// the receiver refuses. Stream is the same, except that the receiver also
// answers every frame with an empty acknowledgement.
var (
	streamDesc   = grpc.StreamDesc{StreamName: "Stream", ClientStreams: true, ServerStreams: true}
	snapshotDesc = grpc.StreamDesc{StreamName: "Snapshot", ClientStreams: true}
)

// serviceDesc is the peer service. Requests and responses of the unary
// methods are etcdserverpb messages: LeaseKeepAliveRequest/Response for
// LeaseRenew, LeaseTimeToLiveRequest/Response, MemberPromoteRequest/Response,
// MemberListRequest/Response for Members, HashKVRequest/Response for
// HashKV.
var serviceDesc = grpc.ServiceDesc{
	ServiceName: serviceName,
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{
		{StreamName: "Stream", ClientStreams: true, ServerStreams: true, Handler: func(srv any, ss grpc.ServerStream) error {
			return srv.(*Transport).serveStream(ss)
		}},
		{StreamName: "Snapshot", ClientStreams: true, Handler: func(srv any, ss grpc.ServerStream) error {
			return srv.(*Transport).serveSnapshot(ss)
		}},
	},
	Methods: []grpc.MethodDesc{
		{MethodName: "LeaseRenew", Handler: unary(func(t *Transport, ctx context.Context, req *pb.LeaseKeepAliveRequest) (*pb.LeaseKeepAliveResponse, error) {
			ttl, err := t.h().LeaseRenew(ctx, req.ID)
			if err != nil {
				return nil, err
			}
			return &pb.LeaseKeepAliveResponse{ID: req.ID, TTL: ttl}, nil
		}, true)},
		{MethodName: "LeaseTimeToLive", Handler: unary(func(t *Transport, ctx context.Context, req *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
			return t.h().LeaseTimeToLive(ctx, req)
		}, true)},
		{MethodName: "MemberPromote", Handler: unary(func(t *Transport, ctx context.Context, req *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
			ms, err := t.h().MemberPromote(ctx, req.ID)
			if err != nil {
				return nil, err
			}
			return &pb.MemberPromoteResponse{Members: ms}, nil
		}, true)},
		{MethodName: "HashKV", Handler: unary(func(t *Transport, ctx context.Context, req *pb.HashKVRequest) (*pb.HashKVResponse, error) {
			return t.h().HashKV(ctx, req.Revision)
		}, true)},
		{MethodName: "Members", Handler: unary(func(t *Transport, ctx context.Context, _ *pb.MemberListRequest) (*pb.MemberListResponse, error) {
			return t.h().MemberList(ctx)
		}, false)},
	},
}

// unary adapts fn to a gRPC method handler that decodes the raw request
// into Req and encodes fn's response. With checked, the caller must pass
// checkPeer; Members is unchecked because a joining member does not know
// the cluster ID yet.
func unary[Req any, Resp proto.Message, ReqP interface {
	*Req
	proto.Message
}](fn func(*Transport, context.Context, ReqP) (Resp, error), checked bool) func(any, context.Context, func(any) error, grpc.UnaryServerInterceptor) (any, error) {
	return func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
		t := srv.(*Transport)
		if t.h() == nil {
			return nil, status.Error(codes.Unavailable, "transport: the member is not ready")
		}
		if checked {
			if _, err := t.checkPeer(ctx); err != nil {
				return nil, err
			}
		}
		var in []byte
		if err := dec(&in); err != nil {
			return nil, err
		}
		req := ReqP(new(Req))
		if err := proto.Unmarshal(in, req); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "transport: bad request: %v", err)
		}
		resp, err := fn(t, ctx, req)
		if err != nil {
			return nil, err
		}
		out, err := proto.Marshal(resp)
		if err != nil {
			return nil, err
		}
		return out, nil
	}
}

// checkPeer checks the metadata of an incoming RPC: the sender must belong
// to this cluster, address this member and not have been removed. It
// returns the sender's ID.
func (t *Transport) checkPeer(ctx context.Context) (uint64, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	get := func(key string) (uint64, bool) {
		v := md.Get(key)
		if len(v) != 1 {
			return 0, false
		}
		id, err := strconv.ParseUint(v[0], 16, 64)
		return id, err == nil
	}
	cid, ok1 := get(MDClusterID)
	from, ok2 := get(MDFrom)
	to, ok3 := get(MDTo)
	if !ok1 || !ok2 || !ok3 {
		return 0, status.Error(codes.InvalidArgument, "transport: missing or malformed peer metadata")
	}
	lg := t.lg.With(t.localField(), idField("remote-peer-id", from))
	switch {
	case cid != t.cfg.ClusterID:
		if t.limiter.Allow(fmt.Sprintf("in-mismatch/%x", from)) {
			lg.Warn("rejected peer: cluster ID mismatch",
				idField("local-member-cluster-id", t.cfg.ClusterID), idField("remote-peer-cluster-id", cid))
		}
		return 0, status.Errorf(codes.FailedPrecondition, "%s: this member belongs to cluster %x, the peer %x to cluster %x",
			status.Convert(ErrClusterIDMismatch).Message(), t.cfg.ClusterID, from, cid)
	case to != t.cfg.ID:
		if t.limiter.Allow(fmt.Sprintf("in-wrong-to/%x", from)) {
			lg.Warn("rejected peer: request addressed to another member; check the peer URLs",
				idField("remote-peer-addressed-id", to))
		}
		return 0, status.Errorf(codes.FailedPrecondition, "request addressed to member %x reached member %x; check the peer URLs", to, t.cfg.ID)
	case t.h().IsRemoved(from):
		if t.limiter.Allow(fmt.Sprintf("in-removed/%x", from)) {
			lg.Warn("rejected peer because it was removed from the cluster")
		}
		return 0, ErrMemberRemoved
	}
	return from, nil
}

// accept checks who opened stream ss and accepts it by sending the
// response header; it returns the sender and a logger that names it.
func (t *Transport) accept(ss grpc.ServerStream) (uint64, *zap.Logger, error) {
	if t.h() == nil {
		return 0, nil, status.Error(codes.Unavailable, "transport: the member is not ready")
	}
	from, err := t.checkPeer(ss.Context())
	if err != nil {
		return 0, nil, err
	}
	if err := ss.SendHeader(metadata.MD{}); err != nil {
		return 0, nil, err
	}
	return from, t.lg.With(t.localField(), idField("remote-peer-id", from)), nil
}

// serveStream receives the Raft messages of one sender and hands them to
// the handler in order. It accepts the stream by sending the response
// header, acknowledges every frame once its messages are handed over, and
// checks before every frame that the sender was not removed meanwhile.
func (t *Transport) serveStream(ss grpc.ServerStream) error {
	from, lg, err := t.accept(ss)
	if err != nil {
		return err
	}
	ctx := ss.Context()
	lg.Info("accepted Raft message stream from remote peer")
	for {
		var frame []byte
		if err := ss.RecvMsg(&frame); err != nil {
			if errors.Is(err, io.EOF) {
				return ss.SendMsg([]byte{})
			}
			if ctx.Err() == nil {
				t.cfg.Metrics.PeerReceiveFailed(from)
				lg.Warn("lost Raft message stream from remote peer", zap.Error(err))
			}
			return err
		}
		t.cfg.Metrics.PeerReceived(from, len(frame))
		if t.h().IsRemoved(from) {
			return ErrMemberRemoved
		}
		err := decodeBatch(frame, func(m *raftpb.Message) error {
			if err := t.h().Process(ctx, m); err != nil && ctx.Err() == nil &&
				t.limiter.Allow(fmt.Sprintf("process/%x", from)) {
				lg.Warn("failed to process Raft message", zap.Stringer("message-type", m.GetType()), zap.Error(err))
			}
			return nil
		})
		if err != nil {
			lg.Warn("received a corrupt frame from remote peer", zap.Error(err))
			return status.Errorf(codes.InvalidArgument, "transport: %v", err)
		}
		// Acknowledge the frame end to end, so that the sender notices a
		// path that swallows frames (a stuck proxy) and reconnects.
		if err := ss.SendMsg([]byte{}); err != nil {
			return err
		}
	}
}
