package mvcc

import (
	"strconv"
	"sync"
)

// countCacheSize bounds the entries of a countCache, and countCacheKeyMax
// the bytes of the two keys of one entry (ranges over longer keys are not
// remembered), so the cache holds at most about 16 MiB.
const (
	countCacheSize   = 4096
	countCacheKeyMax = 4096
)

// countCache remembers how many live keys a range holds at a revision, so
// that paginated reads do not count the whole rest of the range again for
// every page.
//
// etcd answers every limited range with the count of the whole range, and
// Kubernetes lists page by page (limit 500) at a fixed revision, each page
// starting right after the last key of the one before. Without an index of
// all keys in memory, counting the rest of a range is a scan of it, so a
// list of n keys would scan O(n²/limit) keys. After a limited range with a
// total count, the keys after its last returned key hold exactly the count
// minus what was returned: the next page's count is known without a scan.
//
// The view of the store at a revision never changes (later writes get later
// revisions; compaction only refuses reads below the compacted revision),
// so an entry never goes stale. Safe for concurrent use.
type countCache struct {
	mu      sync.Mutex
	entries map[string]int
	// order is a ring of the keys in insertion order, for eviction.
	order []string
	next  int
}

func newCountCache() *countCache {
	return &countCache{entries: make(map[string]int), order: make([]string, countCacheSize)}
}

func countCacheKey(start, end []byte, rev int64) string {
	k := make([]byte, 0, len(start)+len(end)+24)
	k = strconv.AppendInt(k, rev, 10)
	k = append(k, '/')
	k = strconv.AppendInt(k, int64(len(start)), 10)
	k = append(k, '/')
	k = append(k, start...)
	return string(append(k, end...))
}

// get returns the number of live keys in [start, end) at rev, if known.
func (c *countCache) get(start, end []byte, rev int64) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.entries[countCacheKey(start, end, rev)]
	return n, ok
}

// put records that [start, end) holds n live keys at rev.
func (c *countCache) put(start, end []byte, rev int64, n int) {
	if len(start)+len(end) > countCacheKeyMax {
		return
	}
	k := countCacheKey(start, end, rev)
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[k]; ok {
		c.entries[k] = n
		return
	}
	if old := c.order[c.next]; old != "" {
		delete(c.entries, old)
	}
	c.order[c.next] = k
	c.next = (c.next + 1) % len(c.order)
	c.entries[k] = n
}

// reset forgets every entry.
func (c *countCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.entries)
	clear(c.order)
	c.next = 0
}

// rememberTail records, after a limited range over [key, end) at rev that
// returned kvs (live keys, in order) and counted total live keys, the count
// of the range after each of the last two returned keys: a client pages on
// from right after the last key it received, which is the last or, when it
// asked for one more key than it shows (to learn whether there are more),
// the second last.
func (c *countCache) rememberTail(lastKeys [][]byte, end []byte, rev int64, total, returned int) {
	for i, k := range lastKeys {
		// lastKeys[len-1] is the last returned key, with returned keys up to
		// and including it.
		upTo := returned - (len(lastKeys) - 1 - i)
		c.put(append(append([]byte(nil), k...), 0), end, rev, total-upTo)
	}
}
