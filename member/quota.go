package member

import (
	"context"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	humanize "github.com/dustin/go-humanize"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/zap"

	"github.com/keeldb/keel/storage"
)

const (
	// DefaultQuotaBytes is the space quota of a member started with
	// --quota-backend-bytes 0, as in etcd.
	DefaultQuotaBytes int64 = 2 << 30
	// MaxQuotaBytes is the largest quota etcd recommends; a larger one is
	// accepted with a warning at start.
	MaxQuotaBytes int64 = 8 << 30

	// quotaKVOverhead and quotaLeaseOverhead are the bytes a request is
	// charged beyond its key and value, etcd's estimates of a key's and a
	// lease's metadata.
	quotaKVOverhead    = 256
	quotaLeaseOverhead = 64
)

// QuotaBytes resolves --quota-backend-bytes: 0 means DefaultQuotaBytes and
// a negative value turns the quota off (returned as a negative number).
func QuotaBytes(cfg int64) int64 {
	if cfg == 0 {
		return DefaultQuotaBytes
	}
	return cfg
}

// quota is the member's space quota.
//
// What it measures: the bytes of the member's state (every record but the
// Raft log and the member's own metadata: key versions, the by-revision
// log, leases, auth, membership, alarms), counted as key plus value
// lengths. etcd charges the size of its bbolt file, which only shrinks
// after a defragmentation; keel's LSM files shrink at Pebble's own pace
// (tombstones wait for a compaction of their level), so measuring them
// would make the quota depend on background work nobody controls, and the
// Raft log and WAL (which come and go with snapshots and memtable flushes)
// would count against the operator's data. Counting the live state instead
// means that a compaction alone (keel's `compaction`, manual or automatic)
// frees quota once its physical part has run, with no defragmentation.
//
// How: a full count at start, after each physical compaction and after a
// Raft snapshot install (rescan), plus, between counts, the size of every
// apply batch (add), which over-counts slightly (overwritten metadata) and
// never under-counts what was written.
type quota struct {
	limit int64 // < 0: off
	// used is the state's size as of the last count plus what was added
	// since.
	used atomic.Int64
	// added is the running total of add; a count subtracts the part that
	// its snapshot already saw.
	added atomic.Int64
	kick  chan struct{}
}

func newQuota(limit int64) *quota {
	return &quota{limit: limit, kick: make(chan struct{}, 1)}
}

// QuotaUsed returns the bytes the quota charges the member's state with now.
func (m *Member) QuotaUsed() int64 { return m.quota.used.Load() }

// QuotaBytes returns the member's quota in bytes (negative: no quota).
func (m *Member) QuotaBytes() int64 { return m.quota.limit }

func (q *quota) add(n int64) {
	q.added.Add(n)
	q.used.Add(n)
}

// count sets used to the size of the state in db.
func (q *quota) count(db *pebble.DB) error {
	snap := db.NewSnapshot()
	before := q.added.Load()
	defer snap.Close()
	n, err := stateSize(snap)
	if err != nil {
		return err
	}
	q.used.Store(n + q.added.Load() - before)
	return nil
}

// stateSize sums key and value lengths of every record outside the Raft
// log and the member's metadata.
func stateSize(r pebble.Reader) (int64, error) {
	it, err := r.NewIter(nil)
	if err != nil {
		return 0, err
	}
	defer it.Close()
	var n int64
	for ok := it.First(); ok; {
		k := it.Key()
		if len(k) > 0 && (k[0] == storage.PrefixRaft || k[0] == storage.PrefixMeta) {
			ok = it.SeekGE([]byte{k[0] + 1})
			continue
		}
		n += int64(len(k) + len(it.Value()))
		ok = it.Next()
	}
	return n, it.Error()
}

// cost is what r is charged against the quota: etcd's estimate, zero for
// requests that add no data.
func quotaCost(r *pb.InternalRaftRequest) int64 {
	switch {
	case r.Put != nil:
		return putCost(r.Put)
	case r.Txn != nil:
		return txnCost(r.Txn)
	case r.LeaseGrant != nil:
		return quotaLeaseOverhead
	}
	return 0
}

func putCost(p *pb.PutRequest) int64 { return int64(quotaKVOverhead + len(p.Key) + len(p.Value)) }

// txnCost charges the costlier branch of a txn.
func txnCost(t *pb.TxnRequest) int64 {
	var branch [2]int64
	for i, ops := range [][]*pb.RequestOp{t.Success, t.Failure} {
		for _, op := range ops {
			if p := op.GetRequestPut(); p != nil {
				branch[i] += putCost(p)
			} else if n := op.GetRequestTxn(); n != nil {
				branch[i] += txnCost(n)
			}
		}
	}
	return max(branch[0], branch[1])
}

// checkQuota refuses r with etcd's "database space exceeded" if it adds
// data and does not fit in the quota, and then raises this member's NOSPACE
// alarm through Raft, as etcd's gRPC layer does.
func (m *Member) checkQuota(ctx context.Context, r *pb.InternalRaftRequest) error {
	if m.quota.limit < 0 {
		return nil
	}
	c := quotaCost(r)
	if c == 0 || m.quota.used.Load()+c < m.quota.limit {
		return nil
	}
	m.raiseNoSpace(ctx)
	return rpctypes.ErrGRPCNoSpace
}

// raiseNoSpace proposes this member's NOSPACE alarm unless it is raised.
func (m *Member) raiseNoSpace(ctx context.Context) {
	for _, a := range m.alarms.Get(pb.AlarmType_NOSPACE) {
		if a.MemberID == m.cfg.ID {
			return
		}
	}
	m.lg.Warn("message exceeded backend quota; raising alarm",
		zap.Int64("quota-size-bytes", m.quota.limit), zap.Int64("quota-used-bytes", m.quota.used.Load()))
	_, err := m.propose(ctx, &pb.InternalRaftRequest{Alarm: &pb.AlarmRequest{
		MemberID: m.cfg.ID, Action: pb.AlarmRequest_ACTIVATE, Alarm: pb.AlarmType_NOSPACE,
	}})
	if err != nil {
		m.lg.Warn("failed to raise the NOSPACE alarm", zap.Error(err))
	}
}

// quotaApplied is called by the apply loop after each committed batch of
// size bytes: it charges them, and raises the NOSPACE alarm in the
// background if the state outgrew the quota (writes admitted together can
// overshoot the check made before proposing). A compaction among the
// entries schedules a recount once its physical part has run.
func (m *Member) quotaApplied(size int64, compacted bool) {
	m.quota.add(size)
	if compacted {
		m.recountQuota()
	}
	if m.quota.limit >= 0 && m.quota.used.Load() >= m.quota.limit && !m.alarms.Active(pb.AlarmType_NOSPACE) {
		select {
		case m.quota.kick <- struct{}{}:
		default:
		}
	}
}

// recountQuota asks the quota loop for a full count.
func (m *Member) recountQuota() {
	select {
	case m.quota.kick <- struct{}{}:
	default:
	}
}

// quotaLoop recounts the state's size when asked (after the compactions
// queued by then have run) and raises the NOSPACE alarm when the count is
// over the quota. It stops with the member.
func (m *Member) quotaLoop() {
	defer m.wg.Done()
	for {
		select {
		case <-m.quota.kick:
		case <-m.stopc:
			return
		}
		select {
		case <-m.kv.WaitCompactions():
		case <-m.stopc:
			return
		}
		if err := m.quota.count(m.engine.DB()); err != nil {
			m.lg.Warn("failed to measure the state for the space quota", zap.Error(err))
			continue
		}
		if m.quota.limit >= 0 && m.quota.used.Load() >= m.quota.limit && !m.alarms.Active(pb.AlarmType_NOSPACE) {
			stopCtx, stop := m.stopContext()
			ctx, cancel := context.WithTimeout(stopCtx, m.requestTimeout())
			m.raiseNoSpace(ctx)
			cancel()
			stop()
		}
	}
}

// logQuota reports the quota at start in etcd's words.
func logQuota(lg *zap.Logger, limit int64) {
	switch {
	case limit < 0:
		lg.Info("disabled backend quota", zap.String("quota-name", "v3-applier"), zap.Int64("quota-size-bytes", limit))
	default:
		if limit > MaxQuotaBytes {
			lg.Warn("quota exceeds the maximum value", zap.String("quota-name", "v3-applier"),
				zap.Int64("quota-size-bytes", limit), zap.String("quota-size", humanize.Bytes(uint64(limit))),
				zap.Int64("quota-maximum-size-bytes", MaxQuotaBytes), zap.String("quota-maximum-size", humanize.Bytes(uint64(MaxQuotaBytes))))
		}
		lg.Info("enabled backend quota", zap.String("quota-name", "v3-applier"),
			zap.Int64("quota-size-bytes", limit), zap.String("quota-size", humanize.Bytes(uint64(limit))))
	}
}
