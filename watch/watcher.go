package watch

import (
	"bytes"
	"encoding/binary"
	"sync"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// watcher is one watch on a stream. All fields but the immutable ones are
// guarded by the hub's mutex.
type watcher struct {
	id     int64
	stream *Stream

	// key and end select the watched keys as in etcd: end == nil watches
	// key alone, an empty non-nil end every key from key on, otherwise
	// [key, end).
	key, end []byte
	// keysID identifies (key, end) among watchers.
	keysID   string
	startRev int64

	noPut, noDelete bool
	prevKV          bool
	fragment        bool
	progress        bool

	// minRev is the lowest revision whose events the watcher has not been
	// offered yet. For a synced watcher it is at most notified+1, except
	// for a watcher created on a future revision.
	minRev int64
	synced bool
	// gone is set once the watcher is cancelled, compacted or its stream
	// closed; the syncer skips it.
	gone bool
	// sentEvents records that events were queued since the last progress
	// tick, which makes the next progress notification unnecessary.
	sentEvents bool
}

func (w *watcher) contains(k []byte) bool {
	switch {
	case w.end == nil:
		return bytes.Equal(k, w.key)
	case len(w.end) == 0:
		return bytes.Compare(k, w.key) >= 0
	default:
		return bytes.Compare(k, w.key) >= 0 && bytes.Compare(k, w.end) < 0
	}
}

// accepts reports whether the watcher wants ev, given its filters and the
// revision it waits for.
func (w *watcher) accepts(e *event) bool {
	if e.ev.Kv.ModRevision < w.minRev {
		return false
	}
	if e.ev.Type == mvccpb.PUT {
		return !w.noPut
	}
	return !w.noDelete
}

// filter returns the events of evs the watcher wants, in order.
func (w *watcher) filter(evs []*event, dst []*event) []*event {
	for _, e := range evs {
		if w.accepts(e) && w.contains(e.ev.Kv.Key) {
			dst = append(dst, e)
		}
	}
	return dst
}

// event is one change shared by every watcher it is delivered to. The
// previous version of the key, needed only by watchers that asked for it,
// is read once, on first use, outside the hub's lock.
type event struct {
	ev *mvccpb.Event

	prevOnce sync.Once
	withPrev *mvccpb.Event
}

func (e *event) rev() int64 { return e.ev.Kv.ModRevision }

// size approximates the memory the event's data holds.
func (e *event) size() int { return len(e.ev.Kv.Key) + len(e.ev.Kv.Value) }

// group indexes watchers by what they watch, so that an event finds its
// watchers without visiting every watcher: single keys by map, ranges by
// their distinct (key, end) pair.
type group struct {
	keys   map[string]map[*watcher]struct{}
	ranges map[string]*rangeWatchers
	n      int
}

type rangeWatchers struct {
	sample   *watcher // any member, for its key and end
	watchers map[*watcher]struct{}
}

func newGroup() group {
	return group{keys: make(map[string]map[*watcher]struct{}), ranges: make(map[string]*rangeWatchers)}
}

// keysID encodes what w watches. The length prefix keeps ("a", "bc") and
// ("ab", "c") apart, the marker a single key (nil end) from every key from
// it on (empty end).
func keysID(w *watcher) string {
	b := make([]byte, 0, 5+len(w.key)+len(w.end))
	b = binary.BigEndian.AppendUint32(b, uint32(len(w.key)))
	b = append(b, w.key...)
	if w.end == nil {
		return string(append(b, 0))
	}
	b = append(b, 1)
	return string(append(b, w.end...))
}

func (g *group) add(w *watcher) {
	g.n++
	if w.end == nil {
		set := g.keys[string(w.key)]
		if set == nil {
			set = make(map[*watcher]struct{})
			g.keys[string(w.key)] = set
		}
		set[w] = struct{}{}
		return
	}
	id := w.keysID
	rw := g.ranges[id]
	if rw == nil {
		rw = &rangeWatchers{sample: w, watchers: make(map[*watcher]struct{})}
		g.ranges[id] = rw
	}
	rw.watchers[w] = struct{}{}
}

func (g *group) remove(w *watcher) {
	if w.end == nil {
		set := g.keys[string(w.key)]
		if _, ok := set[w]; !ok {
			return
		}
		delete(set, w)
		if len(set) == 0 {
			delete(g.keys, string(w.key))
		}
		g.n--
		return
	}
	id := w.keysID
	rw := g.ranges[id]
	if rw == nil {
		return
	}
	if _, ok := rw.watchers[w]; !ok {
		return
	}
	delete(rw.watchers, w)
	g.n--
	if len(rw.watchers) == 0 {
		delete(g.ranges, id)
	} else if rw.sample == w {
		for o := range rw.watchers {
			rw.sample = o
			break
		}
	}
}

// match calls f for every watcher whose keys contain k.
func (g *group) match(k []byte, f func(*watcher)) {
	for w := range g.keys[string(k)] {
		f(w)
	}
	for _, rw := range g.ranges {
		if rw.sample.contains(k) {
			for w := range rw.watchers {
				f(w)
			}
		}
	}
}
