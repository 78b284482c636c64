package api

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/tmc/grpc-websocket-proxy/wsproxy"
	"go.etcd.io/etcd/api/v3/etcdserverpb/gw"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/keeldb/keel/member"
)

// GatewayDialOptions are the options of the gRPC connection the JSON
// gateway forwards its requests over: as in etcd, responses of any size.
func GatewayDialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32))}
}

// GatewayConfig configures the JSON gateway.
type GatewayConfig struct {
	// ClientCertAuth is --client-cert-auth: while auth is enabled, a
	// gateway request over TLS whose client certificate names a user (a
	// CN) is refused, since the gateway cannot act as that user.
	ClientCertAuth bool
	Logger         *zap.Logger
}

// NewGateway returns etcd's JSON gateway (the grpc-gateway handlers of
// go.etcd.io/etcd/api/v3/etcdserverpb/gw for KV, Watch, Lease, Cluster,
// Maintenance and Auth) forwarding over conn, a connection to the member's
// own gRPC server. It serves every path under /v3/ (and the old /v3beta/).
// The JSON is etcd's: protobuf field names (put's "prev_kv", not "prevKv"),
// unpopulated fields left out, unknown request fields ignored, int64s as
// strings and bytes as base64. Errors are the gateway's status body
// {"code":..,"message":..} with the HTTP status of the gRPC code. A request's
// Authorization header reaches the server as the "authorization" metadata
// etcd reads a token from. Streams (watch, lease keepalive, snapshot) answer
// with one {"result":..} object per line, or with a websocket when the
// request asks to upgrade, as etcd's do.
//
// ctx bounds the registration only; the caller owns conn and closes it
// after the HTTP server has stopped.
func NewGateway(ctx context.Context, m *member.Member, conn *grpc.ClientConn, cfg GatewayConfig) (http.Handler, error) {
	lg := orNop(cfg.Logger)
	gwmux := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.HTTPBodyMarshaler{
			Marshaler: &runtime.JSONPb{
				MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: false},
				UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: true},
			},
		}),
	)
	for _, register := range []func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error{
		gw.RegisterKVHandler,
		gw.RegisterWatchHandler,
		gw.RegisterLeaseHandler,
		gw.RegisterClusterHandler,
		gw.RegisterMaintenanceHandler,
		gw.RegisterAuthHandler,
	} {
		if err := register(ctx, gwmux, conn); err != nil {
			return nil, fmt.Errorf("register the JSON gateway: %w", err)
		}
	}
	ws := wsproxy.WebsocketProxy(gwmux,
		// A websocket opens with a GET; the gateway serves streams on POST.
		wsproxy.WithRequestMutator(func(_ *http.Request, out *http.Request) *http.Request {
			out.Method = http.MethodPost
			return out
		}),
		wsproxy.WithMaxRespBodyBufferSize(math.MaxInt32),
		wsproxy.WithLogger(wsLogger{lg}),
	)
	mux := http.NewServeMux()
	mux.Handle("/v3/", ws)
	return &gatewayAccess{m: m, certAuth: cfg.ClientCertAuth, next: withCORS(mux)}, nil
}

// gatewayAccess applies etcd's checks to a gateway request before the
// gateway sees it, in etcd's order: the client certificate first, then the
// CORS headers (a refused request has none) and the preflight answer.
type gatewayAccess struct {
	m        *member.Member
	certAuth bool
	next     http.Handler
}

// errGatewayCommonName is etcd's answer to a gateway request whose client
// certificate names a user.
const errGatewayCommonName = "CommonName of client sending a request against gateway will be ignored and not used as expected"

func (g *gatewayAccess) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// etcd still serves the v3beta paths of its early releases.
	if rest, ok := strings.CutPrefix(r.URL.Path, "/v3beta/"); ok {
		r.URL.Path = "/v3/" + rest
		r.URL.RawPath = ""
	}
	if r.TLS != nil && g.certAuth && g.m.Auth().Enabled() {
		for _, chain := range r.TLS.VerifiedChains {
			if len(chain) > 0 && chain[0].Subject.CommonName != "" {
				http.Error(w, errGatewayCommonName, http.StatusBadRequest)
				return
			}
		}
	}
	g.next.ServeHTTP(w, r)
}

// WithGateway serves the paths under /v3/ and /v3beta/ with gateway (as
// NewGateway returns it) and every other path with h.
func WithGateway(h, gateway http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/v3/", gateway)
	mux.Handle("/v3beta/", gateway)
	mux.Handle("/", h)
	return mux
}

// wsLogger sends the websocket proxy's messages to zap.
type wsLogger struct{ lg *zap.Logger }

func (l wsLogger) Warnln(args ...any)  { l.lg.Warn(fmt.Sprint(args...)) }
func (l wsLogger) Debugln(args ...any) { l.lg.Debug(fmt.Sprint(args...)) }
