package member

import (
	"context"
	"errors"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/zap"

	"github.com/keeldb/keel/storage"
)

// Defragment returns to the filesystem the space that deleted and compacted
// data still holds in this member's database (a manual Pebble compaction
// of every key), while the member goes on serving reads and writes. Like
// etcd's, it acts on this member only and does not go through Raft. A
// member that stops meanwhile answers ErrGRPCStopped.
func (m *Member) Defragment(ctx context.Context) error {
	m.lg.Info("starting defragment")
	done := m.cfg.Metrics.DefragStarted()
	err := m.engine.Defragment(ctx)
	done()
	if errors.Is(err, storage.ErrEngineClosed) {
		err = rpctypes.ErrGRPCStopped
	}
	if err != nil {
		m.lg.Warn("failed to defragment", zap.Error(err))
		return err
	}
	m.lg.Info("finished defragment")
	return nil
}
