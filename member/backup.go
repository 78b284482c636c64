package member

import (
	"context"
	"io"
	"time"

	"github.com/dustin/go-humanize"
	"go.uber.org/zap"

	"github.com/keeldb/keel/snapshot"
	"github.com/keeldb/keel/version"
)

// SaveSnapshot writes a snapshot file (package snapshot) of the member's
// state at this moment to w. It reads from a Pebble snapshot, so writes and
// reads go on while it runs and none of the writes shows in the file. It
// returns when the file is complete, ctx is done, or w fails; on failure
// what was written is no valid file.
func (m *Member) SaveSnapshot(ctx context.Context, w io.Writer) (snapshot.Info, error) {
	start := time.Now()
	h := snapshot.Header{
		ClusterID:      m.ClusterID(),
		MemberID:       m.cfg.ID,
		Created:        start.UTC(),
		StorageVersion: version.Storage,
	}
	m.lg.Info("sending database snapshot to client", zap.String("local-member-id", idString(m.cfg.ID)),
		zap.String("storage-version", version.Storage))
	info, err := snapshot.Save(ctx, m.engine, w, h)
	if err != nil {
		m.lg.Warn("failed to send database snapshot to client", zap.Error(err))
		return info, err
	}
	m.cfg.Metrics.BackendSnapshot(time.Since(start))
	m.lg.Info("sent database snapshot to client", zap.Int64("total-bytes", info.Size),
		zap.String("size", humanize.Bytes(uint64(info.Size))), zap.Int64("revision", info.Revision),
		zap.Uint64("consistent-index", info.Applied), zap.Duration("took", time.Since(start)))
	return info, nil
}

// SnapshotSizeEstimate guesses the size of a snapshot file of the member's
// state: the live data Pebble holds, which is compressed, so the file is
// usually larger.
func (m *Member) SnapshotSizeEstimate() int64 {
	_, inUse := m.engine.Size()
	return inUse
}
