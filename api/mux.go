package api

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/keeldb/keel/tlsutil"
)

// sniffTimeout bounds how long a new connection may take to send the bytes
// that tell gRPC from HTTP/1.
const sniffTimeout = 10 * time.Second

// Split serves one listener to two servers: gRPC connections go to the
// first listener returned, every other one (/health, /version, ...) to the
// second. Closing either returned listener closes l.
//
// A plaintext connection is gRPC when it opens with the HTTP/2 preface. A
// TLS connection (a *tls.Conn from tlsutil.NewListener, handshake done) is
// gRPC when its client offered h2 but not http/1.1 (ALPN), as gRPC clients
// do; browsers, curl and Go's HTTP client offer both and go to the HTTP
// server, which passes any gRPC request it gets to gRPC (see
// WithGRPCFallback). Sorting by ALPN keeps gRPC on its native transport:
// grpc.Server.ServeHTTP costs two to three times as much per call.
func Split(l net.Listener) (grpcL, httpL net.Listener) {
	s := &splitter{l: l, done: make(chan struct{})}
	s.grpc = &subListener{s: s, conns: make(chan net.Conn)}
	s.http = &subListener{s: s, conns: make(chan net.Conn)}
	go s.acceptLoop()
	return s.grpc, s.http
}

type splitter struct {
	l          net.Listener
	grpc, http *subListener
	closeOnce  sync.Once
	done       chan struct{}
	errMu      sync.Mutex
	err        error
}

func (s *splitter) acceptLoop() {
	for {
		c, err := s.l.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.errMu.Lock()
			s.err = err
			s.errMu.Unlock()
			s.close()
			return
		}
		go s.route(c)
	}
}

func (s *splitter) route(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		target := s.http
		if offersOnlyH2(tlsutil.OfferedProtocols(tc)) && tc.ConnectionState().NegotiatedProtocol == "h2" {
			target = s.grpc
		}
		s.handOver(target, c)
		return
	}
	c.SetReadDeadline(time.Now().Add(sniffTimeout))
	seen, isGRPC, err := tlsutil.SniffHTTP2(c)
	if err != nil {
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	pc := &prefixConn{Conn: c, r: io.MultiReader(bytes.NewReader(seen), c)}
	target := s.http
	if isGRPC {
		target = s.grpc
	}
	s.handOver(target, pc)
}

func (s *splitter) handOver(target *subListener, c net.Conn) {
	select {
	case target.conns <- c:
	case <-s.done:
		c.Close()
	}
}

// offersOnlyH2 reports whether a TLS client's ALPN offer is a gRPC
// client's: h2 without http/1.1.
func offersOnlyH2(protos []string) bool {
	return slices.Contains(protos, "h2") && !slices.Contains(protos, "http/1.1")
}

// WithGRPCFallback serves gRPC requests that reach the HTTP server (an
// HTTP/2 client over TLS that also offered http/1.1) with gs, and every
// other request with h.
func WithGRPCFallback(h http.Handler, gs *grpc.Server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			gs.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (s *splitter) close() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.l.Close()
	})
}

type subListener struct {
	s     *splitter
	conns chan net.Conn
}

func (l *subListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.s.done:
		l.s.errMu.Lock()
		defer l.s.errMu.Unlock()
		if l.s.err != nil {
			return nil, l.s.err
		}
		return nil, net.ErrClosed
	}
}

func (l *subListener) Close() error {
	l.s.close()
	return nil
}

func (l *subListener) Addr() net.Addr { return l.s.l.Addr() }

// prefixConn replays the bytes read while routing before the rest of the
// connection.
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixConn) Read(p []byte) (int, error) { return c.r.Read(p) }
