package lease

import (
	"sync"
	"time"
)

// Clock is where the lessor takes its time from. Lease expiry, keepalives
// and checkpoints are all measured on it, so a test can move time without
// sleeping (see FakeClock).
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// TimerAt returns a timer that fires once the clock reaches t, at once
	// if it already has. Taking an absolute time (not a duration) means a
	// clock that moves between the caller's Now and this call cannot make
	// the timer late.
	TimerAt(t time.Time) Timer
}

// Timer is a one-shot timer of a Clock.
type Timer interface {
	// C delivers one value when the timer fires.
	C() <-chan time.Time
	// Stop stops the timer; it reports whether it stopped it before it fired.
	Stop() bool
}

// RealClock returns the wall clock (with Go's monotonic reading, so a wall
// clock step does not expire leases).
func RealClock() Clock { return realClock{} }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) TimerAt(t time.Time) Timer {
	return realTimer{time.NewTimer(time.Until(t))}
}

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time { return r.t.C }
func (r realTimer) Stop() bool          { return r.t.Stop() }

// FakeClock is a Clock for tests: time stands still until Advance moves it.
// It is safe for concurrent use.
type FakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

// NewFakeClock returns a fake clock reading start.
func NewFakeClock(start time.Time) *FakeClock { return &FakeClock{now: start} }

// Now implements Clock.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d and fires every timer due by then.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.timers[:0]
	for _, t := range c.timers {
		if t.at.After(c.now) {
			kept = append(kept, t)
			continue
		}
		t.fire(c.now)
	}
	clear(c.timers[len(kept):])
	c.timers = kept
}

// Timers returns how many timers wait to fire.
func (c *FakeClock) Timers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// TimerAt implements Clock.
func (c *FakeClock) TimerAt(at time.Time) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: at, ch: make(chan time.Time, 1)}
	if !at.After(c.now) {
		t.fire(c.now)
		return t
	}
	c.timers = append(c.timers, t)
	return t
}

type fakeTimer struct {
	c     *FakeClock
	at    time.Time
	ch    chan time.Time
	fired bool // guarded by c.mu
}

func (t *fakeTimer) fire(now time.Time) {
	t.fired = true
	t.ch <- now
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.fired {
		return false
	}
	for i, o := range t.c.timers {
		if o == t {
			t.c.timers = append(t.c.timers[:i], t.c.timers[i+1:]...)
			break
		}
	}
	t.fired = true
	return true
}
