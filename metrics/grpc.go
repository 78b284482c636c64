package metrics

import (
	"context"
	"unicode/utf8"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
)

// GRPCUnary and GRPCStream are the interceptors that count the client
// gRPC server's calls and messages (the grpc_server_* families, labelled
// grpc_type, grpc_service, grpc_method and, when handled, grpc_code, as
// etcd's) and the calls per client API version
// (etcd_server_client_requests_total). They are nil without metrics; they
// should run first, so that a request refused by a later interceptor still
// counts.
func (m *Metrics) GRPCUnary() grpc.UnaryServerInterceptor {
	if m == nil {
		return nil
	}
	next := m.grpc.UnaryServerInterceptor()
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		m.countClientRequest(ctx, "unary")
		return next(ctx, req, info, handler)
	}
}

// GRPCStream: see GRPCUnary.
func (m *Metrics) GRPCStream() grpc.StreamServerInterceptor {
	if m == nil {
		return nil
	}
	next := m.grpc.StreamServerInterceptor()
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		m.countClientRequest(ss.Context(), "stream")
		return next(srv, ss, info, handler)
	}
}

// countClientRequest counts a call of type typ under the API version the
// client sent ("unknown" without one), as etcd does; a version that is not
// UTF-8 is left for the API to refuse.
func (m *Metrics) countClientRequest(ctx context.Context, typ string) {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return
	}
	ver := "unknown"
	if vs := md.Get(rpctypes.MetadataClientAPIVersionKey); len(vs) > 0 {
		ver = vs[0]
	}
	if utf8.ValidString(ver) {
		m.clientRequests.WithLabelValues(typ, ver).Inc()
	}
}

// GRPCStatsHandler counts the bytes of the messages the client gRPC server
// receives and sends (etcd_network_client_grpc_*_bytes_total), measured as
// etcd measures them: the encoded message, before compression and framing.
func (m *Metrics) GRPCStatsHandler() stats.Handler {
	if m == nil {
		return nil
	}
	return bytesHandler{m}
}

// InitGRPC gives every method of gs its grpc_server_* series at zero, as
// etcd does, so that rates exist before the first call. Call it after the
// services are registered.
func (m *Metrics) InitGRPC(gs *grpc.Server) {
	if m != nil {
		m.grpc.InitializeMetrics(gs)
	}
}

type bytesHandler struct{ m *Metrics }

func (h bytesHandler) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context   { return ctx }
func (h bytesHandler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (h bytesHandler) HandleConn(context.Context, stats.ConnStats)                       {}

func (h bytesHandler) HandleRPC(_ context.Context, s stats.RPCStats) {
	switch p := s.(type) {
	case *stats.InPayload:
		h.m.clientReceived.Add(float64(p.Length))
	case *stats.OutPayload:
		h.m.clientSent.Add(float64(p.Length))
	}
}
