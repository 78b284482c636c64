package integration

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/keeldb/keel/pki"
)

// testPKI is a CA and the certificates a test issues with it, written to
// files in a temporary directory as the server flags expect them.
type testPKI struct {
	t      *testing.T
	dir    string
	ca     *pki.CA
	CAFile string
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	ca, err := pki.NewCA("keel-test-ca", 0, pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{t: t, dir: t.TempDir(), ca: ca}
	p.CAFile = filepath.Join(p.dir, "ca.crt")
	if err := ca.Write(p.CAFile, filepath.Join(p.dir, "ca.key")); err != nil {
		t.Fatal(err)
	}
	return p
}

// issued is a certificate written to files.
type issued struct {
	*pki.Pair
	CertFile, KeyFile string
}

// issue issues req and writes it as <name>.crt and <name>.key.
func (p *testPKI) issue(name string, req pki.Request) issued {
	p.t.Helper()
	pair, err := p.ca.Issue(req)
	if err != nil {
		p.t.Fatal(err)
	}
	return p.write(name, pair)
}

func (p *testPKI) write(name string, pair *pki.Pair) issued {
	p.t.Helper()
	is := issued{Pair: pair, CertFile: filepath.Join(p.dir, name+".crt"), KeyFile: filepath.Join(p.dir, name+".key")}
	if err := pair.Write(is.CertFile, is.KeyFile); err != nil {
		p.t.Fatal(err)
	}
	return is
}

// server issues a server certificate for 127.0.0.1.
func (p *testPKI) server(name string) issued {
	return p.issue(name, pki.Request{CommonName: name, Hosts: []string{"127.0.0.1", "localhost"}, Usage: pki.Server})
}

// clientTLS is a client configuration that trusts the CA and presents
// cert, if given.
func (p *testPKI) clientTLS(cert *issued) *tls.Config {
	p.t.Helper()
	cfg := &tls.Config{RootCAs: p.ca.Pool()}
	if cert != nil {
		c, err := tls.LoadX509KeyPair(cert.CertFile, cert.KeyFile)
		if err != nil {
			p.t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return cfg
}

func (p *testPKI) pool() *x509.CertPool { return p.ca.Pool() }

// observedLogger returns a logger whose warnings the test can read.
func observedLogger() (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.WarnLevel)
	return zap.New(core), logs
}

// waitLog waits until a log entry with message msg has a field "reason"
// containing every one of want, and returns the reason.
func waitLog(t *testing.T, logs *observer.ObservedLogs, msg string, want ...string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var seen []string
		for _, e := range logs.FilterMessage(msg).All() {
			reason, _ := e.ContextMap()["reason"].(string)
			seen = append(seen, reason)
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(reason, w)
			}
			if ok {
				return reason
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log %q with a reason containing %q; logged reasons: %s", msg, want, fmt.Sprint(seen))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
