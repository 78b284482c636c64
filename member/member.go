// Package member processes the requests of one keel member: writes are
// proposed to Raft and answered once applied; linearizable reads wait for a
// ReadIndex round and the apply loop to catch up; serializable reads are
// served from local state. It owns the apply loop, the only place where state
// changes.
//
// Data flow: api -> member (propose | read index) -> raftnode -> committed
// entries -> apply loop -> apply -> mvcc/membership -> waiting proposer.
package member

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/jonboulle/clockwork"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/membershippb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/keeldb/keel/alarm"
	"github.com/keeldb/keel/apply"
	"github.com/keeldb/keel/auth"
	"github.com/keeldb/keel/compactor"
	"github.com/keeldb/keel/lease"
	"github.com/keeldb/keel/membership"
	"github.com/keeldb/keel/metrics"
	"github.com/keeldb/keel/mvcc"
	"github.com/keeldb/keel/raftnode"
	"github.com/keeldb/keel/storage"
	"github.com/keeldb/keel/watch"
)

// Config describes the member to start.
type Config struct {
	ID        uint64
	ClusterID uint64
	// Name and ClientURLs are published to the cluster once the member runs.
	Name       string
	ClientURLs []string
	Engine     *storage.Engine
	// Peers bootstraps a new cluster (empty on restart).
	Peers []raft.Peer
	// Transport carries Raft messages to the other members; nil for a
	// member that has never had peers (tests of a lone member).
	Transport PeerTransport

	TickInterval  time.Duration
	ElectionTicks int
	// SnapshotCount is how many applied entries separate Raft snapshots;
	// SnapshotCatchUpEntries how many entries stay behind one.
	SnapshotCount          uint64
	SnapshotCatchUpEntries uint64
	// MaxRequestBytes bounds the size of a proposal.
	MaxRequestBytes uint
	// StrictReconfigCheck refuses membership changes that would leave the
	// cluster without a quorum of started, connected members
	// (--strict-reconfig-check).
	StrictReconfigCheck bool
	// LeaseCheckpointInterval is how often the leader checkpoints the
	// remaining TTL of long leases (0: etcd's default, 5 minutes).
	LeaseCheckpointInterval time.Duration
	// LeaseClock is the lessor's time source; nil means the wall clock.
	// Tests pass a lease.FakeClock.
	LeaseClock lease.Clock
	// WatchProgressInterval is the interval of watch progress
	// notifications (0: etcd's default).
	WatchProgressInterval time.Duration
	// AuthToken is --auth-token, AuthTokenTTL --auth-token-ttl and
	// BcryptCost --bcrypt-cost (see auth.Options); AuthClock is the clock
	// of simple token expiry, nil meaning the wall clock.
	AuthToken    string
	AuthTokenTTL time.Duration
	BcryptCost   int
	AuthClock    func() time.Time
	// QuotaBackendBytes is --quota-backend-bytes: the space quota of the
	// member's state (0: DefaultQuotaBytes; negative: none).
	QuotaBackendBytes int64
	// AutoCompactionMode and AutoCompactionRetention configure automatic
	// compaction (see package compactor; retention 0: none);
	// AutoCompactionClock is its clock, nil meaning the wall clock.
	AutoCompactionMode      string
	AutoCompactionRetention time.Duration
	AutoCompactionClock     clockwork.Clock
	// InitialCorruptCheck compares this member's key-space hash with its
	// peers' before Raft starts (a restarting member only: the server sets
	// it for an initialised data dir); Start fails with etcd's error on a
	// mismatch, before anything is written.
	InitialCorruptCheck bool
	// CorruptCheckTime is the interval of the leader's periodic corruption
	// check (--corrupt-check-time; 0: off).
	CorruptCheckTime time.Duration
	// CompactHashCheckTime is the interval of the leader's compaction hash
	// check (--compact-hash-check-time with the CompactHashCheck feature
	// gate; 0: off).
	CompactHashCheckTime time.Duration
	// Metrics records the member's metrics; may be nil.
	Metrics *metrics.Metrics
	Logger  *zap.Logger
}

// Member is a running member.
type Member struct {
	cfg Config
	// autoCompactor runs --auto-compaction-mode; nil when off.
	autoCompactor *compactor.Compactor
	lg            *zap.Logger
	engine        *storage.Engine
	log           *storage.RaftLog
	kv            *mvcc.Store
	cluster       *membership.Cluster
	alarms        *alarm.Store
	auth          *auth.Store
	applier       *apply.Applier
	raft          *raftnode.Node
	lessor        *lease.Lessor
	watch         *watch.Hub
	quota         *quota

	reqIDs idGenerator
	wait   waitRegistry

	applied     atomic.Uint64
	appliedTerm uint64 // apply loop only
	snapIndex   uint64 // apply loop only
	appliedMu   sync.Mutex
	appliedC    chan struct{} // closed and replaced after every apply batch
	// staged are the received snapshot states waiting to be installed.
	staged stagedSnapshots

	reads readBatcher

	readyc   chan struct{}
	stopc    chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
	// removeOnce schedules the stop after this member's own removal once.
	removeOnce sync.Once

	errMu sync.Mutex
	err   error // why the member stopped on its own
	donec chan struct{}
}

// requestTimeout is how long a proposal may take before the client gets
// etcd's "request timed out", derived from the election timeout as in etcd.
func (m *Member) requestTimeout() time.Duration {
	return 5*time.Second + 2*m.cfg.TickInterval*time.Duration(m.cfg.ElectionTicks)
}

// Start opens the member's state in cfg.Engine and starts Raft, the apply
// loop and the read loop. It returns before the member serves: wait on
// ReadyNotify.
func Start(cfg Config) (*Member, error) {
	lg := cfg.Logger
	m := &Member{
		cfg:      cfg,
		lg:       lg,
		engine:   cfg.Engine,
		appliedC: make(chan struct{}),
		readyc:   make(chan struct{}),
		stopc:    make(chan struct{}),
		donec:    make(chan struct{}),
	}
	m.reqIDs.init(cfg.ID, time.Now())
	m.wait.init()
	m.reads.init()
	var err error
	if m.log, err = storage.OpenRaftLog(cfg.Engine); err != nil {
		return nil, err
	}
	applied, err := cfg.Engine.Applied()
	if err != nil {
		return nil, err
	}
	m.applied.Store(applied)
	snap, _ := m.log.Snapshot()
	m.snapIndex = snap.GetMetadata().GetIndex()
	if applied > 0 {
		if m.appliedTerm, err = m.log.Term(applied); err != nil {
			m.appliedTerm = m.log.HardState().GetTerm()
		}
	}
	if m.kv, err = mvcc.Open(cfg.Engine.DB(), lg); err != nil {
		return nil, err
	}
	if m.cluster, err = membership.Load(cfg.Engine.DB(), cfg.ClusterID); err != nil {
		m.kv.Close()
		return nil, err
	}
	if m.alarms, err = alarm.Load(cfg.Engine.DB()); err != nil {
		m.kv.Close()
		return nil, err
	}
	if m.auth, err = m.loadAuth(); err != nil {
		m.kv.Close()
		return nil, err
	}
	if m.lessor, err = m.newLessor(); err != nil {
		m.kv.Close()
		return nil, err
	}
	m.quota = newQuota(QuotaBytes(cfg.QuotaBackendBytes))
	if err := m.quota.count(cfg.Engine.DB()); err != nil {
		m.kv.Close()
		return nil, fmt.Errorf("measure the state for the space quota: %w", err)
	}
	logQuota(lg, m.quota.limit)
	m.applier = apply.New(m.kv, m.cluster, m.alarms, m.lessor, m.auth)
	m.watch = watch.NewHub(m.kv, watch.Config{
		ProgressInterval: cfg.WatchProgressInterval,
		// etcd fragments at the request limit plus its gRPC overhead allowance.
		MaxRequestBytes: int(cfg.MaxRequestBytes) + 512*1024,
		Metrics:         cfg.Metrics,
		Logger:          lg,
	})
	if m.autoCompactor, err = m.newAutoCompactor(); err != nil {
		m.watch.Stop()
		m.kv.Close()
		return nil, err
	}
	checker := m.newCorruptionChecker()
	if cfg.InitialCorruptCheck {
		if err := checker.initialCheck(context.Background()); err != nil {
			lg.Error("checkInitialHashKV failed", zap.Error(err))
			m.watch.Stop()
			m.kv.Close()
			return nil, err
		}
	}
	m.raft, err = raftnode.Start(raftnode.Config{
		ID:            cfg.ID,
		Log:           m.log,
		Applied:       applied,
		Peers:         cfg.Peers,
		TickInterval:  cfg.TickInterval,
		ElectionTicks: cfg.ElectionTicks,
		Transport:     cfg.Transport,
		Metrics:       cfg.Metrics,
		Logger:        lg,
	})
	if err != nil {
		m.watch.Stop()
		m.kv.Close()
		return nil, err
	}
	m.startMetrics()
	m.wg.Add(5)
	go m.quotaLoop()
	go m.applyLoop()
	go m.readLoop()
	go m.publish()
	go m.watchRaft()
	if cfg.CorruptCheckTime > 0 {
		m.wg.Add(1)
		go m.corruptCheckLoop(checker)
	}
	if cfg.CompactHashCheckTime > 0 {
		m.wg.Add(1)
		go m.compactHashLoop(checker)
	}
	m.startLeases()
	m.startAutoCompaction()
	go func() { m.wg.Wait(); close(m.donec) }()
	return m, nil
}

// ReadyNotify is closed once the member has published itself to the cluster
// and serves requests.
func (m *Member) ReadyNotify() <-chan struct{} { return m.readyc }

// Done is closed once the member has stopped, by Stop or on its own
// (see Err).
func (m *Member) Done() <-chan struct{} { return m.donec }

// Err returns why the member stopped on its own, nil after a Stop.
func (m *Member) Err() error {
	m.errMu.Lock()
	defer m.errMu.Unlock()
	return m.err
}

// fail stops the member because of err.
func (m *Member) fail(err error) {
	m.errMu.Lock()
	if m.err == nil {
		m.err = err
	}
	m.errMu.Unlock()
	m.lg.Error("stopping member after an unrecoverable error", zap.Error(err))
	m.stopOnce.Do(func() { close(m.stopc) })
}

// Stop stops the member and waits for all its goroutines. The engine stays
// open; the caller closes it.
func (m *Member) Stop() {
	m.stopOnce.Do(func() { close(m.stopc) })
	<-m.donec
}

// watchRaft stops the member when the Raft loop fails, and stops Raft when
// the member stops.
func (m *Member) watchRaft() {
	defer m.wg.Done()
	select {
	case <-m.raft.Done():
		if err := m.raft.Err(); err != nil {
			m.fail(err)
		}
	case <-m.stopc:
	}
	m.raft.Stop()
	m.watch.Stop()
	m.kv.Close()
}

// ID returns this member's ID.
func (m *Member) ID() uint64 { return m.cfg.ID }

// ClusterID returns the cluster's ID.
func (m *Member) ClusterID() uint64 { return m.cfg.ClusterID }

// Term returns the current Raft term.
func (m *Member) Term() uint64 { return m.raft.Term() }

// Watch returns the member's watcher hub.
func (m *Member) Watch() *watch.Hub { return m.watch }

// Rev returns the current store revision.
func (m *Member) Rev() int64 { return m.kv.Rev() }

// Leader returns the current leader's ID, 0 if none is known.
func (m *Member) Leader() uint64 { return m.raft.Lead() }

// AppliedIndex returns the index of the last applied entry.
func (m *Member) AppliedIndex() uint64 { return m.applied.Load() }

// publish proposes this member's name and client URLs until they are
// applied, then declares the member ready, as etcd does.
func (m *Member) publish() {
	defer m.wg.Done()
	attrs := &membershippb.Attributes{Name: m.cfg.Name, ClientUrls: m.cfg.ClientURLs}
	req := &pb.InternalRaftRequest{ClusterMemberAttrSet: &membershippb.ClusterMemberAttrSetRequest{Member_ID: m.cfg.ID, MemberAttributes: attrs}}
	timeout := m.requestTimeout()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		go func() {
			select {
			case <-m.stopc:
				cancel()
			case <-ctx.Done():
			}
		}()
		res, err := m.propose(ctx, proto.Clone(req).(*pb.InternalRaftRequest))
		cancel()
		if err == nil && res.Err == nil {
			m.lg.Info("published local member to cluster through raft",
				zap.String("local-member-id", idString(m.cfg.ID)),
				zap.String("local-member-attributes", fmt.Sprintf("{Name:%s ClientURLs:%v}", attrs.Name, attrs.ClientUrls)),
				zap.String("cluster-id", idString(m.cfg.ClusterID)),
				zap.Duration("publish-timeout", timeout))
			close(m.readyc)
			return
		}
		if err == nil {
			err = res.Err
		}
		select {
		case <-m.stopc:
			return
		default:
		}
		m.lg.Warn("failed to publish local member to cluster through raft",
			zap.String("local-member-id", idString(m.cfg.ID)), zap.Duration("publish-timeout", timeout), zap.Error(err))
		// A proposal dropped at once (no leader yet) would spin: wait for
		// a leader, or a moment.
		retry := time.NewTimer(publishRetry)
		select {
		case <-m.raft.LeaderChanged():
		case <-retry.C:
		case <-m.stopc:
		}
		retry.Stop()
	}
}

// publishRetry is the longest publish waits before proposing again after
// a failure.
const publishRetry = 500 * time.Millisecond

func idString(id uint64) string { return fmt.Sprintf("%x", id) }

// propose hands r to Raft and waits until it is applied. The returned
// Result carries the request's own error, if any.
func (m *Member) propose(ctx context.Context, r *pb.InternalRaftRequest) (_ *apply.Result, err error) {
	if m.cfg.Metrics != nil {
		defer m.requestMetrics(opName(r), time.Now(), &err)
	}
	id := m.reqIDs.next()
	if r.Header == nil {
		r.Header = &pb.RequestHeader{}
	}
	r.Header.ID = id // the requester's Username and AuthRevision stay
	data, err := proto.Marshal(r)
	if err != nil {
		return nil, err
	}
	if len(data) > int(m.cfg.MaxRequestBytes) {
		return nil, rpctypes.ErrGRPCRequestTooLarge
	}
	return m.proposeAndWait(ctx, id, func(ctx context.Context) error { return m.raft.Propose(ctx, data) })
}

// proposeAndWait registers a waiter for request id, proposes with send and
// waits until the entry is applied, the member's request timeout expires or
// the member stops; it turns Raft's and the context's errors into etcd's.
func (m *Member) proposeAndWait(ctx context.Context, id uint64, send func(context.Context) error) (_ *apply.Result, err error) {
	done := m.cfg.Metrics.ProposalStarted()
	defer func() { done(err != nil) }()
	ch := m.wait.register(id)
	cctx, cancel := context.WithTimeout(ctx, m.requestTimeout())
	defer cancel()
	start := time.Now()
	if err := send(cctx); err != nil {
		m.wait.cancel(id)
		switch {
		case errors.Is(err, raft.ErrStopped):
			return nil, rpctypes.ErrGRPCStopped
		case errors.Is(err, raft.ErrProposalDropped):
			// No leader to forward to, or one busy transferring: nothing
			// was proposed. etcd passes Raft's error on as it is.
			return nil, errProposalDropped
		}
		return nil, m.proposeCtxErr(cctx, start)
	}
	select {
	case res := <-ch:
		return res, nil
	case <-cctx.Done():
		m.wait.cancel(id)
		return nil, m.proposeCtxErr(cctx, start)
	case <-m.stopc:
		m.wait.cancel(id)
		return nil, rpctypes.ErrGRPCStopped
	}
}

// errProposalDropped is how etcd answers a proposal Raft refused at once:
// Raft's own error, sent with gRPC's Unknown code.
var errProposalDropped = status.Error(codes.Unknown, raft.ErrProposalDropped.Error())

// proposeCtxErr turns an expired or cancelled proposal into etcd's error.
func (m *Member) proposeCtxErr(ctx context.Context, start time.Time) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return rpctypes.ErrGRPCCanceled
	}
	if m.raft.Lead() == raft.None {
		return rpctypes.ErrGRPCTimeoutDueToLeaderFail
	}
	return rpctypes.ErrGRPCTimeout
}

// applyLoop applies committed entries batch by batch. Each batch is one
// Pebble batch holding the entries' effects and the new applied index, so a
// crash leaves either all of it or none, and a restart resumes exactly.
func (m *Member) applyLoop() {
	defer m.wg.Done()
	defer m.staged.close()
	for {
		select {
		case ap := <-m.raft.Applies():
			if ap.Snapshot != nil {
				applying := m.cfg.Metrics.SnapshotApplying()
				err := m.applySnapshot(ap.Snapshot)
				applying()
				ap.Done <- err
				if err != nil {
					m.fail(fmt.Errorf("apply snapshot: %w", err))
					return
				}
				continue
			}
			if err := m.applyEntries(ap.Entries); err != nil {
				m.fail(fmt.Errorf("apply entries: %w", err))
				return
			}
		case <-m.stopc:
			return
		}
	}
}

type outcome struct {
	id  uint64
	res *apply.Result
}

func (m *Member) applyEntries(ents []*raftpb.Entry) error {
	applied := m.applied.Load()
	b := m.engine.DB().NewIndexedBatch()
	defer b.Close()
	w := m.kv.NewWriter(b)
	defer w.Release()
	var (
		done      []outcome
		compacted bool
		confState *raftpb.ConfState
		last      = applied
		lastTerm  = m.appliedTerm
		ctx       = context.Background()
	)
	for _, e := range ents {
		idx := e.GetIndex()
		if idx <= applied {
			// Only after a snapshot install that brought state from past
			// the snapshot's index: the state has these entries' effects,
			// but Raft's configuration must still go through their conf
			// changes (see reapplyConfChange).
			if err := m.reapplyConfChange(e); err != nil {
				return err
			}
			if idx == applied {
				m.appliedTerm = e.GetTerm()
			}
			continue
		}
		if idx != last+1 {
			return fmt.Errorf("committed entry %d does not follow the applied index %d", idx, last)
		}
		last, lastTerm = idx, e.GetTerm()
		switch e.GetType() {
		case raftpb.EntryType_EntryNormal:
			if len(e.Data) == 0 {
				continue // a new leader's empty entry
			}
			r := &pb.InternalRaftRequest{}
			if err := proto.Unmarshal(e.Data, r); err != nil {
				return fmt.Errorf("entry %d is not a request: %w", idx, err)
			}
			applyStart := time.Now()
			res, err := m.applier.Apply(apply.WithIndex(ctx, idx), w, b, r)
			if err != nil {
				return fmt.Errorf("entry %d: %w", idx, err)
			}
			m.appliedMetrics(r, res, time.Since(applyStart))
			id := r.ID
			if id == 0 {
				id = r.Header.GetID()
			}
			done = append(done, outcome{id, res})
			compacted = compacted || (res.Compaction && res.Err == nil)
		case raftpb.EntryType_EntryConfChange:
			cc := &raftpb.ConfChange{}
			if err := proto.Unmarshal(e.Data, cc); err != nil {
				return fmt.Errorf("entry %d is not a conf change: %w", idx, err)
			}
			// An invalid change comes back with NodeId raft.None, which
			// Raft ignores; its proposer gets res.Err.
			res, err := m.applier.ApplyConfChange(b, cc)
			if err != nil {
				return fmt.Errorf("entry %d: %w", idx, err)
			}
			if res.Err != nil {
				if err := m.cluster.MarkRefused(b, idx); err != nil {
					return err
				}
			}
			confState = m.raft.ApplyConfChange(cc)
			if err := m.log.SetConfState(b, confState); err != nil {
				return err
			}
			m.confChangeApplied(cc, res)
			done = append(done, outcome{cc.GetId(), res})
		default:
			return fmt.Errorf("entry %d has unsupported type %v", idx, e.GetType())
		}
	}
	if last == applied {
		return nil
	}
	if err := w.Finish(); err != nil {
		return err
	}
	if err := storage.SetApplied(b, last); err != nil {
		return err
	}
	// No sync: the entries are in the synced Raft log, and replaying them
	// after a crash recreates exactly this batch.
	commitStart := time.Now()
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("commit apply batch: %w", err)
	}
	m.cfg.Metrics.BackendCommit(time.Since(commitStart))
	m.kv.Committed(w)
	m.quotaApplied(int64(b.Len()), compacted)
	if evs := w.Events(); len(evs) > 0 {
		m.watch.Notify(w.Rev(), evs)
	}
	if confState != nil {
		m.log.ConfStateApplied(confState)
	}
	m.applied.Store(last)
	m.appliedTerm = lastTerm
	m.appliedMu.Lock()
	close(m.appliedC)
	m.appliedC = make(chan struct{})
	m.appliedMu.Unlock()
	for _, o := range done {
		m.wait.trigger(o.id, o.res)
	}
	return m.maybeSnapshot()
}

// maybeSnapshot records a Raft snapshot and compacts the log once
// SnapshotCount entries have been applied since the last one.
func (m *Member) maybeSnapshot() error {
	applied := m.applied.Load()
	if applied-m.snapIndex < m.cfg.SnapshotCount {
		return nil
	}
	compactTo := uint64(0)
	if applied > m.cfg.SnapshotCatchUpEntries {
		compactTo = applied - m.cfg.SnapshotCatchUpEntries
	}
	first, _ := m.log.FirstIndex()
	if compactTo < first {
		compactTo = first - 1
	}
	m.lg.Info("triggering snapshot", zap.String("local-member-id", idString(m.cfg.ID)),
		zap.Uint64("local-member-applied-index", applied), zap.Uint64("local-member-snapshot-index", m.snapIndex),
		zap.Uint64("local-member-snapshot-count", m.cfg.SnapshotCount))
	start := time.Now()
	if err := m.log.CreateSnapshot(applied, m.appliedTerm, m.log.ConfState(), compactTo); err != nil {
		return err
	}
	m.cfg.Metrics.SnapshotSaved(time.Since(start))
	m.snapIndex = applied
	m.lg.Info("compacted Raft logs", zap.Uint64("compact-index", compactTo))
	return nil
}

// appliedNotify returns a channel closed after the next apply batch.
func (m *Member) appliedNotify() <-chan struct{} {
	m.appliedMu.Lock()
	defer m.appliedMu.Unlock()
	return m.appliedC
}

// waitApplied waits until the entry at index has been applied.
func (m *Member) waitApplied(ctx context.Context, index uint64) error {
	for {
		ch := m.appliedNotify()
		if m.applied.Load() >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-m.stopc:
			return rpctypes.ErrGRPCStopped
		}
	}
}
