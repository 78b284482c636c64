package lease

import (
	"container/heap"
	"time"
)

// slot is a lease's place in one queue: when it is due and where it sits
// in the heap (-1 when it is not queued).
type slot struct {
	at  time.Time
	idx int
}

// queue is a min-heap of leases by due time with at most one entry per
// lease: scheduling a queued lease again moves it. Which slot of a lease
// the queue uses is chosen by the slot function, so one lease can sit in
// the expiry queue and the checkpoint queue at once.
type queue struct {
	items []*lease
	slot  func(*lease) *slot
}

func newQueue(slotOf func(*lease) *slot) *queue { return &queue{slot: slotOf} }

func (q *queue) Len() int { return len(q.items) }

func (q *queue) Less(i, j int) bool {
	return q.slot(q.items[i]).at.Before(q.slot(q.items[j]).at)
}

func (q *queue) Swap(i, j int) {
	q.items[i], q.items[j] = q.items[j], q.items[i]
	q.slot(q.items[i]).idx = i
	q.slot(q.items[j]).idx = j
}

// Push and Pop implement heap.Interface; use schedule, peek and remove.
func (q *queue) Push(x any) {
	l := x.(*lease)
	q.slot(l).idx = len(q.items)
	q.items = append(q.items, l)
}

func (q *queue) Pop() any {
	n := len(q.items) - 1
	l := q.items[n]
	q.items[n] = nil
	q.items = q.items[:n]
	q.slot(l).idx = -1
	return l
}

// schedule makes l due at t, queueing it or moving it.
func (q *queue) schedule(l *lease, t time.Time) {
	s := q.slot(l)
	s.at = t
	if s.idx >= 0 {
		heap.Fix(q, s.idx)
		return
	}
	heap.Push(q, l)
}

// peek returns the lease due first, nil if the queue is empty.
func (q *queue) peek() *lease {
	if len(q.items) == 0 {
		return nil
	}
	return q.items[0]
}

// remove takes l out of the queue if it is queued.
func (q *queue) remove(l *lease) {
	if s := q.slot(l); s.idx >= 0 {
		heap.Remove(q, s.idx)
	}
}

// reset empties the queue.
func (q *queue) reset() {
	for _, l := range q.items {
		q.slot(l).idx = -1
	}
	clear(q.items)
	q.items = q.items[:0]
}
