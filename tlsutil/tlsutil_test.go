package tlsutil

import (
	"context"
	"crypto/tls"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/keeldb/keel/pki"
)

// TestCommonNameReachesGRPCHandlers serves gRPC through NewListener and
// ServerCredentials and checks that a handler sees the verified client
// certificate's CN, and that a plaintext client of a mixed port has none.
func TestCommonNameReachesGRPCHandlers(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.NewCA("ca", 0, pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.crt")
	if err := ca.Write(caFile, filepath.Join(dir, "ca.key")); err != nil {
		t.Fatal(err)
	}
	issue := func(name string, usage pki.Usage) *pki.Pair {
		p, err := ca.Issue(pki.Request{CommonName: name, Hosts: []string{"127.0.0.1"}, Usage: usage})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	srvPair := issue("server", pki.Server)
	certFile, keyFile := filepath.Join(dir, "s.crt"), filepath.Join(dir, "s.key")
	if err := srvPair.Write(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	src, err := New(Info{CertFile: certFile, KeyFile: keyFile, TrustedCAFile: caFile}, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(raw, ListenerConfig{Source: src, NextProtos: []string{"h2"}, Port: "client", AllowPlaintext: true})
	seen := make(chan string, 2)
	gs := grpc.NewServer(grpc.Creds(ServerCredentials()), grpc.UnaryInterceptor(
		func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			cn, ok := CommonName(ctx)
			if !ok {
				cn = "(none)"
			}
			seen <- cn
			return h(ctx, req)
		}))
	healthpb.RegisterHealthServer(gs, health.NewServer())
	go gs.Serve(l)
	t.Cleanup(gs.Stop)

	alice, err := issue("alice", pki.Client).TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		creds credentials.TransportCredentials
		want  string
	}{
		{credentials.NewTLS(&tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{alice}}), "alice"},
		{insecure.NewCredentials(), "(none)"},
	} {
		cc, err := grpc.NewClient(raw.Addr().String(), grpc.WithTransportCredentials(tc.creds))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		cc.Close()
		if err != nil {
			t.Fatalf("%s: %v", tc.want, err)
		}
		if got := <-seen; got != tc.want {
			t.Errorf("CommonName = %q, want %q", got, tc.want)
		}
	}
}
