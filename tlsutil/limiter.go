package tlsutil

import (
	"sync"
	"time"
)

// logEvery rate-limits repeated log lines with the same key.
const logEvery = 10 * time.Second

// limiter rate-limits log lines by key.
type limiter struct {
	mu   sync.Mutex
	last map[string]time.Time
}

func newLimiter() *limiter { return &limiter{last: map[string]time.Time{}} }

// allow reports whether a line with key may be logged now, at most once per
// logEvery. Keys older than logEvery are forgotten, so the map stays as
// small as the set of recent causes.
func (l *limiter) allow(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if last, ok := l.last[key]; ok && now.Sub(last) < logEvery {
		return false
	}
	if len(l.last) > 1024 {
		for k, t := range l.last {
			if now.Sub(t) >= logEvery {
				delete(l.last, k)
			}
		}
	}
	l.last[key] = now
	return true
}
