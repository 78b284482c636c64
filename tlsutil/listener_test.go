package tlsutil

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/keeldb/keel/pki"
)

// testServer is a TLS source of a server certificate for 127.0.0.1 with
// client certificate auth, and the CA.
func testServer(t *testing.T) (*testCA, *Source) {
	ca := newTestCA(t)
	cert, key := ca.issue("srv", pki.Request{CommonName: "srv", Hosts: []string{"127.0.0.1"}, Usage: pki.Server})
	return ca, source(t, Info{CertFile: cert, KeyFile: key, TrustedCAFile: ca.caFile})
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
