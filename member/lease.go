package member

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/raft/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keeldb/keel/auth"
	"github.com/keeldb/keel/lease"
)

// applyTimeout bounds how long a lease request on the leader waits for the
// apply loop to catch up with the commit index (etcd's value).
const applyTimeout = time.Second

// maxPendingRevokes bounds how many revocations of expired leases are in
// flight at once (etcd's value).
const maxPendingRevokes = 16

// newLessor loads the member's leases. The minimum TTL is etcd's: one and a
// half election timeouts, rounded up to whole seconds, so that a lease
// cannot expire while a leader election that keeps it alive is under way.
func (m *Member) newLessor() (*lease.Lessor, error) {
	cfg := m.cfg
	minTTL := time.Duration((3*cfg.ElectionTicks)/2) * cfg.TickInterval
	return lease.Load(cfg.Engine.DB(), lease.Config{
		MinTTL:             int64(math.Ceil(minTTL.Seconds())),
		CheckpointInterval: cfg.LeaseCheckpointInterval,
		RetryInterval:      m.requestTimeout(),
		Proposer:           leaseProposer{m},
		Clock:              cfg.LeaseClock,
		Logger:             m.lg,
	})
}

// electionTimeout is the extension a newly promoted lessor gives every lease.
func (m *Member) electionTimeout() time.Duration {
	return time.Duration(m.cfg.ElectionTicks) * m.cfg.TickInterval
}

// startLeases starts the goroutines that follow leadership (promoting and
// demoting the lessor) and that revoke expired leases and checkpoint
// remaining TTLs on the leader. Both stop with the member.
func (m *Member) startLeases() {
	m.wg.Add(2)
	go m.followLeadership()
	go func() {
		defer m.wg.Done()
		ctx, cancel := m.stopContext()
		defer cancel()
		m.lessor.Run(ctx)
	}()
}

// stopContext returns a context cancelled when the member stops.
func (m *Member) stopContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-m.stopc:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// followLeadership makes the lessor primary while this member leads and
// demotes it otherwise. A promotion waits until the entries committed
// before it are applied (as etcd promotes once the new term's first entry
// is applied), and extends every lease by the election timeout. Every
// leader change seen while leading promotes again: leadership may have
// been lost and regained in between, and keepalives sent meanwhile went to
// another member.
func (m *Member) followLeadership() {
	defer m.wg.Done()
	defer m.lessor.Demote()
	for {
		changed := m.raft.LeaderChanged()
		if m.raft.Lead() == m.cfg.ID {
			ctx, cancel := context.WithTimeout(context.Background(), m.requestTimeout())
			err := m.waitApplied(ctx, m.raft.CommittedIndex())
			cancel()
			if errors.Is(err, rpctypes.ErrGRPCStopped) {
				return
			}
			select {
			case <-changed:
				continue // leadership moved while waiting: look again
			default:
			}
			if err != nil {
				m.lg.Warn("promoting the lessor before the apply loop caught up", zap.Error(err))
			}
			m.lessor.Promote(m.electionTimeout())
		} else {
			m.lessor.Demote()
		}
		select {
		case <-changed:
		case <-m.stopc:
			return
		}
	}
}

// LeaseGrant proposes a lease grant. A request without an ID gets one from
// the request ID generator, masked to a positive int64, as in etcd.
func (m *Member) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	for r.ID == 0 {
		r.ID = int64(m.reqIDs.next() & (1<<63 - 1))
	}
	resp, err := m.write(ctx, &pb.InternalRaftRequest{LeaseGrant: r})
	if err != nil {
		return nil, err
	}
	return resp.(*pb.LeaseGrantResponse), nil
}

// LeaseRevoke proposes a lease revocation on behalf of ai (nil: nobody);
// the keys attached to the lease are deleted in the same revision. Whether
// ai may write them is decided at apply.
func (m *Member) LeaseRevoke(ctx context.Context, ai *auth.AuthInfo, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	resp, err := m.write(ctx, &pb.InternalRaftRequest{Header: requestHeaderOf(ai), LeaseRevoke: r})
	if err != nil {
		return nil, err
	}
	return resp.(*pb.LeaseRevokeResponse), nil
}

// LeaseRenew renews lease id on the leader's lessor and returns its TTL;
// a follower forwards the renewal to the leader. An unknown lease is
// rpctypes.ErrGRPCLeaseNotFound (the keepalive stream answers it with TTL 0).
func (m *Member) LeaseRenew(ctx context.Context, id int64) (int64, error) {
	var ttl int64
	err := m.onLeader(ctx, func(ctx context.Context) (err error) {
		ttl, err = m.leaseRenewLocal(ctx, id)
		return err
	}, func(ctx context.Context, lead uint64) (err error) {
		ttl, err = m.cfg.Transport.LeaseRenew(ctx, lead, id)
		return err
	})
	if err != nil {
		return -1, err
	}
	return ttl, nil
}

// leaseRenewLocal renews lease id on this member's lessor, which must be
// the primary one; on a follower it fails with rpctypes.ErrGRPCNotLeader.
func (m *Member) leaseRenewLocal(ctx context.Context, id int64) (int64, error) {
	cctx, cancel := context.WithTimeout(ctx, m.requestTimeout())
	defer cancel()
	for {
		if err := m.awaitPrimary(cctx); err != nil {
			return -1, m.leaseCtxErr(ctx, err)
		}
		// A lease not known yet may be in an entry committed but not
		// applied yet; etcd then waits for the apply loop.
		if !m.lessor.Exists(id) {
			if err := m.waitAppliedIndex(ctx); err != nil {
				return -1, err
			}
		}
		ttl, err := m.lessor.Renew(cctx, id)
		switch {
		case err == nil:
			m.cfg.Metrics.LeaseRenewed()
			return ttl, nil
		case errors.Is(err, lease.ErrNotFound):
			return -1, rpctypes.ErrGRPCLeaseNotFound
		case errors.Is(err, lease.ErrNotPrimary):
			continue // demoted meanwhile: find the leader again
		}
		return -1, m.leaseCtxErr(ctx, err)
	}
}

// LeaseTimeToLive answers from the leader's lessor: the remaining and the
// granted TTL and, if asked, the attached keys in key order; a follower
// asks the leader. An unknown lease is rpctypes.ErrGRPCLeaseNotFound
// (answered with TTL -1). check (see ReadCheck) runs first, before any
// wait for the leader, and its after once answered, as etcd checks it; an
// error of the answer is returned as it is, without after.
func (m *Member) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest, check ReadCheck) (*pb.LeaseTimeToLiveResponse, error) {
	after, err := check()
	if err != nil {
		return nil, err
	}
	var resp *pb.LeaseTimeToLiveResponse
	err = m.onLeader(ctx, func(ctx context.Context) (err error) {
		resp, err = m.leaseTimeToLiveLocal(ctx, r)
		return err
	}, func(ctx context.Context, lead uint64) (err error) {
		resp, err = m.cfg.Transport.LeaseTimeToLive(ctx, lead, r)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := after(); err != nil {
		return nil, err
	}
	return resp, nil
}

// leaseTimeToLiveLocal answers from this member's lessor, which must be the
// primary one; on a follower it fails with rpctypes.ErrGRPCNotLeader.
func (m *Member) leaseTimeToLiveLocal(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	cctx, cancel := context.WithTimeout(ctx, m.requestTimeout())
	defer cancel()
	if err := m.awaitPrimary(cctx); err != nil {
		return nil, m.leaseCtxErr(ctx, err)
	}
	if err := m.waitAppliedIndex(ctx); err != nil {
		return nil, err
	}
	ttl, granted, err := m.lessor.TimeToLive(r.ID)
	switch {
	case errors.Is(err, lease.ErrNotFound):
		return nil, rpctypes.ErrGRPCLeaseNotFound
	case errors.Is(err, lease.ErrNotPrimary):
		// Demoted since awaitPrimary: the TTL is unknown here, and etcd
		// tells the client to retry.
		return nil, rpctypes.ErrGRPCLeaderChanged
	case err != nil:
		return nil, err
	}
	resp := &pb.LeaseTimeToLiveResponse{Header: &pb.ResponseHeader{}, ID: r.ID, TTL: ttl, GrantedTTL: granted}
	if r.Keys {
		keys, err := m.lessor.Keys(m.engine.DB(), r.ID)
		if err != nil {
			return nil, fmt.Errorf("read keys of lease %x: %w", r.ID, err)
		}
		resp.Keys = keys
	}
	return resp, nil
}

// LeaseKeys returns the keys attached to lease id as this member has
// applied them, in key order; none for a lease not granted. It is for
// permission checks, which etcd makes on the serving member.
func (m *Member) LeaseKeys(id int64) ([][]byte, error) {
	return m.lessor.Keys(m.engine.DB(), id)
}

// LeaseLeases lists the leases this member knows, the soonest to expire
// first (on the leader). Like etcd it answers locally on any member.
func (m *Member) LeaseLeases(context.Context) *pb.LeaseLeasesResponse {
	ids := m.lessor.Leases()
	resp := &pb.LeaseLeasesResponse{Header: &pb.ResponseHeader{}, Leases: make([]*pb.LeaseStatus, len(ids))}
	for i, id := range ids {
		resp.Leases[i] = &pb.LeaseStatus{ID: id}
	}
	return resp
}

// forwardRetry is how long a follower waits before forwarding a
// leader-only request again after the leader could not answer it.
const forwardRetry = 50 * time.Millisecond

// onLeader runs a request that only the leader can serve: locally when this
// member leads, else forwarded to the leader, retrying through elections
// and leader changes until the member's request timeout. Request errors
// that do not depend on who leads (a lease that does not exist) end it.
func (m *Member) onLeader(ctx context.Context, local func(context.Context) error, forward func(context.Context, uint64) error) error {
	cctx, cancel := context.WithTimeout(ctx, m.requestTimeout())
	defer cancel()
	for {
		lead := m.raft.Lead()
		var err error
		switch {
		case lead == m.cfg.ID || m.cfg.Transport == nil:
			err = local(cctx)
		case lead == raft.None:
			err = rpctypes.ErrGRPCNoLeader
		default:
			err = forward(cctx, lead)
		}
		if !retryOnLeader(err) {
			return m.leaseCtxErr(ctx, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		t := time.NewTimer(forwardRetry)
		select {
		case <-t.C:
		case <-m.raft.LeaderChanged():
			t.Stop()
		case <-cctx.Done():
			t.Stop()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if m.raft.Lead() == raft.None {
				return rpctypes.ErrGRPCNoLeader
			}
			return rpctypes.ErrGRPCTimeout
		case <-m.stopc:
			t.Stop()
			return rpctypes.ErrGRPCStopped
		}
	}
}

// retryOnLeader reports whether a leader-only request that failed with err
// may succeed on the (next) leader.
func retryOnLeader(err error) bool {
	if err == nil {
		return false
	}
	switch {
	case errors.Is(err, rpctypes.ErrGRPCNotLeader), errors.Is(err, rpctypes.ErrGRPCNoLeader),
		errors.Is(err, rpctypes.ErrGRPCLeaderChanged):
		return true
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false
	}
	// A peer that cannot be reached (down, partitioned) may be replaced by
	// a new leader; status errors from the leader's own code are final.
	if s, ok := status.FromError(err); ok {
		return s.Code() == codes.Unavailable
	}
	return false
}

// awaitPrimary returns once this member leads and its lessor is primary,
// waiting through an election or a promotion in progress until ctx is done.
// When another member leads it fails with rpctypes.ErrGRPCNotLeader.
func (m *Member) awaitPrimary(ctx context.Context) error {
	for {
		changed := m.raft.LeaderChanged()
		var promoted <-chan struct{}
		switch lead := m.raft.Lead(); lead {
		case m.cfg.ID:
			promoted = m.lessor.Promoted()
		case raft.None:
		default:
			return rpctypes.ErrGRPCNotLeader
		}
		select {
		case <-promoted:
			return nil
		case <-changed:
		case <-ctx.Done():
			if m.raft.Lead() == raft.None {
				return rpctypes.ErrGRPCNoLeader
			}
			return ctx.Err()
		case <-m.stopc:
			return rpctypes.ErrGRPCStopped
		}
	}
}

// waitAppliedIndex waits until every entry committed so far is applied, at
// most applyTimeout, as etcd's lease requests on the leader do.
func (m *Member) waitAppliedIndex(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, applyTimeout)
	defer cancel()
	err := m.waitApplied(cctx, m.raft.CommittedIndex())
	switch {
	case err == nil || errors.Is(err, rpctypes.ErrGRPCStopped):
		return err
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return rpctypes.ErrGRPCTimeoutWaitAppliedIndex
}

// leaseCtxErr turns the expiry of the member's own deadline into etcd's
// "request timed out"; the caller's cancellation passes through.
func (m *Member) leaseCtxErr(parent context.Context, err error) error {
	if errors.Is(err, context.DeadlineExceeded) && parent.Err() == nil {
		return rpctypes.ErrGRPCTimeout
	}
	return err
}

// ensureLeadership confirms with a ReadIndex round that this member still
// leads, before it acts on a decision only the leader may take (etcd does
// the same before revoking expired leases or checkpointing).
func (m *Member) ensureLeadership(ctx context.Context) bool {
	cctx, cancel := context.WithTimeout(ctx, m.requestTimeout())
	defer cancel()
	if err := m.linearizableReadNotify(cctx); err != nil {
		m.lg.Warn("failed to check current member's leadership", zap.Error(err))
		return false
	}
	return m.raft.Lead() == m.cfg.ID
}

// leaseProposer proposes the lessor's revocations and checkpoints.
type leaseProposer struct{ m *Member }

// Revoke implements lease.Proposer: up to maxPendingRevokes proposals at
// once, after confirming leadership.
func (p leaseProposer) Revoke(ctx context.Context, ids []int64) {
	m := p.m
	if !m.ensureLeadership(ctx) {
		m.lg.Warn("Ignore the lease revoking request because current member isn't a leader",
			zap.String("local-member-id", idString(m.cfg.ID)))
		return
	}
	sem := make(chan struct{}, maxPendingRevokes)
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, id := range ids {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			// An expired lease is revoked as root, as etcd does, so that
			// the keys' permissions do not hold it back.
			hdr := requestHeaderOf(m.auth.RootInfo())
			m.cfg.Metrics.LeaseExpired()
			if _, err := m.write(ctx, &pb.InternalRaftRequest{Header: hdr, LeaseRevoke: &pb.LeaseRevokeRequest{ID: id}}); err != nil && ctx.Err() == nil {
				m.lg.Warn("failed to revoke lease", zap.String("lease-id", fmt.Sprintf("%016x", id)), zap.Error(err))
			}
		}()
	}
}

// Checkpoint implements lease.Proposer. As in etcd, a failed proposal is
// logged, not returned: a keepalive that asked for the checkpoint still
// renews.
func (p leaseProposer) Checkpoint(ctx context.Context, cps []lease.Checkpoint) error {
	m := p.m
	if !m.ensureLeadership(ctx) {
		m.lg.Warn("Ignore the checkpoint request because current member isn't a leader",
			zap.String("local-member-id", idString(m.cfg.ID)))
		return lease.ErrNotPrimary
	}
	req := &pb.LeaseCheckpointRequest{Checkpoints: make([]*pb.LeaseCheckpoint, len(cps))}
	for i, c := range cps {
		req.Checkpoints[i] = &pb.LeaseCheckpoint{ID: c.ID, Remaining_TTL: c.RemainingTTL}
	}
	if _, err := m.propose(ctx, &pb.InternalRaftRequest{LeaseCheckpoint: req}); err != nil && ctx.Err() == nil {
		m.lg.Warn("failed to checkpoint leases", zap.Int("count", len(cps)), zap.Error(err))
	}
	return nil
}
