package pki

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math"
	"strings"
	"time"
)

// Describe explains a certificate in operator terms, one "Field: value"
// per line: subject, issuer, serial, key, validity against now, SANs, key
// usages, whether it is a CA, and which keel and keelctl flags it can and
// cannot be used for, and why.
func Describe(c *x509.Certificate, now time.Time) string {
	var b strings.Builder
	row := func(k, v string) { fmt.Fprintf(&b, "%-17s %s\n", k+":", v) }
	row("Subject", c.Subject.String())
	issuer := c.Issuer.String()
	if issuer == c.Subject.String() {
		issuer += " (self-signed)"
	}
	row("Issuer", issuer)
	row("Serial", c.SerialNumber.Text(16))
	row("Key", KeyDescription(c.PublicKey))
	row("Valid", fmt.Sprintf("%s to %s (%s)", c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), validityState(c, now)))
	row("SANs", sans(c))
	row("Key usage", keyUsages(c.KeyUsage))
	row("Ext key usage", ExtKeyUsages(c))
	ca := "no"
	if c.IsCA {
		ca = "yes"
	}
	row("CA", ca)
	can, cannot := uses(c)
	b.WriteString("Can be used for:\n")
	if len(can) == 0 {
		b.WriteString("  nothing in keel\n")
	}
	for _, u := range can {
		b.WriteString("  " + u + "\n")
	}
	if len(cannot) > 0 {
		b.WriteString("Cannot be used for:\n")
		for _, u := range cannot {
			b.WriteString("  " + u + "\n")
		}
	}
	if s := validityState(c, now); strings.HasPrefix(s, "EXPIRED") || strings.HasPrefix(s, "NOT YET VALID") {
		fmt.Fprintf(&b, "Note: it is %s, so every use above fails until it is renewed or the clock is right.\n", s)
	}
	return b.String()
}

// validityState is "expires in N days", "EXPIRED N days ago" or "NOT YET
// VALID (valid in N days)".
func validityState(c *x509.Certificate, now time.Time) string {
	switch {
	case now.Before(c.NotBefore):
		return "NOT YET VALID, valid in " + days(c.NotBefore.Sub(now))
	case now.After(c.NotAfter):
		return "EXPIRED " + days(now.Sub(c.NotAfter)) + " ago"
	}
	return "expires in " + days(c.NotAfter.Sub(now))
}

func days(d time.Duration) string {
	n := int(math.Floor(d.Hours() / 24))
	switch {
	case n == 1:
		return "1 day"
	case n > 1:
		return fmt.Sprintf("%d days", n)
	case d >= time.Hour:
		return fmt.Sprintf("%d hours", int(d.Hours()))
	}
	return fmt.Sprintf("%d minutes", int(d.Minutes()))
}

// uses lists what c can be used for in keel and what not, with the reason.
func uses(c *x509.Certificate) (can, cannot []string) {
	server := HasExtKeyUsage(c, x509.ExtKeyUsageServerAuth)
	client := HasExtKeyUsage(c, x509.ExtKeyUsageClientAuth)
	signs := c.KeyUsage&x509.KeyUsageDigitalSignature != 0 || c.KeyUsage == 0
	if c.IsCA {
		can = append(can, "--trusted-ca-file, --peer-trusted-ca-file, keelctl --cacert (a CA: it verifies the certificates it signed)")
		cannot = append(cannot, "--cert-file, --peer-cert-file, keelctl --cert: it is a CA; issue a server, peer or client certificate from it (keelctl pki create)")
		return can, cannot
	}
	cannot = append(cannot, "--trusted-ca-file, --peer-trusted-ca-file, keelctl --cacert: it is not a CA (basic constraints do not say CA:TRUE); give the CA that signed it")
	if !signs {
		cannot = append(cannot, "a TLS certificate of any kind: its key usage lacks digitalSignature")
		return can, cannot
	}
	if server {
		can = append(can, "--cert-file with --key-file (serves the client port; has serverAuth), covering "+Coverage(c))
	} else {
		cannot = append(cannot, "--cert-file: it lacks the serverAuth extended key usage (it has "+ExtKeyUsages(c)+")")
	}
	switch {
	case server && client:
		can = append(can, "--peer-cert-file with --peer-key-file (serves and dials peers; has serverAuth and clientAuth)")
	case server:
		cannot = append(cannot, "--peer-cert-file: a member also dials its peers with it, which needs clientAuth too")
	default:
		cannot = append(cannot, "--peer-cert-file: it needs serverAuth and clientAuth (it has "+ExtKeyUsages(c)+")")
	}
	if client {
		can = append(can, fmt.Sprintf("keelctl --cert with --key, a client's certificate (has clientAuth); with --client-cert-auth the user is its CN %q", c.Subject.CommonName))
	} else {
		cannot = append(cannot, "keelctl --cert: it lacks the clientAuth extended key usage")
	}
	return can, cannot
}

func sans(c *x509.Certificate) string {
	var parts []string
	for _, d := range c.DNSNames {
		parts = append(parts, "DNS:"+d)
	}
	for _, ip := range c.IPAddresses {
		parts = append(parts, "IP:"+ip.String())
	}
	for _, u := range c.URIs {
		parts = append(parts, "URI:"+u.String())
	}
	for _, e := range c.EmailAddresses {
		parts = append(parts, "email:"+e)
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// keyUsages names the key usage bits, as RFC 5280 does.
func keyUsages(ku x509.KeyUsage) string {
	names := []string{"digitalSignature", "contentCommitment", "keyEncipherment", "dataEncipherment",
		"keyAgreement", "keyCertSign", "cRLSign", "encipherOnly", "decipherOnly"}
	var out []string
	for i, n := range names {
		if ku&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

// KeyDescription names a public key's type and size: "ECDSA P-256",
// "RSA 2048".
func KeyDescription(pub any) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", pub)
}

// DescribeCRL explains a certificate revocation list: its issuer, number,
// update times against now and the serials it revokes.
func DescribeCRL(crl *x509.RevocationList, now time.Time) string {
	var b strings.Builder
	row := func(k, v string) { fmt.Fprintf(&b, "%-17s %s\n", k+":", v) }
	row("Issuer", crl.Issuer.String())
	if crl.Number != nil {
		row("Number", crl.Number.String())
	}
	row("This update", crl.ThisUpdate.UTC().Format(time.RFC3339))
	next := crl.NextUpdate.UTC().Format(time.RFC3339)
	if !crl.NextUpdate.IsZero() && now.After(crl.NextUpdate) {
		next += " (PAST: publish a new list)"
	}
	row("Next update", next)
	row("Revoked", fmt.Sprintf("%d certificates", len(crl.RevokedCertificateEntries)))
	for _, e := range crl.RevokedCertificateEntries {
		fmt.Fprintf(&b, "  serial %s, revoked %s\n", e.SerialNumber.Text(16), e.RevocationTime.UTC().Format(time.RFC3339))
	}
	b.WriteString("Can be used for:\n  --client-crl-file, --peer-crl-file (certificates it lists are refused)\n")
	return b.String()
}

// DescribePEM explains every PEM block of data: certificates (one or a
// bundle), CRLs and private keys (named, never shown), each under a
// heading. It fails when data holds no PEM block it knows.
func DescribePEM(data []byte, now time.Time) (string, error) {
	var b strings.Builder
	n := 0
	for {
		var blk *pem.Block
		blk, data = pem.Decode(data)
		if blk == nil {
			break
		}
		var text string
		switch blk.Type {
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return "", fmt.Errorf("certificate %d: %w", n+1, err)
			}
			text = "Certificate\n" + Describe(c, now)
		case "X509 CRL":
			crl, err := x509.ParseRevocationList(blk.Bytes)
			if err != nil {
				return "", fmt.Errorf("revocation list %d: %w", n+1, err)
			}
			text = "Certificate revocation list\n" + DescribeCRL(crl, now)
		case "PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY":
			text = "Private key (" + blk.Type + "): give it with the certificate it belongs to (--key-file, --peer-key-file, keelctl --key); keep it mode 0600\n"
		default:
			continue
		}
		if n > 0 {
			b.WriteString("\n")
		}
		b.WriteString(text)
		n++
	}
	if n == 0 {
		return "", fmt.Errorf("no PEM certificate, revocation list or key found")
	}
	return b.String(), nil
}
