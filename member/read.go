package member

import (
	"bytes"
	"context"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/zap"
)

// readIndexRetry is how long the read loop waits for Raft to answer a
// ReadIndex request before asking again (a request is dropped, for example,
// while there is no leader).
const readIndexRetry = 500 * time.Millisecond

// readBatcher groups concurrent linearizable reads so that one ReadIndex
// round serves all reads that arrived before it started.
type readBatcher struct {
	mu      sync.Mutex
	current *readNotifier
	kick    chan struct{}
	seq     uint64
	// onWait, when set (by tests), runs in every linearizable read as it
	// starts waiting, so that a test can change the state while a read
	// waits.
	onWait atomic.Pointer[func()]
}

type readNotifier struct {
	done chan struct{}
	err  error
}

func (r *readBatcher) init() {
	r.current = &readNotifier{done: make(chan struct{})}
	r.kick = make(chan struct{}, 1)
}

// linearizableReadNotify returns once the member has applied every entry
// committed before it was called, so a local read that follows is
// linearizable.
func (m *Member) linearizableReadNotify(ctx context.Context) error {
	if f := m.reads.onWait.Load(); f != nil {
		(*f)()
	}
	m.reads.mu.Lock()
	n := m.reads.current
	m.reads.mu.Unlock()
	select {
	case m.reads.kick <- struct{}{}:
	default:
	}
	select {
	case <-n.done:
		return n.err
	case <-ctx.Done():
		return ctx.Err()
	case <-m.stopc:
		return rpctypes.ErrGRPCStopped
	}
}

func (m *Member) readLoop() {
	defer m.wg.Done()
	for {
		select {
		case <-m.reads.kick:
		case <-m.stopc:
			return
		}
		m.reads.mu.Lock()
		n := m.reads.current
		m.reads.current = &readNotifier{done: make(chan struct{})}
		m.reads.seq++
		seq := m.reads.seq
		m.reads.mu.Unlock()

		index, err := m.readIndex(seq)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), m.requestTimeout())
			if werr := m.waitApplied(ctx, index); werr != nil {
				err = rpctypes.ErrGRPCTimeout
				if werr == rpctypes.ErrGRPCStopped {
					err = werr
				}
			}
			cancel()
		}
		n.err = err
		close(n.done)
	}
}

// readIndex runs one ReadIndex round and returns the index reads must wait for.
func (m *Member) readIndex(seq uint64) (uint64, error) {
	rctx := binary.BigEndian.AppendUint64(nil, seq)
	deadline := time.NewTimer(m.requestTimeout())
	defer deadline.Stop()
	leaderChanged := m.raft.LeaderChanged()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), readIndexRetry)
		err := m.raft.ReadIndex(ctx, rctx)
		cancel()
		if err != nil {
			m.cfg.Metrics.ReadIndexFailed()
			m.lg.Warn("failed to get read index from Raft", zap.Error(err))
		}
		retry := time.NewTimer(readIndexRetry)
	wait:
		for {
			select {
			case rs := <-m.raft.ReadStates():
				if bytes.Equal(rs.RequestCtx, rctx) {
					retry.Stop()
					return rs.Index, nil
				}
				// An answer to an older round that timed out: keep waiting.
			case <-retry.C:
				m.cfg.Metrics.ReadIndexSlow()
				break wait
			case <-leaderChanged:
				retry.Stop()
				return 0, rpctypes.ErrGRPCLeaderChanged
			case <-deadline.C:
				retry.Stop()
				return 0, rpctypes.ErrGRPCTimeout
			case <-m.stopc:
				retry.Stop()
				return 0, rpctypes.ErrGRPCStopped
			}
		}
	}
}
