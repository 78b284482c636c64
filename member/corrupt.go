package member

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/zap"

	"github.com/keeldb/keel/mvcc"
	"github.com/keeldb/keel/transport"
)

// The corruption checks compare the hash of the key space (HashKV) across
// members, as etcd does:
//
//   - the initial check (--feature-gates=InitialCorruptCheck=true) runs on
//     a restarting member before Raft starts and before it serves peers or
//     clients; a peer that hashes the member's current revision differently
//     over the same compaction revision makes the member refuse to start;
//   - the periodic check (--corrupt-check-time) runs on the leader and
//     raises the CORRUPT alarm, through Raft, for the member it blames;
//   - the compaction hash check (--feature-gates=CompactHashCheck=true,
//     --compact-hash-check-time) runs on the leader after compactions and
//     compares the hashes members take at the latest compaction revision.
//
// Peers are asked one after the other, each with the request timeout; a
// peer that does not answer is skipped with a warning.

// PeerHash is a peer's answer to HashKV at the revision the checking member
// asked for: its own current revision, and the hash of its key space at
// that revision with the compaction revision it was taken over.
type PeerHash struct {
	ID       uint64
	Revision int64 // the peer's current revision (its response header's)
	Hash     mvcc.KVHash
}

// peerHashResult is what asking one peer gave: Hash when it answered, else
// the error of the last attempt.
type peerHashResult struct {
	id   uint64
	urls []string
	hash *PeerHash
	err  error
}

// hashSource is what the checks need from the member; tests fake it. Its
// methods are called from one goroutine at a time.
type hashSource interface {
	// localHash is the member's own HashKV at rev (0: now) and its current
	// revision.
	localHash(ctx context.Context, rev int64) (mvcc.KVHash, int64, error)
	// compactRevision is the member's compaction revision.
	compactRevision() int64
	// peerHashes asks every other member for its HashKV at rev.
	peerHashes(rev int64) []peerHashResult
	// linearizableRead returns once the member applied what was committed
	// when it was called.
	linearizableRead(ctx context.Context) error
	// raiseCorrupt raises the CORRUPT alarm of member id through Raft.
	raiseCorrupt(id uint64)
}

// corruptionChecker runs the checks for one member.
type corruptionChecker struct {
	lg      *zap.Logger
	self    uint64
	timeout time.Duration // the request timeout
	src     hashSource

	mu sync.Mutex
	// latestRevisionChecked is the highest compaction revision the
	// compaction hash check verified on every member.
	latestRevisionChecked int64
}

// initialCheck compares the member's hash at its current revision with its
// peers' and returns etcd's error on a mismatch.
func (c *corruptionChecker) initialCheck(ctx context.Context) error {
	self := idString(c.self)
	c.lg.Info("starting initial corruption check", zap.String("local-member-id", self), zap.Duration("timeout", c.timeout))
	h, _, err := c.src.localHash(ctx, 0)
	if err != nil {
		return fmt.Errorf("%s failed to fetch hash (%w)", self, err)
	}
	var answered []PeerHash
	for _, p := range c.src.peerHashes(h.Revision) {
		if p.hash != nil {
			answered = append(answered, *p.hash)
			continue
		}
		fields := []zap.Field{
			zap.String("local-member-id", self),
			zap.Int64("local-member-revision", h.Revision),
			zap.Int64("local-member-compact-revision", h.CompactRevision),
			zap.Uint32("local-member-hash", h.Hash),
			zap.String("remote-peer-id", idString(p.id)),
			zap.Strings("remote-peer-endpoints", p.urls),
			zap.Error(p.err),
		}
		switch {
		case errors.Is(p.err, rpctypes.ErrGRPCFutureRev):
			c.lg.Warn("cannot fetch hash from slow remote peer", fields...)
		case errors.Is(p.err, rpctypes.ErrGRPCCompacted):
			c.lg.Warn("cannot fetch hash from remote peer; local member is behind", fields...)
		case errors.Is(p.err, transport.ErrClusterIDMismatch):
			c.lg.Warn("cluster ID mismatch", fields...)
		}
	}
	if err := initialCheckVerdict(c.lg, c.self, h, answered); err != nil {
		return err
	}
	c.lg.Info("initial corruption checking passed; no corruption", zap.String("local-member-id", self))
	return nil
}

// initialCheckVerdict is etcd's initial corruption check, run before a
// member serves: local is its own HashKV at its current revision, peers the
// peers' HashKVs at that revision. Only a peer whose hash differs over the
// same compaction revision counts as a mismatch (a different compaction
// revision makes the hashes incomparable); any mismatch makes the member
// refuse to start, with etcd's error. Every differing peer is logged.
func initialCheckVerdict(lg *zap.Logger, self uint64, local mvcc.KVHash, peers []PeerHash) error {
	mismatch := 0
	for _, p := range peers {
		if p.Hash.Hash == local.Hash {
			continue
		}
		fields := []zap.Field{
			zap.String("local-member-id", idString(self)),
			zap.Int64("local-member-revision", local.Revision),
			zap.Int64("local-member-compact-revision", local.CompactRevision),
			zap.Uint32("local-member-hash", local.Hash),
			zap.String("remote-peer-id", idString(p.ID)),
			zap.Int64("remote-peer-revision", p.Revision),
			zap.Int64("remote-peer-compact-revision", p.Hash.CompactRevision),
			zap.Uint32("remote-peer-hash", p.Hash.Hash),
		}
		if p.Hash.CompactRevision == local.CompactRevision {
			lg.Warn("found different hash values from remote peer", fields...)
			mismatch++
		} else {
			lg.Warn("found different compact revision values from remote peer", fields...)
		}
	}
	if mismatch > 0 {
		return fmt.Errorf("%s found data inconsistency with peers", idString(self))
	}
	return nil
}

// periodicCheck is one pass of the leader's periodic check: its hash, the
// peers' hashes at that revision, a linearizable read, its hash again, and
// the verdict; a verdict raises CORRUPT for the member it names.
func (c *corruptionChecker) periodicCheck(ctx context.Context) error {
	h, _, err := c.src.localHash(ctx, 0)
	if err != nil {
		return err
	}
	peers := c.src.peerHashes(h.Revision)
	rctx, cancel := context.WithTimeout(ctx, c.timeout)
	err = c.src.linearizableRead(rctx)
	cancel()
	if err != nil {
		return err
	}
	h2, rev2, err := c.src.localHash(ctx, 0)
	if err != nil {
		return err
	}
	var answered []PeerHash
	for _, p := range peers {
		if p.hash != nil {
			answered = append(answered, *p.hash)
		}
	}
	if id, ok := periodicCheckVerdict(c.lg, c.self, h, h2, rev2, answered); ok {
		c.src.raiseCorrupt(id)
	}
	c.lg.Info("finished peer corruption check", zap.Int("number-of-peers-checked", len(answered)))
	return nil
}

// periodicCheckVerdict is the leader's periodic check, etcd's rules: before
// and after are the leader's own HashKV at its current revision taken
// before and after asking the peers (with a linearizable read between), rev
// its revision at the second; peers answered for before.Revision. It
// returns the member to raise CORRUPT for, and whether there is one: the
// leader itself if its hash of the same revision changed, else the first
// peer that is ahead of the leader, compacted further, or hashes
// differently over the same compaction revision. Like etcd it raises at
// most one alarm per check, and logs every finding.
func periodicCheckVerdict(lg *zap.Logger, self uint64, before, after mvcc.KVHash, rev int64, peers []PeerHash) (uint64, bool) {
	var blamed uint64
	found := false
	blame := func(id uint64) {
		if !found {
			blamed, found = id, true
		}
	}
	if after.Hash != before.Hash && after.Revision == before.Revision && after.CompactRevision == before.CompactRevision {
		lg.Warn("found hash mismatch",
			zap.Int64("revision-1", before.Revision), zap.Int64("compact-revision-1", before.CompactRevision), zap.Uint32("hash-1", before.Hash),
			zap.Int64("revision-2", after.Revision), zap.Int64("compact-revision-2", after.CompactRevision), zap.Uint32("hash-2", after.Hash))
		blame(self)
	}
	for _, p := range peers {
		peer := zap.String("follower-peer-id", idString(p.ID))
		if p.Revision > rev {
			lg.Warn("revision from follower must be less than or equal to leader's",
				zap.Int64("leader-revision", rev), zap.Int64("follower-revision", p.Revision), peer)
			blame(p.ID)
		}
		if p.Hash.CompactRevision > after.CompactRevision {
			lg.Warn("compact revision from follower must be less than or equal to leader's",
				zap.Int64("leader-compact-revision", after.CompactRevision), zap.Int64("follower-compact-revision", p.Hash.CompactRevision), peer)
			blame(p.ID)
		}
		if p.Hash.CompactRevision == before.CompactRevision && p.Hash.Hash != before.Hash {
			lg.Warn("same compact revision then hashes must match",
				zap.Int64("leader-compact-revision", after.CompactRevision), zap.Uint32("leader-hash", before.Hash),
				zap.Int64("follower-compact-revision", p.Hash.CompactRevision), zap.Uint32("follower-hash", p.Hash.Hash), peer)
			blame(p.ID)
		}
	}
	return blamed, found
}

// compactHashCheck compares, on the leader, the hashes members take at the
// latest compaction revision, once per compaction revision that every
// member could be checked at. etcd keeps the hashes of its last
// compactions and checks the newest one every member still has; keel
// hashes the key space at the compaction revision on demand, which only
// the members that compacted at exactly that revision can answer, so it
// checks the latest compaction only.
func (c *corruptionChecker) compactHashCheck(ctx context.Context) {
	c.lg.Info("starting compact hash check", zap.String("local-member-id", idString(c.self)), zap.Duration("timeout", c.timeout))
	checked := 0
	defer func() { c.lg.Info("finished compaction hash check", zap.Int("number-of-hashes-checked", checked)) }()
	rev := c.src.compactRevision()
	c.mu.Lock()
	last := c.latestRevisionChecked
	c.mu.Unlock()
	if rev <= last {
		return
	}
	h, _, err := c.src.localHash(ctx, rev)
	if err != nil {
		return // compacted again meanwhile: the next pass checks that one
	}
	peers := c.src.peerHashes(rev)
	if len(peers) == 0 {
		return
	}
	checked = 1
	alarms, complete := compactHashVerdict(c.lg, c.self, h, peers)
	for _, id := range alarms {
		c.src.raiseCorrupt(id)
	}
	if complete && len(alarms) == 0 {
		c.mu.Lock()
		c.latestRevisionChecked = max(c.latestRevisionChecked, rev)
		c.mu.Unlock()
	}
}

// compactHashVerdict groups the members by the hash they took at the
// leader's compaction revision (peers that did not answer or are at another
// compaction revision are skipped) and returns the members to raise
// CORRUPT for, etcd's rules: with one hash, none; with several, every
// member outside the group a quorum of the cluster shares, or member 0
// (the whole cluster) when no group has a quorum. complete says whether
// every peer was compared.
func compactHashVerdict(lg *zap.Logger, self uint64, leader mvcc.KVHash, peers []peerHashResult) (alarms []uint64, complete bool) {
	leaderID := idString(self)
	groups := map[uint32][]uint64{leader.Hash: {self}}
	checked := 0
	for _, p := range peers {
		reason := ""
		switch {
		case p.hash == nil:
			reason = "no response"
		case p.hash.Hash.CompactRevision != leader.CompactRevision:
			reason = fmt.Sprintf("the peer's CompactRevision %d doesn't match leader's CompactRevision %d",
				p.hash.Hash.CompactRevision, leader.CompactRevision)
		}
		if reason != "" {
			lg.Warn("Skipped peer's hash", zap.Int("number-of-peers", len(peers)), zap.String("leader-id", leaderID),
				zap.String("peer-id", idString(p.id)), zap.String("reason", reason))
			continue
		}
		checked++
		groups[p.hash.Hash.Hash] = append(groups[p.hash.Hash.Hash], p.id)
	}
	if len(groups) == 1 {
		if checked == len(peers) {
			lg.Info("successfully checked hash on whole cluster", zap.Int("number-of-peers-checked", checked),
				zap.Int64("revision", leader.Revision), zap.Int64("compactRevision", leader.CompactRevision))
			return nil, true
		}
		lg.Warn("skipped revision in compaction hash check; was not able to check all peers",
			zap.Int("number-of-peers-checked", checked), zap.Int("number-of-peers", len(peers)),
			zap.Int64("revision", leader.Revision), zap.Int64("compactRevision", leader.CompactRevision))
		return nil, false
	}
	q := quorum(len(peers) + 1)
	hashes := make([]uint32, 0, len(groups))
	for h := range groups {
		hashes = append(hashes, h)
	}
	slices.Sort(hashes) // a deterministic order of alarms and logs
	majority := slices.IndexFunc(hashes, func(h uint32) bool { return len(groups[h]) >= q })
	if majority < 0 {
		lg.Error("Detected compaction hash mismatch but cannot identify the corrupted members, so intentionally set the memberID as 0",
			zap.String("leader-id", leaderID), zap.Int64("leader-revision", leader.Revision),
			zap.Int64("leader-compact-revision", leader.CompactRevision), zap.Uint32("leader-hash", leader.Hash))
		alarms = append(alarms, 0)
	}
	for i, h := range hashes {
		if i == majority {
			continue
		}
		ids := groups[h]
		if majority >= 0 {
			alarms = append(alarms, ids...)
		}
		names := make([]string, len(ids))
		for j, id := range ids {
			names[j] = idString(id)
		}
		lg.Error("Detected compaction hash mismatch", zap.String("leader-id", leaderID),
			zap.Int64("leader-revision", leader.Revision), zap.Int64("leader-compact-revision", leader.CompactRevision),
			zap.Uint32("leader-hash", leader.Hash), zap.Uint32("peer-hash", h), zap.Strings("peer-ids", names),
			zap.Bool("quorum-exist", majority >= 0))
	}
	return alarms, true
}

// memberHashSource is the member's hashSource.
type memberHashSource struct{ m *Member }

func (s memberHashSource) localHash(ctx context.Context, rev int64) (mvcc.KVHash, int64, error) {
	return s.m.HashKV(ctx, rev)
}

func (s memberHashSource) compactRevision() int64 { return s.m.kv.CompactRev() }

func (s memberHashSource) linearizableRead(ctx context.Context) error {
	return s.m.linearizableReadNotify(ctx)
}

// peerHashes asks every other member, learners included, one after the
// other, each with the request timeout; a member without peer transport has
// no one to ask.
func (s memberHashSource) peerHashes(rev int64) []peerHashResult {
	m := s.m
	if m.cfg.Transport == nil {
		return nil
	}
	stopCtx, stop := m.stopContext()
	defer stop()
	var out []peerHashResult
	for _, mem := range m.cluster.Members() {
		if mem.ID == m.cfg.ID || len(mem.PeerURLs) == 0 {
			continue
		}
		r := peerHashResult{id: mem.ID, urls: mem.PeerURLs}
		ctx, cancel := context.WithTimeout(stopCtx, m.requestTimeout())
		resp, err := m.cfg.Transport.HashKV(ctx, mem.ID, rev)
		cancel()
		if err != nil {
			m.lg.Warn("failed hash kv request", zap.String("local-member-id", idString(m.cfg.ID)),
				zap.Int64("requested-revision", rev), zap.String("remote-peer-id", idString(mem.ID)),
				zap.Strings("remote-peer-endpoints", mem.PeerURLs), zap.Error(err))
			r.err = err
		} else {
			r.hash = &PeerHash{ID: mem.ID, Revision: resp.GetHeader().GetRevision(), Hash: mvcc.KVHash{
				Hash: resp.Hash, Revision: resp.HashRevision, CompactRevision: resp.CompactRevision,
			}}
		}
		out = append(out, r)
	}
	return out
}

// raiseCorrupt proposes the CORRUPT alarm of member id (0: the whole
// cluster) and waits for it, bounded by the request timeout.
func (s memberHashSource) raiseCorrupt(id uint64) {
	m := s.m
	stopCtx, stop := m.stopContext()
	defer stop()
	_, err := m.propose(stopCtx, &pb.InternalRaftRequest{Alarm: &pb.AlarmRequest{
		MemberID: id, Action: pb.AlarmRequest_ACTIVATE, Alarm: pb.AlarmType_CORRUPT,
	}})
	if err != nil {
		m.lg.Warn("failed to raise the CORRUPT alarm", zap.String("member-id", idString(id)), zap.Error(err))
	}
}

// HashKV answers a peer's corruption check with this member's hash at rev,
// as etcd's peer hash endpoint does; the refusal of a compacted or future
// revision is etcd's gRPC error.
func (h *PeerHandler) HashKV(ctx context.Context, rev int64) (*pb.HashKVResponse, error) {
	hash, cur, err := h.m.HashKV(ctx, rev)
	switch {
	case errors.Is(err, mvcc.ErrCompacted):
		return nil, rpctypes.ErrGRPCCompacted
	case errors.Is(err, mvcc.ErrFutureRev):
		return nil, rpctypes.ErrGRPCFutureRev
	case err != nil:
		h.m.lg.Warn("failed to get hashKV", zap.Int64("requested-revision", rev), zap.Error(err))
		return nil, err
	}
	return &pb.HashKVResponse{
		Header:          &pb.ResponseHeader{Revision: cur},
		Hash:            hash.Hash,
		CompactRevision: hash.CompactRevision,
		HashRevision:    hash.Revision,
	}, nil
}

func (m *Member) newCorruptionChecker() *corruptionChecker {
	return &corruptionChecker{lg: m.lg, self: m.cfg.ID, timeout: m.requestTimeout(), src: memberHashSource{m}}
}

// isLeader reports whether this member leads now.
func (m *Member) isLeader() bool { return m.raft.Lead() == m.cfg.ID }

// corruptCheckLoop runs the periodic check every CorruptCheckTime while
// this member leads, until it stops.
func (m *Member) corruptCheckLoop(c *corruptionChecker) {
	defer m.wg.Done()
	interval := m.cfg.CorruptCheckTime
	m.lg.Info("enabled corruption checking", zap.String("local-member-id", idString(m.cfg.ID)), zap.Duration("interval", interval))
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	ctx, cancel := m.stopContext()
	defer cancel()
	for {
		select {
		case <-m.stopc:
			m.lg.Info("server has stopped; stopping kv hash's monitor")
			return
		case <-ticker.C:
		}
		if !m.isLeader() {
			continue
		}
		if err := c.periodicCheck(ctx); err != nil && ctx.Err() == nil {
			m.lg.Warn("failed to check hash KV", zap.Error(err))
		}
	}
}

// compactHashLoop runs the compaction hash check every
// CompactHashCheckTime while this member leads, until it stops.
func (m *Member) compactHashLoop(c *corruptionChecker) {
	defer m.wg.Done()
	ctx, cancel := m.stopContext()
	defer cancel()
	timer := time.NewTimer(m.cfg.CompactHashCheckTime)
	defer timer.Stop()
	for {
		select {
		case <-m.stopc:
			m.lg.Info("server has stopped; stopping compact hash's monitor")
			return
		case <-timer.C:
			timer.Reset(m.cfg.CompactHashCheckTime)
		}
		if m.isLeader() {
			c.compactHashCheck(ctx)
		}
	}
}
