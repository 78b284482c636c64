package scenario

import (
	"context"
	"sync/atomic"
	"time"
)

// pacerBacklog is how long, in seconds of the rate, the puts that came due
// may wait for a free client; beyond it a due put is dropped and counted.
const pacerBacklog = 30

// pacer hands out the times at which paced requests are due: one every
// 1/rate seconds from start, whether or not the clients keep up.
type pacer struct {
	due     chan time.Time
	dropped atomic.Int64
}

// startPacer starts handing out due times until ctx ends.
func startPacer(ctx context.Context, rate int, start time.Time) *pacer {
	p := &pacer{due: make(chan time.Time, rate*pacerBacklog)}
	interval := time.Second / time.Duration(rate)
	go func() {
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		var n int64
		for {
			// Every request due by now, caught up after a late tick.
			now := time.Now()
			for at := start.Add(time.Duration(n) * interval); !at.After(now); at = start.Add(time.Duration(n) * interval) {
				select {
				case p.due <- at:
				default:
					p.dropped.Add(1)
				}
				n++
			}
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
	}()
	return p
}

// next waits for the next due request and returns when it was due; false
// once ctx ends.
func (p *pacer) next(ctx context.Context) (time.Time, bool) {
	select {
	case at := <-p.due:
		return at, true
	case <-ctx.Done():
		return time.Time{}, false
	}
}
