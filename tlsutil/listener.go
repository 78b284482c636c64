package tlsutil

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/keeldb/keel/internal/loglimit"
)

// handshakeTimeout bounds a connection's TLS handshake, from accept on.
const handshakeTimeout = 10 * time.Second

// tlsRecordHandshake is the first byte of every TLS connection.
const tlsRecordHandshake = 0x16

// ListenerConfig configures NewListener.
type ListenerConfig struct {
	// Source serves the certificates and verifies the clients.
	Source *Source
	// NextProtos are the application protocols offered (ALPN), e.g.
	// "h2" and "http/1.1".
	NextProtos []string
	// Port is "client" or "peer": it names the port in logs and the flags
	// in explanations.
	Port string
	// AllowPlaintext passes plaintext connections through untouched, for
	// an address listed both as http:// and https:// (etcd serves both on
	// one port then). Without it a plaintext client is answered with an
	// error that says the port requires TLS.
	AllowPlaintext bool
	// VerifyClientSAN refuses a client certificate whose SANs (if it has
	// any) do not cover the address the connection comes from, as etcd
	// does on the peer port unless --peer-skip-client-san-verification.
	VerifyClientSAN bool
	// MaxHandshakes bounds the connections in their handshake (and being
	// refused) at once, so that slow clients cannot use up the file
	// descriptors; more wait in the kernel's backlog. 0 means 256.
	MaxHandshakes int
	Logger        *zap.Logger
}

// defaultMaxHandshakes bounds the handshakes in progress on one port (see
// ListenerConfig.MaxHandshakes).
const defaultMaxHandshakes = 256

// NewListener returns a listener that accepts from l, does the TLS
// handshake of each connection in the background (a slow client delays
// nobody, up to MaxHandshakes of them) and returns only the connections
// whose handshake succeeded, as *tls.Conn; with AllowPlaintext, plaintext
// connections too. Temporary accept errors (out of file descriptors) are
// retried with a backoff; any other ends the listener, and Accept returns
// it. Refused connections are logged with the cause in operator terms, a
// bounded number of lines per cause. Closing the listener closes l and the
// connections still in their handshake, and waits for their goroutines.
func NewListener(l net.Listener, cfg ListenerConfig) net.Listener {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.MaxHandshakes <= 0 {
		cfg.MaxHandshakes = defaultMaxHandshakes
	}
	tl := &listener{Listener: l, cfg: cfg, tls: recordOffered(cfg.Source.ServerConfig(cfg.NextProtos...)),
		limiter: loglimit.New(logEvery, logPerCause), conns: make(chan net.Conn),
		slots: make(chan struct{}, cfg.MaxHandshakes), failed: make(chan struct{}), pending: map[net.Conn]struct{}{}}
	tl.ctx, tl.cancel = context.WithCancel(context.Background())
	tl.wg.Add(1)
	go tl.acceptLoop()
	return tl
}

type listener struct {
	net.Listener
	cfg     ListenerConfig
	tls     *tls.Config
	limiter *loglimit.Limiter
	conns   chan net.Conn
	slots   chan struct{} // one per handshake in progress
	// ctx ends at Close; handshakes and their lookups derive from it.
	ctx    context.Context
	cancel context.CancelFunc
	// failed is closed when the accept loop ended on its own, with
	// acceptErr.
	failed    chan struct{}
	acceptErr error

	mu      sync.Mutex
	closed  bool
	pending map[net.Conn]struct{}
	wg      sync.WaitGroup
}

func (l *listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.ctx.Done():
		return nil, net.ErrClosed
	case <-l.failed:
		return nil, l.acceptErr
	}
}

// Close closes the listener and the connections in their handshake, and
// waits for their goroutines. It may be called more than once, also after
// accepting failed.
func (l *listener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.cancel()
	for c := range l.pending {
		c.Close()
	}
	l.mu.Unlock()
	err := l.Listener.Close()
	l.wg.Wait()
	return err
}

func (l *listener) acceptLoop() {
	defer l.wg.Done()
	var delay time.Duration
	for {
		select {
		case l.slots <- struct{}{}:
		case <-l.ctx.Done():
			return
		}
		c, err := l.Listener.Accept()
		if err != nil {
			<-l.slots
			if l.ctx.Err() != nil {
				return
			}
			if temporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				l.cfg.Logger.Warn("accept error; retrying", zap.String("port", l.cfg.Port), zap.Duration("retry-in", delay), zap.Error(err))
				select {
				case <-time.After(delay):
				case <-l.ctx.Done():
					return
				}
				continue
			}
			l.acceptErr = err
			close(l.failed)
			return
		}
		delay = 0
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			c.Close()
			return
		}
		l.pending[c] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go l.handle(c)
	}
}

// temporary reports whether an accept error may go away by itself: a
// timeout, or running out of file descriptors or buffers.
func temporary(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ENOBUFS) ||
		errors.Is(err, syscall.ENOMEM) || errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EINTR)
}

// handle sorts out one connection and hands it over, or refuses it.
func (l *listener) handle(raw net.Conn) {
	defer l.wg.Done()
	out := l.prepare(raw)
	<-l.slots
	l.mu.Lock()
	delete(l.pending, raw)
	l.mu.Unlock()
	if out == nil {
		return
	}
	select {
	case l.conns <- out:
	case <-l.ctx.Done():
		out.Close()
	}
}

// prepare returns the connection to hand over, or nil after closing it.
func (l *listener) prepare(raw net.Conn) net.Conn {
	raw.SetDeadline(time.Now().Add(handshakeTimeout))
	var first [1]byte
	if _, err := io.ReadFull(raw, first[:]); err != nil {
		raw.Close()
		return nil
	}
	sc := &sniffedConn{Conn: raw, prefix: first[:]}
	if first[0] != tlsRecordHandshake {
		if l.cfg.AllowPlaintext {
			raw.SetDeadline(time.Time{})
			return sc
		}
		l.refusePlaintext(sc)
		return nil
	}
	tc := tls.Server(sc, l.tls)
	ctx, cancel := context.WithTimeout(l.ctx, handshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		l.handshakeFailed(raw.RemoteAddr(), err)
		tc.Close()
		return nil
	}
	if l.cfg.VerifyClientSAN {
		if err := checkClientSAN(ctx, tc); err != nil {
			l.handshakeFailed(raw.RemoteAddr(), err)
			tc.Close()
			return nil
		}
	}
	raw.SetDeadline(time.Time{})
	return tc
}

// recordOffered wraps the server configuration base to record on each
// connection which application protocols the client offered (see
// OfferedProtocols). One wrapper serves every connection, so that its
// session ticket keys resume the sessions of earlier connections.
func recordOffered(base *tls.Config) *tls.Config {
	return &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		if sc, ok := h.Conn.(*sniffedConn); ok {
			sc.offered = h.SupportedProtos
		}
		return base.GetConfigForClient(h)
	}}
}

// OfferedProtocols returns the application protocols (ALPN) the client
// offered in the handshake of c, a connection returned by a listener of
// NewListener; nil for any other connection.
func OfferedProtocols(c *tls.Conn) []string {
	if sc, ok := c.NetConn().(*sniffedConn); ok {
		return sc.offered
	}
	return nil
}

// sniffedConn replays the bytes read to tell TLS from plaintext.
type sniffedConn struct {
	net.Conn
	prefix  []byte
	offered []string // set during the TLS handshake
}

func (c *sniffedConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// SniffHTTP2 reads from r, one byte at a time, the bytes that tell an
// HTTP/2 connection (and so every gRPC one) from another: the HTTP/2 client
// preface (http2.ClientPreface), up to the first byte that differs from
// it. It returns the bytes read, whether they are the whole preface, and
// the read error that stopped it early, if any.
func SniffHTTP2(r io.Reader) (seen []byte, isHTTP2 bool, err error) {
	seen = make([]byte, 0, len(http2.ClientPreface))
	for len(seen) < len(http2.ClientPreface) {
		var b [1]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return seen, false, err
		}
		seen = append(seen, b[0])
		if b[0] != http2.ClientPreface[len(seen)-1] {
			return seen, false, nil
		}
	}
	return seen, true, nil
}

// refusePlaintext answers a plaintext client in its own protocol with an
// error that says the port requires TLS: an HTTP/1 request gets a 400, an
// HTTP/2 (gRPC) client a GOAWAY whose debug data says it. Anything else is
// closed. Each is logged once per remote address every few seconds.
func (l *listener) refusePlaintext(c *sniffedConn) {
	defer c.Close()
	seen, isHTTP2, _ := SniffHTTP2(c)
	url := "https://" + l.Addr().String()
	var proto string
	switch {
	case isHTTP2:
		proto = "HTTP/2 (a gRPC client without TLS)"
		refuseHTTP2(c, fmt.Sprintf("this %s port requires TLS: connect with TLS (%s), not plaintext", l.cfg.Port, url))
	case len(seen) > 0 && seen[0] >= 'A' && seen[0] <= 'Z':
		proto = "HTTP/1"
		body := fmt.Sprintf("Client sent an HTTP request to an HTTPS server: this %s port requires TLS; use %s\n", l.cfg.Port, url)
		fmt.Fprintf(c, "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	default:
		proto = "not TLS"
	}
	closeWriteAndDrain(c.Conn)
	l.log(c.RemoteAddr(), "plaintext", "rejected a plaintext connection on a TLS port",
		zap.String("protocol", proto),
		zap.String("reason", fmt.Sprintf("the %s port requires TLS; the client must use %s", l.cfg.Port, url)))
}

// refuseHTTP2 answers the first request of a plaintext HTTP/2 client with
// gRPC status Unavailable carrying msg, so that a gRPC client reports the
// cause, then sends GOAWAY with msg as debug data.
func refuseHTTP2(c net.Conn, msg string) {
	fr := http2.NewFramer(c, c)
	if fr.WriteSettings() != nil {
		return
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	for range 16 {
		f, err := fr.ReadFrame()
		if err != nil {
			break
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			fr.WriteSettingsAck()
			continue
		}
		hf, ok := f.(*http2.HeadersFrame)
		if !ok {
			continue
		}
		var block bytes.Buffer
		enc := hpack.NewEncoder(&block)
		for _, kv := range [][2]string{{":status", "200"}, {"content-type", "application/grpc"},
			{"grpc-status", "14"}, {"grpc-message", msg}} {
			enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
		}
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: hf.StreamID, BlockFragment: block.Bytes(), EndStream: true, EndHeaders: true})
		fr.WriteGoAway(hf.StreamID, http2.ErrCodeInadequateSecurity, []byte(msg))
		return
	}
	fr.WriteGoAway(0, http2.ErrCodeInadequateSecurity, []byte(msg))
}

// closeWriteAndDrain lets the client read what was written before the
// connection is closed: closing with unread input would reset it.
func closeWriteAndDrain(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	io.Copy(io.Discard, io.LimitReader(c, 256<<10))
}

// handshakeFailed logs a refused handshake with its cause; a client that
// just went away is not worth a line.
func (l *listener) handshakeFailed(remote net.Addr, err error) {
	f := l.cfg.Source.explainFailure(err, l.cfg.Port, remote.String())
	if f.cause == "" {
		l.cfg.Logger.Debug("TLS handshake ended", zap.String("port", l.cfg.Port), zap.String("remote-addr", remote.String()), zap.Error(err))
		return
	}
	l.log(remote, f.cause, "rejected TLS connection", zap.String("reason", f.reason), zap.Error(err))
}

// log logs msg once per cause and remote host every logEvery, and at most
// logPerCause lines of a cause every logEvery whatever the number of
// hosts; a line says how many of its cause were left out before it.
func (l *listener) log(remote net.Addr, cause, msg string, fields ...zap.Field) {
	host := remote.String()
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	ok, suppressed := l.limiter.AllowIn(cause, cause+"/"+host)
	if !ok {
		return
	}
	head := []zap.Field{
		zap.String("port", l.cfg.Port),
		zap.String("address", l.Addr().String()),
		zap.String("remote-addr", remote.String()),
		zap.String("cause", cause),
	}
	if suppressed > 0 {
		head = append(head, zap.Int("suppressed", suppressed))
		msg += fmt.Sprintf(" (%d more of this cause suppressed)", suppressed)
	}
	l.cfg.Logger.Warn(msg, append(head, fields...)...)
}
