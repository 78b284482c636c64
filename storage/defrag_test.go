package storage

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// fillAndDelete writes n keys of 1 KiB under the KV prefix, flushes them to
// tables, then deletes them all and flushes the tombstones.
func fillAndDelete(t *testing.T, e *Engine, n int) {
	t.Helper()
	rnd := rand.New(rand.NewPCG(1, 2))
	b := e.DB().NewBatch()
	for i := 0; i < n; i++ {
		val := make([]byte, 1024) // random, so compression keeps it 1 KiB
		for j := range val {
			val[j] = byte(rnd.Uint32())
		}
		b.Set(fmt.Appendf([]byte{PrefixKV}, "key%06d", i), val, nil)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := e.DB().Flush(); err != nil {
		t.Fatal(err)
	}
	b = e.DB().NewBatch()
	for i := 0; i < n; i++ {
		b.Delete(fmt.Appendf([]byte{PrefixKV}, "key%06d", i), nil)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := e.DB().Flush(); err != nil {
		t.Fatal(err)
	}
}

// waitSize polls until the live tables take less than limit bytes: Pebble
// deletes the files a compaction made obsolete in the background.
func waitSize(t *testing.T, e *Engine, limit int64) (total, inUse int64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		total, inUse = e.Size()
		if total < limit {
			return total, inUse
		}
		if time.Now().After(deadline) {
			t.Fatalf("db size %d (in use %d) did not drop below %d", total, inUse, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDefragmentReclaimsDeletedData(t *testing.T) {
	e, err := Open("db", Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	keep := []byte{PrefixKV, 'k', 'e', 'e', 'p'}
	if err := e.DB().Set(keep, []byte("v"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	fillAndDelete(t, e, 4000)
	before, inUseBefore := e.Size()
	if inUseBefore < 4<<20 {
		t.Fatalf("db size in use before defragment is %d, want the deleted 4 MiB still in tables", inUseBefore)
	}
	if err := e.Defragment(context.Background()); err != nil {
		t.Fatal(err)
	}
	after, inUse := waitSize(t, e, before-4<<20)
	if inUse > 64<<10 || inUse > after {
		t.Fatalf("after defragment: in use %d, total %d; want the deleted data gone", inUse, after)
	}
	v, closer, err := e.DB().Get(keep)
	if err != nil {
		t.Fatalf("kept key after defragment: %v", err)
	}
	defer closer.Close()
	if string(v) != "v" {
		t.Fatalf("kept key = %q", v)
	}
}

func TestDefragmentAfterCloseFails(t *testing.T) {
	e, err := Open("db", Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Defragment(context.Background()); !errors.Is(err, ErrEngineClosed) {
		t.Fatalf("Defragment after Close = %v, want %v", err, ErrEngineClosed)
	}
}

func TestDefragmentWaitsForTheRunningOne(t *testing.T) {
	e, err := Open("db", Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	e.defragSem <- struct{}{} // one is running
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Defragment(ctx) }()
	select {
	case err := <-done:
		t.Fatalf("second Defragment returned %v while the first ran", err)
	case <-time.After(20 * time.Millisecond):
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Defragment = %v, want context.Canceled", err)
	}
	<-e.defragSem
	if err := e.Defragment(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestCloseCancelsAWaitingDefragment(t *testing.T) {
	e, err := Open("db", Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	e.defragSem <- struct{}{}
	done := make(chan error, 1)
	go func() { done <- e.Defragment(context.Background()) }()
	select {
	case err := <-done:
		t.Fatalf("Defragment returned %v before Close", err)
	case <-time.After(20 * time.Millisecond):
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrEngineClosed) {
		t.Fatalf("Defragment cut by Close = %v, want %v", err, ErrEngineClosed)
	}
}
