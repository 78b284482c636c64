package member

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/keeldb/keel/apply"
)

// waitRegistry hands apply results to the goroutines that proposed them.
type waitRegistry struct {
	mu sync.Mutex
	m  map[uint64]chan *apply.Result
}

func (w *waitRegistry) init() { w.m = make(map[uint64]chan *apply.Result) }

func (w *waitRegistry) register(id uint64) <-chan *apply.Result {
	ch := make(chan *apply.Result, 1)
	w.mu.Lock()
	w.m[id] = ch
	w.mu.Unlock()
	return ch
}

// trigger delivers res to the waiter of id, if it still waits (requests
// proposed by other members, or replayed after a restart, have none).
func (w *waitRegistry) trigger(id uint64, res *apply.Result) {
	w.mu.Lock()
	ch, ok := w.m[id]
	delete(w.m, id)
	w.mu.Unlock()
	if ok {
		ch <- res
	}
}

func (w *waitRegistry) cancel(id uint64) {
	w.mu.Lock()
	delete(w.m, id)
	w.mu.Unlock()
}

// idGenerator makes request IDs unique across members and restarts: the low
// 16 bits of the member ID, then the start time in milliseconds, then a
// counter.
type idGenerator struct {
	prefix uint64
	count  atomic.Uint64
}

func (g *idGenerator) init(memberID uint64, now time.Time) {
	g.prefix = memberID << 48
	g.count.Store((uint64(now.UnixMilli()) & (1<<40 - 1)) << 8)
}

func (g *idGenerator) next() uint64 {
	return g.prefix | (g.count.Add(1) & (1<<48 - 1))
}
