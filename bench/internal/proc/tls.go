package proc

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"path/filepath"

	"github.com/keeldb/keel/pki"
)

// TLS is the certificates of a cluster whose members serve clients over
// HTTPS and require a client certificate (--client-cert-auth), and, with
// more than one member, talk to each other over TLS with peer certificates
// required as well (--peer-client-cert-auth). One CA signs everything. etcd
// and keel get the same flags and files.
type TLS struct {
	// Dir holds the PEM files.
	Dir string
	// ClientConfig is what a client of the cluster uses: the CA as its
	// roots and the client certificate.
	ClientConfig *tls.Config
	// ClientCommonName is the client certificate's CN, the identity a
	// server takes for a request without a token when auth is enabled.
	ClientCommonName string

	http *http.Client
}

// The files NewTLS writes, in its Dir.
const (
	tlsCAFile     = "ca.crt"
	tlsServerCert = "server.crt"
	tlsServerKey  = "server.key"
	tlsPeerCert   = "peer.crt"
	tlsPeerKey    = "peer.key"
	tlsClientCert = "client.crt"
	tlsClientKey  = "client.key"
)

// NewTLS makes a CA with keel's pki package, and with it a server
// certificate, a peer certificate (serverAuth and clientAuth) for
// 127.0.0.1, and a client certificate whose CN is clientCN, all ECDSA
// P-256, and writes them into dir.
func NewTLS(dir, clientCN string) (*TLS, error) {
	ca, err := pki.NewCA("keelbench CA", 0, pki.ECDSAP256)
	if err != nil {
		return nil, fmt.Errorf("make a CA: %w", err)
	}
	if err := ca.Write(filepath.Join(dir, tlsCAFile), filepath.Join(dir, "ca.key")); err != nil {
		return nil, err
	}
	hosts := []string{"127.0.0.1", "localhost"}
	if _, err := issueTo(ca, dir, tlsServerCert, tlsServerKey, pki.Request{CommonName: "keelbench server", Hosts: hosts, Usage: pki.Server}); err != nil {
		return nil, err
	}
	if _, err := issueTo(ca, dir, tlsPeerCert, tlsPeerKey, pki.Request{CommonName: "keelbench peer", Hosts: hosts, Usage: pki.Peer}); err != nil {
		return nil, err
	}
	clientPair, err := issueTo(ca, dir, tlsClientCert, tlsClientKey, pki.Request{CommonName: clientCN, Usage: pki.Client})
	if err != nil {
		return nil, err
	}
	client, err := clientPair.TLSCertificate()
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{client}, MinVersion: tls.VersionTLS12}
	return &TLS{
		Dir:              dir,
		ClientConfig:     cfg,
		ClientCommonName: clientCN,
		http:             &http.Client{Transport: &http.Transport{TLSClientConfig: cfg.Clone()}},
	}, nil
}

// issueTo issues req with ca and writes the pair into dir.
func issueTo(ca *pki.CA, dir, certFile, keyFile string, req pki.Request) (*pki.Pair, error) {
	p, err := ca.Issue(req)
	if err != nil {
		return nil, fmt.Errorf("issue the %s certificate: %w", req.CommonName, err)
	}
	if err := p.Write(filepath.Join(dir, certFile), filepath.Join(dir, keyFile)); err != nil {
		return nil, err
	}
	return p, nil
}

// ServerArgs are the client TLS flags of every member.
func (t *TLS) ServerArgs() []string {
	return []string{
		"--cert-file", filepath.Join(t.Dir, tlsServerCert),
		"--key-file", filepath.Join(t.Dir, tlsServerKey),
		"--trusted-ca-file", filepath.Join(t.Dir, tlsCAFile),
		"--client-cert-auth",
	}
}

// PeerArgs are the peer TLS flags of every member of a cluster of more
// than one.
func (t *TLS) PeerArgs() []string {
	return []string{
		"--peer-cert-file", filepath.Join(t.Dir, tlsPeerCert),
		"--peer-key-file", filepath.Join(t.Dir, tlsPeerKey),
		"--peer-trusted-ca-file", filepath.Join(t.Dir, tlsCAFile),
		"--peer-client-cert-auth",
	}
}

// HTTPClient is the client for a server's HTTP endpoints (/health,
// /metrics, /debug/pprof/): with t, one that presents the client
// certificate; without (t nil), http.DefaultClient.
func (t *TLS) HTTPClient() *http.Client {
	if t == nil {
		return http.DefaultClient
	}
	return t.http
}

// ClientTLS is the TLS config of a gRPC client: nil without TLS (t nil).
func (t *TLS) ClientTLS() *tls.Config {
	if t == nil {
		return nil
	}
	return t.ClientConfig.Clone()
}

// scheme is the URL scheme of the cluster's client and peer URLs.
func (t *TLS) scheme() string {
	if t == nil {
		return "http"
	}
	return "https"
}
