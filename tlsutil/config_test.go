package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"testing"

	"github.com/keeldb/keel/config"
	"github.com/keeldb/keel/pki"
)

// TestVersionsAndCipherSuitesRestrictTheHandshake checks the effect of
// --tls-min-version, --tls-max-version and --cipher-suites on a handshake.
func TestVersionsAndCipherSuitesRestrictTheHandshake(t *testing.T) {
	ca := newTestCA(t)
	cert, key := ca.issue("srv", pki.Request{CommonName: "srv", Hosts: []string{"127.0.0.1"}, Usage: pki.Server})
	files := config.TLS{CertFile: cert, KeyFile: key}
	client := func(minV, maxV uint16, suites ...uint16) *tls.Config {
		return &tls.Config{RootCAs: ca.ca.Pool(), ServerName: "127.0.0.1", MinVersion: minV, MaxVersion: maxV, CipherSuites: suites}
	}
	for _, tc := range []struct {
		name    string
		server  Info
		client  *tls.Config
		version uint16 // 0: the handshake must fail
	}{
		{"min 1.3 refuses a 1.2 client", Info{TLS: files, MinVersion: tls.VersionTLS13}, client(tls.VersionTLS12, tls.VersionTLS12), 0},
		{"min 1.3 takes a 1.3 client", Info{TLS: files, MinVersion: tls.VersionTLS13}, client(0, 0), tls.VersionTLS13},
		{"max 1.2 caps a 1.3 client", Info{TLS: files, MaxVersion: tls.VersionTLS12}, client(0, 0), tls.VersionTLS12},
		{"max 1.2 refuses a 1.3-only client", Info{TLS: files, MaxVersion: tls.VersionTLS12}, client(tls.VersionTLS13, 0), 0},
		{"a suite the client lacks is refused", Info{TLS: files, MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}},
			client(0, tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256), 0},
		{"a listed suite is used", Info{TLS: files, MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}},
			client(0, tls.VersionTLS12), tls.VersionTLS12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := serve(t, source(t, tc.server), ListenerConfig{Port: "client"})
			c, err := tls.Dial("tcp", addr, tc.client)
			if tc.version == 0 {
				if err == nil {
					c.Close()
					t.Fatal("handshake succeeded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			st := c.ConnectionState()
			if st.Version != tc.version {
				t.Errorf("version %x, want %x", st.Version, tc.version)
			}
			if len(tc.server.CipherSuites) > 0 && st.CipherSuite != tc.server.CipherSuites[0] {
				t.Errorf("cipher suite %s, want %s", tls.CipherSuiteName(st.CipherSuite), tls.CipherSuiteName(tc.server.CipherSuites[0]))
			}
		})
	}
}

// TestAllowedHostnames checks --peer-cert-allowed-hostname: a verified
// certificate must be valid for one of the names.
func TestAllowedHostnames(t *testing.T) {
	ca := newTestCA(t)
	cert, key := ca.issue("srv", pki.Request{CommonName: "srv", Hosts: []string{"127.0.0.1"}, Usage: pki.Peer})
	src := source(t, Info{TLS: config.TLS{CertFile: cert, KeyFile: key, TrustedCAFile: ca.caFile, AllowedHostnames: []string{"m1.keel.test"}}})
	for _, tc := range []struct {
		hosts []string
		ok    bool
	}{
		{[]string{"m1.keel.test"}, true},
		{[]string{"*.keel.test"}, true},
		{[]string{"m2.keel.test", "127.0.0.1"}, false},
	} {
		p, err := ca.ca.Issue(pki.Request{CommonName: "peer", Hosts: tc.hosts, Usage: pki.Peer})
		if err != nil {
			t.Fatal(err)
		}
		err = src.verifyPeer(tls.ConnectionState{PeerCertificates: []*x509.Certificate{p.Cert}, VerifiedChains: [][]*x509.Certificate{{p.Cert, ca.ca.Cert}}})
		var na *NotAllowedError
		if tc.ok && err != nil || !tc.ok && !errors.As(err, &na) {
			t.Errorf("certificate for %q: %v, want allowed %v", tc.hosts, err, tc.ok)
		}
	}
}

// TestBrokenRotationKeepsThePreviousFiles replaces the certificate and
// the CA file with garbage: handshakes go on with the files loaded before.
func TestBrokenRotationKeepsThePreviousFiles(t *testing.T) {
	ca := newTestCA(t)
	cert, key := ca.issue("srv", pki.Request{CommonName: "srv", Hosts: []string{"127.0.0.1"}, Usage: pki.Server})
	src := source(t, Info{TLS: config.TLS{CertFile: cert, KeyFile: key, TrustedCAFile: ca.caFile}})
	before := src.cert.get().Leaf
	for _, f := range []string{cert, ca.caFile} {
		if err := os.WriteFile(f, []byte("not PEM"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if got := src.cert.get().Leaf; got == nil || !got.Equal(before) {
		t.Error("a broken certificate file replaced the working one")
	}
	if got := src.trustedCAs(); len(got) != 1 || !got[0].Equal(ca.ca.Cert) {
		t.Error("a broken CA file replaced the working one")
	}
	cliCert, cliKey := ca.issue("cli", pki.Request{CommonName: "cli", Usage: pki.Client})
	c, err := tls.LoadX509KeyPair(cliCert, cliKey)
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := serve(t, src, ListenerConfig{Port: "client"})
	cfg := &tls.Config{RootCAs: ca.ca.Pool(), ServerName: "127.0.0.1", Certificates: []tls.Certificate{c}}
	if err := handshake(addr, cfg); err != nil {
		t.Fatalf("handshake after a broken rotation: %v", err)
	}
}
