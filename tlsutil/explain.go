package tlsutil

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"syscall"
	"time"
)

// failure is a refused handshake in operator terms: cause is a short key
// ("expired", "unknown-authority", ...) that rate-limits the log, reason a
// sentence that says what is wrong and what to do. An empty cause is a
// client that went away, not a refusal.
type failure struct {
	cause, reason string
}

// flags names the flags of a port in explanations.
func flags(port string) (certFile, caFile, certAuth string) {
	if port == "peer" {
		return "--peer-cert-file", "--peer-trusted-ca-file", "--peer-client-cert-auth"
	}
	return "--cert-file", "--trusted-ca-file", "--client-cert-auth"
}

// explainFailure explains why the TLS handshake of a connection to the
// port ("client" or "peer") failed with err.
func explainFailure(err error, port string) failure {
	certFile, caFile, certAuth := flags(port)
	var (
		rev *RevokedError
		na  *NotAllowedError
		inv x509.CertificateInvalidError
		ua  x509.UnknownAuthorityError
		san *sanError
		op  *net.OpError
	)
	switch {
	case errors.As(err, &rev):
		return failure{"revoked", fmt.Sprintf("the client's %s; issue it a new certificate", rev.Error())}
	case errors.As(err, &na):
		return failure{"not-allowed", "the client's " + na.Error()}
	case errors.As(err, &san):
		return failure{"san", san.Error()}
	case errors.As(err, &inv):
		return explainInvalid(inv, port)
	case errors.As(err, &ua):
		return failure{"unknown-authority", fmt.Sprintf("the client certificate %s is signed by %q, which is not a CA in %s; "+
			"issue the client a certificate from that CA or add its CA to %s", subject(ua.Cert), ua.Cert.Issuer.String(), caFile, caFile)}
	case strings.Contains(err.Error(), "client didn't provide a certificate"):
		return failure{"no-client-certificate", fmt.Sprintf("the client presented no certificate, and %s (or %s) requires one; "+
			"give the client a certificate and key signed by a CA of %s", certAuth, caFile, caFile)}
	case errors.As(err, &op) && op.Op == "remote error":
		return failure{"refused-by-client", fmt.Sprintf("the client refused this member's certificate (%v): check that the client trusts the CA "+
			"that signed %s and that the certificate covers the host name or IP address the client dials", op.Err, certFile)}
	case goneAway(err):
		return failure{}
	}
	return failure{"handshake", fmt.Sprintf("TLS handshake failed: %v", err)}
}

func explainInvalid(inv x509.CertificateInvalidError, port string) failure {
	c := inv.Cert
	switch inv.Reason {
	case x509.Expired:
		now := time.Now().UTC()
		cause, state := "expired", "expired at "+c.NotAfter.UTC().Format(time.RFC3339)
		if now.Before(c.NotBefore) {
			cause, state = "not-yet-valid", "is not valid before "+c.NotBefore.UTC().Format(time.RFC3339)
		}
		return failure{cause, fmt.Sprintf("the client certificate %s %s (valid from %s to %s; the local clock says %s)", subject(c), state,
			c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), now.Format(time.RFC3339))}
	case x509.IncompatibleUsage:
		want := "a client certificate (extended key usage clientAuth)"
		if port == "peer" {
			want = "a peer certificate (extended key usages serverAuth and clientAuth)"
		}
		return failure{"key-usage", fmt.Sprintf("the client certificate %s lacks the clientAuth extended key usage (it has: %s); issue %s",
			subject(c), strings.Join(extKeyUsages(c), ", "), want)}
	}
	return failure{"invalid-certificate", fmt.Sprintf("the client certificate %s is invalid: %v", subject(c), inv)}
}

func subject(c *x509.Certificate) string {
	if c == nil {
		return "(none)"
	}
	return fmt.Sprintf("%q", c.Subject.CommonName)
}

// extKeyUsages names the extended key usages of c as certificates print
// them.
func extKeyUsages(c *x509.Certificate) []string {
	names := map[x509.ExtKeyUsage]string{
		x509.ExtKeyUsageAny: "any", x509.ExtKeyUsageServerAuth: "serverAuth", x509.ExtKeyUsageClientAuth: "clientAuth",
		x509.ExtKeyUsageCodeSigning: "codeSigning", x509.ExtKeyUsageEmailProtection: "emailProtection",
		x509.ExtKeyUsageTimeStamping: "timeStamping", x509.ExtKeyUsageOCSPSigning: "OCSPSigning",
	}
	var out []string
	for _, u := range c.ExtKeyUsage {
		if n, ok := names[u]; ok {
			out = append(out, n)
		} else {
			out = append(out, fmt.Sprintf("usage %d", u))
		}
	}
	if len(out) == 0 {
		return []string{"none"}
	}
	return out
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
	return fmt.Sprintf("the peer connects from %s, which the SANs of its certificate %s do not cover (DNS names %q, IP addresses %v); "+
		"issue its certificate with that address, or set --peer-skip-client-san-verification", e.remote, subject(e.cert), e.cert.DNSNames, e.cert.IPAddresses)
}

// checkClientSAN is etcd's peer check: a client certificate with SANs must
// cover the IP address the connection comes from, directly or through one
// of its DNS names.
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
	ip := net.ParseIP(host)
	if slices.ContainsFunc(c.IPAddresses, ip.Equal) {
		return nil
	}
	for _, name := range c.DNSNames {
		if strings.HasPrefix(name, "*.") {
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, time.Second)
		addrs, err := net.DefaultResolver.LookupIPAddr(lctx, name)
		cancel()
		if err != nil {
			continue
		}
		if slices.ContainsFunc(addrs, func(a net.IPAddr) bool { return a.IP.Equal(ip) }) {
			return nil
		}
	}
	return &sanError{remote: host, cert: c}
}
