package proc

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"testing"
)

// flagValue is the value after name in args, or "" if name is absent.
func flagValue(args []string, name string) string {
	i := slices.Index(args, name)
	if i < 0 || i+1 >= len(args) {
		return ""
	}
	return args[i+1]
}

// A server configured from ServerArgs' files, requiring client
// certificates as --client-cert-auth does, accepts the client that
// HTTPClient returns and refuses one without a certificate.
func TestTLSServerArgsAndClientFit(t *testing.T) {
	tt, err := NewTLS(t.TempDir(), "bench")
	if err != nil {
		t.Fatal(err)
	}
	args := tt.ServerArgs()
	if !slices.Contains(args, "--client-cert-auth") {
		t.Errorf("server args %v lack --client-cert-auth", args)
	}
	cert, err := tls.LoadX509KeyPair(flagValue(args, "--cert-file"), flagValue(args, "--key-file"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(flagValue(args, "--trusted-ca-file"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("no CA certificate in --trusted-ca-file")
	}
	var cn string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cn = r.TLS.PeerCertificates[0].Subject.CommonName
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	srv.StartTLS()
	defer srv.Close()

	resp, err := tt.HTTPClient().Get(srv.URL)
	if err != nil {
		t.Fatalf("the bench client was refused: %v", err)
	}
	resp.Body.Close()
	if cn != "bench" {
		t.Errorf("client certificate CN %q, want bench", cn)
	}

	noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: tt.ClientConfig.RootCAs}}}
	if resp, err := noCert.Get(srv.URL); err == nil {
		resp.Body.Close()
		t.Error("a client without a certificate was accepted")
	}
}

func TestTLSPeerArgsNameThePeerCertificate(t *testing.T) {
	tt, err := NewTLS(t.TempDir(), "bench")
	if err != nil {
		t.Fatal(err)
	}
	args := tt.PeerArgs()
	if !slices.Contains(args, "--peer-client-cert-auth") {
		t.Errorf("peer args %v lack --peer-client-cert-auth", args)
	}
	pair, err := tls.LoadX509KeyPair(flagValue(args, "--peer-cert-file"), flagValue(args, "--peer-key-file"))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	// A peer certificate serves and dials: it needs both usages.
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		t.Errorf("peer certificate usages %v, want serverAuth and clientAuth", leaf.ExtKeyUsage)
	}
}

func TestNoTLSIsPlain(t *testing.T) {
	var tt *TLS
	if tt.HTTPClient() != http.DefaultClient || tt.ClientTLS() != nil || tt.scheme() != "http" {
		t.Error("a nil *TLS is not plain HTTP")
	}
}
