package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/keeldb/keel/api"
)

// gatewayBufferBytes is the size of each direction's buffer of the
// in-memory connection between the JSON gateway and the gRPC server.
const gatewayBufferBytes = 1 << 20

// gateway is the JSON gateway's link to the member's own gRPC server: an
// in-memory listener the gRPC server serves, and the client connection the
// gateway forwards over. etcd dials its own client port instead; an
// in-memory link needs no port, cannot be reached by anyone else (a
// loopback port would serve plaintext gRPC beside a TLS-only client port)
// and carries no client certificate, so a gateway request is never made as
// the server certificate's CN (etcd prevents that in its auth store).
type gateway struct {
	l    *bufconn.Listener
	conn *grpc.ClientConn
}

// withGateway puts the JSON gateway under /v3/ in front of h when
// --enable-grpc-gateway is on (the default), and returns h unchanged when
// it is off. The link is served once the gRPC server is (serveGateway).
func (s *Server) withGateway(h http.Handler) (http.Handler, error) {
	if !s.cfg.EnableGRPCGateway {
		return h, nil
	}
	l := bufconn.Listen(gatewayBufferBytes)
	opts := append(api.GatewayDialOptions(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return l.DialContext(ctx) }))
	conn, err := grpc.NewClient("passthrough:///keel-gateway", opts...)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("set up the JSON gateway's connection: %w", err)
	}
	s.gw = &gateway{l: l, conn: conn}
	gwh, err := api.NewGateway(context.Background(), s.member, conn, api.GatewayConfig{
		ClientCertAuth: s.cfg.ClientTLS.ClientCertAuth, Logger: s.lg})
	if err != nil {
		return nil, err
	}
	return api.WithGateway(h, gwh), nil
}

// serveGateway serves the gateway's link with the gRPC server; it is
// called once the gRPC server serves clients.
func (s *Server) serveGateway() {
	if s.gw == nil {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.grpc.Serve(s.gw.l); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, grpc.ErrServerStopped) {
			s.lg.Warn("stopped serving the JSON gateway", zap.Error(err))
		}
	}()
}

// closeGateway closes the gateway's link, after the HTTP server stopped.
func (s *Server) closeGateway() {
	if s.gw == nil {
		return
	}
	s.gw.conn.Close()
	s.gw.l.Close()
}
