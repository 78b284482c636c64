package pki

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func mustCA(t *testing.T) *CA {
	t.Helper()
	ca, err := NewCA("test-ca", 0, ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestIssuedCertificateVerifiesForItsUsageAndHosts(t *testing.T) {
	ca := mustCA(t)
	for _, tc := range []struct {
		usage Usage
		want  []x509.ExtKeyUsage
	}{
		{Server, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		{Client, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
		{Peer, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}},
	} {
		p, err := ca.Issue(Request{CommonName: "m1", Hosts: []string{"127.0.0.1", "localhost", "m1.example:2380", "[::1]"}, Usage: tc.usage})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(p.Cert.ExtKeyUsage, tc.want) {
			t.Errorf("usage %d: ext key usage %v, want %v", tc.usage, p.Cert.ExtKeyUsage, tc.want)
		}
		if !slices.Equal(p.Cert.DNSNames, []string{"localhost", "m1.example"}) {
			t.Errorf("DNS names %v", p.Cert.DNSNames)
		}
		if len(p.Cert.IPAddresses) != 2 || !p.Cert.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) || !p.Cert.IPAddresses[1].Equal(net.IPv6loopback) {
			t.Errorf("IPs %v", p.Cert.IPAddresses)
		}
		for _, eku := range tc.want {
			if _, err := p.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "m1.example", KeyUsages: []x509.ExtKeyUsage{eku}}); err != nil {
				t.Errorf("usage %d: verify for %v: %v", tc.usage, eku, err)
			}
		}
		if _, err := p.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "other.example"}); err == nil {
			t.Errorf("usage %d: verified for a name it does not cover", tc.usage)
		}
		if _, err := p.TLSCertificate(); err != nil {
			t.Errorf("TLSCertificate: %v", err)
		}
	}
}

func TestKeyTypes(t *testing.T) {
	ca, err := NewCA("rsa-ca", time.Hour, RSA2048)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ca.Key.(*rsa.PrivateKey); !ok {
		t.Fatalf("CA key %T", ca.Key)
	}
	p, err := ca.Issue(Request{CommonName: "x", KeyType: ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.Key.(*ecdsa.PrivateKey); !ok {
		t.Fatalf("leaf key %T", p.Key)
	}
	if _, err := p.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool()}); err != nil {
		t.Fatal(err)
	}
	for s, want := range map[string]KeyType{"ecdsa": ECDSAP256, "RSA": RSA2048, "rsa4096": RSA4096} {
		if got, err := ParseKeyType(s); err != nil || got != want {
			t.Errorf("ParseKeyType(%q) = %v, %v", s, got, err)
		}
	}
	if _, err := ParseKeyType("dsa"); err == nil {
		t.Error("ParseKeyType(dsa) succeeded")
	}
}

func TestWrongCertificatesOnPurpose(t *testing.T) {
	ca := mustCA(t)
	noClient, err := ca.Issue(Request{CommonName: "c", Usage: Client, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = noClient.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	var inv x509.CertificateInvalidError
	if !errors.As(err, &inv) || inv.Reason != x509.IncompatibleUsage {
		t.Errorf("verify clientAuth of a serverAuth-only cert: %v", err)
	}
	expired, err := ca.Issue(Request{CommonName: "e", NotBefore: time.Now().Add(-48 * time.Hour), Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	_, err = expired.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool()})
	if !errors.As(err, &inv) || inv.Reason != x509.Expired {
		t.Errorf("verify expired: %v", err)
	}
	serial := big.NewInt(4242)
	p, err := ca.Issue(Request{CommonName: "s", Serial: serial})
	if err != nil {
		t.Fatal(err)
	}
	if p.Cert.SerialNumber.Cmp(serial) != 0 {
		t.Errorf("serial %v", p.Cert.SerialNumber)
	}
}

func TestSelfSignedIsServerAndClient(t *testing.T) {
	p, err := SelfSigned([]string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(p.Cert)
	for _, eku := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := p.Cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "127.0.0.1", KeyUsages: []x509.ExtKeyUsage{eku}}); err != nil {
			t.Errorf("verify %v: %v", eku, err)
		}
	}
}

func TestWriteAndLoad(t *testing.T) {
	dir := t.TempDir()
	ca := mustCA(t)
	if err := ca.Write(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")); err != nil {
		t.Fatal(err)
	}
	p, err := ca.Issue(Request{CommonName: "m1", Hosts: []string{"127.0.0.1"}, Usage: Peer})
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "m1", "peer.crt"), filepath.Join(dir, "m1", "peer.key")
	if err := p.Write(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v", st.Mode().Perm())
	}
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		t.Errorf("crypto/tls cannot load what Write wrote: %v", err)
	}
	loaded, err := LoadCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	q, err := loaded.Issue(Request{CommonName: "m2"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool()}); err != nil {
		t.Errorf("loaded CA signs badly: %v", err)
	}
	if _, err := LoadCA(certFile, keyFile); err == nil {
		t.Error("LoadCA accepted a leaf certificate")
	}
	if _, err := LoadCA(filepath.Join(dir, "ca.crt"), keyFile); err == nil {
		t.Error("LoadCA accepted a key that is not the CA's")
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "m1"))
	if len(entries) != 2 {
		t.Errorf("files left behind: %v", entries)
	}
}

func TestRevocationList(t *testing.T) {
	ca := mustCA(t)
	p, err := ca.Issue(Request{CommonName: "revoked", Usage: Client})
	if err != nil {
		t.Fatal(err)
	}
	data, err := ca.RevocationList([]*big.Int{p.Cert.SerialNumber}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "X509 CRL" {
		t.Fatalf("not a PEM CRL: %q", data)
	}
	crl, err := x509.ParseRevocationList(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(ca.Cert); err != nil {
		t.Fatal(err)
	}
	if len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Cmp(p.Cert.SerialNumber) != 0 {
		t.Errorf("revoked %v", crl.RevokedCertificateEntries)
	}
}

func TestParseCertificatesBundle(t *testing.T) {
	a, b := mustCA(t), mustCA(t)
	certs, err := ParseCertificates(append(append([]byte{}, a.CertPEM...), append(a.KeyPEM, b.CertPEM...)...))
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 2 || !certs[0].Equal(a.Cert) || !certs[1].Equal(b.Cert) {
		t.Errorf("got %d certs", len(certs))
	}
	if _, err := ParseCertificates([]byte("junk")); !errors.Is(err, ErrNoPEM) {
		t.Errorf("junk: %v", err)
	}
}
