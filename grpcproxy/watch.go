package grpcproxy

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/keeldb/keel/watch"
)

// sendQueue bounds the responses waiting to be sent on one client stream.
// A group that finds the queue full waits (the client is slow), which
// slows the other members of the group too; it never drops a response.
const sendQueue = 1024

// createAttempts bounds how often a create retries when the group it was
// about to join finished or moved past its start revision meanwhile.
const createAttempts = 4

// watchProxy serves Watch. Client watchers on the same key range, with the
// same prev_kv choice, share one upstream watcher (a group) when their start
// revisions allow: a watcher from "now" (start revision 0) joins a group at
// the revision the group has delivered up to; one with a start revision S
// joins a group that has not delivered past S-1 and skips the events below
// S. Anything else gets a group of its own.
type watchProxy struct {
	pb.UnimplementedWatchServer
	p *Proxy

	mu     sync.Mutex
	groups map[groupKey][]*group
	// The figures of WatchStats.
	nUpstream, nDownstream, nCreated atomic.Int64
	// seq numbers the upstream streams of their own (see pick).
	seq uint64
}

// streamKey is the metadata that gives a group an upstream stream of its
// own: the client module keeps one stream per distinct metadata.
const streamKey = "keel-proxy-watch-stream"

type groupKey struct {
	key, end string
	prevKV   bool
}

func newWatchProxy(p *Proxy) *watchProxy {
	return &watchProxy{p: p, groups: make(map[groupKey][]*group)}
}

// Stats reports the proxy's watch coalescing: the upstream watchers open
// now, the client watchers they serve, and the upstream watchers created
// since the start.
type WatchStats struct {
	Upstream, Downstream int
	UpstreamCreated      int64
}

// WatchStats returns the current coalescing figures. It reads counters
// only, so that a scrape never waits for a group busy with a slow client.
func (p *Proxy) WatchStats() WatchStats {
	wp := p.watch
	return WatchStats{Upstream: int(wp.nUpstream.Load()), Downstream: int(wp.nDownstream.Load()),
		UpstreamCreated: wp.nCreated.Load()}
}

// group is one upstream watcher and the client watchers it feeds.
type group struct {
	wp    *watchProxy
	key   groupKey
	start int64 // the upstream watcher's start revision
	ctx   context.Context
	stop  context.CancelFunc

	mu      sync.Mutex
	created bool
	done    bool
	// rev is the revision up to which every event was handed to the
	// members.
	rev int64
	// eventRev is the revision of the last event handed to the members.
	eventRev int64
	header   *pb.ResponseHeader
	members  map[*member]struct{}
	// pending are the watchers waiting for the upstream watcher to be
	// created: they join when it is, atomically, before any event.
	pending []*member
	// waiters are creates that picked this group and have not attached
	// yet; the group stays while there are any.
	waiters int
	// progressc is closed and replaced at every progress notification.
	progressc chan struct{}
}

// member is one client watcher.
type member struct {
	s        *wstream
	g        *group
	id       int64
	start    int64 // events below it are not delivered
	noPut    bool
	noDelete bool
	fragment bool
	progress bool
	gone     bool // cancelled by the cluster (compaction); the ID stays taken
	creator  bool // started the group
	// nowRev is the cluster's revision when the create came (0 if
	// unknown): a member's created response carries it.
	nowRev int64
	// resc receives the outcome of the create.
	resc chan joinResult
}

// joinResult is the outcome of a create: joined, refused with a reason,
// or to be retried with another group.
type joinResult struct {
	joined  bool
	refusal string
	retry   bool
}

// wstream is one client Watch stream.
type wstream struct {
	wp    *watchProxy
	ctx   context.Context
	sendc chan *pb.WatchResponse

	mu             sync.Mutex
	closed         bool
	members        map[int64]*member
	nextID         int64
	progressActive bool
}

// Watch serves one client stream: requests are handled in order in one
// goroutine (a create that needs a new upstream watcher waits for it, so
// that created responses come in request order, as from a member), and
// responses are sent from this one.
func (wp *watchProxy) Watch(gs pb.Watch_WatchServer) error {
	ctx, cancel := context.WithCancel(gs.Context())
	s := &wstream{wp: wp, ctx: ctx, sendc: make(chan *pb.WatchResponse, sendQueue), members: make(map[int64]*member)}
	defer func() {
		cancel() // first: unblocks groups sending to s
		s.close()
	}()
	recvErr := make(chan error, 1)
	go func() {
		if err := s.recvLoop(gs); err != nil {
			recvErr <- err
			cancel()
		}
	}()
	for {
		select {
		case r := <-s.sendc:
			if err := gs.Send(r); err != nil {
				return err
			}
		case <-ctx.Done():
			return watch.EndError(gs.Context(), recvErr)
		case <-wp.p.ctx.Done():
			return rpctypes.ErrGRPCStopped
		}
	}
}

// recvLoop serves the client's requests until the client closes its side
// (nil) or the stream fails.
func (s *wstream) recvLoop(gs pb.Watch_WatchServer) error {
	streamCtx := gs.Context()
	return watch.RecvRequests(gs,
		func(r *pb.WatchCreateRequest) { s.create(streamCtx, r) },
		func(id int64) { s.cancelWatch(streamCtx, id) },
		s.requestProgress)
}

// send queues r for the client; false when the stream is gone.
func (s *wstream) send(r *pb.WatchResponse) bool {
	select {
	case s.sendc <- r:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// refuse answers a create with a refusal, as a member does: created and
// canceled, watch ID -1, the reason, and the cluster's current header.
func (s *wstream) refuse(streamCtx context.Context, reason string) {
	s.send(&pb.WatchResponse{Header: s.wp.nowHeader(streamCtx), WatchId: clientv3.InvalidWatchID, Created: true, Canceled: true,
		CancelReason: reason})
}

// nowHeader is the cluster's current response header, read with a
// serializable range (with the client's token); without an answer, the
// newest revision the proxy has seen.
func (wp *watchProxy) nowHeader(streamCtx context.Context) *pb.ResponseHeader {
	ctx, cancel := context.WithTimeout(upstream(streamCtx), 5*time.Second)
	defer cancel()
	resp, err := wp.p.plainKV.Get(ctx, "\x00", clientv3.WithSerializable(), clientv3.WithCountOnly(), clientv3.WithLimit(1))
	if err == nil && resp.Header != nil {
		return resp.Header
	}
	return &pb.ResponseHeader{Revision: wp.p.lastRev.Load()}
}

// create serves a create request: join a compatible group or start one.
func (s *wstream) create(streamCtx context.Context, cr *pb.WatchCreateRequest) {
	wp := s.wp
	if cr.StartRevision < 0 {
		s.refuse(streamCtx, rpctypes.ErrCompacted.Error())
		return
	}
	if cr.WatchId != 0 {
		s.mu.Lock()
		_, dup := s.members[cr.WatchId]
		s.mu.Unlock()
		if dup {
			s.refuse(streamCtx, watch.ErrDuplicateID.Error())
			return
		}
	}
	m := &member{s: s, id: cr.WatchId, start: cr.StartRevision, fragment: cr.Fragment, progress: cr.ProgressNotify}
	for _, f := range cr.Filters {
		switch f {
		case pb.WatchCreateRequest_NOPUT:
			m.noPut = true
		case pb.WatchCreateRequest_NODELETE:
			m.noDelete = true
		}
	}
	gk := groupKey{key: string(cr.Key), end: string(cr.RangeEnd), prevKV: cr.PrevKv}
	checked := false
	for range createAttempts {
		m.resc = make(chan joinResult, 1)
		m.creator = false
		g, isNew := wp.pick(gk, m, streamCtx)
		if !isNew {
			if !checked {
				// The group's upstream watcher was created with another
				// client's token: check this one's read permission.
				reason, rev := wp.permission(streamCtx, cr)
				if reason != "" {
					g.unwait()
					s.refuse(streamCtx, reason)
					return
				}
				m.nowRev = rev
				checked = true
			}
			g.attach(m)
		}
		var res joinResult
		select {
		case res = <-m.resc:
		case <-s.ctx.Done():
			return
		}
		switch {
		case res.joined:
			return
		case res.retry:
			continue
		default:
			s.refuse(streamCtx, res.refusal)
			return
		}
	}
	s.refuse(streamCtx, "etcdserver: watch proxy could not start the watcher; retry")
}

// permission checks that the client of ctx may read the watched range, by
// a serializable keys-only range with its token; it returns the reason a
// member would give for refusing the watch ("" if allowed) and the
// revision the read saw (0 if unknown), which is where a watcher from
// "now" starts.
func (wp *watchProxy) permission(ctx context.Context, cr *pb.WatchCreateRequest) (string, int64) {
	key := string(cr.Key)
	opts := []clientv3.OpOption{clientv3.WithSerializable(), clientv3.WithKeysOnly(), clientv3.WithLimit(1)}
	if len(cr.RangeEnd) > 0 {
		opts = append(opts, clientv3.WithRange(string(cr.RangeEnd)))
	}
	if key == "" {
		key = "\x00"
	}
	resp, err := wp.p.plainKV.Get(upstream(ctx), key, opts...)
	if err == nil {
		return "", resp.Header.Revision
	}
	switch {
	case errors.Is(err, rpctypes.ErrInvalidAuthToken), errors.Is(err, rpctypes.ErrAuthOldRevision),
		errors.Is(err, rpctypes.ErrUserEmpty), errors.Is(err, rpctypes.ErrPermissionDenied):
		return err.Error(), 0
	}
	// The cluster cannot answer now: let the upstream watcher decide.
	return "", 0
}

// pick returns a group that m may join, registered as a waiter (m then
// attaches to it), or starts a new one with m pending in it.
func (wp *watchProxy) pick(gk groupKey, m *member, streamCtx context.Context) (*group, bool) {
	wp.mu.Lock()
	defer wp.mu.Unlock()
	for _, g := range wp.groups[gk] {
		g.mu.Lock()
		ok := g.fitsLocked(m)
		if ok {
			g.waiters++
		}
		g.mu.Unlock()
		if ok {
			return g, false
		}
	}
	ctx := wp.p.ctx
	if md, ok := metadata.FromIncomingContext(streamCtx); ok {
		if ts := md.Get(rpctypes.TokenFieldNameGRPC); len(ts) > 0 {
			ctx = metadata.AppendToOutgoingContext(ctx, rpctypes.TokenFieldNameGRPC, ts[0])
		}
	}
	if m.start > 0 {
		// An upstream stream of its own: a member answers a progress
		// request only when every watcher of the stream is synced, and
		// a watcher catching up on history or waiting for a future
		// revision is not; on the shared stream it would hold back the
		// progress of every other group.
		wp.seq++
		ctx = metadata.AppendToOutgoingContext(ctx, streamKey, strconv.FormatUint(wp.seq, 10))
	}
	ctx, stop := context.WithCancel(clientv3.WithRequireLeader(ctx))
	m.creator = true
	g := &group{wp: wp, key: gk, start: m.start, ctx: ctx, stop: stop,
		members: make(map[*member]struct{}), pending: []*member{m}, progressc: make(chan struct{})}
	wp.groups[gk] = append(wp.groups[gk], g)
	wp.nCreated.Add(1)
	wp.nUpstream.Add(1)
	wp.p.wg.Add(1)
	go g.run()
	return g, true
}

// fitsLocked reports whether m may join g: g is running, and has not
// delivered past m's start revision (or is still being created from the
// same start revision). Called with g.mu held.
func (g *group) fitsLocked(m *member) bool {
	if g.done {
		return false
	}
	if !g.created {
		return m.start == g.start
	}
	if m.start != 0 {
		return m.start > g.rev
	}
	// A watcher from "now" needs every event after the cluster's current
	// revision: a group that starts in the future lacks some.
	return g.rev <= g.nowLocked(m)
}

// nowLocked is the cluster's revision as m's create saw it, or the newest
// g has seen. Called with g.mu held.
func (g *group) nowLocked(m *member) int64 {
	if m.nowRev != 0 {
		return m.nowRev
	}
	if g.header != nil {
		return g.header.Revision
	}
	return g.rev
}

// attach joins m to g now if g is created, or queues it to join when g
// is; the outcome goes to m.resc.
func (g *group) attach(m *member) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.waiters--
	switch {
	case !g.fitsLocked(m):
		m.resc <- joinResult{retry: true}
		g.stopIfIdleLocked()
	case !g.created:
		g.pending = append(g.pending, m)
	default:
		// The created response carries the cluster's revision when the
		// create came, as from a member; a watcher from "now" starts
		// after it.
		now := g.nowLocked(m)
		if m.start == 0 {
			now = max(now, g.rev)
			m.start = now + 1
		}
		g.joinLocked(m, now)
	}
}

func (wp *watchProxy) remove(g *group) {
	wp.mu.Lock()
	defer wp.mu.Unlock()
	gs := wp.groups[g.key]
	for i, x := range gs {
		if x == g {
			gs = append(gs[:i:i], gs[i+1:]...)
			wp.nUpstream.Add(-1)
			break
		}
	}
	if len(gs) == 0 {
		delete(wp.groups, g.key)
	} else {
		wp.groups[g.key] = gs
	}
}

// run owns the upstream watcher of g.
func (g *group) run() {
	defer g.wp.p.wg.Done()
	opts := []clientv3.OpOption{clientv3.WithCreatedNotify(), clientv3.WithProgressNotify(), clientv3.WithFragment()}
	if g.key.end != "" {
		opts = append(opts, clientv3.WithRange(g.key.end))
	}
	if g.start > 0 {
		opts = append(opts, clientv3.WithRev(g.start))
	}
	if g.key.prevKV {
		opts = append(opts, clientv3.WithPrevKV())
	}
	reason := "etcdserver: watch proxy stopped"
	for wr := range g.wp.p.watcher.Watch(g.ctx, g.key.key, opts...) {
		if r, end := g.handle(&wr); end {
			reason = r
			break
		}
	}
	g.finish(reason)
}

// handle passes one upstream response to the members; end is true when the
// upstream watcher ended, with the reason to give them.
func (g *group) handle(wr *clientv3.WatchResponse) (string, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if wr.Header != nil && (wr.Header.ClusterId != 0 || wr.Header.Revision != 0) {
		g.header = proto.Clone(wr.Header).(*pb.ResponseHeader)
		g.wp.p.noteRev(wr.Header)
	}
	switch {
	case wr.CompactRevision != 0:
		// Compacted past the members' position: every member is
		// cancelled with the compact revision, as a member does.
		for m := range g.members {
			m.s.markGone(m)
			m.s.send(&pb.WatchResponse{Header: withRev(g.header, wr.Header.Revision), WatchId: m.id, Canceled: true, CompactRevision: wr.CompactRevision})
		}
		g.wp.nDownstream.Add(-int64(len(g.members)))
		g.members = map[*member]struct{}{}
		return "", true
	case wr.Canceled || wr.Err() != nil:
		reason := wr.CancelReason
		if reason == "" && wr.Err() != nil {
			reason = wr.Err().Error()
		}
		return reason, true
	case wr.Created:
		if g.created {
			return "", false // the client module resumed the watcher
		}
		g.created = true
		if g.start > 0 {
			g.rev = g.start - 1
		} else {
			g.rev = wr.Header.Revision
		}
		for _, m := range g.pending {
			if m.start == 0 {
				m.start = wr.Header.Revision + 1
			}
			g.joinLocked(m, wr.Header.Revision)
		}
		g.pending = nil
		return "", false
	case wr.IsProgressNotify():
		if wr.Header.Revision > g.rev {
			g.rev = wr.Header.Revision
		}
		close(g.progressc)
		g.progressc = make(chan struct{})
		for m := range g.members {
			if m.progress && m.start <= g.rev+1 {
				m.s.send(&pb.WatchResponse{Header: withRev(g.header, g.rev), WatchId: m.id})
			}
		}
		return "", false
	}
	for m := range g.members {
		evs := m.filter(wr.Events)
		if len(evs) == 0 {
			continue
		}
		g.wp.p.metrics.eventsCoalescing.Add(float64(len(evs)))
		r := &pb.WatchResponse{Header: withRev(g.header, wr.Header.Revision), WatchId: m.id, Events: evs}
		if !m.fragment {
			m.s.send(r)
			continue
		}
		for _, f := range fragments(r, g.wp.p.cfg.FragmentBytes) {
			m.s.send(f)
		}
	}
	if n := len(wr.Events); n > 0 {
		last := wr.Events[n-1].Kv.ModRevision
		g.rev = max(g.rev, last)
		g.eventRev = max(g.eventRev, last)
	}
	return "", false
}

// filter returns the events of evs that m receives.
func (m *member) filter(evs []*clientv3.Event) []*mvccpb.Event {
	out := make([]*mvccpb.Event, 0, len(evs))
	for _, e := range evs {
		if e.Kv.ModRevision < m.start {
			continue
		}
		if e.Type == mvccpb.PUT && m.noPut || e.Type == mvccpb.DELETE && m.noDelete {
			continue
		}
		out = append(out, (*mvccpb.Event)(e))
	}
	return out
}

// finish ends g after its upstream watcher ended: members still there are
// cancelled with reason.
func (g *group) finish(reason string) {
	g.wp.remove(g)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.done = true
	// Creates still waiting: the creator is refused as the cluster
	// refused it; the others try another group (the refusal may have
	// been about the creator's permissions).
	for _, m := range g.pending {
		m.resc <- joinResult{refusal: reason, retry: !m.creator}
	}
	g.pending = nil
	close(g.progressc)
	g.progressc = make(chan struct{})
	for m := range g.members {
		m.s.markGone(m)
		m.s.send(&pb.WatchResponse{Header: withRev(g.header, g.rev), WatchId: m.id, Canceled: true, CancelReason: reason})
	}
	g.wp.nDownstream.Add(-int64(len(g.members)))
	g.members = map[*member]struct{}{}
	g.stop()
}

// joinLocked adds m (its start revision set) to g and queues m's created
// response, at revision createdRev, before any event of g. Called with
// g.mu held, g created.
func (g *group) joinLocked(m *member, createdRev int64) {
	s := m.s
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		m.resc <- joinResult{joined: true} // nobody to answer
		g.stopIfIdleLocked()
		return
	}
	if m.id == 0 {
		for s.members[s.nextID] != nil {
			s.nextID++
		}
		m.id = s.nextID
		s.nextID++
	}
	s.members[m.id] = m
	s.mu.Unlock()
	m.g = g
	g.members[m] = struct{}{}
	g.wp.nDownstream.Add(1)
	s.send(&pb.WatchResponse{Header: withRev(g.header, createdRev), WatchId: m.id, Created: true})
	m.resc <- joinResult{joined: true}
}

// unwait ends the wait of a create that picked g and will not attach.
func (g *group) unwait() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.waiters--
	g.stopIfIdleLocked()
}

// stopIfIdleLocked stops g when no watcher uses or waits for it. Called
// with g.mu held.
func (g *group) stopIfIdleLocked() {
	if len(g.members) == 0 && len(g.pending) == 0 && g.waiters == 0 && !g.done {
		g.done = true
		g.stop()
		go g.wp.remove(g)
	}
}

// leave removes m from g; the last member out stops the upstream watcher.
// Called with g.mu held.
func (g *group) leaveLocked(m *member) {
	if _, ok := g.members[m]; !ok {
		return
	}
	delete(g.members, m)
	g.wp.nDownstream.Add(-1)
	g.stopIfIdleLocked()
}

// markGone records that the cluster ended m: its ID stays taken until the
// client cancels it. Called with m.g.mu held.
func (s *wstream) markGone(m *member) {
	s.mu.Lock()
	m.gone = true
	s.mu.Unlock()
}

// cancelWatch serves a cancel request: like a member, nothing for an
// unknown ID.
func (s *wstream) cancelWatch(streamCtx context.Context, id int64) {
	s.mu.Lock()
	m := s.members[id]
	s.mu.Unlock()
	if m == nil {
		return
	}
	// The canceled response carries the cluster's current revision, as
	// from a member (and at least that of the last event sent).
	now := s.wp.nowHeader(streamCtx)
	g := m.g
	g.mu.Lock()
	s.mu.Lock()
	delete(s.members, id)
	s.mu.Unlock()
	g.leaveLocked(m)
	h := now
	if g.header != nil {
		h = withRev(g.header, max(now.Revision, g.eventRev))
	}
	s.send(&pb.WatchResponse{Header: h, WatchId: id, Canceled: true})
	g.mu.Unlock()
}

// close removes the stream's watchers from their groups.
func (s *wstream) close() {
	s.mu.Lock()
	s.closed = true
	ms := s.members
	s.members = map[int64]*member{}
	s.mu.Unlock()
	for _, m := range ms {
		m.g.mu.Lock()
		m.g.leaveLocked(m)
		m.g.mu.Unlock()
	}
}

// requestProgress serves a progress request. The upstream watchers of the
// stream's groups are asked for progress; once each has reported (so each
// has handed its members every event up to its revision), the stream gets a
// response with watch ID -1 at the lowest of those revisions. As from a
// member, nothing comes while an upstream watcher is not synced, and
// nothing for a stream without watchers. One request is served at a time;
// requests meanwhile share its answer.
func (s *wstream) requestProgress() {
	s.mu.Lock()
	if s.progressActive {
		s.mu.Unlock()
		return
	}
	groups := map[*group]struct{}{}
	for _, m := range s.members {
		if !m.gone {
			groups[m.g] = struct{}{}
		}
	}
	if len(groups) == 0 {
		s.mu.Unlock()
		return
	}
	s.progressActive = true
	s.mu.Unlock()
	go func() {
		defer func() {
			s.mu.Lock()
			s.progressActive = false
			s.mu.Unlock()
		}()
		waits := make(map[*group]chan struct{}, len(groups))
		for g := range groups {
			g.mu.Lock()
			waits[g] = g.progressc
			g.mu.Unlock()
		}
		for g := range groups {
			if err := s.wp.p.watcher.RequestProgress(g.ctx); err != nil {
				s.wp.p.lg.Debug("upstream progress request failed", zap.Error(err))
				return
			}
		}
		var rev int64 = -1
		var hdr *pb.ResponseHeader
		for g, c := range waits {
			select {
			case <-c:
			case <-s.ctx.Done():
				return
			}
			g.mu.Lock()
			if rev < 0 || g.rev < rev {
				rev = g.rev
			}
			if g.header != nil {
				hdr = g.header
			}
			g.mu.Unlock()
		}
		s.send(&pb.WatchResponse{Header: withRev(hdr, rev), WatchId: clientv3.InvalidWatchID})
	}()
}

// withRev returns a copy of h with revision rev.
func withRev(h *pb.ResponseHeader, rev int64) *pb.ResponseHeader {
	if h == nil {
		return &pb.ResponseHeader{Revision: rev}
	}
	c := proto.Clone(h).(*pb.ResponseHeader)
	c.Revision = rev
	return c
}

// fragments splits r into responses of at most max bytes each (each with
// at least one event), all but the last marked as fragments.
func fragments(r *pb.WatchResponse, max int) []*pb.WatchResponse {
	if len(r.Events) < 2 || proto.Size(r) < max {
		return []*pb.WatchResponse{r}
	}
	var out []*pb.WatchResponse
	evs := r.Events
	for len(evs) > 0 {
		cur := &pb.WatchResponse{Header: r.Header, WatchId: r.WatchId, Fragment: true}
		size := proto.Size(cur)
		n := 0
		for n < len(evs) {
			es := proto.Size(evs[n]) + 8
			if n > 0 && size+es > max {
				break
			}
			size += es
			n++
		}
		cur.Events = evs[:n]
		evs = evs[n:]
		out = append(out, cur)
	}
	out[len(out)-1].Fragment = false
	return out
}
