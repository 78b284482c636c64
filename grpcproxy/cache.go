package grpcproxy

import (
	"bytes"
	"container/list"
	"sync"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"
)

// invalidationWindow is how many recent invalidations the cache remembers
// to refuse responses read before them (see cache.add).
const invalidationWindow = 256

// cache is a bounded LRU of range responses keyed by the (serializable)
// request. Writes through the proxy invalidate the entries whose key range
// they touch; a compaction makes requests below it fail as the cluster
// would. Its methods are safe for concurrent use.
type cache struct {
	mu      sync.Mutex
	max     int
	lru     *list.List // of *cacheEntry, most recent first
	entries map[string]*list.Element
	// compactRev is the highest revision compacted through the proxy.
	compactRev int64
	// seq counts invalidations; recent holds the last invalidationWindow
	// of them, so that add can tell whether a response read before an
	// invalidation may be stale.
	seq    uint64
	recent []invalidation
}

type cacheEntry struct {
	key        string
	start, end []byte // the request's key range, end nil for one key
	resp       *pb.RangeResponse
}

type invalidation struct {
	seq        uint64
	start, end []byte
}

func newCache(max int) *cache {
	return &cache{max: max, lru: list.New(), entries: make(map[string]*list.Element)}
}

// cacheKey is the identity of a range request: the request with
// Serializable set, serialized deterministically.
func cacheKey(r *pb.RangeRequest) string {
	req := proto.Clone(r).(*pb.RangeRequest)
	req.Serializable = true
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(req)
	if err != nil {
		return ""
	}
	return string(b)
}

// get returns the cached response to r, if any; errCacheCompacted when r
// reads a revision compacted through the proxy.
func (c *cache) get(r *pb.RangeRequest) (*pb.RangeResponse, bool, bool) {
	k := cacheKey(r)
	c.mu.Lock()
	defer c.mu.Unlock()
	if r.Revision > 0 && r.Revision < c.compactRev {
		return nil, false, true
	}
	e, ok := c.entries[k]
	if !ok {
		return nil, false, false
	}
	c.lru.MoveToFront(e)
	return e.Value.(*cacheEntry).resp, true, false
}

// begin returns the token a reader passes to add: the invalidations made
// after it refuse the response.
func (c *cache) begin() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seq
}

// add caches resp for r, unless a write invalidated r's range after the
// read began (since) or r reads a compacted revision. A read that began so
// long ago that the window forgot the invalidations since is not cached.
func (c *cache) add(since uint64, r *pb.RangeRequest, resp *pb.RangeResponse) {
	k := cacheKey(r)
	start, end := normRange(r.Key, r.RangeEnd)
	c.mu.Lock()
	defer c.mu.Unlock()
	if r.Revision > 0 && r.Revision < c.compactRev {
		return
	}
	if c.seq-since > uint64(len(c.recent)) {
		return
	}
	for _, inv := range c.recent {
		if inv.seq > since && overlaps(start, end, inv.start, inv.end) {
			return
		}
	}
	if e, ok := c.entries[k]; ok {
		e.Value.(*cacheEntry).resp = resp
		c.lru.MoveToFront(e)
		return
	}
	c.entries[k] = c.lru.PushFront(&cacheEntry{key: k, start: start, end: end, resp: resp})
	for c.lru.Len() > c.max {
		last := c.lru.Back()
		c.lru.Remove(last)
		delete(c.entries, last.Value.(*cacheEntry).key)
	}
}

// invalidate drops every entry whose range overlaps [key, rangeEnd).
func (c *cache) invalidate(key, rangeEnd []byte) {
	start, end := normRange(key, rangeEnd)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	c.recent = append(c.recent, invalidation{seq: c.seq, start: start, end: end})
	if len(c.recent) > invalidationWindow {
		c.recent = append(c.recent[:0], c.recent[len(c.recent)-invalidationWindow:]...)
	}
	for e := c.lru.Front(); e != nil; {
		next := e.Next()
		ce := e.Value.(*cacheEntry)
		if overlaps(start, end, ce.start, ce.end) {
			c.lru.Remove(e)
			delete(c.entries, ce.key)
		}
		e = next
	}
}

// compact records a compaction at rev: reads below it fail from now on.
func (c *cache) compact(rev int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if rev > c.compactRev {
		c.compactRev = rev
	}
}

// clear drops every entry and refuses the reads in progress.
func (c *cache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq += invalidationWindow + 1
	c.recent = c.recent[:0]
	c.lru.Init()
	clear(c.entries)
}

func (c *cache) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// normRange returns the half-open range [start, end) of an etcd key and
// range_end: end nil means the single key, an empty end means no upper
// bound (etcd's "\x00" range end).
func normRange(key, rangeEnd []byte) (start, end []byte) {
	if len(key) == 0 {
		key = []byte{0}
	}
	switch {
	case len(rangeEnd) == 0:
		// One key: [key, key+"\x00").
		return key, append(bytes.Clone(key), 0)
	case len(rangeEnd) == 1 && rangeEnd[0] == 0:
		return key, []byte{}
	}
	return key, rangeEnd
}

// overlaps reports whether [s1, e1) and [s2, e2) intersect; an empty end
// is unbounded.
func overlaps(s1, e1, s2, e2 []byte) bool {
	below := func(s, e []byte) bool { return len(e) == 0 || bytes.Compare(s, e) < 0 }
	return below(s1, e2) && below(s2, e1)
}
