package member

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// Raft snapshots
//
// A follower that needs entries the leader's log no longer has gets a Raft
// snapshot: the MsgSnap, whose metadata names an index, term and conf state,
// and the member's state streamed beside it (storage.OpenState). The sender
// side is OpenSnapshot. On the receiving side the transport stages the state
// in a file and calls ProcessSnapshot, which remembers the file and steps
// the message into Raft; when Raft accepts it, the Raft loop hands the
// snapshot to the apply loop (raftnode.Apply.Snapshot), which installs the
// file's state and reloads every in-memory view of it (applySnapshot) before
// Raft persists or acknowledges anything more.

// OpenSnapshot implements transport.Handler: it returns the state to stream
// with the outgoing MsgSnap msg, read from a Pebble snapshot taken now.
//
// That state is at the current applied index A, normally past the index of
// the Raft snapshot in msg. OpenSnapshot therefore rewrites msg's snapshot
// metadata to describe the streamed state exactly: index A, A's term, and the
// conf state recorded with A (as etcd sends the applied index rather than its
// last snapshot's). The follower then resumes right after A, and its conf
// state includes every member added up to A (Raft drops a snapshot whose
// conf state lacks the recipient). The transport must serialize msg after
// calling OpenSnapshot.
//
// The caller must Close the returned stream; it holds a Pebble snapshot.
func (m *Member) OpenSnapshot(msg *raftpb.Message) (io.ReadCloser, error) {
	st, err := m.engine.OpenState()
	if err != nil {
		return nil, err
	}
	meta := msg.GetSnapshot().GetMetadata()
	switch applied := st.Applied(); {
	case applied < meta.GetIndex():
		st.Close()
		return nil, fmt.Errorf("the state at applied index %d is behind the snapshot at index %d", applied, meta.GetIndex())
	case applied > meta.GetIndex():
		term, err := m.log.Term(applied)
		if err != nil {
			// The log was compacted past applied since the state was
			// pinned: Raft retries after the failure is reported.
			st.Close()
			return nil, fmt.Errorf("term of applied index %d: %w", applied, err)
		}
		msg.Snapshot = &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{
			Index: new(applied), Term: new(term), ConfState: st.ConfState(),
		}}
	}
	return st, nil
}

// ProcessSnapshot implements transport.Handler: path holds the received and
// verified state for the MsgSnap msg. It keeps the file for the apply loop
// and steps msg into Raft. After a nil return the member owns the file: it
// removes it once installed, once a later snapshot is installed, or when
// the member stops. After an error the caller removes it.
func (m *Member) ProcessSnapshot(ctx context.Context, msg *raftpb.Message, path string) error {
	meta := msg.GetSnapshot().GetMetadata()
	id := snapshotID{meta.GetIndex(), meta.GetTerm()}
	if !m.staged.put(id, path, m.engine.FS(), m.lg) {
		return rpctypes.ErrGRPCStopped
	}
	if err := m.raft.Step(ctx, msg); err != nil {
		m.staged.forget(id, path)
		if errors.Is(err, raft.ErrStopped) {
			return rpctypes.ErrGRPCStopped
		}
		return err
	}
	return nil
}

// applySnapshot makes the state and the Raft log match snap, which Raft
// accepted from the leader, and reloads every in-memory view of the state:
// the MVCC store, the lessor, the alarms, the membership (and with it the
// peer transport), the auth store, the applied index, and the watchers,
// which catch up from the new state's history (or are cancelled if it has
// compacted their revision). Proposals waiting for entries the snapshot covers are not
// answered; they time out as in etcd. Apply loop only.
func (m *Member) applySnapshot(snap *raftpb.Snapshot) error {
	meta := snap.GetMetadata()
	index, term := meta.GetIndex(), meta.GetTerm()
	fields := []zap.Field{
		zap.Uint64("current-snapshot-index", m.snapIndex),
		zap.Uint64("current-applied-index", m.applied.Load()),
		zap.Uint64("incoming-leader-snapshot-index", index),
		zap.Uint64("incoming-leader-snapshot-term", term),
	}
	m.lg.Info("applying snapshot", fields...)
	// Whatever happens, files staged for this snapshot or older ones can
	// no longer be installed: Raft only accepts newer ones.
	defer m.staged.removeUpTo(index)

	if index <= m.applied.Load() {
		// An earlier install brought state from past this snapshot: only
		// the Raft log has to start at it; the entries up to the applied
		// index are skipped when Raft hands them out again.
		if err := m.log.ApplySnapshot(meta); err != nil {
			return err
		}
		m.snapIndex = index
		m.lg.Info("applied snapshot", fields...)
		return nil
	}
	path, ok := m.staged.take(snapshotID{index, term})
	if !ok {
		return fmt.Errorf("raft accepted the snapshot at index %d term %d but its state was not received", index, term)
	}
	before := m.cluster.Members()
	m.kv.BeginRestore()
	if err := m.log.InstallSnapshot(path, meta); err != nil {
		return err
	}
	db := m.engine.DB()
	if err := m.kv.Reload(); err != nil {
		return fmt.Errorf("reload the key-value store: %w", err)
	}
	if err := m.lessor.Reload(db); err != nil {
		return fmt.Errorf("reload leases: %w", err)
	}
	if err := m.alarms.Reload(db); err != nil {
		return fmt.Errorf("reload alarms: %w", err)
	}
	if err := m.cluster.Reload(db); err != nil {
		return fmt.Errorf("reload membership: %w", err)
	}
	if err := m.auth.Reload(db); err != nil {
		return fmt.Errorf("reload auth: %w", err)
	}
	m.watch.Restore()
	m.recountQuota()
	applied, err := m.engine.Applied()
	if err != nil {
		return err
	}
	m.applied.Store(applied)
	// The leader sends the state at the snapshot's index; should it be
	// further ahead, the term of applied is learnt when Raft hands that
	// entry out again (applyEntries), before any snapshot needs it.
	m.appliedTerm = term
	m.snapIndex = index
	m.syncPeers(before)
	m.appliedMu.Lock()
	close(m.appliedC)
	m.appliedC = make(chan struct{})
	m.appliedMu.Unlock()
	m.lg.Info("applied snapshot", append(fields,
		zap.Uint64("applied-index", applied), zap.Int64("current-revision", m.kv.Rev()))...)
	return nil
}

// reapplyConfChange hands the conf change in e, an entry the state already
// holds the effects of, to Raft again: after a snapshot install that brought
// state from past the snapshot's index, Raft's configuration is that of the
// snapshot, and only the conf changes in between bring it to the state's.
// They are applied as written; conf changes set a member's role absolutely,
// so going through them again ends in the configuration they made.
func (m *Member) reapplyConfChange(e *raftpb.Entry) error {
	var cc raftpb.ConfChangeI
	switch e.GetType() {
	case raftpb.EntryType_EntryConfChange:
		c := &raftpb.ConfChange{}
		if err := proto.Unmarshal(e.Data, c); err != nil {
			return fmt.Errorf("entry %d is not a conf change: %w", e.GetIndex(), err)
		}
		if m.cluster.IsRefused(e.GetIndex()) {
			// Refused when it was first applied: Raft saw it as a no-op
			// then and must again.
			c.NodeId = proto.Uint64(raft.None)
		}
		cc = c
	case raftpb.EntryType_EntryConfChangeV2:
		c := &raftpb.ConfChangeV2{}
		if err := proto.Unmarshal(e.Data, c); err != nil {
			return fmt.Errorf("entry %d is not a conf change: %w", e.GetIndex(), err)
		}
		cc = c
	default:
		return nil
	}
	m.raft.ApplyConfChange(cc)
	return nil
}

// snapshotID names a Raft snapshot.
type snapshotID struct{ index, term uint64 }

// stagedSnapshots are the received state files waiting for Raft to hand
// their snapshot to the apply loop. Safe for concurrent use.
type stagedSnapshots struct {
	mu     sync.Mutex
	fs     vfs.FS // the engine's, where the transport stages the files
	lg     *zap.Logger
	files  map[snapshotID]string
	closed bool
}

// put stages path for id, replacing (and removing) a file staged for the
// same snapshot before. It returns false once the member has stopped.
func (s *stagedSnapshots) put(id snapshotID, path string, fs vfs.FS, lg *zap.Logger) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.files == nil {
		s.files = make(map[snapshotID]string)
		s.fs, s.lg = fs, lg
	}
	if old, ok := s.files[id]; ok && old != path {
		s.remove(old)
	}
	s.files[id] = path
	return true
}

// forget drops path for id without removing the file (its caller does).
func (s *stagedSnapshots) forget(id snapshotID, path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.files[id] == path {
		delete(s.files, id)
	}
}

// take hands the file staged for id over to its installer.
func (s *stagedSnapshots) take(id snapshotID) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	path, ok := s.files[id]
	delete(s.files, id)
	return path, ok
}

// removeUpTo removes the files staged for snapshots at or before index.
func (s *stagedSnapshots) removeUpTo(index uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, path := range s.files {
		if id.index <= index {
			s.remove(path)
			delete(s.files, id)
		}
	}
}

// close removes every staged file and refuses new ones: the member stopped.
func (s *stagedSnapshots) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for id, path := range s.files {
		s.remove(path)
		delete(s.files, id)
	}
}

// remove removes a staged file. s.mu held.
func (s *stagedSnapshots) remove(path string) {
	if err := s.fs.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.lg.Warn("failed to remove a received snapshot", zap.String("path", path), zap.Error(err))
	}
}
