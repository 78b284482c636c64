package tlsutil

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/keeldb/keel/config"
	"github.com/keeldb/keel/pki"
)

// TestCRLRevokesBySerialWhateverItsIssuer matches etcd, which compares
// serial numbers only: a CRL signed by another CA (an indirect CRL) revokes
// the serials it lists.
func TestCRLRevokesBySerialWhateverItsIssuer(t *testing.T) {
	ca := newTestCA(t)
	srvCert, srvKey := ca.issue("srv", pki.Request{CommonName: "srv", Hosts: []string{"127.0.0.1"}, Usage: pki.Server})
	client, err := ca.ca.Issue(pki.Request{CommonName: "alice", Usage: pki.Client})
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.NewCA("crl-issuer", 0, pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := other.RevocationList([]*big.Int{client.Cert.SerialNumber}, 0)
	if err != nil {
		t.Fatal(err)
	}
	crlFile := filepath.Join(ca.dir, "crl.pem")
	if err := os.WriteFile(crlFile, crl, 0o600); err != nil {
		t.Fatal(err)
	}
	src := source(t, Info{TLS: config.TLS{CertFile: srvCert, KeyFile: srvKey, TrustedCAFile: ca.caFile, CRLFile: crlFile}})
	err = src.verifyPeer(tls.ConnectionState{PeerCertificates: []*x509.Certificate{client.Cert}})
	var rev *RevokedError
	if !errors.As(err, &rev) {
		t.Fatalf("verifyPeer of a serial listed by another issuer's CRL = %v, want a RevokedError", err)
	}
}

// TestClientSANAcceptsWildcards matches etcd's peer check: a DNS SAN
// *.example covers a name one label below it that resolves to the address
// the peer connects from.
func TestClientSANAcceptsWildcards(t *testing.T) {
	for _, tc := range []struct {
		pattern, host string
		want          bool
	}{
		{"*.example.com", "a.example.com", true},
		{"*.example.com", "A.Example.COM.", true},
		{"*.example.com", "a.b.example.com", true}, // etcd matches the suffix
		{"*.example.com", "example.com", false},
		{"a.example.com", "a.example.com.", true},
		{"a.example.com", "b.example.com", false},
	} {
		if got := sanMatches(tc.pattern, tc.host); got != tc.want {
			t.Errorf("sanMatches(%q, %q) = %v, want %v", tc.pattern, tc.host, got, tc.want)
		}
	}
	ip := net.ParseIP("127.0.0.1")
	r := fakeResolver{reverse: map[string][]string{"127.0.0.1": {"peer1.keel.test."}}}
	if !coversIP(context.Background(), r, &x509.Certificate{DNSNames: []string{"*.keel.test"}}, ip) {
		t.Error("a wildcard SAN covering the reverse name of the address was refused")
	}
	if coversIP(context.Background(), r, &x509.Certificate{DNSNames: []string{"*.other.test"}}, ip) {
		t.Error("a wildcard SAN not covering the reverse name was accepted")
	}
}

// fakeResolver answers lookups from its maps.
type fakeResolver struct {
	reverse map[string][]string
	forward map[string][]net.IPAddr
}

func (r fakeResolver) LookupAddr(_ context.Context, addr string) ([]string, error) {
	return r.reverse[addr], nil
}

func (r fakeResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	return r.forward[host], nil
}
