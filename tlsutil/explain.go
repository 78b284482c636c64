package tlsutil

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/keeldb/keel/pki"
)

// failure is a refused handshake in operator terms: cause is a short key
// ("expired", "unknown-authority", ...) that rate-limits the log, reason a
// sentence that says what is wrong and what to do. An empty cause is a
// client that went away, not a refusal.
type failure struct {
	cause, reason string
}

// explainFailure explains why the TLS handshake with the client at remote
// on the port ("client" or "peer") failed with err.
func (s *Source) explainFailure(err error, port, remote string) failure {
	var (
		rev *RevokedError
		na  *NotAllowedError
		san *sanError
	)
	switch {
	case errors.As(err, &rev):
		return failure{"revoked", fmt.Sprintf("the client at %s presented a %s; it must get a new certificate", remote, rev.Error())}
	case errors.As(err, &na):
		return failure{"not-allowed", fmt.Sprintf("the client at %s presented a %s", remote, na.Error())}
	case errors.As(err, &san):
		return failure{"san", san.Error()}
	case goneAway(err):
		return failure{}
	}
	certFlags := "--cert-file and --key-file"
	if port == "peer" {
		certFlags = "--peer-cert-file and --peer-key-file"
	}
	h := pki.Handshake{Role: pki.Acceptor, Addr: remote, CAFile: s.info.TrustedCAFile, CAs: s.trustedCAs(),
		Cert: s.cert.get().Leaf, CertFlags: certFlags}
	reason := h.Explain(err)
	if reason == "" {
		reason = fmt.Sprintf("TLS handshake with the client at %s failed: %v", remote, err)
	}
	return failure{causeOf(err), reason}
}

// causeOf classifies a handshake error for rate-limiting the log.
func causeOf(err error) string {
	var (
		inv x509.CertificateInvalidError
		ua  x509.UnknownAuthorityError
		he  x509.HostnameError
		op  *net.OpError
	)
	switch {
	case errors.As(err, &inv) && inv.Reason == x509.Expired && inv.Cert != nil && time.Now().Before(inv.Cert.NotBefore):
		return "not-yet-valid"
	case errors.As(err, &inv):
		return fmt.Sprintf("invalid-certificate-%d", inv.Reason)
	case errors.As(err, &ua):
		return "unknown-authority"
	case errors.As(err, &he):
		return "hostname"
	case strings.Contains(err.Error(), pki.NoClientCertText):
		return "no-client-certificate"
	case errors.As(err, &op) && op.Op == "remote error":
		return "refused-by-client"
	}
	return "handshake"
}

// goneAway reports whether err only says that the client went away or took
// too long (a TCP health check, a port scanner, a client that gave up).
func goneAway(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// sanError refuses a peer whose certificate does not cover the address it
// connects from.
type sanError struct {
	remote string
	cert   *x509.Certificate
}

func (e *sanError) Error() string {
	return fmt.Sprintf("the peer connects from %s, which its certificate %s does not cover (it covers %s): "+
		"reissue it with that address among its SANs, or set --peer-skip-client-san-verification",
		e.remote, pki.Name(e.cert), pki.Coverage(e.cert))
}

// checkClientSAN is etcd's peer check: a client certificate with SANs must
// cover the IP address the connection comes from, directly or through one
// of its DNS names (see coversIP).
func checkClientSAN(ctx context.Context, tc *tls.Conn) error {
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return nil
	}
	c := certs[0]
	if len(c.IPAddresses) == 0 && len(c.DNSNames) == 0 {
		return nil
	}
	host, _, err := net.SplitHostPort(tc.RemoteAddr().String())
	if err != nil {
		return err
	}
	lctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if coversIP(lctx, net.DefaultResolver, c, net.ParseIP(host)) {
		return nil
	}
	return &sanError{remote: host, cert: c}
}

// resolver is the part of net.Resolver coversIP uses.
type resolver interface {
	LookupAddr(ctx context.Context, addr string) ([]string, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// coversIP reports whether c covers ip as etcd decides: one of its IP
// SANs, or a DNS SAN (a wildcard too) matching a name the reverse lookup
// of ip gives, or a DNS SAN whose forward lookup gives ip.
func coversIP(ctx context.Context, r resolver, c *x509.Certificate, ip net.IP) bool {
	if slices.ContainsFunc(c.IPAddresses, ip.Equal) {
		return true
	}
	if len(c.DNSNames) == 0 {
		return false
	}
	names, _ := r.LookupAddr(ctx, ip.String())
	for _, name := range names {
		for _, san := range c.DNSNames {
			if sanMatches(san, name) {
				return true
			}
		}
	}
	for _, san := range c.DNSNames {
		if strings.HasPrefix(san, "*.") {
			continue
		}
		addrs, err := r.LookupIPAddr(ctx, san)
		if err != nil {
			continue
		}
		if slices.ContainsFunc(addrs, func(a net.IPAddr) bool { return a.IP.Equal(ip) }) {
			return true
		}
	}
	return false
}

// sanMatches reports whether the DNS SAN san covers host (a name from a
// reverse lookup, perhaps with the root's trailing dot), ignoring case. A
// wildcard "*.example.com" covers any name that ends in ".example.com", as
// in etcd (at any depth, unlike a server certificate's wildcard).
func sanMatches(san, host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	san = strings.ToLower(san)
	if suffix, ok := strings.CutPrefix(san, "*"); ok && strings.HasPrefix(suffix, ".") {
		return strings.HasSuffix(host, suffix)
	}
	return san == host
}

// ExplainDial explains why dialling the peer URL u with s's client
// configuration failed with err, "" when err names no TLS cause.
func (s *Source) ExplainDial(u string, err error) string {
	addr := u
	if parsed, perr := url.Parse(u); perr == nil && parsed.Host != "" {
		addr = parsed.Host
	}
	return pki.Handshake{Role: pki.Dialer, Addr: addr, CAFile: s.info.TrustedCAFile, CAs: s.trustedCAs(),
		Cert: s.clientCert.get().Leaf, CertFlags: "--peer-cert-file and --peer-key-file"}.Explain(err)
}
