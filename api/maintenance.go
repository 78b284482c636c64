package api

import (
	"context"
	"errors"
	"io"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/keeldb/keel/member"
	"github.com/keeldb/keel/version"
)

type maintenanceServer struct {
	pb.UnimplementedMaintenanceServer
	m   *member.Member
	ids *identitySource
}

func (s *maintenanceServer) Status(ctx context.Context, r *pb.StatusRequest) (*pb.StatusResponse, error) {
	if _, err := s.ids.requireUser(ctx); err != nil {
		return nil, err
	}
	st := s.m.Status()
	resp := &pb.StatusResponse{
		Header:           &pb.ResponseHeader{},
		Version:          version.Etcd,
		DbSize:           st.DBSize,
		DbSizeInUse:      st.DBSizeInUse,
		Leader:           st.Leader,
		RaftIndex:        st.RaftIndex,
		RaftTerm:         st.RaftTerm,
		RaftAppliedIndex: st.RaftAppliedIndex,
		IsLearner:        st.IsLearner,
		DbSizeQuota:      s.m.QuotaBytes(),
		StorageVersion:   version.Storage,
		DowngradeInfo:    &pb.DowngradeInfo{},
	}
	fillHeader(s.m, resp.Header)
	if st.Leader == 0 {
		resp.Errors = append(resp.Errors, rpctypes.ErrNoLeader.Error())
	}
	for _, a := range s.m.Alarms() {
		resp.Errors = append(resp.Errors, a.String())
	}
	return resp, nil
}

// Alarm needs a user to list alarms and the root role to change them.
func (s *maintenanceServer) Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	var err error
	if r.Action == pb.AlarmRequest_GET {
		_, err = s.ids.requireUser(ctx)
	} else {
		err = s.ids.requireAdmin(ctx)
	}
	if err != nil {
		return nil, err
	}
	resp, err := s.m.Alarm(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	if resp.Header == nil {
		resp.Header = &pb.ResponseHeader{}
	}
	fillHeader(s.m, resp.Header)
	return resp, nil
}

func (s *maintenanceServer) Hash(ctx context.Context, r *pb.HashRequest) (*pb.HashResponse, error) {
	if err := s.ids.requireAdmin(ctx); err != nil {
		return nil, err
	}
	h, rev, err := s.m.Hash(ctx)
	if err != nil {
		return nil, toGRPCError(err)
	}
	resp := &pb.HashResponse{Header: &pb.ResponseHeader{Revision: rev}, Hash: h}
	fillHeader(s.m, resp.Header)
	return resp, nil
}

func (s *maintenanceServer) HashKV(ctx context.Context, r *pb.HashKVRequest) (*pb.HashKVResponse, error) {
	if err := s.ids.requireAdmin(ctx); err != nil {
		return nil, err
	}
	h, rev, err := s.m.HashKV(ctx, r.Revision)
	if err != nil {
		return nil, toGRPCError(err)
	}
	resp := &pb.HashKVResponse{
		Header:          &pb.ResponseHeader{Revision: rev},
		Hash:            h.Hash,
		CompactRevision: h.CompactRevision,
		HashRevision:    h.Revision,
	}
	fillHeader(s.m, resp.Header)
	return resp, nil
}

// MoveLeader must reach the leader, as in etcd; its response carries no
// header.
func (s *maintenanceServer) MoveLeader(ctx context.Context, r *pb.MoveLeaderRequest) (*pb.MoveLeaderResponse, error) {
	if err := s.ids.requireAdmin(ctx); err != nil {
		return nil, err
	}
	if err := s.m.MoveLeader(ctx, r.TargetID); err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.MoveLeaderResponse{}, nil
}

// Defragment needs the root role, as in etcd, and reclaims this member's
// disk space while it keeps serving. etcd's response carries no header.
func (s *maintenanceServer) Defragment(ctx context.Context, r *pb.DefragmentRequest) (*pb.DefragmentResponse, error) {
	if err := s.ids.requireAdmin(ctx); err != nil {
		return nil, err
	}
	if err := s.m.Defragment(ctx); err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.DefragmentResponse{}, nil
}

// snapshotChunk is the size of the blob of each SnapshotResponse, etcd's.
const snapshotChunk = 32 << 10

// Snapshot streams a snapshot file of the member's state (package snapshot)
// in chunks, as etcd does: the client concatenates the blobs, and the file
// ends with the sha256 trailer etcdctl checks. Version is the storage
// version. Unlike etcd's, RemainingBytes is an estimate, since the file is
// produced as it is sent: it is 0 in the last message only.
func (s *maintenanceServer) Snapshot(r *pb.SnapshotRequest, stream pb.Maintenance_SnapshotServer) error {
	if err := s.ids.requireAdmin(stream.Context()); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, err := s.m.SaveSnapshot(ctx, pw)
		pw.CloseWithError(err)
	}()
	defer func() {
		cancel()
		pr.Close()
		<-done
	}()
	est := s.m.SnapshotSizeEstimate()
	var sent int64
	// One chunk is held back until the next read says whether it is the
	// last, which alone carries RemainingBytes 0.
	var pending []byte
	for {
		buf := make([]byte, snapshotChunk) // Send may keep it: never reused
		n, err := io.ReadFull(pr, buf)
		last := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
		if err != nil && !last {
			return toGRPCError(err)
		}
		if pending != nil {
			sent += int64(len(pending))
			remaining := uint64(1)
			if last && n == 0 {
				remaining = 0
			} else {
				remaining = uint64(max(est-sent, sent/8, int64(n)))
			}
			if err := stream.Send(&pb.SnapshotResponse{RemainingBytes: remaining, Blob: pending, Version: version.Storage}); err != nil {
				return err
			}
		}
		pending = buf[:n]
		if last {
			if n > 0 {
				if err := stream.Send(&pb.SnapshotResponse{Blob: pending, Version: version.Storage}); err != nil {
					return err
				}
			}
			return nil
		}
	}
}

// Downgrade needs the root role, as in etcd; keel does not downgrade.
func (s *maintenanceServer) Downgrade(ctx context.Context, r *pb.DowngradeRequest) (*pb.DowngradeResponse, error) {
	if err := s.ids.requireAdmin(ctx); err != nil {
		return nil, err
	}
	return s.UnimplementedMaintenanceServer.Downgrade(ctx, r)
}
