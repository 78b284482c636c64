package tlsutil

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/keeldb/keel/config"
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
	src, err := New(Info{TLS: config.TLS{CertFile: certFile, KeyFile: keyFile, TrustedCAFile: caFile}}, nil)
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

// testCA is a CA written to a temporary directory, for unit tests.
type testCA struct {
	t      *testing.T
	dir    string
	ca     *pki.CA
	caFile string
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	ca, err := pki.NewCA("ca", 0, pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tc := &testCA{t: t, dir: dir, ca: ca, caFile: filepath.Join(dir, "ca.crt")}
	if err := ca.Write(tc.caFile, filepath.Join(dir, "ca.key")); err != nil {
		t.Fatal(err)
	}
	return tc
}

// issue writes a certificate for req as name.crt and name.key.
func (tc *testCA) issue(name string, req pki.Request) (certFile, keyFile string) {
	tc.t.Helper()
	p, err := tc.ca.Issue(req)
	if err != nil {
		tc.t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(tc.dir, name+".crt"), filepath.Join(tc.dir, name+".key")
	if err := p.Write(certFile, keyFile); err != nil {
		tc.t.Fatal(err)
	}
	return certFile, keyFile
}

// source builds a Source from info, failing the test on error.
func source(t *testing.T, info Info) *Source {
	t.Helper()
	s, err := New(info, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// serve runs a TLS listener of src on loopback that accepts and holds
// connections; it returns its address and a function that closes it and
// waits for its goroutines (also called by t's cleanup).
func serve(t *testing.T, src *Source, cfg ListenerConfig) (string, func()) {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Source = src
	if cfg.Port == "" {
		cfg.Port = "peer"
	}
	l := NewListener(raw, cfg)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	stop := func() { l.Close(); <-done }
	t.Cleanup(stop)
	return raw.Addr().String(), stop
}

// handshake dials addr with cfg and completes the handshake (reading once,
// as a TLS 1.3 server refuses after the client is done).
func handshake(addr string, cfg *tls.Config) error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, err = c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	return err
}

func TestClientConfigForVerifiesTheDialledHost(t *testing.T) {
	ca := newTestCA(t)
	srvCert, srvKey := ca.issue("srv", pki.Request{CommonName: "srv", Hosts: []string{"10.9.9.9"}, Usage: pki.Peer})
	cliCert, cliKey := ca.issue("cli", pki.Request{CommonName: "cli", Hosts: []string{"127.0.0.1"}, Usage: pki.Peer})
	addr, _ := serve(t, source(t, Info{TLS: config.TLS{CertFile: srvCert, KeyFile: srvKey, TrustedCAFile: ca.caFile}}), ListenerConfig{})
	cli := source(t, Info{TLS: config.TLS{CertFile: cliCert, KeyFile: cliKey, TrustedCAFile: ca.caFile}})
	err := handshake(addr, cli.ClientConfigFor("127.0.0.1"))
	var he x509.HostnameError
	if !errors.As(err, &he) {
		t.Fatalf("dialling 127.0.0.1 with a server certificate for 10.9.9.9: %v, want a hostname error", err)
	}
	if got := cli.ExplainDial("https://"+addr, err); !strings.Contains(got, "10.9.9.9") || !strings.Contains(got, `"127.0.0.1"`) {
		t.Errorf("ExplainDial = %q, want the names covered and dialled", got)
	}
}
