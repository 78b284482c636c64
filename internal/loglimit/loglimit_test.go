package loglimit

import (
	"fmt"
	"testing"
	"time"
)

// fakeClock is a clock the test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func newTest(perGroup int) (*Limiter, *fakeClock) {
	c := &fakeClock{t: time.Unix(1000, 0)}
	l := New(10*time.Second, perGroup)
	l.now = c.now
	return l, c
}

func TestAllowOncePerPeriod(t *testing.T) {
	l, c := newTest(1)
	if !l.Allow("a") || l.Allow("a") || !l.Allow("b") {
		t.Fatal("want a, not a again, b")
	}
	c.t = c.t.Add(10 * time.Second)
	if !l.Allow("a") {
		t.Fatal("a refused after the period")
	}
}

func TestAllowInBoundsAGroupAcrossKeysAndSumsUpTheRest(t *testing.T) {
	l, c := newTest(3)
	logged := 0
	for i := range 100 {
		if ok, _ := l.AllowIn("expired", fmt.Sprintf("expired/10.0.0.%d", i)); ok {
			logged++
		}
	}
	if logged != 3 {
		t.Fatalf("logged %d lines of one cause from 100 hosts, want 3", logged)
	}
	if ok, _ := l.AllowIn("unknown-authority", "unknown-authority/10.0.0.1"); !ok {
		t.Fatal("another cause was refused")
	}
	c.t = c.t.Add(10 * time.Second)
	ok, suppressed := l.AllowIn("expired", "expired/10.0.0.50")
	if !ok || suppressed != 97 {
		t.Fatalf("next period: ok %v, suppressed %d; want true, 97", ok, suppressed)
	}
	if _, suppressed := l.AllowIn("expired", "expired/10.0.0.51"); suppressed != 0 {
		t.Fatalf("suppressed reported twice (%d)", suppressed)
	}
}

func TestKeysAreBounded(t *testing.T) {
	l, c := newTest(1 << 30)
	for i := range 3 * maxKeys {
		l.Allow(fmt.Sprint(i))
	}
	if len(l.last) > maxKeys {
		t.Fatalf("%d keys remembered, want at most %d", len(l.last), maxKeys)
	}
	if l.Allow("new") {
		t.Fatal("a new key was allowed while the map is full of recent keys")
	}
	c.t = c.t.Add(10 * time.Second)
	if !l.Allow("new") {
		t.Fatal("a new key was refused after the old ones expired")
	}
	if len(l.last) > maxKeys {
		t.Fatalf("%d keys remembered, want at most %d", len(l.last), maxKeys)
	}
}
