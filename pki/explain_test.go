package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// handshake runs one TLS handshake over loopback TCP between a server with
// srv and a client with cli, the client reading one byte after its side
// completes (a TLS 1.3 client learns of its refusal only then). It returns
// each side's error.
func handshake(t *testing.T, srv, cli *tls.Config) (clientErr, serverErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Server(c, srv)
		err = tc.Handshake()
		if err == nil {
			_, err = tc.Write([]byte("x"))
		}
		done <- err
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(c, cli)
	clientErr = tc.Handshake()
	if clientErr == nil {
		_, clientErr = io.ReadFull(tc, make([]byte, 1))
	}
	return clientErr, <-done
}

type fixture struct {
	ca, otherCA                    *CA
	server, client                 *Pair
	serverNoEKU, clientOnlyServer  *Pair
	expiredServer, futureServer    *Pair
	expiredClient, foreignClient   *Pair
	foreignServer, selfSignedSever *Pair
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{ca: mustCA(t)}
	var err error
	if f.otherCA, err = NewCA("other-ca", 0, ECDSAP256); err != nil {
		t.Fatal(err)
	}
	issue := func(ca *CA, r Request) *Pair {
		p, err := ca.Issue(r)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	hosts := []string{"localhost", "127.0.0.1"}
	f.server = issue(f.ca, Request{CommonName: "m1", Hosts: hosts, Usage: Server})
	f.client = issue(f.ca, Request{CommonName: "root", Usage: Client})
	f.serverNoEKU = issue(f.ca, Request{CommonName: "m1", Hosts: hosts, Usage: Server, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	f.clientOnlyServer = issue(f.ca, Request{CommonName: "root", Usage: Client, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	f.expiredServer = issue(f.ca, Request{CommonName: "m1", Hosts: hosts, NotBefore: time.Now().Add(-72 * time.Hour), Validity: 24 * time.Hour})
	f.futureServer = issue(f.ca, Request{CommonName: "m1", Hosts: hosts, NotBefore: time.Now().Add(72 * time.Hour)})
	f.expiredClient = issue(f.ca, Request{CommonName: "root", Usage: Client, NotBefore: time.Now().Add(-72 * time.Hour), Validity: 24 * time.Hour})
	f.foreignClient = issue(f.otherCA, Request{CommonName: "root", Usage: Client})
	f.foreignServer = issue(f.otherCA, Request{CommonName: "m1", Hosts: hosts})
	if f.selfSignedSever, err = SelfSigned(hosts, 0); err != nil {
		t.Fatal(err)
	}
	return f
}

func tlsCert(t *testing.T, p *Pair) []tls.Certificate {
	t.Helper()
	if p == nil {
		return nil
	}
	c, err := p.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	return []tls.Certificate{c}
}

// TestExplainNamesTheCause makes each mistake of a TLS set-up in a real
// handshake and checks that the explanation of the side that sees it names
// the cause and what the certificate has.
func TestExplainNamesTheCause(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name       string
		serverCert *Pair
		clientCert *Pair
		clientAuth bool
		// forceSend sends clientCert even where the server's request
		// lists other CAs, as non-Go clients do.
		forceSend  bool
		serverName string
		side       Role // the side whose error is explained
		want       []string
	}{
		{name: "server lacks serverAuth", serverCert: f.serverNoEKU, side: Dialer,
			want: []string{"server certificate", `CN "m1"`, "lacks the serverAuth", "it has clientAuth"}},
		{name: "client lacks clientAuth, seen by server", serverCert: f.server, clientCert: f.clientOnlyServer, clientAuth: true, side: Acceptor,
			want: []string{"client certificate", `CN "root"`, "lacks the clientAuth", "it has serverAuth"}},
		{name: "client lacks clientAuth, seen by client", serverCert: f.server, clientCert: f.clientOnlyServer, clientAuth: true, side: Dialer,
			want: []string{"refused the client certificate", "lacks the clientAuth", "it has serverAuth"}},
		{name: "SAN does not cover name", serverCert: f.server, serverName: "10.0.0.1", side: Dialer,
			want: []string{"covers DNS names localhost and IP addresses 127.0.0.1", `not "10.0.0.1"`}},
		{name: "server expired", serverCert: f.expiredServer, side: Dialer,
			want: []string{"has expired", "valid from " + f.expiredServer.Cert.NotBefore.UTC().Format(time.RFC3339), "to " + f.expiredServer.Cert.NotAfter.UTC().Format(time.RFC3339), "local clock says"}},
		{name: "server not yet valid", serverCert: f.futureServer, side: Dialer,
			want: []string{"is not valid yet", "valid from " + f.futureServer.Cert.NotBefore.UTC().Format(time.RFC3339), "local clock says"}},
		{name: "client expired, seen by server", serverCert: f.server, clientCert: f.expiredClient, clientAuth: true, side: Acceptor,
			want: []string{"client certificate", "has expired", "local clock says"}},
		{name: "client expired, seen by client", serverCert: f.server, clientCert: f.expiredClient, clientAuth: true, side: Dialer,
			want: []string{"refused the client certificate", "expired certificate", "not valid now", "local clock says"}},
		{name: "server signed by unknown CA", serverCert: f.foreignServer, side: Dialer,
			want: []string{"signed by \"CN=other-ca,O=keel\"", "not a trusted CA", "ca.crt", "CN=test-ca,O=keel"}},
		{name: "server self-signed", serverCert: f.selfSignedSever, side: Dialer,
			want: []string{"self-signed", "not among the trusted CAs"}},
		{name: "client signed by unknown CA, seen by server", serverCert: f.server, clientCert: f.foreignClient, clientAuth: true, side: Acceptor,
			want: []string{"presented no certificate", "signed by a CA this port does not trust"}},
		{name: "client signed by unknown CA, seen by client", serverCert: f.server, clientCert: f.foreignClient, clientAuth: true, side: Dialer,
			want: []string{"requires a client certificate signed by a CA it trusts", `CN "root"`, `signed by "CN=other-ca,O=keel"`, "was not sent"}},
		{name: "client signed by unknown CA and sent anyway, seen by server", serverCert: f.server, clientCert: f.foreignClient, clientAuth: true, forceSend: true, side: Acceptor,
			want: []string{"client certificate", `signed by "CN=other-ca,O=keel"`, "not a trusted CA"}},
		{name: "client signed by unknown CA and sent anyway, seen by client", serverCert: f.server, clientCert: f.foreignClient, clientAuth: true, forceSend: true, side: Dialer,
			want: []string{"refused the client certificate", "unknown certificate authority", "does not trust its issuer", "other-ca"}},
		{name: "no client certificate, seen by server", serverCert: f.server, clientAuth: true, side: Acceptor,
			want: []string{"presented no certificate", "requires one"}},
		{name: "server certificate refused by the client, seen by server", serverCert: f.foreignServer, side: Acceptor,
			want: []string{"the client at 127.0.0.1:2379 refused this port's certificate", "bad certificate",
				"must trust the CA that signed", `"CN=other-ca,O=keel"`, "IP addresses 127.0.0.1", "must cover the name it dials"}},
		{name: "server certificate name refused by the client, seen by server", serverCert: f.server, serverName: "10.0.0.1", side: Acceptor,
			want: []string{"refused this port's certificate", "bad certificate", "DNS names localhost and IP addresses 127.0.0.1", "must cover the name it dials"}},
		{name: "no client certificate, seen by client", serverCert: f.server, clientAuth: true, side: Dialer,
			want: []string{"requires a client certificate", "none was presented", "--cert and --key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := &tls.Config{Certificates: tlsCert(t, tc.serverCert), ClientCAs: f.ca.Pool()}
			if tc.clientAuth {
				srv.ClientAuth = tls.RequireAndVerifyClientCert
			}
			serverName := tc.serverName
			if serverName == "" {
				serverName = "127.0.0.1"
			}
			cli := &tls.Config{RootCAs: f.ca.Pool(), Certificates: tlsCert(t, tc.clientCert), ServerName: serverName}
			if tc.forceSend {
				cert := tlsCert(t, tc.clientCert)[0]
				cli.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
			}
			clientErr, serverErr := handshake(t, srv, cli)
			h := Handshake{Role: tc.side, Addr: "127.0.0.1:2379", ServerName: serverName, CAFile: "ca.crt", CAs: []*x509.Certificate{f.ca.Cert}, CertFlags: "--cert and --key"}
			err := clientErr
			if tc.side == Acceptor {
				err = serverErr
				h.Cert = tc.serverCert.Cert
			} else if tc.clientCert != nil {
				h.Cert = tc.clientCert.Cert
			}
			if err == nil {
				t.Fatalf("handshake succeeded (client %v, server %v)", clientErr, serverErr)
			}
			got := h.Explain(err)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("explanation of %q lacks %q:\n%s", err, w, got)
				}
			}
		})
	}
}

func TestExplainPlaintext(t *testing.T) {
	f := newFixture(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	serverErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			serverErr <- err
			return
		}
		defer c.Close()
		serverErr <- tls.Server(c, &tls.Config{Certificates: tlsCert(t, f.server)}).Handshake()
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
	err = <-serverErr
	c.Close()
	got := Handshake{Role: Acceptor, Addr: "127.0.0.1:5555"}.Explain(err)
	if !strings.Contains(got, "plain text") || !strings.Contains(got, "127.0.0.1:5555") {
		t.Errorf("server side: %q -> %q", err, got)
	}

	// A TLS client on a plain-text port.
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	go func() {
		c, err := plain.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.WriteString(c, "HTTP/1.1 400 Bad Request\r\n\r\n")
	}()
	c, err = net.Dial("tcp", plain.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = tls.Client(c, &tls.Config{RootCAs: f.ca.Pool(), ServerName: "127.0.0.1"}).Handshake()
	got = Handshake{Role: Dialer, Addr: plain.Addr().String()}.Explain(err)
	if !strings.Contains(got, "does not speak TLS") {
		t.Errorf("client side: %q -> %q", err, got)
	}
}

func TestExplainUnknownErrorIsEmpty(t *testing.T) {
	for _, err := range []error{nil, errors.New("connection refused"), &net.OpError{Op: "dial", Err: errors.New("refused")}} {
		if got := (Handshake{}).Explain(err); got != "" {
			t.Errorf("Explain(%v) = %q", err, got)
		}
	}
	// The alert as text, as gRPC reports it.
	got := Handshake{Addr: "127.0.0.1:2379"}.Explain(errors.New(`connection error: desc = "transport: authentication handshake failed: remote error: tls: certificate required"`))
	if !strings.Contains(got, "requires a client certificate") {
		t.Errorf("gRPC text: %q", got)
	}
}

func TestCoverageWithoutSANs(t *testing.T) {
	ca := mustCA(t)
	p, err := ca.Issue(Request{CommonName: "example.com"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "example.com"})
	got := Handshake{}.Explain(err)
	if !strings.Contains(got, "no subject alternative names") || !strings.Contains(got, `not "example.com"`) {
		t.Errorf("%q -> %q", err, got)
	}
}

// TestGoErrorTextsAreStillMatched pins the texts of Go's TLS errors that
// Explain (and tlsutil's cause classification) recognise by their text,
// because Go gives them no type: a Go upgrade that changes one fails here.
func TestGoErrorTextsAreStillMatched(t *testing.T) {
	f := newFixture(t)
	srv := &tls.Config{Certificates: tlsCert(t, f.server), ClientCAs: f.ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		cli := &tls.Config{RootCAs: f.ca.Pool(), ServerName: "127.0.0.1", MinVersion: v, MaxVersion: v}
		clientErr, serverErr := handshake(t, srv, cli)
		if serverErr == nil || !strings.Contains(serverErr.Error(), NoClientCertText) {
			t.Errorf("TLS %x: server error without a client certificate = %v, want it to contain %q", v, serverErr, NoClientCertText)
		}
		if v == tls.VersionTLS13 {
			if clientErr == nil || !strings.Contains(clientErr.Error(), remoteAlertText+alertCertRequired) {
				t.Errorf("TLS 1.3: client error = %v, want it to contain %q", clientErr, remoteAlertText+alertCertRequired)
			}
		}
	}
	// The alerts alert() tells apart must each be spelled so by Go.
	var alerts []string
	for code := range tls.AlertError(255) {
		alerts = append(alerts, tls.AlertError(code).Error())
	}
	for _, a := range append(slices.Clone(certAlerts), alertCertRequired) {
		if !slices.Contains(alerts, "tls: "+a) {
			t.Errorf("no Go alert reads %q", "tls: "+a)
		}
	}
}
