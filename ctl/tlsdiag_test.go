package ctl

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keeldb/keel/pki"
)

// tlsServer accepts connections on loopback and makes a TLS handshake with
// cfg on each (or, with cfg nil, answers plain HTTP 400), then holds the
// connection until the client closes it. It stands in for a member whose
// TLS set-up is wrong: every case here fails in the handshake.
func tlsServer(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				if cfg == nil {
					io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
					return
				}
				tc := tls.Server(c, cfg)
				if tc.Handshake() == nil {
					io.Copy(io.Discard, tc)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// writePair writes p as name.crt and name.key in dir, returning the paths.
func writePair(t *testing.T, dir, name string, p *pki.Pair) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := p.Write(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestKeelctlNamesTheTLSMistake runs keelctl get against a server set up
// with each TLS mistake and checks that the error keeps etcdctl's message
// and exit code and adds the cause.
func TestKeelctlNamesTheTLSMistake(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.NewCA("test-ca", 0, pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.NewCA("other-ca", 0, pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	caFile, _ := writePair(t, dir, "ca", &ca.Pair)
	otherCAFile, _ := writePair(t, dir, "other-ca", &other.Pair)
	issue := func(name string, r pki.Request) (certFile, keyFile string, c tls.Certificate) {
		p, err := ca.Issue(r)
		if err != nil {
			t.Fatal(err)
		}
		c, err = p.TLSCertificate()
		if err != nil {
			t.Fatal(err)
		}
		certFile, keyFile = writePair(t, dir, name, p)
		return certFile, keyFile, c
	}
	loop := []string{"127.0.0.1", "localhost"}
	_, _, server := issue("server", pki.Request{CommonName: "m1", Hosts: loop})
	_, _, serverLocalhost := issue("server-localhost", pki.Request{CommonName: "m1", Hosts: []string{"localhost"}})
	_, _, serverExpired := issue("server-expired", pki.Request{CommonName: "m1", Hosts: loop, NotBefore: time.Now().Add(-72 * time.Hour), Validity: 24 * time.Hour})
	_, _, serverNoEKU := issue("server-noeku", pki.Request{CommonName: "m1", Hosts: loop, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	rootCert, rootKey, _ := issue("root", pki.Request{CommonName: "root", Usage: pki.Client})
	badCert, badKey, _ := issue("root-serveronly", pki.Request{CommonName: "root", Usage: pki.Client, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	oldCert, oldKey, _ := issue("root-expired", pki.Request{CommonName: "root", Usage: pki.Client, NotBefore: time.Now().Add(-72 * time.Hour), Validity: 24 * time.Hour})

	serving := func(c tls.Certificate, clientAuth bool) *tls.Config {
		cfg := &tls.Config{Certificates: []tls.Certificate{c}, ClientCAs: ca.Pool(), NextProtos: []string{"h2"}}
		if clientAuth {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
		return cfg
	}
	for _, tc := range []struct {
		name   string
		server *tls.Config // nil: a plain-text server
		scheme string
		flags  []string
		want   []string
	}{
		{"no client certificate", serving(server, true), "https", []string{"--cacert", caFile},
			[]string{"requires a client certificate", "none was presented", "--cert and --key"}},
		{"client certificate lacks clientAuth", serving(server, true), "https", []string{"--cacert", caFile, "--cert", badCert, "--key", badKey},
			[]string{"refused the client certificate", "lacks the clientAuth extended key usage (it has serverAuth)"}},
		{"client certificate expired", serving(server, true), "https", []string{"--cacert", caFile, "--cert", oldCert, "--key", oldKey},
			[]string{"refused the client certificate", "not valid now", "local clock says"}},
		{"SAN does not cover the IP dialled", serving(serverLocalhost, false), "https", []string{"--cacert", caFile},
			[]string{"x509: cannot validate certificate for 127.0.0.1", "covers DNS names localhost, not \"127.0.0.1\" which was dialled"}},
		{"server certificate expired", serving(serverExpired, false), "https", []string{"--cacert", caFile},
			[]string{"has expired: valid from", "local clock says"}},
		{"server certificate lacks serverAuth", serving(serverNoEKU, false), "https", []string{"--cacert", caFile},
			[]string{"lacks the serverAuth extended key usage", "it has clientAuth"}},
		{"unknown authority", serving(server, false), "https", []string{"--cacert", otherCAFile, "--cert", rootCert, "--key", rootKey},
			[]string{`signed by "CN=test-ca,O=keel", which is not a trusted CA`, otherCAFile, "CN=other-ca"}},
		{"plain text to a TLS port", serving(server, false), "http", nil,
			[]string{"speaks TLS", "keelctl dialled it in plain text", "use https://"}},
		{"TLS to a plain-text port", nil, "https", []string{"--cacert", caFile},
			[]string{"does not speak TLS"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr := tlsServer(t, tc.server)
			args := append([]string{"--endpoints", tc.scheme + "://" + addr, "--dial-timeout", "1s", "--command-timeout", "1s"}, tc.flags...)
			code, _, stderr := runCtl(t, append(args, "get", "foo")...)
			if code != ExitError {
				t.Errorf("exit %d, want etcdctl's %d", code, ExitError)
			}
			line := lastLine(stderr)
			if !strings.HasPrefix(line, "Error: context deadline exceeded: ") {
				t.Errorf("error line %q does not start as etcdctl's", line)
			}
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("error line lacks %q:\n%s", w, line)
				}
			}
		})
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// TestKeelctlKeepsOtherFailuresAsEtcdctl checks that a failure TLS has no
// part in prints etcdctl's message alone.
func TestKeelctlKeepsOtherFailuresAsEtcdctl(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connection refused
	code, _, stderr := runCtl(t, "--endpoints", addr, "--dial-timeout", "1s", "--command-timeout", "1s", "get", "foo")
	if code != ExitError || lastLine(stderr) != "Error: context deadline exceeded" {
		t.Errorf("exit %d, %q", code, lastLine(stderr))
	}
	if _, err := os.Stat(addr); err == nil {
		t.Fatal("unreachable")
	}
}
