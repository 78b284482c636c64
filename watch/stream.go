package watch

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// InvalidWatchID is the watch ID of responses that belong to no watcher: a
// refused create, a progress notification for the whole stream.
const InvalidWatchID = -1

// Errors of a refused create, with etcd's wording; they reach the client
// as the cancel reason.
var (
	ErrEmptyRange  = errors.New("mvcc: watcher range is empty")
	ErrDuplicateID = errors.New("mvcc: duplicate watch ID provided on the WatchStream")
)

// minQueuedResponses is the least number of event responses a stream
// queues before its watchers fall behind; the bound grows with the number
// of watchers on the stream, so that one event for every watcher fits.
const minQueuedResponses = 256

// Stream is one client watch stream carrying many watchers. Requests come
// in through Create, Cancel and RequestProgress; responses come out, in
// order, through Next.
type Stream struct {
	hub    *Hub
	header func(rev int64) *pb.ResponseHeader

	// Guarded by hub.mu.
	watchers map[int64]*watcher
	nextID   int64
	closed   bool

	qmu    sync.Mutex
	queue  []*pending
	queued int // event responses in queue
	// queuedEvents is the number of events in queue (Hub.pendingEvents).
	queuedEvents int
	signalc      chan struct{}
	progress     *time.Ticker
}

// pending is a response waiting in a stream's queue.
type pending struct {
	w       *watcher // nil for responses that belong to no live watcher
	watchID int64
	rev     int64
	// events are the response's events: one slice per queued batch, as
	// the batches are shared between watchers and never copied.
	events     [][]*event
	created    bool
	canceled   bool
	compactRev int64
	reason     string
}

// NewStream opens a stream. header builds the header of each response for
// the revision it reports. Close it when the client goes away.
func (h *Hub) NewStream(header func(rev int64) *pb.ResponseHeader) *Stream {
	// Jitter spreads the progress notifications of streams created
	// together, as etcd does.
	interval := h.cfg.ProgressInterval + time.Duration(rand.Int64N(int64(h.cfg.ProgressInterval)/10+1))
	s := &Stream{
		hub:      h,
		header:   header,
		watchers: make(map[int64]*watcher),
		signalc:  make(chan struct{}, 1),
		progress: time.NewTicker(interval),
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-h.stopc:
		s.closed = true
	default:
		h.streams[s] = struct{}{}
	}
	return s
}

// Close cancels every watcher of the stream.
func (s *Stream) Close() {
	s.progress.Stop()
	s.hub.mu.Lock()
	s.hub.closeStreamLocked(s)
	s.hub.mu.Unlock()
	// Nobody sends what is still queued.
	s.qmu.Lock()
	s.takeQueueLocked()
	s.qmu.Unlock()
}

// takeQueueLocked empties the queue and returns what it held, taking its
// events off the hub's pending count. Called with qmu held.
func (s *Stream) takeQueueLocked() []*pending {
	q := s.queue
	s.hub.pendingEvents.Add(-int64(s.queuedEvents))
	s.queue, s.queued, s.queuedEvents = nil, 0, 0
	return q
}

// Create handles a watch create request as etcd does: the created response
// (or a refusal: created and canceled, with the reason) is queued before any
// event of the new watcher.
func (s *Stream) Create(r *pb.WatchCreateRequest) {
	h := s.hub
	key := r.Key
	if len(key) == 0 {
		key = []byte{0} // the smallest key
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.closed {
		return
	}
	refuse := func(reason string) {
		s.push(&pending{watchID: InvalidWatchID, rev: h.notified, created: true, canceled: true, reason: reason})
	}
	if r.StartRevision < 0 {
		refuse(rpctypes.ErrCompacted.Error())
		return
	}
	var end []byte
	switch {
	case len(r.RangeEnd) == 0:
		end = nil
	case len(r.RangeEnd) == 1 && r.RangeEnd[0] == 0:
		end = []byte{} // every key from key on
	default:
		end = r.RangeEnd
	}
	if len(end) != 0 && bytes.Compare(key, end) >= 0 {
		refuse(ErrEmptyRange.Error())
		return
	}
	id := r.WatchId
	if id == 0 {
		// The client's "pick one for me": the next free ID.
		for s.watchers[s.nextID] != nil {
			s.nextID++
		}
		id = s.nextID
		s.nextID++
	} else if s.watchers[id] != nil {
		refuse(ErrDuplicateID.Error())
		return
	}
	w := &watcher{id: id, stream: s, key: key, end: end, startRev: r.StartRevision,
		prevKV: r.PrevKv, fragment: r.Fragment, progress: r.ProgressNotify}
	w.keysID = keysID(w)
	for _, f := range r.Filters {
		switch f {
		case pb.WatchCreateRequest_NOPUT:
			w.noPut = true
		case pb.WatchCreateRequest_NODELETE:
			w.noDelete = true
		}
	}
	s.watchers[id] = w
	s.push(&pending{watchID: id, rev: h.notified, created: true})
	h.add(w)
}

// Refuse answers a create request without creating a watcher: created and
// canceled, with reason, queued in order with the stream's other responses
// (the API refuses this way a watch the client may not read).
func (s *Stream) Refuse(reason string) {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.closed {
		return
	}
	s.push(&pending{watchID: InvalidWatchID, rev: h.notified, created: true, canceled: true, reason: reason})
}

// Cancel cancels the watcher id and queues the canceled response. Like
// etcd, it answers nothing for an ID that names no watcher, and answers
// again for a watcher already cancelled by a compaction.
func (s *Stream) Cancel(id int64) {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	w := s.watchers[id]
	if s.closed || w == nil {
		return
	}
	if !w.gone {
		h.remove(w)
	}
	delete(s.watchers, id)
	s.push(&pending{watchID: id, rev: h.notified, canceled: true})
}

// RequestProgress answers a progress request as etcd does: when every
// watcher of the stream is synced (and none waits for a future revision), a
// response with watch ID -1 and the current revision, which tells the client
// that it has seen every event up to that revision; otherwise nothing.
func (s *Stream) RequestProgress() {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.closed || len(s.watchers) == 0 {
		return
	}
	for _, w := range s.watchers {
		if !w.synced || h.notified < w.startRev {
			return
		}
	}
	s.push(&pending{watchID: InvalidWatchID, rev: h.notified})
}

// progressTick sends a progress notification to each synced watcher that
// asked for them and has had no event since the last tick.
func (s *Stream) progressTick() {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.closed {
		return
	}
	for _, w := range s.watchers {
		if !w.progress {
			continue
		}
		if !w.sentEvents && w.synced && h.notified >= w.startRev {
			s.push(&pending{w: w, watchID: w.id, rev: h.notified})
		}
		w.sentEvents = false
	}
}

// push queues a control response; it never fails. Called with hub.mu held.
func (s *Stream) push(p *pending) {
	if s.closed {
		return
	}
	s.qmu.Lock()
	s.queue = append(s.queue, p)
	s.qmu.Unlock()
	s.signal()
}

// pushEvents queues events for w unless the stream already holds as many
// event responses as it may; it reports whether it queued them. Called with
// hub.mu held.
func (s *Stream) pushEvents(w *watcher, evs []*event, rev int64) bool {
	if s.closed {
		return true // nobody will read them; the watcher is gone
	}
	limit := minQueuedResponses + 2*len(s.watchers)
	s.qmu.Lock()
	if s.queued >= limit {
		s.qmu.Unlock()
		return false
	}
	s.queue = append(s.queue, &pending{w: w, watchID: w.id, rev: rev, events: [][]*event{evs}})
	s.queued++
	s.queuedEvents += len(evs)
	s.hub.pendingEvents.Add(int64(len(evs)))
	s.qmu.Unlock()
	w.sentEvents = true
	s.signal()
	return true
}

func (s *Stream) signal() {
	select {
	case s.signalc <- struct{}{}:
	default:
	}
}

// Send waits for queued responses and sends them, in order, through send:
// previous key-values filled in for watchers that asked for them, large
// responses split for watchers that asked for fragments. Responses are
// built one at a time, just before they are sent, so a stream that fell
// behind holds its events once, shared with other watchers, not once per
// response. It returns after sending what was queued, or with an error
// when ctx ends, the stream or hub is closed, or send fails.
func (s *Stream) Send(ctx context.Context, send func(*pb.WatchResponse) error) error {
	for {
		s.qmu.Lock()
		batch := s.takeQueueLocked()
		s.qmu.Unlock()
		if len(batch) > 0 {
			// Room in the queue again: watchers of this stream that fell
			// behind can catch up.
			s.hub.wakeSyncer()
			for _, p := range coalesce(batch) {
				if err := s.respond(ctx, p, send); err != nil {
					return err
				}
			}
			// A busy stream must not starve its watchers' progress
			// notifications.
			select {
			case <-s.progress.C:
				s.progressTick()
			default:
			}
			return nil
		}
		s.hub.mu.Lock()
		closed := s.closed
		s.hub.mu.Unlock()
		if closed {
			return errStreamClosed
		}
		select {
		case <-s.signalc:
		case <-s.progress.C:
			s.progressTick()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

var errStreamClosed = errors.New("watch stream closed")

// RecvRequests reads a Watch service's client requests from gs until the
// client closes its side (nil) or the stream fails (its error), and hands
// each to create, cancel or progress by its kind. A request of a kind it
// does not know, or without its body, is ignored, as etcd does, rather than
// ending every watcher of the stream. The member's Watch service (api) and
// the proxy's (grpcproxy) both read their streams with it.
func RecvRequests(gs pb.Watch_WatchServer, create func(*pb.WatchCreateRequest), cancel func(watchID int64), progress func()) error {
	for {
		req, err := gs.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch u := req.RequestUnion.(type) {
		case *pb.WatchRequest_CreateRequest:
			if u.CreateRequest != nil {
				create(u.CreateRequest)
			}
		case *pb.WatchRequest_CancelRequest:
			if u.CancelRequest != nil {
				cancel(u.CancelRequest.WatchId)
			}
		case *pb.WatchRequest_ProgressRequest:
			if u.ProgressRequest != nil {
				progress()
			}
		}
	}
}

// EndError is what a gRPC Watch service returns, with etcd's codes, when
// its stream ends other than by a failed send: the error of the goroutine
// that receives the client's requests when it failed (recvErr holds it
// then; a cancellation reads as the watch canceled), the watch canceled
// when the client's context is done, and otherwise the server stopped (the
// member or the proxy is shutting down). It does not wait: a receiving
// goroutine that has not failed yet counts as not failed. The member's
// Watch service (api) and the proxy's (grpcproxy) both end with it.
func EndError(client context.Context, recvErr <-chan error) error {
	select {
	case err := <-recvErr:
		if errors.Is(err, context.Canceled) {
			return rpctypes.ErrGRPCWatchCanceled
		}
		return err
	default:
	}
	if client.Err() != nil {
		return rpctypes.ErrGRPCWatchCanceled
	}
	return rpctypes.ErrGRPCStopped
}

// coalesce merges the queued event responses of each watcher into the
// earliest one, without copying events, so that a stream that fell behind sends one response per
// watcher instead of one per watcher and batch. It never merges across a
// control response of the same watcher, nor across a progress notification
// for the whole stream, which promises that everything before it was sent.
func coalesce(ps []*pending) []*pending {
	open := make(map[int64]*pending)
	out := ps[:0]
	for _, p := range ps {
		if len(p.events) == 0 {
			if p.watchID == InvalidWatchID {
				clear(open)
			} else {
				delete(open, p.watchID)
			}
			out = append(out, p)
			continue
		}
		q := open[p.watchID]
		if q == nil || q.w != p.w {
			open[p.watchID] = p
			out = append(out, p)
			continue
		}
		q.events = append(q.events, p.events...)
		q.rev = p.rev
	}
	return out
}

// respond sends p as one response, or as several fragments.
func (s *Stream) respond(ctx context.Context, p *pending, send func(*pb.WatchResponse) error) error {
	wr := &pb.WatchResponse{
		Header:          s.header(p.rev),
		WatchId:         p.watchID,
		Created:         p.created,
		Canceled:        p.canceled,
		CompactRevision: p.compactRev,
		CancelReason:    p.reason,
	}
	n := 0
	for _, seg := range p.events {
		n += len(seg)
	}
	if n == 0 {
		return send(wr)
	}
	s.hub.cfg.Metrics.WatchEvents(n)
	wr.Events = make([]*mvccpb.Event, 0, n)
	for _, seg := range p.events {
		for _, e := range seg {
			if p.w.prevKV {
				wr.Events = append(wr.Events, s.hub.withPrev(ctx, e))
			} else {
				wr.Events = append(wr.Events, e.ev)
			}
		}
	}
	if !p.w.fragment {
		return send(wr)
	}
	for _, f := range appendFragments(nil, wr, s.hub.cfg.MaxRequestBytes) {
		if err := send(f); err != nil {
			return err
		}
	}
	return nil
}

// withPrev returns e with the key's previous version, read once per event.
// As in etcd, which reads it when sending, there is none once the revision
// before the event is compacted.
func (h *Hub) withPrev(ctx context.Context, e *event) *mvccpb.Event {
	if e.rev()-1 < h.store.CompactRev() {
		return e.ev
	}
	e.prevOnce.Do(func() {
		e.withPrev = e.ev
		if e.ev.Type == mvccpb.PUT && e.ev.Kv.CreateRevision == e.ev.Kv.ModRevision {
			return // a create has no previous version
		}
		prev, err := h.store.PrevKV(ctx, e.ev.Kv.Key, e.ev.Kv.ModRevision)
		if err != nil || prev == nil {
			return
		}
		e.withPrev = &mvccpb.Event{Type: e.ev.Type, Kv: e.ev.Kv, PrevKv: prev}
	})
	return e.withPrev
}

// appendFragments splits wr into responses of at most maxBytes each (every
// fragment carries at least one event); all but the last are marked as
// fragments. A response under the limit, or with a single event, stays whole.
func appendFragments(out []*pb.WatchResponse, wr *pb.WatchResponse, maxBytes int) []*pb.WatchResponse {
	if proto.Size(wr) < maxBytes || len(wr.Events) < 2 {
		return append(out, wr)
	}
	evs := wr.Events
	for len(evs) > 0 {
		cur := &pb.WatchResponse{
			Header:          wr.Header,
			WatchId:         wr.WatchId,
			Created:         wr.Created,
			Canceled:        wr.Canceled,
			CompactRevision: wr.CompactRevision,
			CancelReason:    wr.CancelReason,
			Fragment:        true,
		}
		size := proto.Size(cur)
		n := 0
		for n < len(evs) {
			// Each event is a length-delimited field: tag, length, body.
			es := proto.Size(evs[n])
			size += 1 + protowire.SizeVarint(uint64(es)) + es
			if n > 0 && size >= maxBytes {
				break
			}
			n++
		}
		cur.Events = evs[:n]
		evs = evs[n:]
		if len(evs) == 0 {
			cur.Fragment = false
		}
		out = append(out, cur)
	}
	return out
}
