// Package watch is keel's watcher hub: it delivers every committed change to
// the watchers whose keys it touches, with etcd's guarantees. Events reach a
// watcher ordered by revision, never twice, all events of one revision in
// one response (unless the watcher asked for fragments), and none is ever
// skipped: a watcher resumed at the revision after the last one it saw gets
// exactly the rest.
//
// Watchers are synced or unsynced. The apply loop hands each committed batch
// of changes to Notify, which queues them for every synced watcher without
// blocking: a watcher whose stream is too far behind to take more becomes
// unsynced instead. A background syncer catches unsynced watchers up, from
// a bounded in-memory window of recent changes or from the store's
// by-revision log, and makes them synced again. Slow watchers therefore
// never hold up writes or other watchers.
package watch

import (
	"context"
	"errors"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.uber.org/zap"

	"github.com/keeldb/keel/metrics"
	"github.com/keeldb/keel/mvcc"
)

const (
	// recentEvents and recentBytes bound the in-memory window of recent
	// changes the syncer catches watchers up from without reading the
	// store. The window is trimmed to them once it holds twice as much.
	recentEvents = 8192
	recentBytes  = 16 << 20
	// historyEvents bounds the changes one catch-up pass reads from the
	// store.
	historyEvents = 10000
	// watchersPerSync bounds the watchers one catch-up pass serves, so that
	// a pass holds the hub's lock only briefly.
	watchersPerSync = 512
	// syncInterval is how often the syncer retries watchers it could not
	// serve (their stream was full) when nothing wakes it earlier.
	syncInterval = 100 * time.Millisecond
	// DefaultProgressInterval is etcd's default interval of progress
	// notifications.
	DefaultProgressInterval = 10 * time.Minute
)

// Config configures a Hub.
type Config struct {
	// ProgressInterval is how often watchers created with progress_notify
	// get a progress notification; 0 means DefaultProgressInterval.
	ProgressInterval time.Duration
	// MaxRequestBytes is the size above which the responses of watchers
	// created with fragment are split.
	MaxRequestBytes int
	// Metrics counts the events sent to watchers; may be nil.
	Metrics *metrics.Metrics
	Logger  *zap.Logger
}

// Hub fans committed changes out to watchers.
//
// Concurrency contract: Notify is called by the apply loop only, after the
// batch holding the changes is committed and the store publishes its
// revision, and in revision order. Streams may be used from any goroutine.
type Hub struct {
	store *mvcc.Store
	cfg   Config
	lg    *zap.Logger

	mu sync.Mutex
	// notified is the revision up to which changes have been handed to
	// Notify; every event up to it has been queued for the synced
	// watchers that want it.
	notified int64
	synced   group
	unsynced map[*watcher]struct{}
	// recent holds every change of revisions recentFrom..notified.
	recent     []*event
	recentFrom int64
	recentSize int // bytes of keys and values in recent
	recentMax  int // recentEvents; smaller in tests
	streams    map[*Stream]struct{}

	// pendingEvents counts the events queued on streams and not yet taken
	// to be sent.
	pendingEvents atomic.Int64

	kick  chan struct{}
	stopc chan struct{}
	wg    sync.WaitGroup
}

// NewHub returns a hub over store, whose current revision it starts from,
// and starts its syncer. Stop it with Stop.
func NewHub(store *mvcc.Store, cfg Config) *Hub {
	if cfg.ProgressInterval <= 0 {
		cfg.ProgressInterval = DefaultProgressInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	rev := store.Rev()
	h := &Hub{
		store:      store,
		cfg:        cfg,
		lg:         cfg.Logger,
		notified:   rev,
		synced:     newGroup(),
		unsynced:   make(map[*watcher]struct{}),
		recentFrom: rev + 1,
		recentMax:  recentEvents,
		streams:    make(map[*Stream]struct{}),
		kick:       make(chan struct{}, 1),
		stopc:      make(chan struct{}),
	}
	h.wg.Add(1)
	go h.syncLoop()
	return h
}

// Stop closes every stream and stops the syncer.
func (h *Hub) Stop() {
	h.mu.Lock()
	select {
	case <-h.stopc:
		h.mu.Unlock()
		return
	default:
	}
	close(h.stopc)
	for s := range h.streams {
		h.closeStreamLocked(s)
	}
	h.mu.Unlock()
	h.wg.Wait()
}

// Rev returns the revision up to which changes have been delivered to
// synced watchers.
func (h *Hub) Rev() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.notified
}

// Notify hands the changes of one committed batch, evs, to the watchers;
// rev is the store's revision after the batch. It never blocks on a
// watcher.
func (h *Hub) Notify(rev int64, evs []mvcc.Event) {
	items := make([]*event, len(evs))
	for i, e := range evs {
		items[i] = &event{ev: &mvccpb.Event{Type: e.Type, Kv: e.KV}}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if rev <= h.notified {
		return
	}
	h.remember(items, rev)
	if h.synced.n > 0 && len(items) > 0 {
		h.fanOut(items, rev)
	}
	h.notified = rev
}

// remember adds items to the window of recent changes. Once the window
// holds twice recentMax events or recentBytes bytes, it drops whole
// revisions from its start until it is back within those bounds; trimming
// in halves keeps the cost per change constant.
func (h *Hub) remember(items []*event, rev int64) {
	h.recent = append(h.recent, items...)
	for _, it := range items {
		h.recentSize += it.size()
	}
	if len(h.recent) <= 2*h.recentMax && h.recentSize <= 2*recentBytes {
		return
	}
	cut := 0
	for cut < len(h.recent) && (len(h.recent)-cut > h.recentMax || h.recentSize > recentBytes) {
		// Never split a revision: drop all of its changes together.
		r := h.recent[cut].rev()
		for cut < len(h.recent) && h.recent[cut].rev() == r {
			h.recentSize -= h.recent[cut].size()
			cut++
		}
	}
	if cut == len(h.recent) {
		h.recent, h.recentSize = nil, 0
		h.recentFrom = rev + 1
		return
	}
	h.recentFrom = h.recent[cut].rev()
	h.recent = append([]*event(nil), h.recent[cut:]...)
}

// fanOut queues items for the synced watchers that want them; a watcher
// whose stream is full becomes unsynced at the first revision of items.
func (h *Hub) fanOut(items []*event, rev int64) {
	batches := make(map[*watcher][]*event)
	for _, it := range items {
		h.synced.match(it.ev.Kv.Key, func(w *watcher) {
			if w.accepts(it) {
				batches[w] = append(batches[w], it)
			}
		})
	}
	first := items[0].rev()
	for w, b := range batches {
		if w.stream.pushEvents(w, b, rev) {
			continue
		}
		h.synced.remove(w)
		w.synced = false
		w.minRev = max(w.minRev, first)
		h.unsynced[w] = struct{}{}
		h.wakeSyncer()
	}
}

func (h *Hub) wakeSyncer() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// add registers a new watcher: synced when it waits only for revisions
// not notified yet, unsynced (to be caught up) otherwise.
func (h *Hub) add(w *watcher) {
	if w.startRev == 0 || w.startRev > h.notified {
		w.minRev = max(h.notified+1, w.startRev)
		w.synced = true
		h.synced.add(w)
		return
	}
	w.minRev = w.startRev
	h.unsynced[w] = struct{}{}
	h.wakeSyncer()
}

// remove forgets w.
func (h *Hub) remove(w *watcher) {
	w.gone = true
	if w.synced {
		h.synced.remove(w)
	} else {
		delete(h.unsynced, w)
	}
}

func (h *Hub) syncLoop() {
	defer h.wg.Done()
	t := time.NewTicker(syncInterval)
	defer t.Stop()
	for {
		select {
		case <-h.kick:
		case <-t.C:
		case <-h.stopc:
			return
		}
		// Keep going while passes make progress; a pass that could serve
		// nobody waits for the next kick or tick.
		for range 1000 {
			if !h.syncOnce() {
				break
			}
			select {
			case <-h.stopc:
				return
			default:
			}
		}
	}
}

// syncOnce runs one catch-up pass over up to watchersPerSync unsynced
// watchers and reports whether it made progress with watchers left to
// catch up.
func (h *Hub) syncOnce() bool {
	h.mu.Lock()
	if len(h.unsynced) == 0 {
		h.mu.Unlock()
		return false
	}
	compactRev := h.store.CompactRev()
	minRev := int64(math.MaxInt64)
	chosen := make([]*watcher, 0, min(len(h.unsynced), watchersPerSync))
	for w := range h.unsynced {
		if w.minRev < compactRev {
			// Behind the compaction: etcd cancels it with the compacted
			// revision, and the client reports ErrCompacted. Like etcd,
			// the watch ID stays taken on the stream until the client
			// cancels it.
			h.remove(w)
			// etcd's compacted response has no header revision.
			w.stream.push(&pending{watchID: w.id, canceled: true, compactRev: compactRev})
			continue
		}
		chosen = append(chosen, w)
		minRev = min(minRev, w.minRev)
		if len(chosen) == watchersPerSync {
			break
		}
	}
	recentFrom := h.recentFrom
	h.mu.Unlock()
	if len(chosen) == 0 {
		return false
	}

	var (
		hist []*event
		last = minRev - 1
	)
	if minRev < recentFrom {
		evs, lastRead, err := h.store.History(context.Background(), minRev, recentFrom-1, historyEvents)
		if err != nil {
			if !errors.Is(err, mvcc.ErrCompacted) {
				h.lg.Warn("failed to read the revision log for watchers catching up", zap.Int64("from-revision", minRev), zap.Error(err))
				return false
			}
			// A compaction passed minRev since the check: the next pass
			// cancels the watchers behind it.
			return true
		}
		hist = make([]*event, len(evs))
		for i, e := range evs {
			hist[i] = &event{ev: &mvccpb.Event{Type: e.Type, Kv: e.KV}}
		}
		last = lastRead
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	progress := false
	// Watchers that watch the same keys from the same revision (typically
	// many watchers of one prefix that fell behind together) share one
	// filtered batch.
	type batchKey struct {
		keys            string
		minRev          int64
		noPut, noDelete bool
	}
	batches := make(map[batchKey][]*event)
	for _, w := range chosen {
		if w.gone || w.synced {
			continue
		}
		upTo := max(last, w.minRev-1)
		finish := upTo+1 >= h.recentFrom
		bk := batchKey{w.keysID, w.minRev, w.noPut, w.noDelete}
		batch, ok := batches[bk]
		if !ok {
			if w.minRev <= last {
				batch = w.filter(since(hist, w.minRev), nil)
			}
			if finish {
				batch = w.filter(since(h.recent, w.minRev), batch)
			}
			batches[bk] = batch
		}
		if finish {
			upTo = h.notified
		}
		if len(batch) > 0 && !w.stream.pushEvents(w, batch, upTo) {
			continue // the stream is full; retry later
		}
		progress = true
		w.minRev = max(w.minRev, upTo+1)
		if finish {
			delete(h.unsynced, w)
			w.synced = true
			h.synced.add(w)
		}
	}
	return progress && len(h.unsynced) > 0
}

// since returns the events of evs (in revision order) from revision rev on.
func since(evs []*event, rev int64) []*event {
	i := sort.Search(len(evs), func(i int) bool { return evs[i].rev() >= rev })
	return evs[i:]
}

// closeStreamLocked removes every watcher of s and wakes its reader.
func (h *Hub) closeStreamLocked(s *Stream) {
	if s.closed {
		return
	}
	s.closed = true
	for _, w := range s.watchers {
		h.remove(w)
	}
	s.watchers = nil
	delete(h.streams, s)
	s.signal()
}
