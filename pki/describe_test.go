package pki

import (
	"crypto/x509"
	"math/big"
	"strings"
	"testing"
	"time"
)

// section is the lines of text under heading, up to the next heading.
func section(text, heading string) string {
	_, rest, ok := strings.Cut(text, heading+"\n")
	if !ok {
		return ""
	}
	var lines []string
	for _, l := range strings.Split(rest, "\n") {
		if !strings.HasPrefix(l, "  ") {
			break
		}
		lines = append(lines, l)
	}
	return strings.Join(lines, "\n")
}

func TestDescribeSaysWhatACertificateIsFor(t *testing.T) {
	ca := mustCA(t)
	now := time.Now()
	issue := func(r Request) *x509.Certificate {
		p, err := ca.Issue(r)
		if err != nil {
			t.Fatal(err)
		}
		return p.Cert
	}
	for _, tc := range []struct {
		name              string
		cert              *x509.Certificate
		want, can, cannot []string
	}{
		{"CA", ca.Cert,
			[]string{"Issuer:", "(self-signed)", "CA:               yes", "keyCertSign", "ECDSA P-256", "expires in 36"},
			[]string{"--trusted-ca-file"}, []string{"--cert-file", "it is a CA"}},
		{"server", issue(Request{CommonName: "m1", Hosts: []string{"m1.example", "10.0.0.1"}, Usage: Server}),
			[]string{`Subject:          CN=m1`, "SANs:             DNS:m1.example, IP:10.0.0.1", "Ext key usage:    serverAuth", "expires in 364 days"},
			[]string{"--cert-file", "covering DNS names m1.example and IP addresses 10.0.0.1"},
			[]string{"--peer-cert-file: a member also dials", "keelctl --cert: it lacks the clientAuth", "not a CA"}},
		{"peer", issue(Request{CommonName: "m1", Hosts: []string{"10.0.0.1"}, Usage: Peer, KeyType: RSA2048}),
			[]string{"RSA 2048", "serverAuth, clientAuth", "keyEncipherment"},
			[]string{"--cert-file", "--peer-cert-file", "keelctl --cert"}, []string{"--trusted-ca-file"}},
		{"client", issue(Request{CommonName: "alice", Usage: Client}),
			[]string{"SANs:             none"},
			[]string{`the user is its CN "alice"`}, []string{"--cert-file: it lacks the serverAuth extended key usage (it has clientAuth)", "--peer-cert-file: it needs serverAuth and clientAuth"}},
		{"expired", issue(Request{CommonName: "old", NotBefore: now.Add(-10 * 24 * time.Hour), Validity: 24 * time.Hour}),
			[]string{"EXPIRED 9 days ago", "every use above fails"}, nil, nil},
		{"not yet valid", issue(Request{CommonName: "new", NotBefore: now.Add(50 * time.Hour)}),
			[]string{"NOT YET VALID, valid in 2 days"}, nil, nil},
	} {
		got := Describe(tc.cert, now)
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: lacks %q:\n%s", tc.name, w, got)
			}
		}
		can, cannot := section(got, "Can be used for:"), section(got, "Cannot be used for:")
		for _, w := range tc.can {
			if !strings.Contains(can, w) {
				t.Errorf("%s: can-use lacks %q:\n%s", tc.name, w, got)
			}
		}
		for _, w := range tc.cannot {
			if !strings.Contains(cannot, w) {
				t.Errorf("%s: cannot-use lacks %q:\n%s", tc.name, w, got)
			}
			if strings.Contains(can, strings.SplitN(w, ":", 2)[0]+" ") {
				t.Errorf("%s: %q is both usable and not:\n%s", tc.name, w, got)
			}
		}
	}
}

func TestDescribePEMBundleCRLAndKey(t *testing.T) {
	ca := mustCA(t)
	p, err := ca.Issue(Request{CommonName: "m1", Usage: Peer})
	if err != nil {
		t.Fatal(err)
	}
	crl, err := ca.RevocationList([]*big.Int{big.NewInt(0xabc)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var data []byte
	for _, d := range [][]byte{p.CertPEM, ca.CertPEM, crl, p.KeyPEM} {
		data = append(data, d...)
	}
	got, err := DescribePEM(data, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"Certificate\nSubject:          CN=m1", "Certificate\nSubject:          CN=test-ca", "Certificate revocation list\nIssuer:           CN=test-ca", "serial abc", "--client-crl-file", "Private key (PRIVATE KEY)"} {
		if !strings.Contains(got, w) {
			t.Errorf("lacks %q:\n%s", w, got)
		}
	}
	if strings.Contains(got, "BEGIN") {
		t.Errorf("shows PEM:\n%s", got)
	}
	if _, err := DescribePEM([]byte("not pem"), time.Now()); err == nil {
		t.Error("DescribePEM accepted junk")
	}
}
