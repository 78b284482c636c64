// Package raftnode runs the Raft state machine of one member on
// go.etcd.io/raft/v3: it ticks the clock, persists what each Ready asks for
// in the order Raft requires, sends messages, and hands committed entries to
// the apply loop. It is the only package that talks to Raft.
package raftnode

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"

	"github.com/keeldb/keel/metrics"
	"github.com/keeldb/keel/storage"
)

// Transport sends Raft messages to other members. Send must not block the
// Raft loop: implementations queue per peer and drop when a queue is full
// (Raft retransmits).
type Transport interface {
	Send(msgs []*raftpb.Message)
}

// Config describes the node to start.
type Config struct {
	// ID is this member's Raft ID.
	ID uint64
	// Log is the persisted Raft state.
	Log *storage.RaftLog
	// Applied is the index of the last entry already applied to the state
	// machine; committed entries up to it are not handed out again. It may
	// exceed the commit index of Log's hard state, after a snapshot install
	// brought state from further ahead than the snapshot (see Apply): Raft
	// then hands out the entries between them again, and the apply loop must
	// skip their effects.
	Applied uint64
	// Peers bootstraps a new cluster; empty when restarting from Log.
	Peers []raft.Peer
	// TickInterval is the heartbeat interval; ElectionTicks the election
	// timeout in ticks.
	TickInterval  time.Duration
	ElectionTicks int
	// Transport may be nil for a one-member cluster.
	Transport Transport
	// Metrics records leader changes and Raft log sync times; may be nil.
	Metrics *metrics.Metrics
	Logger  *zap.Logger
}

// Apply is what the apply loop must do next, in log order: either apply a
// batch of committed entries, or install a snapshot.
type Apply struct {
	Entries []*raftpb.Entry

	// Snapshot, when set, is a snapshot Raft accepted from the leader. The
	// apply loop must make the state and the Raft log match it (install the
	// state staged for it, storage.RaftLog.InstallSnapshot, or, if the state
	// is already past it, storage.RaftLog.ApplySnapshot) and then send the
	// outcome on Done, exactly once. The Raft loop waits for that before it
	// persists or sends anything more, so nothing is acknowledged to the
	// leader before the snapshot is durable; every Apply sent before this one
	// has been applied by then, since the apply loop takes them in order.
	// A non-nil error stops the Raft loop.
	Snapshot *raftpb.Snapshot
	Done     chan<- error
}

// Node is a running Raft node.
type Node struct {
	cfg  Config
	lg   *zap.Logger
	rn   raft.Node
	log  *storage.RaftLog
	tick *time.Ticker
	// campaign is set while a single-node cluster still has to elect itself;
	// loop goroutine only.
	campaign bool

	applyc     chan Apply
	readStatec chan raft.ReadState

	lead   atomic.Uint64
	term   atomic.Uint64
	commit atomic.Uint64

	leaderMu      sync.Mutex
	leaderChanged chan struct{} // closed and replaced on every leader change

	stopOnce sync.Once
	stopc    chan struct{}
	donec    chan struct{}
	err      error // why the loop stopped, if it failed; read after donec
}

// Start starts the Raft node and its loop.
func Start(cfg Config) (*Node, error) {
	if cfg.TickInterval <= 0 || cfg.ElectionTicks <= 1 {
		return nil, fmt.Errorf("raftnode: invalid timing: tick %v, election ticks %d", cfg.TickInterval, cfg.ElectionTicks)
	}
	lg := cfg.Logger
	rc := &raft.Config{
		ID:                        cfg.ID,
		ElectionTick:              cfg.ElectionTicks,
		HeartbeatTick:             1,
		Storage:                   cfg.Log,
		Applied:                   min(cfg.Applied, cfg.Log.HardState().GetCommit()),
		MaxSizePerMsg:             1 << 20,
		MaxCommittedSizePerReady:  16 << 20,
		MaxInflightMsgs:           512,
		MaxUncommittedEntriesSize: 1 << 30,
		CheckQuorum:               true,
		PreVote:                   true,
		ReadOnlyOption:            raft.ReadOnlySafe,
		Logger:                    newRaftLogger(lg.Named("raft")),
	}
	n := &Node{
		cfg:           cfg,
		lg:            lg,
		log:           cfg.Log,
		applyc:        make(chan Apply, 16),
		readStatec:    make(chan raft.ReadState, 1),
		leaderChanged: make(chan struct{}),
		stopc:         make(chan struct{}),
		donec:         make(chan struct{}),
	}
	hs := cfg.Log.HardState()
	n.term.Store(hs.GetTerm())
	n.commit.Store(hs.GetCommit())
	voters := cfg.Log.ConfState().Voters
	if len(cfg.Peers) > 0 {
		n.rn = raft.StartNode(rc, cfg.Peers)
		voters = nil
		for _, p := range cfg.Peers {
			voters = append(voters, p.ID)
		}
	} else {
		n.rn = raft.RestartNode(rc)
	}
	n.tick = time.NewTicker(cfg.TickInterval)
	// Alone in the cluster nobody else can win, so don't wait out an
	// election timeout before serving: campaign as soon as Raft has applied
	// every committed conf change (it refuses to campaign before).
	n.campaign = len(voters) == 1 && voters[0] == cfg.ID
	if n.campaign {
		lg.Info("started as single-node; campaigning without waiting for an election timeout", zap.String("local-member-id", fmt.Sprintf("%x", cfg.ID)))
	}
	go n.run()
	return n, nil
}

// maybeCampaign starts the election of a single-node cluster once Raft has
// no unapplied conf change left. Called from the loop after Advance.
func (n *Node) maybeCampaign() {
	if !n.campaign {
		return
	}
	st := n.rn.Status()
	if st.Lead != raft.None || st.RaftState == raft.StateLeader {
		n.campaign = false
		return
	}
	if st.Applied < st.GetCommit() {
		return
	}
	n.campaign = false
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.TickInterval*time.Duration(n.cfg.ElectionTicks))
	defer cancel()
	if err := n.rn.Campaign(ctx); err != nil && !errors.Is(err, raft.ErrStopped) {
		n.lg.Warn("failed to campaign", zap.Error(err))
	}
}

func (n *Node) run() {
	defer close(n.donec)
	defer n.tick.Stop()
	n.maybeCampaign()
	for {
		select {
		case <-n.tick.C:
			n.rn.Tick()
		case rd := <-n.rn.Ready():
			if err := n.handle(rd); err != nil {
				n.err = err
				if !errors.Is(err, errStopping) {
					n.lg.Error("raft loop stopped", zap.Error(err))
				}
				n.rn.Stop()
				return
			}
			n.rn.Advance()
			n.maybeCampaign()
		case <-n.stopc:
			n.rn.Stop()
			return
		}
	}
}

// handle processes one Ready in the order Raft requires: persist entries and
// hard state (synced when Raft says so) before sending messages (a leader's
// excepted, as etcd does) and before handing committed entries on, so
// nothing is acknowledged before it is durable.
func (n *Node) handle(rd raft.Ready) error {
	if rd.SoftState != nil {
		old := n.lead.Swap(rd.SoftState.Lead)
		n.cfg.Metrics.LeaderChanged(rd.SoftState.Lead, rd.SoftState.RaftState == raft.StateLeader, old != rd.SoftState.Lead)
		if old != rd.SoftState.Lead {
			n.leaderMu.Lock()
			close(n.leaderChanged)
			n.leaderChanged = make(chan struct{})
			n.leaderMu.Unlock()
		}
	}
	for _, rs := range rd.ReadStates {
		// Only the newest read state matters: it covers every read request
		// issued before it.
		select {
		case <-n.readStatec:
		default:
		}
		n.readStatec <- rs
	}
	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := n.installSnapshot(rd.Snapshot); err != nil {
			return err
		}
	}
	// A leader may replicate entries before it has persisted them itself
	// (Raft thesis 10.2.1): it counts its own copy only once this Ready is
	// advanced, so the disk write and the network round trip overlap.
	// Everyone else must persist first: their messages acknowledge it.
	leading := n.lead.Load() == n.cfg.ID
	if leading && n.cfg.Transport != nil && len(rd.Messages) > 0 {
		n.cfg.Transport.Send(rd.Messages)
	}
	saveStart := time.Now()
	if err := n.log.Save(rd.HardState, rd.Entries, rd.MustSync); err != nil {
		return fmt.Errorf("failed to persist raft state: %w", err)
	}
	n.cfg.Metrics.WALSaved(time.Since(saveStart), rd.MustSync, entriesBytes(rd.Entries))
	if !raft.IsEmptyHardState(rd.HardState) {
		n.term.Store(rd.HardState.GetTerm())
		n.commit.Store(rd.HardState.GetCommit())
	}
	if !leading && n.cfg.Transport != nil && len(rd.Messages) > 0 {
		n.cfg.Transport.Send(rd.Messages)
	}
	if len(rd.CommittedEntries) > 0 {
		select {
		case n.applyc <- Apply{Entries: rd.CommittedEntries}:
		case <-n.stopc:
			return errStopping
		}
	}
	return nil
}

// installSnapshot has the apply loop install snap, after every entry handed
// to it before, and waits until it is durable. The Ready carrying snap is
// persisted and its messages sent only after that.
func (n *Node) installSnapshot(snap *raftpb.Snapshot) error {
	done := make(chan error, 1)
	select {
	case n.applyc <- Apply{Snapshot: snap, Done: done}:
	case <-n.stopc:
		return errStopping
	}
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("install raft snapshot at index %d: %w", snap.GetMetadata().GetIndex(), err)
		}
	case <-n.stopc:
		return errStopping
	}
	if idx := snap.GetMetadata().GetIndex(); idx > n.commit.Load() {
		n.commit.Store(idx)
	}
	return nil
}

var errStopping = errors.New("raft node stopping")

// Applies delivers committed entries in log order. The apply loop must
// consume it until Done is closed.
func (n *Node) Applies() <-chan Apply { return n.applyc }

// ReadStates delivers the answers to ReadIndex requests; when several are
// pending only the newest is kept.
func (n *Node) ReadStates() <-chan raft.ReadState { return n.readStatec }

// Propose proposes data to be appended to the log. It returns once Raft has
// accepted the proposal, not once it is committed.
func (n *Node) Propose(ctx context.Context, data []byte) error { return n.rn.Propose(ctx, data) }

// ReadIndex asks for the commit index at which a read issued now is
// linearizable; the answer arrives on ReadStates with the same rctx.
func (n *Node) ReadIndex(ctx context.Context, rctx []byte) error { return n.rn.ReadIndex(ctx, rctx) }

// ApplyConfChange applies a committed conf change to Raft's configuration and
// returns the resulting conf state. Called by the apply loop.
func (n *Node) ApplyConfChange(cc raftpb.ConfChangeI) *raftpb.ConfState {
	return n.rn.ApplyConfChange(cc)
}

// Lead returns the current leader's ID, 0 if none is known.
func (n *Node) Lead() uint64 { return n.lead.Load() }

// Term returns the current Raft term.
func (n *Node) Term() uint64 { return n.term.Load() }

// CommittedIndex returns the highest log index known to be committed.
func (n *Node) CommittedIndex() uint64 { return n.commit.Load() }

// LeaderChanged returns a channel closed at the next leader change.
func (n *Node) LeaderChanged() <-chan struct{} {
	n.leaderMu.Lock()
	defer n.leaderMu.Unlock()
	return n.leaderChanged
}

// Done is closed when the Raft loop has stopped, by Stop or by a failure
// (see Err).
func (n *Node) Done() <-chan struct{} { return n.donec }

// Err returns why the loop stopped on its own, once Done is closed.
func (n *Node) Err() error {
	select {
	case <-n.donec:
		if errors.Is(n.err, errStopping) {
			return nil
		}
		return n.err
	default:
		return nil
	}
}

// Stop stops the Raft loop and waits for it.
func (n *Node) Stop() {
	n.stopOnce.Do(func() { close(n.stopc) })
	<-n.donec
}

// Step hands a message received from a peer to Raft. It returns
// raft.ErrStopped once the node has stopped.
func (n *Node) Step(ctx context.Context, m *raftpb.Message) error { return n.rn.Step(ctx, m) }

// ReportUnreachable tells Raft that the last message to id could not be
// delivered, so the leader probes it instead of streaming to it.
func (n *Node) ReportUnreachable(id uint64) { n.rn.ReportUnreachable(id) }

// ReportSnapshot tells Raft whether the snapshot last sent to id arrived.
func (n *Node) ReportSnapshot(id uint64, status raft.SnapshotStatus) { n.rn.ReportSnapshot(id, status) }

// TransferLeadership asks the leader lead to hand leadership to transferee;
// it returns at once, and the outcome shows in Lead.
func (n *Node) TransferLeadership(ctx context.Context, lead, transferee uint64) {
	n.rn.TransferLeadership(ctx, lead, transferee)
}

// Status returns Raft's view of this node; on the leader it includes the
// replication progress of every follower and learner.
func (n *Node) Status() raft.Status { return n.rn.Status() }

// entriesBytes is the size of the data of ents, for the metrics.
func entriesBytes(ents []*raftpb.Entry) int {
	n := 0
	for _, e := range ents {
		n += len(e.Data)
	}
	return n
}
