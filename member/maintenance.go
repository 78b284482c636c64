package member

import (
	"context"
	"hash/crc32"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keeldb/keel/mvcc"
	"github.com/keeldb/keel/storage"
)

// HashKV hashes the key space at rev (0: now), for comparing members.
func (m *Member) HashKV(ctx context.Context, rev int64) (mvcc.KVHash, int64, error) {
	cur := m.kv.Rev()
	start := time.Now()
	h, err := m.kv.HashKV(ctx, rev)
	if err == nil {
		m.cfg.Metrics.Hashed(true, time.Since(start))
	}
	return h, cur, err
}

// Hash hashes everything the member stores except its Raft log and its own
// metadata (identity, applied index), and returns it with the revision it
// was taken at. Unlike HashKV it also covers leases, membership and alarms,
// and old versions that physical compaction has not removed yet, so it is
// only comparable between members that are idle and fully compacted (as in
// etcd, where it is meant for tests).
func (m *Member) Hash(ctx context.Context) (_ uint32, _ int64, err error) {
	start := time.Now()
	defer func() {
		if err == nil {
			m.cfg.Metrics.Hashed(false, time.Since(start))
		}
	}()
	snap := m.engine.DB().NewSnapshot()
	defer snap.Close()
	rev := m.kv.Rev()
	it, err := snap.NewIterWithContext(ctx, &pebble.IterOptions{})
	if err != nil {
		return 0, 0, err
	}
	defer it.Close()
	d := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	n := 0
	for valid := it.First(); valid; valid = it.Next() {
		if k := it.Key(); len(k) > 0 && (k[0] == storage.PrefixRaft || k[0] == storage.PrefixMeta) {
			continue
		}
		if n++; n%4096 == 0 && ctx.Err() != nil {
			return 0, 0, ctx.Err()
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return 0, 0, err
		}
		d.Write(it.Key())
		d.Write(v)
	}
	return d.Sum32(), rev, it.Error()
}

// ErrTimeoutLeaderTransfer is etcd's answer to a leader transfer that did
// not finish in time; etcd has no gRPC code for it and sends it as Unknown.
var ErrTimeoutLeaderTransfer = status.Error(codes.Unknown, "etcdserver: request timed out, leader transfer took too long")

// MoveLeader hands leadership from this member, which must lead, to the
// voting member transferee, and returns once transferee leads. It fails
// with etcd's errors: not the leader, a transferee that is unknown or a
// learner, or a transfer that does not finish before ctx is done.
func (m *Member) MoveLeader(ctx context.Context, transferee uint64) error {
	lead := m.raft.Lead()
	if lead != m.cfg.ID {
		return rpctypes.ErrGRPCNotLeader
	}
	if t := m.cluster.Member(transferee); t == nil || t.IsLearner {
		return rpctypes.ErrGRPCBadLeaderTransferee
	}
	start := time.Now()
	m.lg.Info("leadership transfer starting", zap.String("local-member-id", idString(m.cfg.ID)),
		zap.String("current-leader-member-id", idString(lead)), zap.String("transferee-member-id", idString(transferee)))
	m.raft.TransferLeadership(ctx, lead, transferee)
	for {
		changed := m.raft.LeaderChanged()
		if m.raft.Lead() == transferee {
			break
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ErrTimeoutLeaderTransfer
		case <-m.stopc:
			return rpctypes.ErrGRPCStopped
		}
	}
	m.lg.Info("leadership transfer finished", zap.String("local-member-id", idString(m.cfg.ID)),
		zap.String("old-leader-member-id", idString(lead)), zap.String("new-leader-member-id", idString(transferee)),
		zap.Duration("took", time.Since(start)))
	return nil
}
