package api

import (
	"context"
	"errors"
	"io"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keeldb/keel/apply"
	"github.com/keeldb/keel/auth"
	"github.com/keeldb/keel/member"
)

type leaseServer struct {
	pb.UnimplementedLeaseServer
	m   *member.Member
	ids *identitySource
	lg  *zap.Logger
}

func (s *leaseServer) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	if _, err := s.ids.requireUser(ctx); err != nil {
		return nil, err
	}
	resp, err := s.m.LeaseGrant(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	fillHeader(s.m, resp.Header)
	return resp, nil
}

func (s *leaseServer) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	ai, err := s.ids.requireUser(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := s.m.LeaseRevoke(ctx, ai, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	fillHeader(s.m, resp.Header)
	return resp, nil
}

// LeaseTimeToLive answers an unknown lease with TTL -1, not an error, as
// etcd does. Asking for the keys needs read permission on them.
func (s *leaseServer) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	check := func() (func() error, error) {
		if r.Keys {
			return s.ids.leaseCheck(ctx, s.leaseReads(r.ID))
		}
		_, err := s.ids.requireUser(ctx)
		return noAfter, err
	}
	resp, err := s.m.LeaseTimeToLive(ctx, r, check)
	if errors.Is(err, rpctypes.ErrGRPCLeaseNotFound) {
		resp, err = &pb.LeaseTimeToLiveResponse{Header: &pb.ResponseHeader{}, ID: r.ID, TTL: -1}, nil
	}
	if err != nil {
		return nil, toGRPCError(err)
	}
	fillHeader(s.m, resp.Header)
	return resp, nil
}

// LeaseLeases lists the leases; a user without the root role needs read
// permission on every key of every lease.
func (s *leaseServer) LeaseLeases(ctx context.Context, _ *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	resp := s.m.LeaseLeases(ctx)
	err := s.ids.leaseCheckNow(ctx, func(as *auth.Store, ai *auth.AuthInfo) error {
		for _, l := range resp.Leases {
			if err := s.leaseReads(l.ID)(as, ai); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	fillHeader(s.m, resp.Header)
	return resp, nil
}

// leaseReads checks the read permission on the keys of lease id.
func (s *leaseServer) leaseReads(id int64) func(*auth.Store, *auth.AuthInfo) error {
	return func(as *auth.Store, ai *auth.AuthInfo) error {
		return apply.CheckLeaseReads(as, ai, s.m.LeaseKeys, id)
	}
}

// LeaseKeepAlive renews a lease for every request on the stream, in order,
// and answers each with the lease's TTL, or TTL 0 if the lease is not
// granted. The stream ends with the client's, or with the first error.
func (s *leaseServer) LeaseKeepAlive(stream pb.Lease_LeaseKeepAliveServer) error {
	// Recv blocks until the client sends or the stream ends; running the
	// loop aside lets a cancelled stream return at once even while a renew
	// waits.
	errc := make(chan error, 1)
	go func() { errc <- s.keepAlive(stream) }()
	select {
	case err := <-errc:
		return err
	case <-stream.Context().Done():
		return stream.Context().Err()
	}
}

func (s *leaseServer) keepAlive(stream pb.Lease_LeaseKeepAliveServer) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			s.logStreamError(stream.Context(), "receive", err)
			return err
		}
		// The header is taken before the renew, so its revision is never
		// newer than the state the renew saw: a client cannot see a
		// keepalive succeed at a revision after the lease's revocation.
		resp := &pb.LeaseKeepAliveResponse{ID: req.ID, Header: &pb.ResponseHeader{}}
		fillHeader(s.m, resp.Header)
		// Renewing keeps the lease's keys alive: write permission on them.
		err = s.ids.leaseCheckNow(stream.Context(), func(as *auth.Store, ai *auth.AuthInfo) error {
			return apply.CheckLeaseWrites(as, ai, s.m.LeaseKeys, req.ID)
		})
		if err != nil {
			return err
		}
		ttl, err := s.m.LeaseRenew(stream.Context(), req.ID)
		switch {
		case errors.Is(err, rpctypes.ErrGRPCLeaseNotFound):
			ttl = 0
		case err != nil:
			return toGRPCError(err)
		}
		resp.TTL = ttl
		if err := stream.Send(resp); err != nil {
			s.logStreamError(stream.Context(), "send", err)
			return err
		}
	}
}

// logStreamError logs a failed receive or send, at debug level when the
// client went away.
func (s *leaseServer) logStreamError(ctx context.Context, op string, err error) {
	msg := "failed to receive lease keepalive request from gRPC stream"
	if op == "send" {
		msg = "failed to send lease keepalive response to gRPC stream"
	}
	if ctx.Err() != nil || isClientGone(err) {
		s.lg.Debug(msg, zap.Error(err))
		return
	}
	s.lg.Warn(msg, zap.Error(err))
}

// isClientGone reports whether err says the client cancelled or
// disconnected.
func isClientGone(err error) bool {
	st, ok := status.FromError(err)
	if !ok {
		return false
	}
	switch st.Code() {
	case codes.Canceled, codes.DeadlineExceeded:
		return true
	case codes.Unavailable:
		return st.Message() == "client disconnected"
	}
	return false
}

func orNop(lg *zap.Logger) *zap.Logger {
	if lg == nil {
		return zap.NewNop()
	}
	return lg
}
