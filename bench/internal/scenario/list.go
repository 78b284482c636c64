package scenario

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// getter is the part of clientv3.KV that a list uses.
type getter interface {
	Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error)
}

// listPager pages through the keys under a prefix the way a Kubernetes
// list pages through etcd: the first page is a linearizable Get with a
// limit at the current revision; each following page starts just after
// the last key returned, at the first page's revision, so that the pages
// together are one consistent view. It checks that the keys come in order
// and that a page that announces more has keys. One goroutine uses it.
type listPager struct {
	end   string
	limit int64
	// next is the first key of the next page; rev the first page's
	// revision (0 before it); last the last key returned.
	next, last string
	rev        int64
	// pages counts the pages returned; count is the first page's Count:
	// the number of keys in the whole range at its revision.
	pages int
	count int64
	// done is set once the last page has been returned.
	done bool
}

func newListPager(prefix string, limit int) *listPager {
	return &listPager{end: clientv3.GetPrefixRangeEnd(prefix), limit: int64(limit), next: prefix}
}

// page requests the next page, bounded by requestTimeout, and returns how
// many keys it held and how long the request took. After a request that
// failed the pager can retry the page; after a page that failed a check it
// is unusable.
func (p *listPager) page(ctx context.Context, kv getter) (keys int, took time.Duration, err error) {
	if p.done {
		return 0, 0, fmt.Errorf("list page %d: the list has ended", p.pages+1)
	}
	opts := []clientv3.OpOption{clientv3.WithRange(p.end), clientv3.WithLimit(p.limit)}
	if p.rev != 0 {
		opts = append(opts, clientv3.WithRev(p.rev))
	}
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	t0 := time.Now()
	resp, err := kv.Get(rctx, p.next, opts...)
	took = time.Since(t0)
	cancel()
	if err != nil {
		return 0, took, fmt.Errorf("list page %d from %q: %w", p.pages+1, p.next, err)
	}
	if p.pages == 0 {
		p.rev, p.count = resp.Header.Revision, resp.Count
	}
	p.pages++
	for _, kv := range resp.Kvs {
		if k := string(kv.Key); k <= p.last {
			return 0, took, fmt.Errorf("list page %d: key %q after %q", p.pages, k, p.last)
		}
		p.last = string(kv.Key)
	}
	switch {
	case !resp.More:
		p.done = true
	case len(resp.Kvs) == 0:
		return 0, took, fmt.Errorf("list page %d: no keys but More", p.pages)
	default:
		p.next = p.last + "\x00"
	}
	return len(resp.Kvs), took, nil
}

// listResult is what one full paginated list returned.
type listResult struct {
	keys, pages int
	// count is the first page's Count: the number of keys in the whole
	// range at its revision, whatever the limit.
	count int64
}

// listAll lists every key under prefix with a listPager, pageSize keys a
// page, and adds every page's latency to lat. It fails when a page fails
// or the list has not ended after maxPages pages.
func listAll(ctx context.Context, kv getter, prefix string, pageSize, maxPages int, lat *latencyShard) (listResult, error) {
	var res listResult
	p := newListPager(prefix, pageSize)
	for !p.done {
		if p.pages >= maxPages {
			return res, fmt.Errorf("list did not end after %d pages", maxPages)
		}
		n, took, err := p.page(ctx, kv)
		if err != nil {
			return res, err
		}
		lat.add(took)
		res.keys += n
		res.pages, res.count = p.pages, p.count
	}
	return res, nil
}
