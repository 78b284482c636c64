package api

import (
	"context"
	"errors"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/zap"
	"google.golang.org/grpc/metadata"

	"github.com/keeldb/keel/auth"
	"github.com/keeldb/keel/member"
	"github.com/keeldb/keel/metrics"
	"github.com/keeldb/keel/watch"
)

type watchServer struct {
	pb.UnimplementedWatchServer
	m   *member.Member
	ids *identitySource
	lg  *zap.Logger
	mt  *metrics.Metrics
}

// Watch serves one client watch stream: requests are read in one goroutine
// and handed to the hub's stream, responses are sent from this one.
func (s *watchServer) Watch(gs pb.Watch_WatchServer) error {
	ctx, cancel := context.WithCancel(gs.Context())
	defer cancel()
	if requiresLeader(ctx) && s.m.Leader() == 0 {
		return rpctypes.ErrGRPCNoLeader
	}
	ws := s.m.Watch().NewStream(func(rev int64) *pb.ResponseHeader {
		// The revision as given, even 0: etcd's compacted response says 0.
		return &pb.ResponseHeader{ClusterId: s.m.ClusterID(), MemberId: s.m.ID(), RaftTerm: s.m.Term(), Revision: rev}
	})
	defer ws.Close()

	recvErr := make(chan error, 1)
	go func() {
		// A client that closes its sending side still gets its events, as
		// with etcd; only a failed stream ends the watch.
		if err := s.recvWatchRequests(ctx, gs, ws); err != nil {
			recvErr <- err
			cancel()
		}
	}()
	send := func(r *pb.WatchResponse) error {
		start := time.Now()
		if err := gs.Send(r); err != nil {
			s.lg.Debug("failed to send watch response to gRPC stream", zap.Error(err))
			return errSendFailed{err}
		}
		s.mt.WatchSent(watchResponseKind(r), len(r.Events), time.Since(start))
		return nil
	}
	for {
		err := ws.Send(ctx, send)
		if err == nil {
			continue
		}
		var sf errSendFailed
		if errors.As(err, &sf) {
			return sf.err
		}
		// The receiving side failed, the client went away, or the hub
		// stopped because the member is shutting down.
		return watch.EndError(gs.Context(), recvErr)
	}
}

// watchResponseKind tells the metrics what r is: events, a watcher created
// or cancelled, or a progress notification (no events and nothing else).
func watchResponseKind(r *pb.WatchResponse) metrics.WatchResponse {
	switch {
	case len(r.Events) > 0:
		return metrics.WatchEvents
	case r.Created || r.Canceled:
		return metrics.WatchControl
	default:
		return metrics.WatchProgress
	}
}

// errSendFailed marks a failure of the gRPC stream itself.
type errSendFailed struct{ err error }

func (e errSendFailed) Error() string { return e.err.Error() }

// recvWatchRequests hands the client's requests to ws until the client
// closes its side (nil) or the stream fails. A create the client may not
// read is refused with etcd's reason.
func (s *watchServer) recvWatchRequests(ctx context.Context, gs pb.Watch_WatchServer, ws *watch.Stream) error {
	create := func(r *pb.WatchCreateRequest) {
		if reason := s.watchRefusal(ctx, r); reason != "" {
			ws.Refuse(reason)
			return
		}
		ws.Create(r)
	}
	return watch.RecvRequests(gs, create, ws.Cancel, ws.RequestProgress)
}

// watchRefusal is the cancel reason etcd gives a watch create the client
// may not make (read permission on its keys), "" if it may. A create with a
// negative start revision is left to the hub, which refuses it first, as
// etcd does.
func (s *watchServer) watchRefusal(ctx context.Context, r *pb.WatchCreateRequest) string {
	if r.StartRevision < 0 {
		return ""
	}
	key := r.Key
	if len(key) == 0 {
		key = []byte{0} // the smallest key, as the hub reads it
	}
	_, err := s.ids.readCheck(ctx, func(as *auth.Store, ai *auth.AuthInfo) error {
		return as.IsRangePermitted(ai, key, r.RangeEnd)
	})
	if err == nil {
		return ""
	}
	// The reason is the gRPC error's text, as etcd gives it.
	switch {
	case errors.Is(err, rpctypes.ErrGRPCInvalidAuthToken), errors.Is(err, rpctypes.ErrGRPCAuthOldRevision),
		errors.Is(err, rpctypes.ErrGRPCUserEmpty):
		return err.Error()
	}
	return rpctypes.ErrGRPCPermissionDenied.Error()
}

// requiresLeader reports whether the client asked, through etcd's metadata,
// to be refused when the member has no leader.
func requiresLeader(ctx context.Context) bool {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return false
	}
	v := md.Get(rpctypes.MetadataRequireLeaderKey)
	return len(v) > 0 && v[0] == rpctypes.MetadataHasLeader
}
