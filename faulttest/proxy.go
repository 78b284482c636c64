package faulttest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Metadata keys of keel's peer transport that name the two ends of a stream
// (transport.MDFrom and transport.MDTo; repeated here so that the proxy does
// not depend on the transport it tests).
const (
	mdFrom = "keel-from"
	mdTo   = "keel-to"
)

// Net is a set of proxies that share one table of fault rules. Rules name
// members by ID; the zero ID never matches a rule, so traffic whose ends are
// unknown is only subject to DelayAll.
//
// All methods are safe for concurrent use. A rule takes effect for frames
// read after the call returns; Drop and Partition also end the streams
// already open between the pairs they cut before returning.
type Net struct {
	mu      sync.Mutex
	rnd     *rand.Rand
	drop    map[pair]bool
	delay   map[pair]delayRule
	all     delayRule
	streams map[*openStream]struct{}
	opened  map[string]int // streams accepted, by method
}

type pair struct{ from, to uint64 }

type delayRule struct{ d, jitter time.Duration }

// openStream is a proxied stream that a Drop rule can end.
type openStream struct {
	pair   pair
	cancel context.CancelCauseFunc
}

// errDropped is the cause of a stream ended by a drop rule.
var errDropped = errors.New("faulttest: link cut by a partition")

// NewNet returns a Net without rules; seed drives the delay jitter.
func NewNet(seed uint64) *Net {
	return &Net{
		rnd:     rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		drop:    map[pair]bool{},
		delay:   map[pair]delayRule{},
		streams: map[*openStream]struct{}{},
		opened:  map[string]int{},
	}
}

// Drop cuts the link from -> to: new streams between the two members (in
// either direction of the stream's traffic) are refused with
// codes.Unavailable and open ones are ended with it. A gRPC stream carries
// replies back, so cutting either direction of a pair stops both.
func (n *Net) Drop(from, to uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.drop[pair{from, to}] = true
	for s := range n.streams {
		if n.cutLocked(s.pair) {
			s.cancel(errDropped)
		}
	}
}

// Partition cuts every link between members of different groups.
func (n *Net) Partition(groups ...[]uint64) {
	for i, g := range groups {
		for j, h := range groups {
			if i == j {
				continue
			}
			for _, a := range g {
				for _, b := range h {
					n.Drop(a, b)
				}
			}
		}
	}
}

// Delay holds every frame from -> to for d ± jitter before forwarding it,
// keeping the frames of a stream in order.
func (n *Net) Delay(from, to uint64, d, jitter time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.delay[pair{from, to}] = delayRule{d, jitter}
}

// DelayAll delays every frame (or, for TCP proxies, every chunk of bytes)
// that has no pair rule of its own by d ± jitter.
func (n *Net) DelayAll(d, jitter time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.all = delayRule{d, jitter}
}

// Heal removes every rule. Streams ended by Drop stay ended; the members
// open new ones.
func (n *Net) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.drop)
	clear(n.delay)
	n.all = delayRule{}
}

func (n *Net) cutLocked(p pair) bool {
	if p.from == 0 || p.to == 0 {
		return false
	}
	return n.drop[p] || n.drop[pair{p.to, p.from}]
}

// register records an open stream of pair p, or fails when p is cut.
func (n *Net) register(method string, p pair, cancel context.CancelCauseFunc) (*openStream, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cutLocked(p) {
		return nil, status.Errorf(codes.Unavailable, "faulttest: link %x -> %x cut by a partition", p.from, p.to)
	}
	s := &openStream{pair: p, cancel: cancel}
	n.streams[s] = struct{}{}
	n.opened[method]++
	return s, nil
}

// Opened counts the gRPC streams the Net's proxies forwarded, by method.
func (n *Net) Opened() map[string]int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return maps.Clone(n.opened)
}

func (n *Net) unregister(s *openStream) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.streams, s)
}

// delayFor draws the delay of one frame from -> to.
func (n *Net) delayFor(p pair) time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	r, ok := n.delay[p]
	if !ok || p.from == 0 || p.to == 0 {
		r = n.all
	}
	if r.d <= 0 && r.jitter <= 0 {
		return 0
	}
	d := r.d
	if r.jitter > 0 {
		d += time.Duration(n.rnd.Int64N(int64(2*r.jitter)+1)) - r.jitter
	}
	return max(d, 0)
}

// Proxy forwards the peer traffic of one member from its advertised address
// to its real listener.
type Proxy struct {
	net     *Net
	l       net.Listener
	member  atomic.Uint64 // the member behind the proxy, for streams without mdTo
	frames  atomic.Int64  // frames (TCP: chunks) forwarded towards the member
	backend atomic.Pointer[string]

	// gRPC mode
	srv   *grpc.Server
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn // by backend address

	// TCP mode
	tcpMu    sync.Mutex
	tcpConns map[net.Conn]struct{}
	closed   bool

	wg sync.WaitGroup
}

// Addr is the address the proxy listens on.
func (p *Proxy) Addr() string { return p.l.Addr().String() }

// Frames is how many frames (for a TCP proxy: chunks of bytes) the proxy
// has forwarded to its member.
func (p *Proxy) Frames() int64 { return p.frames.Load() }

// SetBackend points the proxy at a new real listener; open streams keep
// their old backend.
func (p *Proxy) SetBackend(addr string) { p.backend.Store(&addr) }

// SetMember names the member behind the proxy, for streams that do not say
// whom they are for (a joining member's FetchMembers).
func (p *Proxy) SetMember(id uint64) { p.member.Store(id) }

// NewGRPCProxy serves on l a transparent proxy for any gRPC service: every
// stream is forwarded frame by frame, without decoding, to backend, with its
// metadata, headers, trailers and final status. Frames are subject to the
// Net's rules for the pair named by the stream's keel-from/keel-to metadata.
func (n *Net) NewGRPCProxy(l net.Listener, backend string) *Proxy {
	p := &Proxy{net: n, l: l, conns: map[string]*grpc.ClientConn{}}
	p.SetBackend(backend)
	p.srv = grpc.NewServer(
		grpc.ForceServerCodec(rawCodec{}),
		grpc.UnknownServiceHandler(p.handleStream),
	)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.srv.Serve(l)
	}()
	return p
}

// Close stops the proxy, ends its streams and connections and waits for its
// goroutines.
func (p *Proxy) Close() {
	if p.srv != nil {
		p.srv.Stop()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		clear(p.conns)
		p.mu.Unlock()
	} else {
		p.tcpMu.Lock()
		p.closed = true
		for c := range p.tcpConns {
			c.Close()
		}
		p.tcpMu.Unlock()
		p.l.Close()
	}
	p.wg.Wait()
}

// rawCodec passes frames through as bytes.
type rawCodec struct{}

func (rawCodec) Name() string { return "faulttest-raw" }

func (rawCodec) Marshal(v any) ([]byte, error) {
	switch b := v.(type) {
	case []byte:
		return b, nil
	case *[]byte:
		return *b, nil
	}
	return nil, fmt.Errorf("faulttest: cannot marshal %T as raw bytes", v)
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("faulttest: cannot unmarshal raw bytes into %T", v)
	}
	*b = append((*b)[:0], data...)
	return nil
}

func (p *Proxy) conn() (*grpc.ClientConn, error) {
	addr := *p.backend.Load()
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		return c, nil
	}
	// Reconnect fast: the member behind the proxy is killed and restarted
	// often, and gRPC's default reconnect backoff (up to two minutes) would
	// add outages of the proxy's own making.
	c, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 200 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}))
	if err != nil {
		return nil, err
	}
	p.conns[addr] = c
	return c, nil
}

func parseID(md metadata.MD, key string) uint64 {
	v := md.Get(key)
	if len(v) == 0 {
		return 0
	}
	id, err := strconv.ParseUint(v[0], 16, 64)
	if err != nil {
		return 0
	}
	return id
}

// forwardedMD is the incoming metadata less the headers gRPC sets itself.
func forwardedMD(md metadata.MD) metadata.MD {
	out := metadata.MD{}
	for k, v := range md {
		switch {
		case k == "content-type", k == "user-agent", k == "te", strings.HasPrefix(k, ":"), strings.HasPrefix(k, "grpc-"):
			continue
		}
		out[k] = v
	}
	return out
}

// timedFrame is a frame and the time it may be forwarded.
type timedFrame struct {
	b  []byte
	at time.Time
}

// queueDepth bounds the frames held per direction of a stream; a full queue
// stops reading, as a full TCP window would.
const queueDepth = 256

// delayedReader reads frames with recv until it fails, stamping each with
// its release time (never earlier than the previous frame's), and sends them
// on the returned channel. The channel is closed after the last frame; *errp
// then holds recv's error.
func (p *Proxy) delayedReader(ctx context.Context, pr pair, recv func(*[]byte) error, errp *error) <-chan timedFrame {
	ch := make(chan timedFrame, queueDepth)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer close(ch)
		var last time.Time
		for {
			var b []byte
			if err := recv(&b); err != nil {
				*errp = err
				return
			}
			at := time.Now().Add(p.net.delayFor(pr))
			if at.Before(last) {
				at = last
			}
			last = at
			select {
			case ch <- timedFrame{b, at}:
			case <-ctx.Done():
				*errp = context.Cause(ctx)
				return
			}
		}
	}()
	return ch
}

// waitUntil waits until t or until ctx is done, and reports whether t came.
func waitUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (p *Proxy) handleStream(_ any, ss grpc.ServerStream) error {
	method, ok := grpc.MethodFromServerStream(ss)
	if !ok {
		return status.Error(codes.Internal, "faulttest: no method on stream")
	}
	md, _ := metadata.FromIncomingContext(ss.Context())
	pr := pair{from: parseID(md, mdFrom), to: parseID(md, mdTo)}
	if pr.to == 0 {
		pr.to = p.member.Load()
	}
	ctx, cancel := context.WithCancelCause(ss.Context())
	defer cancel(nil)
	reg, err := p.net.register(method, pr, cancel)
	if err != nil {
		return err
	}
	defer p.net.unregister(reg)

	cc, err := p.conn()
	if err != nil {
		return status.Errorf(codes.Unavailable, "faulttest: dial backend: %v", err)
	}
	opts := []grpc.CallOption{grpc.ForceCodec(rawCodec{})}
	if ct := md.Get("content-type"); len(ct) > 0 {
		if _, sub, ok := strings.Cut(ct[0], "+"); ok && sub != "" {
			opts = append(opts, grpc.CallContentSubtype(sub))
		}
	}
	cs, err := cc.NewStream(metadata.NewOutgoingContext(ctx, forwardedMD(md)),
		&grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method, opts...)
	if err != nil {
		return err
	}

	// Upstream: sender -> member, through a delay queue, closed with
	// CloseSend when the sender is done.
	var upErr error
	up := p.delayedReader(ctx, pr, func(b *[]byte) error { return ss.RecvMsg(b) }, &upErr)
	upFailed := make(chan error, 1)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for f := range up {
			if !waitUntil(ctx, f.at) {
				return
			}
			p.frames.Add(1)
			if err := cs.SendMsg(f.b); err != nil {
				// io.EOF: the member ended the stream; its status comes
				// downstream.
				return
			}
		}
		if errors.Is(upErr, io.EOF) {
			cs.CloseSend()
			return
		}
		upFailed <- upErr
	}()

	// Downstream: member -> sender; SendMsg only on this goroutine.
	var downErr error
	// The member's header goes on the channel before its first frame, so it
	// is there when the first frame (or the end) arrives.
	header := make(chan metadata.MD, 1)
	gotHeader := false
	down := p.delayedReader(ctx, pair{pr.to, pr.from}, func(b *[]byte) error {
		if !gotHeader {
			gotHeader = true
			if h, err := cs.Header(); err == nil {
				header <- h
			}
		}
		return cs.RecvMsg(b)
	}, &downErr)
	dropped := func() error {
		if errors.Is(context.Cause(ctx), errDropped) {
			return status.Errorf(codes.Unavailable, "faulttest: link %x -> %x cut by a partition", pr.from, pr.to)
		}
		return nil
	}
	sentHeader := false
	for {
		select {
		case <-ctx.Done():
			if err := dropped(); err != nil {
				return err
			}
			return status.FromContextError(ctx.Err()).Err()
		case err := <-upFailed:
			if derr := dropped(); derr != nil {
				return derr
			}
			return err
		case f, ok := <-down:
			if !sentHeader {
				sentHeader = true
				select {
				case h := <-header:
					ss.SetHeader(h)
				default:
				}
			}
			if !ok {
				ss.SetTrailer(cs.Trailer())
				if errors.Is(downErr, io.EOF) {
					return nil
				}
				if err := dropped(); err != nil {
					return err
				}
				return downErr
			}
			if !waitUntil(ctx, f.at) {
				continue // ctx.Done reports why
			}
			if err := ss.SendMsg(f.b); err != nil {
				return err
			}
		}
	}
}

// NewTCPProxy serves on l a byte-level proxy to backend. It cannot tell
// which members a connection joins, so only DelayAll applies to it; each
// chunk of bytes read is held for the delay before being written on, in
// order.
func (n *Net) NewTCPProxy(l net.Listener, backend string) *Proxy {
	p := &Proxy{net: n, l: l, tcpConns: map[net.Conn]struct{}{}}
	p.SetBackend(backend)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.serveTCP(c)
			}()
		}
	}()
	return p
}

func (p *Proxy) track(c net.Conn) bool {
	p.tcpMu.Lock()
	defer p.tcpMu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.tcpConns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.tcpMu.Lock()
	defer p.tcpMu.Unlock()
	delete(p.tcpConns, c)
	c.Close()
}

func (p *Proxy) serveTCP(in net.Conn) {
	if !p.track(in) {
		return
	}
	defer p.untrack(in)
	out, err := net.DialTimeout("tcp", *p.backend.Load(), time.Second)
	if err != nil {
		return
	}
	if !p.track(out) {
		return
	}
	defer p.untrack(out)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		var rerr error
		frames := p.delayedReader(ctx, pair{}, func(b *[]byte) error {
			buf := make([]byte, 32<<10)
			k, err := src.Read(buf)
			*b = buf[:k]
			if k > 0 {
				return nil
			}
			return err
		}, &rerr)
		for f := range frames {
			if !waitUntil(ctx, f.at) {
				break
			}
			if dst == out {
				p.frames.Add(1)
			}
			if _, err := dst.Write(f.b); err != nil {
				break
			}
		}
		done <- struct{}{}
	}
	go pipe(out, in)
	go pipe(in, out)
	<-done
	// One side is finished: close both so that the other pipe ends too.
	cancel()
	in.Close()
	out.Close()
	<-done
}
