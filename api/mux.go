package api

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// http2Preface opens every HTTP/2 connection, and so every gRPC connection.
var http2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// sniffTimeout bounds how long a new connection may take to send the bytes
// that tell gRPC from HTTP/1.
const sniffTimeout = 10 * time.Second

// Split serves one listener to two servers: connections that open with the
// HTTP/2 preface (gRPC) go to the first listener returned, every other one
// (HTTP/1.x: /health, /version, ...) to the second. Closing either returned
// listener closes l.
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
	c.SetReadDeadline(time.Now().Add(sniffTimeout))
	var buf [24]byte
	n := 0
	isGRPC := true
	for n < len(http2Preface) {
		m, err := c.Read(buf[n : n+1])
		if err != nil {
			c.Close()
			return
		}
		n += m
		if m > 0 && buf[n-1] != http2Preface[n-1] {
			isGRPC = false
			break
		}
	}
	c.SetReadDeadline(time.Time{})
	pc := &prefixConn{Conn: c, r: io.MultiReader(bytes.NewReader(buf[:n]), c)}
	target := s.http
	if isGRPC {
		target = s.grpc
	}
	select {
	case target.conns <- pc:
	case <-s.done:
		c.Close()
	}
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
