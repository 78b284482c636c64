// Package pki makes and reads the certificates a keel cluster uses: a
// certificate authority, server, peer and client certificates signed by it,
// self-signed certificates for --auto-tls and --peer-auto-tls, and
// certificate revocation lists. Handshake.Explain turns a failed TLS
// handshake into the cause in operator terms (explain.go); Describe says
// what a certificate is and what keel can use it for (describe.go).
//
// Everything is crypto/x509 and crypto/tls; the package holds no state.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// KeyType is the kind of private key a certificate gets.
type KeyType int

// The key types. The zero value is ECDSA P-256, the default.
const (
	ECDSAP256 KeyType = iota
	RSA2048
	RSA4096
)

// String is the name ParseKeyType reads.
func (k KeyType) String() string {
	switch k {
	case ECDSAP256:
		return "ecdsa"
	case RSA2048:
		return "rsa"
	case RSA4096:
		return "rsa4096"
	}
	return fmt.Sprintf("KeyType(%d)", int(k))
}

// ParseKeyType reads a key type name: "ecdsa" (P-256), "rsa" or "rsa2048",
// "rsa4096".
func ParseKeyType(s string) (KeyType, error) {
	switch strings.ToLower(s) {
	case "ecdsa", "ecdsa-p256", "p256":
		return ECDSAP256, nil
	case "rsa", "rsa2048":
		return RSA2048, nil
	case "rsa4096":
		return RSA4096, nil
	}
	return 0, fmt.Errorf("unknown key type %q (want ecdsa, rsa or rsa4096)", s)
}

func (k KeyType) generate() (crypto.Signer, error) {
	switch k {
	case ECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case RSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case RSA4096:
		return rsa.GenerateKey(rand.Reader, 4096)
	}
	return nil, fmt.Errorf("unknown key type %d", int(k))
}

// Usage is what a certificate is issued for; it decides the extended key
// usages.
type Usage int

// The usages. Peer certificates are both: a member serves its peers and
// dials them with the same certificate.
const (
	Server Usage             = 1 << iota // serverAuth: --cert-file
	Client                               // clientAuth: keelctl --cert, a client's identity
	Peer   = Server | Client             // serverAuth and clientAuth: --peer-cert-file
)

// extKeyUsages are the extended key usages of u.
func (u Usage) extKeyUsages() []x509.ExtKeyUsage {
	var eku []x509.ExtKeyUsage
	if u&Server != 0 {
		eku = append(eku, x509.ExtKeyUsageServerAuth)
	}
	if u&Client != 0 {
		eku = append(eku, x509.ExtKeyUsageClientAuth)
	}
	return eku
}

// DefaultValidity is the validity of a certificate whose request gives none:
// one year. DefaultCAValidity is a CA's: ten years.
const (
	DefaultValidity   = 365 * 24 * time.Hour
	DefaultCAValidity = 10 * 365 * 24 * time.Hour
)

// backdate is how far before now a certificate becomes valid when the
// request does not say, so that a member whose clock is a little behind the
// one that issued the certificate accepts it.
const backdate = 5 * time.Minute

// Pair is a certificate and its private key, parsed and as PEM.
type Pair struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte // one CERTIFICATE block
	KeyPEM  []byte // one PRIVATE KEY block (PKCS #8)
}

// TLSCertificate is the pair as crypto/tls uses it.
func (p *Pair) TLSCertificate() (tls.Certificate, error) {
	return tls.X509KeyPair(p.CertPEM, p.KeyPEM)
}

// Write writes the certificate to certFile (mode 0644) and the key to
// keyFile (mode 0600), creating their directories (0700). Each file is
// written to a temporary file beside it and renamed into place, so a server
// that reloads certificates never reads half a file; the certificate is
// renamed first, so a reader may briefly see the new certificate with the
// old key (and must retry: tls.X509KeyPair fails on a mismatch).
func (p *Pair) Write(certFile, keyFile string) error {
	if err := writeFile(certFile, p.CertPEM, 0o644); err != nil {
		return err
	}
	return writeFile(keyFile, p.KeyPEM, 0o600)
}

func writeFile(name string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// CA is a certificate authority: a CA certificate and the key that signs
// with it.
type CA struct {
	Pair
}

// NewCA makes a self-signed CA whose subject's common name is name, valid
// from a few minutes ago for validity (DefaultCAValidity when zero).
func NewCA(name string, validity time.Duration, kt KeyType) (*CA, error) {
	if validity == 0 {
		validity = DefaultCAValidity
	}
	key, err := kt.generate()
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"keel"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          keyID(key.Public()),
	}
	p, err := sign(tmpl, tmpl, key, key)
	if err != nil {
		return nil, err
	}
	return &CA{*p}, nil
}

// LoadCA reads a CA from its certificate and key PEM files. The certificate
// must be a CA (basic constraints, CA:TRUE) and the key must be its key.
func LoadCA(certFile, keyFile string) (*CA, error) {
	p, err := LoadPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	if !p.Cert.IsCA {
		return nil, fmt.Errorf("%s is not a CA certificate (its basic constraints do not say CA:TRUE)", certFile)
	}
	return &CA{*p}, nil
}

// LoadPair reads a certificate (the first one of certFile) and its key.
func LoadPair(certFile, keyFile string) (*Pair, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	tc, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load %s and %s: %w", certFile, keyFile, err)
	}
	key, ok := tc.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: the key cannot sign", keyFile)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &Pair{
		Cert:    tc.Leaf,
		Key:     key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tc.Certificate[0]}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
	}, nil
}

// Pool is a certificate pool holding the CA certificate alone.
func (ca *CA) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return pool
}

// Request describes a certificate for CA.Issue.
type Request struct {
	// CommonName is the subject's common name: a member's name, or for a
	// client certificate the user name keel takes as the identity when
	// --client-cert-auth is on.
	CommonName string
	// Hosts are the DNS names and IP addresses the certificate covers; each
	// becomes a DNS or IP subject alternative name (a "host:port" counts
	// for its host).
	Hosts []string
	// Usage decides the extended key usages (Server when zero).
	Usage Usage
	// Validity is how long the certificate is valid from NotBefore
	// (DefaultValidity when zero).
	Validity time.Duration
	// NotBefore is when it becomes valid; zero means a few minutes ago.
	// Tests set it to make certificates that are not yet valid or expired.
	NotBefore time.Time
	KeyType   KeyType

	// ExtKeyUsage, when not nil, replaces the extended key usages Usage
	// decides; an empty, non-nil slice leaves the extension out. It exists
	// to make wrong certificates on purpose in tests.
	ExtKeyUsage []x509.ExtKeyUsage
	// Serial, when not nil, is the serial number instead of a random one.
	Serial *big.Int
}

// Issue makes a key and a certificate for req signed by the CA.
func (ca *CA) Issue(req Request) (*Pair, error) {
	key, err := req.KeyType.generate()
	if err != nil {
		return nil, err
	}
	tmpl, err := req.template(key)
	if err != nil {
		return nil, err
	}
	tmpl.AuthorityKeyId = ca.Cert.SubjectKeyId
	return sign(tmpl, ca.Cert, key, ca.Key)
}

// SelfSigned makes a self-signed certificate for hosts, usable as a server
// and as a client certificate (what --auto-tls and --peer-auto-tls need),
// valid from a few minutes ago for validity (DefaultValidity when zero).
// Its common name is "keel", as the first host is often an IP.
func SelfSigned(hosts []string, validity time.Duration) (*Pair, error) {
	req := Request{CommonName: "keel", Hosts: hosts, Usage: Peer, Validity: validity}
	key, err := req.KeyType.generate()
	if err != nil {
		return nil, err
	}
	tmpl, err := req.template(key)
	if err != nil {
		return nil, err
	}
	return sign(tmpl, tmpl, key, key)
}

// template is the certificate req asks for, for the public key of key.
func (req Request) template(key crypto.Signer) (*x509.Certificate, error) {
	serial := req.Serial
	if serial == nil {
		var err error
		if serial, err = newSerial(); err != nil {
			return nil, err
		}
	}
	notBefore := req.NotBefore
	if notBefore.IsZero() {
		notBefore = time.Now().Add(-backdate)
	}
	validity := req.Validity
	if validity == 0 {
		validity = DefaultValidity
	}
	usage := req.Usage
	if usage == 0 {
		usage = Server
	}
	eku := req.ExtKeyUsage
	if eku == nil {
		eku = usage.extKeyUsages()
	}
	ku := x509.KeyUsageDigitalSignature
	if _, isRSA := key.(*rsa.PrivateKey); isRSA {
		ku |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: req.CommonName},
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(validity),
		KeyUsage:              ku,
		ExtKeyUsage:           eku,
		BasicConstraintsValid: true,
		SubjectKeyId:          keyID(key.Public()),
	}
	tmpl.DNSNames, tmpl.IPAddresses = SplitHosts(req.Hosts)
	return tmpl, nil
}

// SplitHosts sorts hosts into DNS names and IP addresses, dropping a ":port"
// suffix, empty entries and duplicates.
func SplitHosts(hosts []string) (dns []string, ips []net.IP) {
	seen := map[string]bool{}
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if host, _, err := net.SplitHostPort(h); err == nil {
			h = host
		}
		h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
		if h == "" || seen[h] {
			continue
		}
		seen[h] = true
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, h)
		}
	}
	return dns, ips
}

// sign makes the certificate tmpl for key's public key, signed by parent
// with signer.
func sign(tmpl, parent *x509.Certificate, key, signer crypto.Signer) (*Pair, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %q: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &Pair{
		Cert:    cert,
		Key:     key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

// newSerial is a random positive 127-bit serial number.
func newSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// keyID is the subject key identifier of pub: the SHA-1 of its encoding, as
// RFC 5280 suggests (an identifier, not a security measure).
func keyID(pub crypto.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil
	}
	sum := sha1.Sum(der)
	return sum[:]
}

// RevocationList is a CRL signed by the CA, as PEM, revoking serials, valid
// from now for validity (DefaultValidity when zero); what --client-crl-file
// and --peer-crl-file read. Its number is the current time in nanoseconds,
// so a later list has a larger number.
func (ca *CA) RevocationList(serials []*big.Int, validity time.Duration) ([]byte, error) {
	if validity == 0 {
		validity = DefaultValidity
	}
	now := time.Now()
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(now.UnixNano()),
		ThisUpdate: now.Add(-backdate),
		NextUpdate: now.Add(validity),
	}
	for _, s := range serials {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: s, RevocationTime: now.Add(-backdate)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign revocation list: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), nil
}

// ErrNoPEM is returned by ParseCertificates for input with no certificate.
var ErrNoPEM = errors.New("no PEM certificate found")

// ParseCertificates reads every CERTIFICATE block of PEM data (a single
// certificate or a bundle), in order.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, ErrNoPEM
	}
	return certs, nil
}
