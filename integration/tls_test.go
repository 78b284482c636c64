package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/keeldb/keel/config"
	"github.com/keeldb/keel/internal/keeltest"
	"github.com/keeldb/keel/pki"
	"github.com/keeldb/keel/server"
)

// mustPutGet writes and reads a key through cli.
func mustPutGet(t *testing.T, cli *clientv3.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("put: %v", err)
	}
	resp, err := cli.Get(ctx, "k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("get: %v %v", resp, err)
	}
}

// newTLSClient connects a client with tlsCfg to endpoint; it does not wait
// for a connection.
func newTLSClient(t *testing.T, endpoint string, tlsCfg *tls.Config) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 2 * time.Second, TLS: tlsCfg, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// putFails requires a put through cli to fail.
func putFails(t *testing.T, cli *clientv3.Client) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := cli.Put(ctx, "k", "v")
	if err == nil {
		t.Fatal("put succeeded, want it refused")
	}
	return err
}

func TestTLSClientPortServesGRPCAndHTTP(t *testing.T) {
	p := newTestPKI(t)
	srv := p.server("server")
	m := keeltest.Start(t, keeltest.WithClientTLS(config.TLS{CertFile: srv.CertFile, KeyFile: srv.KeyFile}, p.clientTLS(nil)))
	if !strings.HasPrefix(m.Endpoint, "https://") {
		t.Fatalf("endpoint %s, want https", m.Endpoint)
	}
	mustPutGet(t, m.Client)

	// A curl-like probe: Go's HTTP client over HTTP/2 and HTTP/1.1.
	for _, h2 := range []bool{true, false} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.pool()}, ForceAttemptHTTP2: h2}
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(m.Endpoint + "/health")
		if err != nil {
			t.Fatalf("h2=%v: GET /health: %v", h2, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		wantProto := map[bool]int{true: 2, false: 1}[h2]
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"health":"true"`) || resp.ProtoMajor != wantProto {
			t.Errorf("h2=%v: GET /health: %s %s %q", h2, resp.Proto, resp.Status, body)
		}
		tr.CloseIdleConnections()
	}
}

func TestTLSMixedHTTPAndHTTPSClientURLs(t *testing.T) {
	p := newTestPKI(t)
	srv := p.server("server")
	m := keeltest.Start(t, keeltest.WithClientTLS(config.TLS{CertFile: srv.CertFile, KeyFile: srv.KeyFile}, p.clientTLS(nil)),
		keeltest.WithConfig(func(c *config.Config) {
			plain := c.ListenClientURLs[0]
			plain.Scheme = "http"
			c.ListenClientURLs = append(c.ListenClientURLs, plain)
		}))
	urls := m.Server.ClientURLs()
	if len(urls) != 2 {
		t.Fatalf("client URLs %q, want an https and an http one", urls)
	}
	for _, u := range urls {
		var tlsCfg *tls.Config
		if strings.HasPrefix(u, "https://") {
			tlsCfg = p.clientTLS(nil)
		}
		mustPutGet(t, newTLSClient(t, u, tlsCfg))
	}
}

func TestTLSAutoTLS(t *testing.T) {
	m := keeltest.Start(t, keeltest.WithClientTLS(config.TLS{AutoTLS: true}, &tls.Config{InsecureSkipVerify: true}))
	mustPutGet(t, m.Client)
	for _, f := range []string{"cert.pem", "key.pem"} {
		if _, err := os.Stat(filepath.Join(m.Config.DataDir, "fixtures", "client", f)); err != nil {
			t.Errorf("auto-tls file: %v", err)
		}
	}
}

func TestTLSClientCertAuthRejectsClientWithoutCertificate(t *testing.T) {
	p := newTestPKI(t)
	srv := p.server("server")
	user := p.issue("alice", pki.Request{CommonName: "alice", Usage: pki.Client})
	lg, logs := observedLogger()
	m := keeltest.Start(t, keeltest.WithLogger(lg), keeltest.WithClientTLS(
		config.TLS{CertFile: srv.CertFile, KeyFile: srv.KeyFile, TrustedCAFile: p.CAFile, ClientCertAuth: true}, p.clientTLS(&user)))
	mustPutGet(t, m.Client)

	putFails(t, newTLSClient(t, m.Endpoint, p.clientTLS(nil)))
	waitLog(t, logs, "rejected TLS connection", "presented no certificate")
}

// TestTLSClientCertificateMistakesAreNamed checks that each wrong client
// certificate is refused with a server log line naming the cause.
func TestTLSClientCertificateMistakesAreNamed(t *testing.T) {
	p := newTestPKI(t)
	srv := p.server("server")
	lg, logs := observedLogger()
	m := keeltest.Start(t, keeltest.WithLogger(lg), keeltest.WithClientTLS(
		config.TLS{CertFile: srv.CertFile, KeyFile: srv.KeyFile, TrustedCAFile: p.CAFile, ClientCertAuth: true}, p.clientTLS(nil)))

	other, err := pki.NewCA("other-ca", 0, pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	otherPair, err := other.Issue(pki.Request{CommonName: "mallory", Usage: pki.Client})
	if err != nil {
		t.Fatal(err)
	}
	// The CNs do not contain the words the reasons must contain.
	expired := p.issue("carol", pki.Request{CommonName: "carol", Usage: pki.Client,
		NotBefore: time.Now().Add(-48 * time.Hour), Validity: time.Hour})
	future := p.issue("dave", pki.Request{CommonName: "dave", Usage: pki.Client,
		NotBefore: time.Now().Add(48 * time.Hour), Validity: time.Hour})
	rfc3339 := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	for _, tc := range []struct {
		name string
		cert issued
		want []string
	}{
		{"no clientAuth usage", p.issue("serveronly", pki.Request{CommonName: "serveronly", Usage: pki.Server}), []string{"serveronly", "clientAuth"}},
		{"expired", expired, []string{`CN "carol"`, "has expired", "valid from " + rfc3339(expired.Cert.NotBefore),
			"to " + rfc3339(expired.Cert.NotAfter), "local clock says"}},
		{"not yet valid", future, []string{`CN "dave"`, "is not valid yet", "valid from " + rfc3339(future.Cert.NotBefore),
			"to " + rfc3339(future.Cert.NotAfter), "local clock says"}},
		{"unknown authority", p.write("mallory", otherPair), []string{"mallory", "other-ca"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Go's client sends a certificate whatever CAs the server asks for.
			cfg := p.clientTLS(&tc.cert)
			c := cfg.Certificates[0]
			cfg.Certificates = nil
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c, nil }
			putFails(t, newTLSClient(t, m.Endpoint, cfg))
			t.Log(waitLog(t, logs, "rejected TLS connection", tc.want...))
		})
	}
}

func TestTLSClientCRLRevokesAndIsReloaded(t *testing.T) {
	p := newTestPKI(t)
	srv := p.server("server")
	user := p.issue("alice", pki.Request{CommonName: "alice", Usage: pki.Client})
	crlFile := filepath.Join(p.dir, "crl.pem")
	writeCRL := func(serials ...*big.Int) {
		crl, err := p.ca.RevocationList(serials, 0)
		if err != nil {
			t.Fatal(err)
		}
		// Write then rename, as an operator's tooling would.
		if err := os.WriteFile(crlFile+".tmp", crl, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(crlFile+".tmp", crlFile); err != nil {
			t.Fatal(err)
		}
	}
	writeCRL(user.Cert.SerialNumber)
	lg, logs := observedLogger()
	m := keeltest.Start(t, keeltest.WithLogger(lg), keeltest.WithClientTLS(
		config.TLS{CertFile: srv.CertFile, KeyFile: srv.KeyFile, TrustedCAFile: p.CAFile, ClientCertAuth: true, CRLFile: crlFile},
		p.clientTLS(&user)))
	putFails(t, m.Client)
	waitLog(t, logs, "rejected TLS connection", "revoked", "alice")

	writeCRL()
	mustPutGet(t, newTLSClient(t, m.Endpoint, p.clientTLS(&user)))
}

func TestTLSServerCertificateIsReloaded(t *testing.T) {
	p := newTestPKI(t)
	srv := p.server("server")
	m := keeltest.Start(t, keeltest.WithClientTLS(config.TLS{CertFile: srv.CertFile, KeyFile: srv.KeyFile}, p.clientTLS(nil)))
	served := func() *x509.Certificate {
		t.Helper()
		c, err := tls.Dial("tcp", m.HostPort(), &tls.Config{RootCAs: p.pool(), NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0]
	}
	if got := served(); got.SerialNumber.Cmp(srv.Cert.SerialNumber) != 0 {
		t.Fatalf("served serial %x, want %x", got.SerialNumber, srv.Cert.SerialNumber)
	}
	renewed := p.server("renewed")
	for _, f := range [][2]string{{renewed.CertFile, srv.CertFile}, {renewed.KeyFile, srv.KeyFile}} {
		data, err := os.ReadFile(f[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f[1], data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if got := served(); got.SerialNumber.Cmp(renewed.Cert.SerialNumber) != 0 {
		t.Fatalf("after renewal served serial %x, want %x", got.SerialNumber, renewed.Cert.SerialNumber)
	}
	mustPutGet(t, m.NewClient(t))
}

func TestTLSPlaintextHTTPOnTLSPortGets400(t *testing.T) {
	p := newTestPKI(t)
	srv := p.server("server")
	lg, logs := observedLogger()
	m := keeltest.Start(t, keeltest.WithLogger(lg), keeltest.WithClientTLS(config.TLS{CertFile: srv.CertFile, KeyFile: srv.KeyFile}, p.clientTLS(nil)))
	for range 3 {
		resp, err := http.Get("http://" + m.HostPort() + "/health")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "requires TLS") || !strings.Contains(string(body), "https://"+m.HostPort()) {
			t.Fatalf("plain GET on TLS port: %s %q", resp.Status, body)
		}
	}
	waitLog(t, logs, "rejected a plaintext connection on a TLS port", "requires TLS")
	if n := logs.FilterMessage("rejected a plaintext connection on a TLS port").Len(); n != 1 {
		t.Errorf("logged %d times for one client, want once (rate-limited)", n)
	}
}

func TestTLSPlaintextGRPCOnTLSPortFailsWithReason(t *testing.T) {
	p := newTestPKI(t)
	srv := p.server("server")
	m := keeltest.Start(t, keeltest.WithClientTLS(config.TLS{CertFile: srv.CertFile, KeyFile: srv.KeyFile}, p.clientTLS(nil)))
	err := putFails(t, newTLSClient(t, "http://"+m.HostPort(), nil))
	if !strings.Contains(err.Error(), "requires TLS") {
		t.Errorf("plaintext gRPC client got %v, want the reason (requires TLS)", err)
	}
}

func TestTLSPeerCluster(t *testing.T) {
	p := newTestPKI(t)
	peer := p.issue("peer", pki.Request{CommonName: "member", Hosts: []string{"127.0.0.1", "localhost"}, Usage: pki.Peer})
	c := keeltest.StartCluster(t, 3, keeltest.WithPeerTLS(config.TLS{CertFile: peer.CertFile, KeyFile: peer.KeyFile,
		TrustedCAFile: p.CAFile, ClientCertAuth: true, AllowedCNs: []string{"member"}}))
	for _, m := range c.Members {
		if !strings.HasPrefix(m.Config.ListenPeerURLs[0].String(), "https://") {
			t.Fatalf("peer URL %s, want https", m.Config.ListenPeerURLs[0].String())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Members[0].Client.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	resp, err := c.Members[2].Client.Get(ctx, "k")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get on another member: %v %v", resp, err)
	}
}

func TestTLSPeerAutoTLSCluster(t *testing.T) {
	c := keeltest.StartCluster(t, 3, keeltest.WithPeerTLS(config.TLS{AutoTLS: true}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Members[1].Client.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(c.Members[0].Config.DataDir, "fixtures", "peer", "cert.pem")); err != nil {
		t.Error(err)
	}
}

func TestTLSPeerPortNamesRefusedPeerCertificate(t *testing.T) {
	p := newTestPKI(t)
	peer := p.issue("peer", pki.Request{CommonName: "member", Hosts: []string{"127.0.0.1"}, Usage: pki.Peer})
	intruder := p.issue("intruder", pki.Request{CommonName: "intruder", Hosts: []string{"127.0.0.1"}, Usage: pki.Peer})
	lg, logs := observedLogger()
	m := keeltest.Start(t, keeltest.WithLogger(lg), keeltest.WithPeerTLS(config.TLS{CertFile: peer.CertFile, KeyFile: peer.KeyFile,
		TrustedCAFile: p.CAFile, ClientCertAuth: true, AllowedCNs: []string{"member"}}))
	cfg := p.clientTLS(&intruder)
	cfg.NextProtos = []string{"h2"}
	c, err := tls.Dial("tcp", m.Config.ListenPeerURLs[0].Host, cfg)
	if err == nil {
		// TLS 1.3: the server refuses after the client's side is done.
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
	}
	if err == nil {
		t.Fatal("the peer port accepted a certificate whose CN is not allowed")
	}
	waitLog(t, logs, "rejected TLS connection", `"intruder"`, "allowed common names")
}

// TestTLSPeerCertificateMustCoverDialledIP starts two members whose peer
// certificate covers only 10.9.9.9 while they advertise 127.0.0.1: each must
// refuse the other's certificate and log which names it covers.
func TestTLSPeerCertificateMustCoverDialledIP(t *testing.T) {
	p := newTestPKI(t)
	peer := p.issue("peer", pki.Request{CommonName: "member", Hosts: []string{"10.9.9.9"}, Usage: pki.Peer})
	lg, logs := observedLogger()
	var initial []string
	var cfgs []*config.Config
	for _, name := range []string{"a", "b"} {
		u, err := keeltest.NewPeerURL()
		if err != nil {
			t.Fatal(err)
		}
		u = "https" + strings.TrimPrefix(u, "http")
		pu, _ := url.Parse(u)
		initial = append(initial, name+"="+u)
		cfg := config.Default()
		cfg.Name, cfg.DataDir = name, t.TempDir()
		client := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
		cfg.ListenClientURLs, cfg.AdvertiseClientURLs = []url.URL{client}, []url.URL{client}
		cfg.ListenPeerURLs, cfg.InitialAdvertisePeerURLs = []url.URL{*pu}, []url.URL{*pu}
		cfg.PeerTLS = config.TLS{CertFile: peer.CertFile, KeyFile: peer.KeyFile, TrustedCAFile: p.CAFile,
			ClientCertAuth: true, SkipClientSANVerify: true}
		cfgs = append(cfgs, cfg)
	}
	for _, cfg := range cfgs {
		cfg.InitialCluster = strings.Join(initial, ",")
		srv, err := server.New(cfg, lg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Stop)
	}
	t.Log(waitLog(t, logs, "failed to connect to remote peer", "10.9.9.9", `"127.0.0.1"`))
}

// TestTLSGRPCClientOfferingHTTP1IsServed checks the gRPC fallback: a gRPC
// client whose ALPN offer also lists http/1.1 is routed to the HTTP server,
// which must pass its RPCs to gRPC.
func TestTLSGRPCClientOfferingHTTP1IsServed(t *testing.T) {
	p := newTestPKI(t)
	srv := p.server("server")
	m := keeltest.Start(t, keeltest.WithClientTLS(config.TLS{CertFile: srv.CertFile, KeyFile: srv.KeyFile}, p.clientTLS(nil)))
	cfg := p.clientTLS(nil)
	cfg.NextProtos = []string{"h2", "http/1.1"}
	mustPutGet(t, newTLSClient(t, m.Endpoint, cfg))
}

// TestTLSHTTPClientWithoutCertificateIsRefused sends an HTTPS request
// without a client certificate to a port with --client-cert-auth: the
// handshake fails and the server log names the cause.
func TestTLSHTTPClientWithoutCertificateIsRefused(t *testing.T) {
	p := newTestPKI(t)
	srv := p.server("server")
	user := p.issue("alice", pki.Request{CommonName: "alice", Usage: pki.Client})
	lg, logs := observedLogger()
	m := keeltest.Start(t, keeltest.WithLogger(lg), keeltest.WithClientTLS(
		config.TLS{CertFile: srv.CertFile, KeyFile: srv.KeyFile, TrustedCAFile: p.CAFile, ClientCertAuth: true}, p.clientTLS(&user)))
	tr := &http.Transport{TLSClientConfig: p.clientTLS(nil)}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(m.Endpoint + "/health")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("GET /health without a client certificate: %s, want a refused handshake", resp.Status)
	}
	waitLog(t, logs, "rejected TLS connection", "presented no certificate")
}
