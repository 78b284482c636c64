package api

import (
	"math"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/keeldb/keel/member"
	"github.com/keeldb/keel/metrics"
	"github.com/keeldb/keel/tlsutil"
)

// grpcOverheadBytes is the room etcd leaves above --max-request-bytes for
// gRPC framing, so that a request slightly over the limit reaches the server
// and gets etcd's "request is too large" rather than a transport error.
const grpcOverheadBytes = 512 * 1024

// GRPCConfig tunes the client gRPC server.
type GRPCConfig struct {
	MaxRequestBytes uint
	MaxTxnOps       uint
	// ClientCertAuth is --client-cert-auth: a request without a token is
	// then made by the user its client certificate's CN names.
	ClientCertAuth bool
	// Metrics counts the calls, messages and bytes of the server (the
	// grpc_server_* and etcd_network_client_grpc_* families); may be nil.
	Metrics *metrics.Metrics
	Logger  *zap.Logger
}

// streamWorkers is the number of goroutines that serve gRPC requests.
const streamWorkers = 256

// GRPCServer is the client-facing gRPC server with etcd's services.
type GRPCServer struct {
	*grpc.Server
	health *health.Server
}

// NewGRPCServer registers KV, Maintenance, Cluster and the gRPC health
// service for m. Health reports NOT_SERVING until SetServing is called.
func NewGRPCServer(m *member.Member, cfg GRPCConfig) *GRPCServer {
	ids := &identitySource{store: m.Auth(), certAuth: cfg.ClientCertAuth}
	unary := []grpc.UnaryServerInterceptor{learnerUnaryInterceptor(m)}
	stream := []grpc.StreamServerInterceptor{learnerStreamInterceptor(m)}
	var extra []grpc.ServerOption
	if mt := cfg.Metrics; mt != nil {
		// First, so that refused requests count too, as in etcd.
		unary = append([]grpc.UnaryServerInterceptor{mt.GRPCUnary()}, unary...)
		stream = append([]grpc.StreamServerInterceptor{mt.GRPCStream()}, stream...)
		extra = append(extra, grpc.StatsHandler(mt.GRPCStatsHandler()))
	}
	gs := grpc.NewServer(append(extra,
		// TLS, where a port has it, is done by the listener
		// (tlsutil.NewListener); these credentials pass the client
		// certificate on to the services.
		grpc.Creds(tlsutil.ServerCredentials()),
		grpc.MaxRecvMsgSize(int(cfg.MaxRequestBytes)+grpcOverheadBytes),
		grpc.MaxSendMsgSize(math.MaxInt32),
		grpc.MaxConcurrentStreams(math.MaxUint32),
		// Requests run on long-lived workers whose stacks have already
		// grown, instead of a new goroutine per request: growing a fresh
		// 8 KiB stack through protobuf decoding and a Pebble iterator was
		// a quarter of the CPU of a serializable read load. Requests beyond
		// the workers (writes wait for Raft) still get their own goroutine.
		grpc.NumStreamWorkers(streamWorkers),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Hour, Timeout: 20 * time.Second}),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
	)...)
	pb.RegisterKVServer(gs, &kvServer{m: m, ids: ids, maxTxnOps: int(cfg.MaxTxnOps)})
	pb.RegisterMaintenanceServer(gs, &maintenanceServer{m: m, ids: ids})
	pb.RegisterClusterServer(gs, &clusterServer{m: m, ids: ids})
	pb.RegisterLeaseServer(gs, &leaseServer{m: m, ids: ids, lg: orNop(cfg.Logger)})
	pb.RegisterWatchServer(gs, &watchServer{m: m, ids: ids, lg: cfg.Logger, mt: cfg.Metrics})
	pb.RegisterAuthServer(gs, &authServer{m: m, ids: ids})
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	cfg.Metrics.InitGRPC(gs)
	return &GRPCServer{Server: gs, health: hs}
}

// SetServing marks the server as serving in the gRPC health service.
func (s *GRPCServer) SetServing() {
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
}
