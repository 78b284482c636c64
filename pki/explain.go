package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
)

// Role is which end of a TLS connection explains a failure.
type Role int

const (
	// Dialer is the end that dialled: keelctl, a client, or a member
	// dialling a peer. The certificate the handshake verified is the
	// server's.
	Dialer Role = iota
	// Acceptor is the end that accepted: a member's client or peer port.
	// The certificate the handshake verified is the client's.
	Acceptor
)

// Texts of Go's TLS errors that have no type of their own, recognised by
// their text (TestGoErrorTextsAreStillMatched pins them to Go's).
const (
	// NoClientCertText is in the server's error when a client certificate
	// is required and none was presented.
	NoClientCertText = "didn't provide a certificate"
	// remoteAlertText opens an alert from the other end, once the error
	// crossed a library boundary (gRPC) as text.
	remoteAlertText = "remote error: tls: "
	// alertCertRequired is the alert of a TLS 1.3 server that required a
	// client certificate and got none.
	alertCertRequired = "certificate required"
)

// certAlerts are the alerts by which the other end refuses a certificate.
var certAlerts = []string{"bad certificate", "unknown certificate authority", "expired certificate",
	"unsupported certificate", "revoked certificate"}

// Handshake is what one end knows about a TLS handshake that failed: the
// context Explain needs to turn the error into the cause. Every field is
// optional; the more is given, the more precise the sentence.
type Handshake struct {
	Role Role
	// Addr is the remote address: the endpoint dialled (Dialer) or the
	// client's address (Acceptor).
	Addr string
	// ServerName is the name or IP the server certificate was checked
	// against (Dialer); the host of Addr when empty.
	ServerName string
	// CAFile and CAs are the trusted CA file and its certificates, named
	// when a certificate is signed by an unknown authority.
	CAFile string
	CAs    []*x509.Certificate
	// Cert is this end's own certificate, nil when it presented none; it
	// explains the other end's refusals (TLS alerts), which say little.
	Cert *x509.Certificate
	// CertFlags names the flags that give this end's certificate, for
	// the advice ("--cert and --key"); the advice is left out when empty.
	CertFlags string
	// Now is the local clock; time.Now when nil.
	Now func() time.Time
}

// Explain turns err, from a TLS handshake or a certificate verification
// described by h, into one sentence naming the cause in operator terms:
// which usage or name or date or authority is wrong, with what the
// certificate does have. It returns "" for an error it does not recognise
// (a refused connection, a timeout), so the caller can keep its own message.
func (h Handshake) Explain(err error) string {
	if err == nil {
		return ""
	}
	var (
		hostErr  x509.HostnameError
		invErr   x509.CertificateInvalidError
		authErr  x509.UnknownAuthorityError
		recErr   tls.RecordHeaderError
		verifErr *tls.CertificateVerificationError
		opErr    *net.OpError
	)
	switch {
	case errors.As(err, &hostErr):
		return h.hostname(hostErr)
	case errors.As(err, &invErr):
		cert := invErr.Cert
		if cert == nil && errors.As(err, &verifErr) && len(verifErr.UnverifiedCertificates) > 0 {
			cert = verifErr.UnverifiedCertificates[0]
		}
		return h.invalid(cert, invErr)
	case errors.As(err, &authErr):
		return h.unknownAuthority(authErr.Cert)
	case errors.As(err, &recErr):
		return h.plaintext()
	case errors.As(err, &opErr) && opErr.Op == "remote error":
		return h.alert(opErr.Err.Error())
	case strings.Contains(err.Error(), NoClientCertText):
		return fmt.Sprintf("the client%s presented no certificate, and this port requires one (client certificate auth is on): the client must present a certificate signed by a trusted CA (a Go client sends none when its certificate is signed by a CA this port does not trust)",
			h.at())
	case strings.Contains(err.Error(), remoteAlertText):
		// The alert as text, after it crossed a library boundary (gRPC).
		_, alert, _ := strings.Cut(err.Error(), "remote error: ")
		return h.alert(alert)
	}
	return ""
}

// theirs is how the sentence names the other end's certificate.
func (h Handshake) theirs() string {
	if h.Role == Dialer {
		return "the server certificate"
	}
	return "the client certificate"
}

// at is " at ADDR", or "" without an address.
func (h Handshake) at() string {
	if h.Addr == "" {
		return ""
	}
	return " at " + h.Addr
}

func (h Handshake) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func (h Handshake) serverName() string {
	if h.ServerName != "" {
		return h.ServerName
	}
	if host, _, err := net.SplitHostPort(h.Addr); err == nil {
		return host
	}
	return h.Addr
}

func (h Handshake) hostname(e x509.HostnameError) string {
	host := e.Host
	if host == "" {
		host = h.serverName()
	}
	return fmt.Sprintf("%s %s covers %s, not %q which was dialled: reissue it with %s among its SANs, or dial a name it covers",
		h.theirs(), Name(e.Certificate), Coverage(e.Certificate), host, host)
}

func (h Handshake) invalid(cert *x509.Certificate, e x509.CertificateInvalidError) string {
	switch e.Reason {
	case x509.Expired:
		if cert == nil {
			return ""
		}
		if h.now().Before(cert.NotBefore) {
			return fmt.Sprintf("%s %s is not valid yet: %s; check this machine's clock and the issuer's", h.theirs(), Name(cert), Validity(cert, h.now()))
		}
		return fmt.Sprintf("%s %s has expired: %s; renew it", h.theirs(), Name(cert), Validity(cert, h.now()))
	case x509.IncompatibleUsage:
		need, role := x509.ExtKeyUsageServerAuth, "a server"
		if h.Role == Acceptor {
			need, role = x509.ExtKeyUsageClientAuth, "a client"
		}
		return fmt.Sprintf("%s %s lacks the %s extended key usage, which %s certificate needs (it has %s): reissue it with %s",
			h.theirs(), Name(cert), ExtKeyUsageName(need), role, ExtKeyUsages(cert), ExtKeyUsageName(need))
	case x509.NotAuthorizedToSign:
		return fmt.Sprintf("%s %s is signed by a certificate that is not a CA (%s)", h.theirs(), Name(cert), cert.Issuer)
	}
	return ""
}

func (h Handshake) unknownAuthority(cert *x509.Certificate) string {
	var b strings.Builder
	if cert == nil {
		b.WriteString(h.theirs() + " is signed by an unknown authority")
	} else if cert.Subject.String() == cert.Issuer.String() {
		fmt.Fprintf(&b, "%s %s is self-signed (auto-tls?) and not among the trusted CAs", h.theirs(), Name(cert))
	} else {
		fmt.Fprintf(&b, "%s %s is signed by %q, which is not a trusted CA", h.theirs(), Name(cert), cert.Issuer.String())
	}
	b.WriteString(h.trusted())
	if h.Role == Dialer {
		b.WriteString(": trust the CA that signed it (keelctl --cacert, a member's --peer-trusted-ca-file)")
	} else {
		b.WriteString(": the client must use a certificate signed by a CA in this member's trusted CA file")
	}
	return b.String()
}

// trusted is " (the trusted CAs, from FILE, are: ...)" or "".
func (h Handshake) trusted() string {
	if len(h.CAs) == 0 && h.CAFile == "" {
		return ""
	}
	var subjects []string
	for _, c := range h.CAs {
		subjects = append(subjects, fmt.Sprintf("%q", c.Subject.String()))
	}
	from := ""
	if h.CAFile != "" {
		from = ", from " + h.CAFile + ","
	}
	if len(subjects) == 0 {
		return fmt.Sprintf(" (the trusted CAs%s are none)", from)
	}
	return fmt.Sprintf(" (the trusted CAs%s are %s)", from, strings.Join(subjects, ", "))
}

func (h Handshake) plaintext() string {
	if h.Role == Dialer {
		return fmt.Sprintf("the server%s does not speak TLS on this port (it answered in plain text): use an http:// endpoint, or start the server with --cert-file and --key-file", h.at())
	}
	return fmt.Sprintf("the client%s sent plain text to this TLS port: it must use https:// and trust this member's CA", h.at())
}

// alert explains a TLS alert the other end sent, e.g. "tls: bad
// certificate". The alerts say little; h.Cert, this end's own certificate,
// says more.
func (h Handshake) alert(alert string) string {
	if h.Role == Acceptor {
		return h.refusedByClient(alert)
	}
	switch {
	case strings.Contains(alert, alertCertRequired):
		return h.noCert()
	case slices.ContainsFunc(certAlerts, func(a string) bool { return strings.Contains(alert, a) }):
	default:
		return ""
	}
	if h.Cert == nil {
		// TLS 1.2 servers send bad_certificate for a missing one.
		return h.noCert()
	}
	mine := "the client certificate " + Name(h.Cert)
	now := h.now()
	switch {
	case !HasExtKeyUsage(h.Cert, x509.ExtKeyUsageClientAuth):
		return fmt.Sprintf("the server%s refused %s (%s): it lacks the clientAuth extended key usage (it has %s); reissue it with clientAuth",
			h.at(), mine, alert, ExtKeyUsages(h.Cert))
	case now.Before(h.Cert.NotBefore) || now.After(h.Cert.NotAfter):
		return fmt.Sprintf("the server%s refused %s (%s): it is not valid now: %s", h.at(), mine, alert, Validity(h.Cert, now))
	case strings.Contains(alert, "unknown certificate authority"):
		return fmt.Sprintf("the server%s refused %s (%s): the server does not trust its issuer %q; sign it with the CA in the server's trusted CA file",
			h.at(), mine, alert, h.Cert.Issuer.String())
	}
	return fmt.Sprintf("the server%s refused %s (%s): check it is signed by the CA in the server's trusted CA file, is not revoked by its CRL, and that its CN is allowed",
		h.at(), mine, alert)
}

// refusedByClient explains, on the accepting end, an alert by which the
// client refused this port's own certificate, h.Cert.
func (h Handshake) refusedByClient(alert string) string {
	if !slices.ContainsFunc(certAlerts, func(a string) bool { return strings.Contains(alert, a) }) {
		return ""
	}
	if h.Cert == nil {
		return fmt.Sprintf("the client%s refused this port's certificate (%s): the client must trust the CA that signed it, and its SANs must cover the name it dials",
			h.at(), alert)
	}
	now := h.now()
	if now.Before(h.Cert.NotBefore) || now.After(h.Cert.NotAfter) {
		return fmt.Sprintf("the client%s refused this port's certificate %s (%s): it is not valid now: %s",
			h.at(), Name(h.Cert), alert, Validity(h.Cert, now))
	}
	return fmt.Sprintf("the client%s refused this port's certificate %s (%s): the client must trust the CA that signed it (%q), and the SANs (%s) must cover the name it dials",
		h.at(), Name(h.Cert), alert, h.Cert.Issuer.String(), Coverage(h.Cert))
}

func (h Handshake) noCert() string {
	if h.Cert != nil {
		// A Go client sends no certificate when the server's request
		// lists CAs and none of them signed it.
		return fmt.Sprintf("the server%s requires a client certificate signed by a CA it trusts, and the client certificate %s, signed by %q, is not: it was not sent; sign it with the CA in the server's trusted CA file",
			h.at(), Name(h.Cert), h.Cert.Issuer.String())
	}
	s := fmt.Sprintf("the server%s requires a client certificate (client certificate auth is on) and none was presented", h.at())
	if h.CertFlags != "" {
		s += ": give one with " + h.CertFlags
	}
	return s
}

// Name names a certificate in a sentence: (CN "m1", serial 1a2b...).
func Name(c *x509.Certificate) string {
	if c == nil {
		return "(unknown)"
	}
	return fmt.Sprintf("(CN %q, serial %s)", c.Subject.CommonName, c.SerialNumber.Text(16))
}

// Coverage lists the names and IPs a certificate's SANs cover: "DNS names
// a, b and IP addresses 1.2.3.4", or "no names (it has no SANs)".
func Coverage(c *x509.Certificate) string {
	var parts []string
	if len(c.DNSNames) > 0 {
		parts = append(parts, "DNS names "+strings.Join(c.DNSNames, ", "))
	}
	if len(c.IPAddresses) > 0 {
		ips := make([]string, len(c.IPAddresses))
		for i, ip := range c.IPAddresses {
			ips[i] = ip.String()
		}
		parts = append(parts, "IP addresses "+strings.Join(ips, ", "))
	}
	if len(parts) == 0 {
		return "no names (it has no subject alternative names; the common name does not count)"
	}
	return strings.Join(parts, " and ")
}

// Validity says when c is valid against now, all in UTC, RFC 3339:
// "valid from X to Y, and the local clock says Z".
func Validity(c *x509.Certificate, now time.Time) string {
	return fmt.Sprintf("valid from %s to %s, and the local clock says %s",
		c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
}

// HasExtKeyUsage reports whether c may be used for eku. A certificate
// without the extension may be used for anything, as crypto/x509 decides.
func HasExtKeyUsage(c *x509.Certificate, eku x509.ExtKeyUsage) bool {
	if len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 {
		return true
	}
	return slices.Contains(c.ExtKeyUsage, eku) || slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny)
}

// ExtKeyUsages lists c's extended key usages by name, e.g. "serverAuth,
// clientAuth", or "none (any usage)".
func ExtKeyUsages(c *x509.Certificate) string {
	if c == nil {
		return "unknown usages"
	}
	var names []string
	for _, u := range c.ExtKeyUsage {
		names = append(names, ExtKeyUsageName(u))
	}
	for _, oid := range c.UnknownExtKeyUsage {
		names = append(names, oid.String())
	}
	if len(names) == 0 {
		return "no extended key usage (any usage)"
	}
	return strings.Join(names, ", ")
}

// ExtKeyUsageName is the name OpenSSL and RFC 5280 give eku.
func ExtKeyUsageName(eku x509.ExtKeyUsage) string {
	switch eku {
	case x509.ExtKeyUsageAny:
		return "any"
	case x509.ExtKeyUsageServerAuth:
		return "serverAuth"
	case x509.ExtKeyUsageClientAuth:
		return "clientAuth"
	case x509.ExtKeyUsageCodeSigning:
		return "codeSigning"
	case x509.ExtKeyUsageEmailProtection:
		return "emailProtection"
	case x509.ExtKeyUsageTimeStamping:
		return "timeStamping"
	case x509.ExtKeyUsageOCSPSigning:
		return "OCSPSigning"
	}
	return fmt.Sprintf("extKeyUsage(%d)", int(eku))
}
