// Package tlsutil builds the TLS configurations of a member's client and
// peer ports from etcd's security flags: certificates, keys, trusted CAs and
// CRLs re-read from disk when they change, client certificate
// authentication, the allowed common names and host names of peers, cipher
// suites and TLS versions. It also provides the listener that does the TLS
// handshakes of a port (see NewListener) and names the cause of every
// refused connection in the log.
package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/keeldb/keel/config"
	"github.com/keeldb/keel/internal/loglimit"
)

const (
	// logEvery rate-limits repeated log lines with the same cause and
	// remote host.
	logEvery = 10 * time.Second
	// logPerCause bounds the lines of one cause per logEvery, whatever the
	// number of hosts; the next line says how many were left out.
	logPerCause = 5
)

// Info is the TLS set-up of one port: its flags as config reads them (for
// the client port --cert-file, --key-file, --trusted-ca-file, ...; for the
// peer port their --peer-* counterparts; see config.TLS, whose AutoTLS and
// SkipClientSANVerify the caller handles) and the settings shared by both
// ports, resolved.
type Info struct {
	config.TLS
	// CipherSuites, MinVersion and MaxVersion restrict the handshake; zero
	// values let Go choose (MinVersion defaults to TLS 1.2).
	CipherSuites           []uint16
	MinVersion, MaxVersion uint16
	// SelfSigned marks a certificate made by --auto-tls: whoever dials with
	// this Info does not verify the other side's certificate, as in etcd.
	SelfSigned bool
}

// requireClientCerts is etcd's rule: a trusted CA file or --client-cert-auth
// makes client certificates mandatory.
func (i Info) requireClientCerts() bool { return i.TrustedCAFile != "" || i.ClientCertAuth }

// Source serves the TLS configurations of one Info, re-reading the files
// when they change. Its methods are safe for concurrent use.
type Source struct {
	info       Info
	lg         *zap.Logger
	limiter    *loglimit.Limiter
	cert       *watched[*tls.Certificate]
	clientCert *watched[*tls.Certificate]
	ca         *watched[caBundle]    // nil without TrustedCAFile
	crl        *watched[revocations] // nil without CRLFile
}

// New loads the files of info. It fails, naming the file, when one cannot
// be read or parsed, so that a member refuses to start rather than failing
// every handshake. Later changes that cannot be loaded are logged and the
// files loaded before stay in use.
func New(info Info, lg *zap.Logger) (*Source, error) {
	if lg == nil {
		lg = zap.NewNop()
	}
	if info.KeyFile == "" || info.CertFile == "" {
		return nil, fmt.Errorf("KeyFile and CertFile must both be present[key: %v, cert: %v]", info.KeyFile, info.CertFile)
	}
	if (info.ClientKeyFile == "") != (info.ClientCertFile == "") {
		return nil, fmt.Errorf("ClientKeyFile and ClientCertFile must both be present or both absent: key: %v, cert: %v]", info.ClientKeyFile, info.ClientCertFile)
	}
	if len(info.AllowedCNs) > 0 && len(info.AllowedHostnames) > 0 {
		return nil, fmt.Errorf("AllowedCNs and AllowedHostnames are mutually exclusive (cns=%q, hostnames=%q)", info.AllowedCNs, info.AllowedHostnames)
	}
	s := &Source{info: info, lg: lg, limiter: loglimit.New(logEvery, logPerCause)}
	var err error
	if s.cert, err = newWatched([]string{info.CertFile, info.KeyFile}, loadKeyPair(info.CertFile, info.KeyFile), s.reloadFailed); err != nil {
		return nil, err
	}
	s.clientCert = s.cert
	if info.ClientCertFile != "" {
		if s.clientCert, err = newWatched([]string{info.ClientCertFile, info.ClientKeyFile}, loadKeyPair(info.ClientCertFile, info.ClientKeyFile), s.reloadFailed); err != nil {
			return nil, err
		}
	}
	if info.TrustedCAFile != "" {
		if s.ca, err = newWatched([]string{info.TrustedCAFile}, loadCAs(info.TrustedCAFile), s.reloadFailed); err != nil {
			return nil, err
		}
	}
	if info.CRLFile != "" {
		if s.crl, err = newWatched([]string{info.CRLFile}, loadCRL(info.CRLFile), s.reloadFailed); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *Source) reloadFailed(err error) {
	if s.limiter.Allow("reload/" + err.Error()) {
		s.lg.Warn("changed TLS files cannot be loaded; still using the previous ones", zap.Error(err))
	}
}

// Info returns the set-up s serves.
func (s *Source) Info() Info { return s.info }

// ServerConfig returns the configuration of a TLS server offering the
// application protocols nextProtos (ALPN). Every handshake uses the files
// as they are at that moment.
func (s *Source) ServerConfig(nextProtos ...string) *tls.Config {
	protos := slices.Clone(nextProtos)
	return &tls.Config{
		MinVersion: s.minVersion(),
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cfg := &tls.Config{
				Certificates:     []tls.Certificate{*s.cert.get()},
				MinVersion:       s.minVersion(),
				MaxVersion:       s.info.MaxVersion,
				CipherSuites:     s.info.CipherSuites,
				NextProtos:       protos,
				ClientAuth:       tls.NoClientCert,
				VerifyConnection: s.verifyPeer,
			}
			if s.info.requireClientCerts() {
				cfg.ClientAuth = tls.RequireAndVerifyClientCert
			}
			if s.ca != nil {
				cfg.ClientCAs = s.ca.get().pool
			}
			return cfg, nil
		},
	}
}

// ClientConfigFor returns the configuration for dialling the TLS server at
// host (a DNS name or an IP address, without port): it presents the client
// certificate and verifies that the server's certificate is signed by the
// trusted CA file (the system's roots without one) and covers host, unless
// the Info is SelfSigned. A configuration serves one host only: Go leaves
// the server name of the connection empty for an IP address, so host is
// bound here.
func (s *Source) ClientConfigFor(host string) *tls.Config {
	return &tls.Config{
		ServerName:   host,
		MinVersion:   s.minVersion(),
		MaxVersion:   s.info.MaxVersion,
		CipherSuites: s.info.CipherSuites,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return s.clientCert.get(), nil
		},
		// Verification is done in VerifyConnection so that the trusted
		// CA file is re-read when it changes.
		InsecureSkipVerify: true,
		VerifyConnection:   func(cs tls.ConnectionState) error { return s.verifyServer(host, cs) },
	}
}

// trustedCAs returns the certificates of the trusted CA file, nil without
// one.
func (s *Source) trustedCAs() []*x509.Certificate {
	if s.ca == nil {
		return nil
	}
	return s.ca.get().certs
}

func (s *Source) minVersion() uint16 {
	if s.info.MinVersion != 0 {
		return s.info.MinVersion
	}
	return tls.VersionTLS12
}

// verifyPeer runs after Go verified the other side's chain (if it sent
// one): the CRL, then the allowed common names and host names.
func (s *Source) verifyPeer(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return nil
	}
	if s.crl != nil {
		crl := s.crl.get()
		for _, c := range cs.PeerCertificates {
			if at, ok := crl.revoked(c); ok {
				return &RevokedError{Cert: c, RevokedAt: at, CRLFile: s.info.CRLFile}
			}
		}
	}
	return s.checkAllowed(cs)
}

// verifyServer verifies the certificate of the server at host that this
// member dialled.
func (s *Source) verifyServer(host string, cs tls.ConnectionState) error {
	if s.info.SelfSigned {
		return nil
	}
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tls: the server sent no certificate")
	}
	opts := x509.VerifyOptions{
		DNSName:       host,
		Intermediates: x509.NewCertPool(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if s.ca != nil {
		opts.Roots = s.ca.get().pool
	}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	chains, err := cs.PeerCertificates[0].Verify(opts)
	if err != nil {
		return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates, Err: err}
	}
	cs.VerifiedChains = chains
	return s.checkAllowed(cs)
}

// NotAllowedError refuses a verified certificate that carries none of the
// allowed common names (--peer-cert-allowed-cn) or host names
// (--peer-cert-allowed-hostname, --client-cert-allowed-hostname).
type NotAllowedError struct {
	Cert             *x509.Certificate
	AllowedCNs       []string
	AllowedHostnames []string
}

func (e *NotAllowedError) Error() string {
	if len(e.AllowedCNs) > 0 {
		return fmt.Sprintf("certificate common name %q is not one of the allowed common names %q", e.Cert.Subject.CommonName, e.AllowedCNs)
	}
	return fmt.Sprintf("certificate (DNS names %q, IP addresses %v) is valid for none of the allowed host names %q", e.Cert.DNSNames, e.Cert.IPAddresses, e.AllowedHostnames)
}

// checkAllowed accepts the connection when the leaf of a verified chain
// matches one of the allowed common names or host names.
func (s *Source) checkAllowed(cs tls.ConnectionState) error {
	cns, hosts := s.info.AllowedCNs, s.info.AllowedHostnames
	if len(cns) == 0 && len(hosts) == 0 {
		return nil
	}
	for _, chain := range cs.VerifiedChains {
		if len(chain) == 0 {
			continue
		}
		leaf := chain[0]
		if slices.Contains(cns, leaf.Subject.CommonName) {
			return nil
		}
		for _, h := range hosts {
			if leaf.VerifyHostname(h) == nil {
				return nil
			}
		}
	}
	return &NotAllowedError{Cert: cs.PeerCertificates[0], AllowedCNs: cns, AllowedHostnames: hosts}
}
