package grpcproxy

import (
	"fmt"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

func rr(key, end string, rev int64) *pb.RangeRequest {
	r := &pb.RangeRequest{Key: []byte(key), Revision: rev}
	if end != "" {
		r.RangeEnd = []byte(end)
	}
	return r
}

func resp(n int64) *pb.RangeResponse { return &pb.RangeResponse{Count: n} }

func TestCacheInvalidatesOverlappingRanges(t *testing.T) {
	cases := []struct {
		name     string
		req      *pb.RangeRequest
		key, end string
		dropped  bool
	}{
		{"same key", rr("a", "", 0), "a", "", true},
		{"other key", rr("a", "", 0), "b", "", false},
		{"key in range", rr("a", "c", 0), "b", "", true},
		{"key at range end", rr("a", "c", 0), "c", "", false},
		{"range over key", rr("b", "", 0), "a", "c", true},
		{"from key", rr("a", "\x00", 0), "zzz", "", true},
		{"delete from key", rr("q", "", 0), "p", "\x00", true},
		{"delete before", rr("q", "", 0), "a", "p", false},
		{"prefix key", rr("ab", "", 0), "a", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCache(10)
			c.add(c.begin(), tc.req, resp(1))
			var end []byte
			if tc.end != "" {
				end = []byte(tc.end)
			}
			c.invalidate([]byte(tc.key), end)
			_, ok, _ := c.get(tc.req)
			if ok == tc.dropped {
				t.Fatalf("cached after invalidating [%q, %q): %v, want %v", tc.key, tc.end, ok, !tc.dropped)
			}
		})
	}
}

func TestCacheRefusesAResponseReadBeforeAnInvalidation(t *testing.T) {
	c := newCache(10)
	since := c.begin()
	c.invalidate([]byte("a"), nil) // a write lands while the read is in flight
	c.add(since, rr("a", "", 0), resp(1))
	if _, ok, _ := c.get(rr("a", "", 0)); ok {
		t.Fatal("a response read before the write was cached")
	}
	// A write elsewhere does not matter.
	since = c.begin()
	c.invalidate([]byte("b"), nil)
	c.add(since, rr("a", "", 0), resp(2))
	if r, ok, _ := c.get(rr("a", "", 0)); !ok || r.Count != 2 {
		t.Fatal("a response unaffected by the write was not cached")
	}
	// Beyond the window nothing is known: not cached.
	since = c.begin()
	for i := range invalidationWindow + 1 {
		c.invalidate([]byte(fmt.Sprint("z", i)), nil)
	}
	c.add(since, rr("b", "", 0), resp(3))
	if _, ok, _ := c.get(rr("b", "", 0)); ok {
		t.Fatal("a response older than the invalidation window was cached")
	}
}

func TestCacheIsBoundedLRU(t *testing.T) {
	c := newCache(3)
	for _, k := range []string{"a", "b", "c"} {
		c.add(c.begin(), rr(k, "", 0), resp(1))
	}
	c.get(rr("a", "", 0)) // a is now the most recent
	c.add(c.begin(), rr("d", "", 0), resp(1))
	if c.size() != 3 {
		t.Fatalf("size %d, want 3", c.size())
	}
	if _, ok, _ := c.get(rr("b", "", 0)); ok {
		t.Fatal("the least recently used entry stayed")
	}
	for _, k := range []string{"a", "c", "d"} {
		if _, ok, _ := c.get(rr(k, "", 0)); !ok {
			t.Fatalf("%s evicted", k)
		}
	}
}

func TestCacheKeysBySerializableRequest(t *testing.T) {
	c := newCache(3)
	lin := rr("a", "", 0)
	c.add(c.begin(), lin, resp(5))
	ser := rr("a", "", 0)
	ser.Serializable = true
	if r, ok, _ := c.get(ser); !ok || r.Count != 5 {
		t.Fatal("a linearizable answer does not serve the serializable request")
	}
	other := rr("a", "", 0)
	other.KeysOnly = true
	if _, ok, _ := c.get(other); ok {
		t.Fatal("a keys-only request got the full answer")
	}
}

func TestCacheCompactionFailsOlderRevisions(t *testing.T) {
	c := newCache(3)
	c.add(c.begin(), rr("a", "", 4), resp(1))
	c.compact(6)
	if _, _, compacted := c.get(rr("a", "", 4)); !compacted {
		t.Fatal("a read below the compaction is not refused")
	}
	if _, _, compacted := c.get(rr("a", "", 6)); compacted {
		t.Fatal("a read at the compaction revision is refused")
	}
	c.add(c.begin(), rr("a", "", 5), resp(1))
	if c.size() != 1 {
		t.Fatal("a response below the compaction was cached")
	}
}
