package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// peer sends to one remote member. Send queues messages; one goroutine
// (run) keeps a stream open and writes the queue on it in batches.
type peer struct {
	t      *Transport
	id     uint64
	queue  chan *raftpb.Message
	ctx    context.Context // ends when the peer is removed or the transport stops
	cancel context.CancelFunc

	active  atomic.Int64  // UnixNano when the current stream became healthy; 0 when down
	dropped atomic.Uint64 // messages dropped because the queue was full

	mu       sync.Mutex
	urls     []string
	urlIdx   int              // the URL to dial next, or the one cc was dialled to
	cc       *grpc.ClientConn // the connection in use; nil until needed
	ccURL    string           // the URL cc was dialled to; after setURLs it may no longer be listed
	snapping bool             // a snapshot is being sent

	handshake lastHandshake // the last failed TLS handshake, to explain it
}

func newPeer(t *Transport, id uint64, urls []string) *peer {
	p := &peer{t: t, id: id, queue: make(chan *raftpb.Message, queueSize), urls: slices.Clone(urls)}
	p.ctx, p.cancel = context.WithCancel(t.ctx)
	return p
}

// enqueue queues m for the stream, or drops it and reports the peer
// unreachable when the queue is full.
func (p *peer) enqueue(m *raftpb.Message) {
	select {
	case p.queue <- m:
	default:
		p.dropped.Add(1)
		p.t.cfg.Metrics.PeerSendFailed(p.id, 1)
		if m.GetType() == raftpb.MessageType_MsgHeartbeat {
			p.t.cfg.Metrics.HeartbeatSendFailed()
		}
		if p.t.limiter.Allow(fmt.Sprintf("queue-full/%x", p.id)) {
			p.t.lg.Warn("dropped internal Raft message since sending buffer is full (overloaded network)",
				p.t.localField(), idField("remote-peer-id", p.id), zap.Stringer("message-type", m.GetType()),
				zap.Uint64("dropped-total", p.dropped.Load()))
		}
		p.reportUnreachable()
	}
}

func (p *peer) reportUnreachable() {
	if p.ctx.Err() == nil && p.t.h() != nil {
		p.t.h().ReportUnreachable(p.id)
	}
}

func (p *peer) activeSince() time.Time {
	if ns := p.active.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// close stops the peer's goroutines and closes its connection.
func (p *peer) close() {
	p.cancel()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cc != nil {
		p.cc.Close()
		p.cc = nil
	}
}

// setURLs replaces the peer's URLs. A working connection is kept even when
// its address is no longer listed, as etcd keeps its streams: the member
// being moved still listens there until it restarts on the new URL, and it
// must hear the commit of its own update first. Once that connection fails,
// the next one is dialled to the first new URL.
func (p *peer) setURLs(urls []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if slices.Equal(p.urls, urls) {
		return
	}
	cur := p.ccURL
	if p.cc == nil && len(p.urls) > 0 {
		cur = p.urls[p.urlIdx]
	}
	p.urls = slices.Clone(urls)
	p.urlIdx = 0
	if i := slices.Index(p.urls, cur); i >= 0 {
		p.urlIdx = i
	}
}

// conn returns the connection to the URL in use, creating it if needed.
func (p *peer) conn() (*grpc.ClientConn, string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctx.Err() != nil {
		return nil, "", status.Error(codes.Canceled, "transport: peer removed or transport stopped")
	}
	if len(p.urls) == 0 {
		return nil, "", status.Errorf(codes.Unavailable, "transport: peer %x has no URLs", p.id)
	}
	if p.cc == nil {
		u := p.urls[p.urlIdx]
		cc, err := dial(u, p.t.cfg.ClientTLS, p.t.cfg.DialTimeout, &p.handshake)
		if err != nil {
			return nil, "", status.Error(codes.Unavailable, err.Error())
		}
		p.cc, p.ccURL = cc, u
	}
	return p.cc, p.ccURL, nil
}

// currentURL returns the URL the peer is dialled at.
func (p *peer) currentURL() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.urls) == 0 {
		return ""
	}
	return p.urls[p.urlIdx]
}

// connFailed closes cc, through which the peer could not be reached, and
// moves on to the peer's next URL. A connection already replaced is left
// alone.
func (p *peer) connFailed(cc *grpc.ClientConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cc != cc {
		return
	}
	p.cc.Close()
	p.cc = nil
	// Move on to the next URL, unless cc's URL is no longer listed:
	// setURLs has already pointed urlIdx at the first new one.
	if len(p.urls) > 0 && slices.Contains(p.urls, p.ccURL) {
		p.urlIdx = (p.urlIdx + 1) % len(p.urls)
	}
	p.ccURL = ""
}

// dropIfUnlisted closes cc, whose stream has ended, if its URL is no longer
// one of the peer's: the next stream then goes to the new URLs, whatever
// still answers at the old address.
func (p *peer) dropIfUnlisted(cc *grpc.ClientConn) {
	p.mu.Lock()
	unlisted := p.cc == cc && !slices.Contains(p.urls, p.ccURL)
	p.mu.Unlock()
	if unlisted {
		p.connFailed(cc)
	}
}

// run keeps a stream open to the peer and writes queued messages on it,
// until the peer is closed. Between attempts it backs off (from minBackoff,
// doubling to maxBackoff, reset once a stream became active) and drops what is
// queued, reporting the peer unreachable.
func (p *peer) run() {
	defer p.t.wg.Done()
	lg := p.t.lg.With(p.t.localField(), idField("remote-peer-id", p.id))
	backoff := minBackoff
	for p.ctx.Err() == nil {
		wasActive, err := p.stream(lg)
		if p.ctx.Err() != nil {
			return
		}
		p.reportUnreachable()
		if wasActive {
			backoff = minBackoff
		}
		p.logFailure(lg, wasActive, err)
		if !p.dropQueued(backoff) {
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// logFailure logs why a stream failed: the loss of an active stream always,
// a refusal or a failure to connect once per logEvery.
func (p *peer) logFailure(lg *zap.Logger, wasActive bool, err error) {
	err = p.t.refusal(p.id, err)
	switch {
	case errors.Is(err, ErrMemberRemoved):
		if p.t.limiter.Allow(fmt.Sprintf("removed/%x", p.id)) {
			lg.Warn("peer refused the stream: this member was removed from the cluster", zap.Error(err))
		}
	case status.Code(err) == codes.FailedPrecondition:
		if p.t.limiter.Allow(fmt.Sprintf("refused/%x", p.id)) {
			lg.Error("peer refused the stream; check the peer URLs and the cluster of each member", zap.Error(err))
		}
	case wasActive:
		lg.Warn("lost TCP streaming connection with remote peer", zap.Error(err))
	default:
		// A new cause (a refused connection becoming a refused
		// certificate) is logged at once.
		cause := err
		if herr := p.handshake.take(); herr != nil {
			cause = herr
		}
		reason := p.t.explainDial(p.currentURL(), cause)
		if p.t.limiter.Allow(fmt.Sprintf("connect/%x/%s", p.id, reason)) {
			fields := []zap.Field{zap.Error(err)}
			if reason != "" {
				fields = append(fields, zap.String("reason", reason))
			}
			lg.Warn("failed to connect to remote peer", fields...)
		}
	}
}

// dropQueued waits for d, dropping what is queued meanwhile; it reports
// false if the peer was closed.
func (p *peer) dropQueued(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	reported := false
	for {
		select {
		case <-p.ctx.Done():
			return false
		case <-timer.C:
			return true
		case <-p.queue:
			p.t.cfg.Metrics.PeerSendFailed(p.id, 1)
			if !reported {
				p.reportUnreachable()
				reported = true
			}
		}
	}
}

var errPeerClosedStream = errors.New("the peer closed the stream")

// stream opens a stream to the peer and writes queued messages on it until
// it fails; it returns whether the stream became active and why it ended.
//
// Messages are written as soon as the stream is open. The peer is marked
// active when its response header arrives, which it sends once it accepted
// the stream; a proxy may hold the header back, so a stream that is still
// open after DialTimeout is marked active too.
func (p *peer) stream(lg *zap.Logger) (wasActive bool, err error) {
	cc, u, err := p.conn()
	if err != nil {
		return false, err
	}
	defer p.dropIfUnlisted(cc)
	ctx, cancel := context.WithCancel(p.ctx)
	defer cancel()
	dialTimer := time.AfterFunc(p.t.cfg.DialTimeout, cancel)
	cs, err := cc.NewStream(p.t.outgoing(ctx, p.id), &streamDesc, methodStream)
	if !dialTimer.Stop() && err == nil {
		err = fmt.Errorf("no stream within %v", p.t.cfg.DialTimeout)
	}
	if err != nil {
		p.connFailed(cc)
		return false, err
	}

	// The receiver acknowledges every frame; RecvMsg fails when the stream
	// ends, with the peer's status.
	accepted := make(chan struct{})
	acked := make(chan struct{}, 1)
	ended := make(chan error, 1)
	go func() {
		if md, _ := cs.Header(); md != nil {
			close(accepted)
		}
		var b []byte
		for {
			if err := cs.RecvMsg(&b); err != nil {
				if errors.Is(err, io.EOF) {
					err = errPeerClosedStream
				}
				ended <- err
				return
			}
			select {
			case acked <- struct{}{}:
			default:
			}
		}
	}()
	defer func() {
		if wasActive {
			p.t.cfg.Metrics.PeerActive(p.t.cfg.ID, p.id, false)
		}
		p.active.Store(0)
		cancel()
		if ended != nil {
			<-ended
		}
	}()
	acceptTimer := time.NewTimer(p.t.cfg.DialTimeout)
	defer acceptTimer.Stop()
	markActive := func() {
		if !wasActive {
			wasActive = true
			p.active.Store(time.Now().UnixNano())
			p.t.cfg.Metrics.PeerActive(p.t.cfg.ID, p.id, true)
			lg.Info("established TCP streaming connection with remote peer", zap.String("remote-peer-url", u))
		}
	}
	writeTimer := time.AfterFunc(time.Hour, cancel)
	writeTimer.Stop()
	// unacked counts the frames written since an acknowledgement last
	// arrived, the oldest of them written at unackedSince. Any
	// acknowledgement shows that the path delivers (they are coalesced),
	// so it clears the count.
	var (
		unacked      int
		unackedSince time.Time
	)
	ackCheck := time.NewTicker(ackTimeout / 4)
	defer ackCheck.Stop()
	for {
		select {
		case <-ctx.Done():
			return wasActive, ctx.Err()
		case <-accepted:
			accepted = nil
			markActive()
		case <-acceptTimer.C:
			markActive()
		case <-acked:
			if unacked > 0 {
				// The oldest frame written since the last acknowledgement
				// has made the round trip (acknowledgements are coalesced,
				// so this may overstate it, never understate it).
				p.t.cfg.Metrics.PeerRTT(p.id, time.Since(unackedSince))
			}
			unacked = 0
			markActive()
		case <-ackCheck.C:
			if unacked > 0 && time.Since(unackedSince) > ackTimeout {
				return wasActive, fmt.Errorf("peer acknowledged none of the last %d frames for %v", unacked, ackTimeout)
			}
		case err := <-ended:
			ended = nil
			return wasActive, err
		case m := <-p.queue:
			frame, err := p.batch(m)
			if err != nil {
				lg.Error("failed to encode Raft messages", zap.Error(err))
				continue
			}
			if unacked == 0 {
				unackedSince = time.Now()
			}
			unacked++
			writeTimer.Reset(writeTimeout)
			err = cs.SendMsg(frame)
			if !writeTimer.Stop() {
				p.t.cfg.Metrics.PeerSendFailed(p.id, 1)
				return wasActive, fmt.Errorf("peer took no frame for %v", writeTimeout)
			}
			if err == nil {
				p.t.cfg.Metrics.PeerSent(p.id, len(frame))
			}
			if err != nil {
				p.t.cfg.Metrics.PeerSendFailed(p.id, 1)
				if errors.Is(err, io.EOF) { // the stream ended; its status tells why
					err = <-ended
					ended = nil
				}
				return wasActive, err
			}
		}
	}
}

// batch encodes m and whatever else is queued, up to maxFrameBytes, into one
// frame.
func (p *peer) batch(m *raftpb.Message) ([]byte, error) {
	b, err := appendMessage(nil, m)
	if err != nil {
		return nil, err
	}
	for len(b) < maxFrameBytes {
		select {
		case m := <-p.queue:
			if b, err = appendMessage(b, m); err != nil {
				return nil, err
			}
		default:
			return b, nil
		}
	}
	return b, nil
}
