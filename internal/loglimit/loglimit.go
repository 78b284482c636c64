// Package loglimit rate-limits repeated log lines: a line with a given key
// at most once per period, at most a bounded number of lines per group of
// keys (a cause seen from many hosts), and a bounded memory whatever the
// number of keys.
package loglimit

import (
	"sync"
	"time"
)

// maxKeys caps the keys remembered; when full, keys older than the period
// are forgotten, and if none is, new keys are refused until one is.
const maxKeys = 1024

// Limiter decides which log lines to write. Its methods are safe for
// concurrent use. The zero value is not usable; see New.
type Limiter struct {
	period   time.Duration
	perGroup int
	now      func() time.Time // time.Now; replaced in tests

	mu     sync.Mutex
	last   map[string]time.Time
	groups map[string]*group
}

// group counts the lines of one group in its current period.
type group struct {
	start      time.Time
	logged     int
	suppressed int // refused in the current period
}

// New returns a limiter that allows a key once per period and at most
// perGroup lines per group per period; perGroup matters only to AllowIn.
func New(period time.Duration, perGroup int) *Limiter {
	return &Limiter{period: period, perGroup: perGroup, now: time.Now,
		last: map[string]time.Time{}, groups: map[string]*group{}}
}

// Allow reports whether a line with key may be logged now: at most once per
// period.
func (l *Limiter) Allow(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.allowKey(key, l.now())
}

// AllowIn is Allow for a key of group (e.g. key = cause and remote host,
// group = cause): besides once per key and period, at most perGroup lines
// of the group are allowed per period. suppressed is the number of lines of
// the group refused in earlier periods and not reported yet: the caller
// adds it to the line it logs, so that one line sums up what was dropped.
func (l *Limiter) AllowIn(group, key string) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	g := l.group(group, now)
	if g.logged >= l.perGroup || !l.allowKey(key, now) {
		g.suppressed++
		return false, 0
	}
	g.logged++
	suppressed, g.suppressed = g.suppressed, 0
	return true, suppressed
}

// group returns the counts of name, starting a new period when the last
// one is over; the refused count carries over until reported.
func (l *Limiter) group(name string, now time.Time) *group {
	g := l.groups[name]
	if g == nil {
		if len(l.groups) >= maxKeys {
			l.forgetGroups(now)
		}
		g = &group{start: now}
		l.groups[name] = g
	}
	if now.Sub(g.start) >= l.period {
		g.start, g.logged = now, 0
	}
	return g
}

func (l *Limiter) allowKey(key string, now time.Time) bool {
	if last, ok := l.last[key]; ok && now.Sub(last) < l.period {
		return false
	}
	if _, ok := l.last[key]; !ok && len(l.last) >= maxKeys {
		for k, t := range l.last {
			if now.Sub(t) >= l.period {
				delete(l.last, k)
			}
		}
		if len(l.last) >= maxKeys {
			return false
		}
	}
	l.last[key] = now
	return true
}

// forgetGroups drops the groups whose period is over and that have nothing
// left to report.
func (l *Limiter) forgetGroups(now time.Time) {
	for name, g := range l.groups {
		if now.Sub(g.start) >= l.period && g.suppressed == 0 {
			delete(l.groups, name)
		}
	}
}
