package compat

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// Bounds of the watch recorder. They only stop a hung or runaway test; no
// assertion depends on them.
const (
	// watchWait bounds one wait for a watch response (a created response, a
	// cancel acknowledgement, the events up to a revision).
	watchWait = 10 * time.Second
	// maxWatchResponses bounds the responses one stream records.
	maxWatchResponses = 1 << 22
	// maxWaitWakeups bounds the wake-ups of one wait (one per response).
	maxWaitWakeups = 1 << 22
)

// watchConn is one gRPC watch stream to one side. A goroutine records every
// response the stream delivers and attributes it to a watcher, in stream
// order:
//   - a created response belongs to the oldest create sent on the stream that
//     has no answer yet (the test sends one create at a time and waits);
//   - every other response belongs to the watcher that holds its watch id at
//     that point of the stream. A watcher holds its id from its created
//     response to the acknowledgement of its cancel request; a cancel for
//     compaction does not free the id (etcd keeps the watcher until the
//     client cancels it, and acknowledges that cancel).
//
// A response that belongs to no watcher is an orphan: a failure.
//
// Only the test goroutine sends on the stream (create and cancel); all
// fields below mu are shared with the receiving goroutine.
type watchConn struct {
	side   string // the target's name
	index  int    // the stream's index among the side's streams
	stream pb.Watch_WatchClient
	stop   context.CancelFunc
	done   chan struct{} // closed when the receiving goroutine has returned

	mu      sync.Mutex
	changed chan struct{} // closed and replaced whenever a response is recorded or the stream ends
	pending []*watchLog   // creates sent and not answered, oldest first
	active  map[int64]*watchLog
	orphans []*pb.WatchResponse
	count   int   // responses received
	recvErr error // why the stream ended; nil while it is open
}

// watchLog is what one watcher received on one side, in order.
type watchLog struct {
	items     []watchItem
	created   bool  // its created response arrived
	failed    bool  // the create was refused (created and canceled at once)
	compacted bool  // canceled because its start revision is compacted
	acked     bool  // its cancel request was acknowledged
	lastRev   int64 // mod revision of the last event received, 0 if none
	problems  []string
}

// watchItem is one element of what a watcher received: a response without
// events (created, canceled, progress) or one event. The events of one
// response are separate items, so that two sides that split the same events
// differently into responses compare equal.
type watchItem struct {
	ctrl *pb.WatchResponse
	ev   *mvccpb.Event
}

func (it watchItem) String() string {
	if it.ctrl != nil {
		return "response " + oneLine(it.ctrl)
	}
	return "event " + oneLine(it.ev)
}

// oneLine prints a message as text on one line, long byte strings shortened.
func oneLine(m proto.Message) string {
	return prototext.MarshalOptions{}.Format(shorten(m))
}

// openWatchConn opens a watch stream to tg and starts recording it. The stream
// is closed and its goroutine waited for when stopWatchConns is called.
func openWatchConn(tg *target, index int) (*watchConn, error) {
	ctx, cancel := context.WithCancel(context.Background())
	s, err := tg.watch.Watch(ctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("open watch stream %d on %s: %w", index, tg.name, err)
	}
	c := &watchConn{
		side: tg.name, index: index, stream: s, stop: cancel, done: make(chan struct{}),
		changed: make(chan struct{}), active: map[int64]*watchLog{},
	}
	go c.recvLoop()
	return c, nil
}

// close ends the stream and waits for its receiving goroutine.
func (c *watchConn) close() {
	c.stop()
	<-c.done
}

func (c *watchConn) recvLoop() {
	defer close(c.done)
	for {
		r, err := c.stream.Recv()
		c.mu.Lock()
		switch {
		case err != nil:
			c.recvErr = err
		case c.count >= maxWatchResponses:
			c.recvErr = fmt.Errorf("more than %d responses on one stream", maxWatchResponses)
		default:
			c.count++
			c.recordLocked(r)
		}
		stopped := c.recvErr != nil
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
		if stopped {
			c.stop()
			return
		}
	}
}

func (c *watchConn) recordLocked(r *pb.WatchResponse) {
	if r.Created {
		if len(c.pending) == 0 {
			c.orphans = append(c.orphans, r)
			return
		}
		l := c.pending[0]
		c.pending = c.pending[1:]
		l.created = true
		l.items = append(l.items, watchItem{ctrl: r})
		if len(r.Events) > 0 {
			l.problem("the created response carries %d events", len(r.Events))
		}
		if r.Canceled {
			l.failed = true
			return
		}
		if prev := c.active[r.WatchId]; prev != nil {
			held := "an open watcher"
			if prev.compacted {
				held = "a watcher canceled for compaction, whose id etcd keeps until the client cancels it"
			}
			l.problem("watch id %d is given to a second watcher on the stream; it is held by %s", r.WatchId, held)
		}
		c.active[r.WatchId] = l
		return
	}
	l := c.active[r.WatchId]
	if l == nil {
		c.orphans = append(c.orphans, r)
		return
	}
	switch {
	case r.Canceled:
		l.items = append(l.items, watchItem{ctrl: r})
		if len(r.Events) > 0 {
			l.problem("a canceled response carries %d events", len(r.Events))
		}
		if r.CompactRevision != 0 {
			l.compacted = true
			return
		}
		l.acked = true
		delete(c.active, r.WatchId)
	case len(r.Events) == 0:
		l.items = append(l.items, watchItem{ctrl: r}) // a progress notification
	default:
		l.addEvents(r)
	}
}

// addEvents records an event response and checks the rules every event
// response follows: it is not a control response; its events come in
// revision order after those of earlier responses, and a revision never
// continues in a later response (a revision's events are atomic); its header
// revision is at least its last event's.
func (l *watchLog) addEvents(r *pb.WatchResponse) {
	if r.CompactRevision != 0 || r.Fragment {
		l.problem("an event response has compact_revision %d, fragment %v", r.CompactRevision, r.Fragment)
	}
	for _, ev := range r.Events {
		rev := ev.GetKv().GetModRevision()
		switch {
		case rev < l.lastRev:
			l.problem("event of revision %d after one of revision %d", rev, l.lastRev)
		case rev == l.lastRev && ev == r.Events[0]:
			l.problem("the events of revision %d are split over two responses", rev)
		}
		l.lastRev = max(l.lastRev, rev)
		l.items = append(l.items, watchItem{ev: ev})
	}
	if h := r.GetHeader().GetRevision(); h < l.lastRev {
		l.problem("a response's header revision %d is below its last event's revision %d", h, l.lastRev)
	}
}

func (l *watchLog) problem(format string, args ...any) {
	const maxProblems = 10
	if len(l.problems) < maxProblems {
		l.problems = append(l.problems, fmt.Sprintf(format, args...))
	}
}

// create sends a create request and returns the log its responses go to.
func (c *watchConn) create(req *pb.WatchCreateRequest) (*watchLog, error) {
	l := &watchLog{}
	c.mu.Lock()
	c.pending = append(c.pending, l)
	c.mu.Unlock()
	err := c.stream.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: req}})
	if err != nil {
		return nil, fmt.Errorf("%s stream %d: send create: %w", c.side, c.index, err)
	}
	return l, nil
}

// cancel sends a cancel request for id.
func (c *watchConn) cancel(id int64) error {
	err := c.stream.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{
		CancelRequest: &pb.WatchCancelRequest{WatchId: id}}})
	if err != nil {
		return fmt.Errorf("%s stream %d: send cancel of %d: %w", c.side, c.index, id, err)
	}
	return nil
}

// holds reports whether a watcher on the stream holds id.
func (c *watchConn) holds(id int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.active[id] != nil
}

var errWatchTimeout = errors.New("timed out")

// waitUntil waits until cond, called with the stream's lock held, is true;
// at most until deadline. It fails early if the stream ends.
func (c *watchConn) waitUntil(deadline time.Time, cond func() bool) error {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for range maxWaitWakeups {
		c.mu.Lock()
		ok, changed, err := cond(), c.changed, c.recvErr
		c.mu.Unlock()
		if ok {
			return nil
		}
		if err != nil {
			return fmt.Errorf("the watch stream ended: %w", err)
		}
		select {
		case <-changed:
		case <-timer.C:
			return errWatchTimeout
		}
	}
	return fmt.Errorf("more than %d wake-ups", maxWaitWakeups)
}

// snapshot returns a copy of what l holds, taken under the stream's lock.
func (c *watchConn) snapshot(l *watchLog) watchLog {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := *l
	s.items = append([]watchItem(nil), l.items...)
	s.problems = append([]string(nil), l.problems...)
	return s
}

// takeOrphans returns the responses no watcher owns that arrived since the
// last call.
func (c *watchConn) takeOrphans() []*pb.WatchResponse {
	c.mu.Lock()
	defer c.mu.Unlock()
	o := c.orphans
	c.orphans = nil
	return o
}
