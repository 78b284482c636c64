package storage

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// defragEnd is above every key the engine stores: each key starts with one
// of the ASCII prefix bytes above.
var defragEnd = []byte{0xff}

// Defragment rewrites the whole database with a manual Pebble compaction,
// which drops deleted and overwritten versions and the tombstones that hid
// them, so the disk space they held is returned. Reads and writes go on
// while it runs: Pebble compacts beside the commit pipeline and only swaps
// files at the end. It compacts one level at a time, not in parallel, to
// leave CPU to the requests being served. Only one defragmentation runs at
// a time; a second caller waits for the first and then runs its own. Close
// cancels a running one, which then fails with ErrEngineClosed.
func (e *Engine) Defragment(ctx context.Context) error {
	e.streamsMu.Lock()
	if e.closed {
		e.streamsMu.Unlock()
		return ErrEngineClosed
	}
	e.defrags.Add(1)
	e.streamsMu.Unlock()
	defer e.defrags.Done()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(e.defragCtx, cancel)
	defer stop()

	select {
	case e.defragSem <- struct{}{}:
	case <-ctx.Done():
		return e.defragErr(ctx)
	}
	defer func() { <-e.defragSem }()
	before, _ := e.Size()
	start := time.Now()
	if err := e.db.Compact(ctx, []byte{}, defragEnd, false); err != nil {
		if ctx.Err() != nil {
			return e.defragErr(ctx)
		}
		return err
	}
	after, _ := e.Size()
	e.lg.Info("defragmented database", zap.String("path", e.dir),
		zap.Int64("db-size-bytes-before", before), zap.Int64("db-size-bytes-after", after),
		zap.Duration("took", time.Since(start)))
	return nil
}

// defragErr is why a defragmentation stopped early: the engine closing or
// the caller's context.
func (e *Engine) defragErr(ctx context.Context) error {
	if e.defragCtx.Err() != nil {
		return ErrEngineClosed
	}
	return ctx.Err()
}
