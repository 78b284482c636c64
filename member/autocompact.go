package member

import (
	"go.uber.org/zap"

	"github.com/keeldb/keel/compactor"
)

// newAutoCompactor builds the compactor of --auto-compaction-mode, or nil
// when the retention is 0. etcd also starts one for a negative duration
// ("-5m"), which then compacts as fast as it can; keel turns that off
// instead, with a warning.
func (m *Member) newAutoCompactor() (*compactor.Compactor, error) {
	r := m.cfg.AutoCompactionRetention
	if r == 0 {
		return nil, nil
	}
	if r < 0 {
		m.lg.Warn("negative auto compaction retention; automatic compaction is off",
			zap.String("auto-compaction-mode", m.cfg.AutoCompactionMode), zap.Duration("auto-compaction-retention", r))
		return nil, nil
	}
	return compactor.New(m.lg, m.cfg.AutoCompactionClock, m.cfg.AutoCompactionMode, r, m, m)
}

// startAutoCompaction runs the automatic compaction while this member
// leads: etcd's compactor is paused on followers, so that only the leader
// proposes compactions; they go through Raft as ordinary ones. It stops
// with the member.
func (m *Member) startAutoCompaction() {
	cp := m.autoCompactor
	if cp == nil {
		return
	}
	cp.Pause()
	cp.Run()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer cp.Stop()
		for {
			changed := m.raft.LeaderChanged()
			if m.raft.Lead() == m.cfg.ID {
				cp.Resume()
			} else {
				cp.Pause()
			}
			select {
			case <-changed:
			case <-m.stopc:
				return
			}
		}
	}()
}
