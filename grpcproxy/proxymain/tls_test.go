package proxymain

import (
	"context"
	"crypto/tls"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/keeldb/keel/config"
	"github.com/keeldb/keel/internal/keeltest"
	"github.com/keeldb/keel/pki"
)

type certFiles struct{ cert, key string }

func issue(t *testing.T, ca *pki.CA, dir, name string, req pki.Request) certFiles {
	t.Helper()
	pair, err := ca.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	cf := certFiles{filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")}
	if err := pair.Write(cf.cert, cf.key); err != nil {
		t.Fatal(err)
	}
	return cf
}

// TestTLSOnBothSides: the proxy dials a member that requires client
// certificates with --cert/--key/--cacert, and serves clients that must
// present theirs with --cert-file/--key-file/--trusted-ca-file.
func TestTLSOnBothSides(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.NewCA("proxy-test-ca", 0, pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.crt")
	if err := ca.Write(caFile, filepath.Join(dir, "ca.key")); err != nil {
		t.Fatal(err)
	}
	hosts := []string{"127.0.0.1", "localhost"}
	member := issue(t, ca, dir, "member", pki.Request{CommonName: "member", Hosts: hosts, Usage: pki.Server})
	// Server and client usage: /proxy/health dials the proxy with it, as
	// etcd's proxy does.
	proxyServer := issue(t, ca, dir, "proxy", pki.Request{CommonName: "proxy", Hosts: hosts, Usage: pki.Peer})
	// etcd's rule: the proxy's client certificate has an empty common name.
	upstreamCert := issue(t, ca, dir, "proxy-client", pki.Request{Usage: pki.Client})
	user := issue(t, ca, dir, "user", pki.Request{CommonName: "user", Usage: pki.Client})

	m := keeltest.Start(t, keeltest.WithClientTLS(config.TLS{CertFile: member.cert, KeyFile: member.key, TrustedCAFile: caFile},
		&tls.Config{RootCAs: ca.Pool(), GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, err := tls.LoadX509KeyPair(user.cert, user.key)
			return &c, err
		}}))
	s := startFor(t, m, func(f *Flags) {
		f.Cert, f.Key, f.CACert = upstreamCert.cert, upstreamCert.key, caFile
		f.CertFile, f.KeyFile, f.TrustedCAFile = proxyServer.cert, proxyServer.key, caFile
	})
	userCert, err := tls.LoadX509KeyPair(user.cert, user.key)
	if err != nil {
		t.Fatal(err)
	}
	withCert := &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{userCert}}
	ctx := ctxFor(t)
	if _, err := proxyClient(t, s, withCert).Put(ctx, "k", "v"); err != nil {
		t.Fatalf("put through the TLS proxy: %v", err)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: withCert}}
	for _, path := range []string{"/health", "/proxy/health"} {
		if code, body := get(t, hc, "https://"+s.Addr()+path); code != 200 {
			t.Errorf("%s: %d %s", path, code, body)
		}
	}
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := proxyClient(t, s, &tls.Config{RootCAs: ca.Pool()}).Get(short, "k"); err == nil {
		t.Fatal("a client without a certificate was served")
	}
}
