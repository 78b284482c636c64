package tlsutil

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/keeldb/keel/config"
	"github.com/keeldb/keel/pki"
)

// testServer is a TLS source of a server certificate for 127.0.0.1 with
// client certificate auth, and the CA.
func testServer(t *testing.T) (*testCA, *Source) {
	ca := newTestCA(t)
	cert, key := ca.issue("srv", pki.Request{CommonName: "srv", Hosts: []string{"127.0.0.1"}, Usage: pki.Server})
	return ca, source(t, Info{TLS: config.TLS{CertFile: cert, KeyFile: key, TrustedCAFile: ca.caFile}})
}

// dialFrom connects to addr from the loopback address from.
func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRefusalsOfOneCauseAreBoundedAcrossHosts sends plaintext HTTP from
// many loopback addresses: the log must not get one line per host.
func TestRefusalsOfOneCauseAreBoundedAcrossHosts(t *testing.T) {
	_, src := testServer(t)
	core, logs := observer.New(zapcore.WarnLevel)
	addr, stop := serve(t, src, ListenerConfig{Port: "client", Logger: zap.New(core)})
	const hosts = 3 * logPerCause
	for i := range hosts {
		c := dialFrom(t, fmt.Sprintf("127.0.0.%d", i+2), addr)
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		io.Copy(io.Discard, c) // the 400, then the close
		c.Close()
	}
	stop() // waits for every connection's goroutine, so every log decision
	if n := logs.FilterMessage("rejected a plaintext connection on a TLS port").Len(); n != logPerCause {
		t.Fatalf("%d lines for plaintext clients from %d hosts, want %d", n, hosts, logPerCause)
	}
}

// flakyListener fails its first Accept calls with errs, then accepts from
// the wrapped listener; it records whether it was closed.
type flakyListener struct {
	net.Listener
	errs   chan error
	closed chan struct{}
}

func newFlaky(t *testing.T, errs ...error) *flakyListener {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &flakyListener{Listener: raw, errs: make(chan error, len(errs)), closed: make(chan struct{})}
	for _, e := range errs {
		f.errs <- e
	}
	return f
}

func (f *flakyListener) Accept() (net.Conn, error) {
	select {
	case err := <-f.errs:
		return nil, err
	default:
		return f.Listener.Accept()
	}
}

func (f *flakyListener) Close() error {
	select {
	case <-f.closed:
	default:
		close(f.closed)
	}
	return f.Listener.Close()
}

// acceptAll accepts from l until it fails, closing what it accepts after a
// read; the returned channel gets Accept's error.
func acceptAll(l net.Listener) <-chan error {
	done := make(chan error, 1)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				done <- err
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	return done
}

// TestTemporaryAcceptErrorsDoNotClosePort checks that running out of file
// descriptors for a moment does not shut the port for good.
func TestTemporaryAcceptErrorsDoNotClosePort(t *testing.T) {
	ca, src := testServer(t)
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	f := newFlaky(t, emfile, emfile)
	l := NewListener(f, ListenerConfig{Source: src, Port: "client"})
	defer l.Close()
	acceptAll(l)
	cert, key := ca.issue("cli", pki.Request{CommonName: "cli", Usage: pki.Client})
	cli := source(t, Info{TLS: config.TLS{CertFile: cert, KeyFile: key, TrustedCAFile: ca.caFile}})
	if err := handshake(f.Addr().String(), cli.ClientConfigFor("127.0.0.1")); err != nil {
		t.Fatalf("handshake after temporary accept errors: %v", err)
	}
}

// TestCloseAfterAcceptFailureClosesSocket checks that a listener whose
// accept failed for good still closes its socket on Close and reports the
// failure from Accept.
func TestCloseAfterAcceptFailureClosesSocket(t *testing.T) {
	_, src := testServer(t)
	boom := errors.New("boom")
	f := newFlaky(t, boom)
	l := NewListener(f, ListenerConfig{Source: src, Port: "client"})
	if _, err := l.Accept(); !errors.Is(err, boom) {
		t.Fatalf("Accept = %v, want %v", err, boom)
	}
	l.Close()
	select {
	case <-f.closed:
	default:
		t.Fatal("Close did not close the socket after an accept failure")
	}
}

// TestStalledClientDelaysNobodyAndCloseEndsHandshakes opens connections
// that never send a byte: a real client still gets through, and Close ends
// the stalled handshakes and leaves no goroutine behind.
func TestStalledClientDelaysNobodyAndCloseEndsHandshakes(t *testing.T) {
	ca, src := testServer(t)
	before := runtime.NumGoroutine()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(raw, ListenerConfig{Source: src, Port: "peer", VerifyClientSAN: true})
	acceptDone := acceptAll(l)
	var stalled []net.Conn
	for range 3 {
		stalled = append(stalled, dialFrom(t, "127.0.0.1", raw.Addr().String()))
	}
	cert, key := ca.issue("cli", pki.Request{CommonName: "cli", Hosts: []string{"127.0.0.1"}, Usage: pki.Peer})
	cli := source(t, Info{TLS: config.TLS{CertFile: cert, KeyFile: key, TrustedCAFile: ca.caFile}})
	if err := handshake(raw.Addr().String(), cli.ClientConfigFor("127.0.0.1")); err != nil {
		t.Fatalf("handshake while others stall: %v", err)
	}
	l.Close()
	if err := <-acceptDone; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close = %v, want net.ErrClosed", err)
	}
	for _, c := range stalled {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("stalled connection after Close: %v, want EOF", err)
		}
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after Close, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestHandshakesAreBounded lets one handshake run at a time: a stalled
// client holds the only slot, and the next client gets through once it
// goes away.
func TestHandshakesAreBounded(t *testing.T) {
	ca, src := testServer(t)
	addr, _ := serve(t, src, ListenerConfig{Port: "client", MaxHandshakes: 1})
	stalled := dialFrom(t, "127.0.0.1", addr)
	cert, key := ca.issue("cli", pki.Request{CommonName: "cli", Usage: pki.Client})
	cli := source(t, Info{TLS: config.TLS{CertFile: cert, KeyFile: key, TrustedCAFile: ca.caFile}})
	done := make(chan error, 1)
	go func() { done <- handshake(addr, cli.ClientConfigFor("127.0.0.1")) }()
	stalled.Close()
	if err := <-done; err != nil {
		t.Fatalf("handshake after the stalled client left: %v", err)
	}
}

func TestSniffHTTP2(t *testing.T) {
	for _, tc := range []struct {
		in       string
		seen     string
		isHTTP2  bool
		wantsErr bool
	}{
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nrest", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", true, false},
		{"POST / HTTP/1.1\r\n", "PO", false, false},
		{"GET / HTTP/1.1\r\n", "G", false, false},
		{"PRI * HT", "PRI * HT", false, true},
	} {
		seen, isHTTP2, err := SniffHTTP2(strings.NewReader(tc.in))
		if string(seen) != tc.seen || isHTTP2 != tc.isHTTP2 || (err != nil) != tc.wantsErr {
			t.Errorf("SniffHTTP2(%q) = %q, %v, %v; want %q, %v, error %v", tc.in, seen, isHTTP2, err, tc.seen, tc.isHTTP2, tc.wantsErr)
		}
	}
}

// TestSessionsResume checks that a client's second connection resumes its
// TLS session, which needs one set of ticket keys for the listener.
func TestSessionsResume(t *testing.T) {
	ca, src := testServer(t)
	addr, _ := serve(t, src, ListenerConfig{Port: "client", NextProtos: []string{"h2", "http/1.1"}})
	cert, key := ca.issue("cli", pki.Request{CommonName: "cli", Usage: pki.Client})
	cfg := source(t, Info{TLS: config.TLS{CertFile: cert, KeyFile: key, TrustedCAFile: ca.caFile}}).ClientConfigFor("127.0.0.1")
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	var resumed []bool
	for range 2 {
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		// Reading takes in the TLS 1.3 session ticket.
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		c.Read(make([]byte, 1))
		resumed = append(resumed, c.ConnectionState().DidResume)
		c.Close()
	}
	if resumed[0] || !resumed[1] {
		t.Fatalf("DidResume of two connections = %v, want [false true]", resumed)
	}
}
