// Package compactor runs etcd's automatic compaction
// (--auto-compaction-mode, --auto-compaction-retention): in periodic mode it
// keeps a time window of history, in revision mode a number of revisions.
// It only decides which revision to compact and when; the compaction itself
// is an ordinary one through Raft (Compactable), and only the leader runs
// one: the member pauses the compactor while it does not lead.
package compactor

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/zap"

	"github.com/keeldb/keel/mvcc"
)

// The modes of --auto-compaction-mode.
const (
	ModePeriodic = "periodic"
	ModeRevision = "revision"
)

// Compactable compacts the key space, as KV.Compact does.
type Compactable interface {
	Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error)
}

// RevGetter reports the current revision.
type RevGetter interface {
	Rev() int64
}

// Compactor is a running automatic compaction.
type Compactor struct {
	lg    *zap.Logger
	clock clockwork.Clock
	rg    RevGetter
	c     Compactable
	run   func(ctx context.Context)

	mu     sync.Mutex
	paused bool

	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a compactor for mode with retention as ParseRetention gives
// it; it does nothing until Run. A nil clock is the wall clock.
func New(lg *zap.Logger, clock clockwork.Clock, mode string, retention time.Duration, rg RevGetter, c Compactable) (*Compactor, error) {
	if lg == nil {
		lg = zap.NewNop()
	}
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	cp := &Compactor{lg: lg, clock: clock, rg: rg, c: c, done: make(chan struct{})}
	switch mode {
	case ModePeriodic:
		if retention <= 0 {
			return nil, fmt.Errorf("auto compaction retention %v is not positive", retention)
		}
		cp.run = func(ctx context.Context) { cp.periodic(ctx, retention) }
	case ModeRevision:
		if retention <= 0 {
			return nil, fmt.Errorf("auto compaction retention %d is not positive", int64(retention))
		}
		cp.run = func(ctx context.Context) { cp.revision(ctx, int64(retention)) }
	default:
		return nil, fmt.Errorf("unsupported compaction mode %s", mode)
	}
	return cp, nil
}

// ParseRetention reads --auto-compaction-retention as etcd does: a
// non-negative integer is hours in periodic mode and revisions in revision
// mode (returned as a Duration of that many nanoseconds); anything else
// must be a Go duration. 0 turns automatic compaction off.
func ParseRetention(mode, retention string) (time.Duration, error) {
	if retention == "" {
		retention = "0"
	}
	if n, err := strconv.Atoi(retention); err == nil && n >= 0 {
		switch mode {
		case ModeRevision:
			return time.Duration(n), nil
		case ModePeriodic:
			return time.Duration(n) * time.Hour, nil
		default:
			return 0, errors.New("--auto-compaction-mode is undefined")
		}
	}
	d, err := time.ParseDuration(retention)
	if err != nil {
		return 0, fmt.Errorf("error parsing CompactionRetention: %w", err)
	}
	return d, nil
}

// Run starts the compactor's loop; Stop ends it.
func (cp *Compactor) Run() {
	ctx, cancel := context.WithCancel(context.Background())
	cp.cancel = cancel
	go func() {
		defer close(cp.done)
		cp.run(ctx)
	}()
}

// Stop ends the loop started by Run and waits for it, cancelling a
// compaction in flight.
func (cp *Compactor) Stop() {
	if cp.cancel == nil {
		return
	}
	cp.cancel()
	<-cp.done
}

// Pause keeps the compactor from compacting until Resume; it goes on
// recording revisions in periodic mode.
func (cp *Compactor) Pause() {
	cp.mu.Lock()
	cp.paused = true
	cp.mu.Unlock()
}

// Resume undoes Pause.
func (cp *Compactor) Resume() {
	cp.mu.Lock()
	cp.paused = false
	cp.mu.Unlock()
}

func (cp *Compactor) isPaused() bool {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.paused
}

// compacted says whether a compaction's outcome counts as done: it
// succeeded, or the revision was compacted already.
func compacted(err error) bool {
	return err == nil || errors.Is(err, mvcc.ErrCompacted) || errors.Is(err, rpctypes.ErrGRPCCompacted)
}

// periodic keeps period of history. It samples the revision every tenth
// of the period (of an hour at most), keeping the samples of the last
// period: the oldest is the revision of one period ago. After a first full
// period it compacts at that oldest sample, then again every period (every
// hour at most) with the window moved on; a failed compaction is retried
// at the next sample.
func (cp *Compactor) periodic(ctx context.Context, period time.Duration) {
	interval := min(period, time.Hour)
	sample := max(interval/10, time.Nanosecond) // New refuses period < 1ns
	keep := int(period/sample) + 1
	revs := make([]int64, 0, keep)
	var last int64
	lastDone := cp.clock.Now()
	wait := period // before the first compaction: a whole period
	for {
		revs = append(revs, cp.rg.Rev())
		if len(revs) > keep {
			revs = revs[1:]
		}
		select {
		case <-ctx.Done():
			return
		case <-cp.clock.After(sample):
		}
		if cp.isPaused() {
			continue
		}
		rev := revs[0]
		if cp.clock.Since(lastDone) < wait || rev == last {
			continue
		}
		wait = interval
		cp.lg.Info("starting auto periodic compaction", zap.Int64("revision", rev), zap.Duration("compact-period", period))
		start := cp.clock.Now()
		_, err := cp.c.Compact(ctx, &pb.CompactionRequest{Revision: rev})
		if !compacted(err) {
			cp.lg.Warn("failed auto periodic compaction", zap.Int64("revision", rev), zap.Duration("compact-period", period),
				zap.Duration("retry-interval", sample), zap.Error(err))
			continue
		}
		cp.lg.Info("completed auto periodic compaction", zap.Int64("revision", rev), zap.Duration("compact-period", period),
			zap.Duration("took", cp.clock.Since(start)))
		last = rev
		lastDone = cp.clock.Now()
	}
}

// RevisionInterval is how often revision mode compacts, as in etcd.
const RevisionInterval = 5 * time.Minute

// revision keeps the last retention revisions: every RevisionInterval it
// compacts at the current revision minus retention, unless that is not
// positive or already done.
func (cp *Compactor) revision(ctx context.Context, retention int64) {
	var last int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-cp.clock.After(RevisionInterval):
		}
		if cp.isPaused() {
			continue
		}
		rev := cp.rg.Rev() - retention
		if rev <= 0 || rev == last {
			continue
		}
		cp.lg.Info("starting auto revision compaction", zap.Int64("revision", rev), zap.Int64("revision-compaction-retention", retention))
		start := cp.clock.Now()
		_, err := cp.c.Compact(ctx, &pb.CompactionRequest{Revision: rev})
		if !compacted(err) {
			cp.lg.Warn("failed auto revision compaction", zap.Int64("revision", rev), zap.Int64("revision-compaction-retention", retention),
				zap.Duration("retry-interval", RevisionInterval), zap.Error(err))
			continue
		}
		last = rev
		cp.lg.Info("completed auto revision compaction", zap.Int64("revision", rev), zap.Int64("revision-compaction-retention", retention),
			zap.Duration("took", cp.clock.Since(start)))
	}
}
