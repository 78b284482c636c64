package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

var (
	keyHardState = []byte{PrefixRaft, 0, 'h', 's'}
	keySnapshot  = []byte{PrefixRaft, 0, 's', 'n', 'a', 'p'}
	keyTruncated = []byte{PrefixRaft, 0, 't', 'r', 'u', 'n', 'c'}
	logPrefix    = []byte{PrefixRaft, 1}
)

func logKey(index uint64) []byte {
	k := make([]byte, 0, len(logPrefix)+8)
	k = append(k, logPrefix...)
	return binary.BigEndian.AppendUint64(k, index)
}

// A log entry is stored as term (8 bytes) | type (1 byte) | data, so that
// Term(i) needs no protobuf decoding.
func encodeEntry(e *raftpb.Entry) []byte {
	b := make([]byte, 9, 9+len(e.Data))
	binary.BigEndian.PutUint64(b, e.GetTerm())
	b[8] = byte(e.GetType())
	return append(b, e.Data...)
}

func decodeEntry(index uint64, v []byte) (*raftpb.Entry, error) {
	if len(v) < 9 {
		return nil, fmt.Errorf("raft log entry %d is corrupt: %d bytes", index, len(v))
	}
	e := &raftpb.Entry{
		Index: new(index),
		Term:  new(binary.BigEndian.Uint64(v)),
		Type:  raftpb.EntryType(v[8]).Enum(),
	}
	if len(v) > 9 {
		e.Data = append([]byte(nil), v[9:]...)
	}
	return e, nil
}

// RaftLog is the Raft log, hard state and snapshot metadata kept in Pebble.
// It implements raft.Storage.
//
// Concurrency: the raft library reads it from its own goroutine while the
// member's Raft loop appends to it and the apply loop compacts it; the
// in-memory bounds are guarded by a mutex. Writers go through Save and
// Compact, which must each be called from one goroutine at a time.
//
// Ordering: Save must complete (the batch synced) before the Ready that
// produced the entries is acknowledged with Advance and before any message of
// that Ready is sent; Save does the sync itself when mustSync is true.
type RaftLog struct {
	db *pebble.DB
	e  *Engine

	mu        sync.Mutex
	hardState *raftpb.HardState
	confState *raftpb.ConfState
	snapshot  *raftpb.Snapshot // metadata only: keel's state lives beside the log
	// Entries with index in (truncIndex, lastIndex] are in Pebble;
	// truncTerm is the term of entry truncIndex, kept for matching.
	truncIndex, truncTerm uint64
	lastIndex             uint64
	// tail holds the newest entries saved, contiguous and ending at
	// lastIndex, so that Raft reads the entries it commits (and their
	// terms) from memory instead of from Pebble right after writing them.
	// It holds at most tailEntries entries; entries are never modified once
	// saved, so they are shared with Raft.
	tail []*raftpb.Entry
}

// tailEntries bounds RaftLog.tail.
const tailEntries = 4096

var _ raft.Storage = (*RaftLog)(nil)

// OpenRaftLog loads the Raft state kept in e.
func OpenRaftLog(e *Engine) (*RaftLog, error) {
	l := &RaftLog{db: e.db, e: e}
	if err := l.load(); err != nil {
		return nil, err
	}
	return l, nil
}

// load (re)reads the in-memory view of the Raft state from the database.
func (l *RaftLog) load() error {
	hardState, confState := &raftpb.HardState{}, &raftpb.ConfState{}
	snapshot := &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{ConfState: &raftpb.ConfState{}}}
	if err := getProto(l.db, keyHardState, hardState); err != nil {
		return fmt.Errorf("load raft hard state: %w", err)
	}
	if err := getProto(l.db, keySnapshot, snapshot.Metadata); err != nil {
		return fmt.Errorf("load raft snapshot metadata: %w", err)
	}
	if err := getProto(l.db, keyConfState, confState); err != nil {
		return fmt.Errorf("load raft conf state: %w", err)
	}
	var truncIndex, truncTerm uint64
	if v, ok, err := get(l.db, keyTruncated); err != nil {
		return fmt.Errorf("load raft log bounds: %w", err)
	} else if ok {
		if len(v) != 16 {
			return fmt.Errorf("raft log bounds are corrupt: %d bytes", len(v))
		}
		truncIndex, truncTerm = binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:])
	}
	lastIndex := truncIndex
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: logKey(0), UpperBound: logKey(1<<64 - 1)})
	if err != nil {
		return err
	}
	defer it.Close()
	if it.Last() {
		lastIndex = binary.BigEndian.Uint64(it.Key()[len(logPrefix):])
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("find the last raft log entry: %w", err)
	}
	if lastIndex < truncIndex {
		return fmt.Errorf("raft log is corrupt: last index %d is behind the compacted index %d", lastIndex, truncIndex)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.hardState, l.confState, l.snapshot = hardState, confState, snapshot
	l.truncIndex, l.truncTerm, l.lastIndex = truncIndex, truncTerm, lastIndex
	l.tail = nil
	return nil
}

// inTail reports whether the tail holds every entry of [lo, hi). l.mu
// must be held.
func (l *RaftLog) inTail(lo, hi uint64) bool {
	return len(l.tail) > 0 && lo >= l.tail[0].GetIndex() && lo > l.truncIndex && hi <= l.lastIndex+1
}

// tailRange returns the entries [lo, hi) if the tail holds them all, in a
// new slice: the tail's array is reused as entries come and go. l.mu must
// be held.
func (l *RaftLog) tailRange(lo, hi uint64) ([]*raftpb.Entry, bool) {
	if !l.inTail(lo, hi) {
		return nil, false
	}
	off := l.tail[0].GetIndex()
	return slices.Clone(l.tail[lo-off : hi-off]), true
}

// appendTail records saved entries in the tail; ents starts at most one
// past the tail's end (Raft may overwrite a suffix). l.mu must be held.
func (l *RaftLog) appendTail(ents []*raftpb.Entry) {
	if len(ents) == 0 {
		return
	}
	first := ents[0].GetIndex()
	if len(l.tail) > 0 {
		off := l.tail[0].GetIndex()
		switch {
		case first <= off:
			l.tail = l.tail[:0]
		case first <= off+uint64(len(l.tail)):
			l.tail = l.tail[:first-off]
		default:
			l.tail = l.tail[:0] // not contiguous: start over
		}
	}
	l.tail = append(l.tail, ents...)
	if over := len(l.tail) - tailEntries; over > 0 {
		// Copy down rather than reslice, so the array does not keep
		// dropped entries alive and does not grow without bound.
		n := copy(l.tail, l.tail[over:])
		clear(l.tail[n:])
		l.tail = l.tail[:n]
	}
}

// HasRaftState reports whether the engine holds any Raft state: a hard
// state, a snapshot or a log entry. A data dir whose bootstrap was
// interrupted before Raft saved its first Ready has none.
func (e *Engine) HasRaftState() (bool, error) {
	for _, k := range [][]byte{keyHardState, keySnapshot} {
		if _, ok, err := get(e.db, k); err != nil || ok {
			return ok, err
		}
	}
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: logKey(0), UpperBound: logKey(1<<64 - 1)})
	if err != nil {
		return false, err
	}
	defer it.Close()
	return it.First(), it.Error()
}

// InitialState implements raft.Storage. The conf state is the one recorded
// with the applied index, so that it matches Config.Applied.
func (l *RaftLog) InitialState() (*raftpb.HardState, *raftpb.ConfState, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return proto.Clone(l.hardState).(*raftpb.HardState), proto.Clone(l.confState).(*raftpb.ConfState), nil
}

// HardState returns the last saved hard state.
func (l *RaftLog) HardState() *raftpb.HardState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return proto.Clone(l.hardState).(*raftpb.HardState)
}

// Entries implements raft.Storage.
func (l *RaftLog) Entries(lo, hi, maxSize uint64) ([]*raftpb.Entry, error) {
	l.mu.Lock()
	first, last := l.truncIndex+1, l.lastIndex
	cached, ok := l.tailRange(lo, hi)
	l.mu.Unlock()
	if lo < first {
		return nil, raft.ErrCompacted
	}
	if ok && lo < hi {
		return limitSize(cached, maxSize), nil
	}
	if hi > last+1 {
		return nil, fmt.Errorf("raft log entries [%d, %d) requested beyond the last index %d: %w", lo, hi, last, raft.ErrUnavailable)
	}
	if lo >= hi {
		return nil, nil
	}
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: logKey(lo), UpperBound: logKey(hi)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var (
		ents []*raftpb.Entry
		size uint64
	)
	want := lo
	for valid := it.First(); valid; valid = it.Next() {
		idx := binary.BigEndian.Uint64(it.Key()[len(logPrefix):])
		if idx != want {
			// A concurrent compaction removed the head of the range.
			return nil, raft.ErrCompacted
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, err
		}
		e, err := decodeEntry(idx, v)
		if err != nil {
			return nil, err
		}
		size += entrySize(e)
		if len(ents) > 0 && size > maxSize {
			break
		}
		ents = append(ents, e)
		want++
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	if len(ents) == 0 {
		return nil, raft.ErrCompacted
	}
	return ents, nil
}

// entrySize is the encoded size of e, for Entries' size limit, computed
// without proto.Size's reflection (2.5% of the server's CPU under a write
// load).
func entrySize(e *raftpb.Entry) uint64 {
	n := 0
	if e.Term != nil {
		n += 1 + protowire.SizeVarint(e.GetTerm())
	}
	if e.Index != nil {
		n += 1 + protowire.SizeVarint(e.GetIndex())
	}
	if e.Type != nil {
		n += 1 + protowire.SizeVarint(uint64(e.GetType()))
	}
	if e.Data != nil {
		n += 1 + protowire.SizeBytes(len(e.Data))
	}
	return uint64(n)
}

// limitSize returns the longest prefix of ents, at least one entry, whose
// size does not exceed maxSize, as raft.Storage.Entries must.
func limitSize(ents []*raftpb.Entry, maxSize uint64) []*raftpb.Entry {
	var size uint64
	for i, e := range ents {
		size += entrySize(e)
		if i > 0 && size > maxSize {
			return ents[:i:i]
		}
	}
	return ents[:len(ents):len(ents)]
}

// Term implements raft.Storage.
func (l *RaftLog) Term(i uint64) (uint64, error) {
	l.mu.Lock()
	truncIndex, truncTerm, last := l.truncIndex, l.truncTerm, l.lastIndex
	if l.inTail(i, i+1) {
		t := l.tail[i-l.tail[0].GetIndex()].GetTerm()
		l.mu.Unlock()
		return t, nil
	}
	l.mu.Unlock()
	switch {
	case i == truncIndex:
		return truncTerm, nil
	case i < truncIndex:
		return 0, raft.ErrCompacted
	case i > last:
		return 0, raft.ErrUnavailable
	}
	v, ok, err := get(l.db, logKey(i))
	if err != nil {
		return 0, err
	}
	if !ok || len(v) < 8 {
		// Compacted between reading the bounds and the entry.
		return 0, raft.ErrCompacted
	}
	return binary.BigEndian.Uint64(v), nil
}

// LastIndex implements raft.Storage.
func (l *RaftLog) LastIndex() (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastIndex, nil
}

// FirstIndex implements raft.Storage.
func (l *RaftLog) FirstIndex() (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.truncIndex + 1, nil
}

// Snapshot implements raft.Storage. Keel's snapshots carry only metadata:
// the state they describe lives in the same database and is streamed
// separately when a follower needs it (Engine.OpenState), from the state as
// it is then, at or past the index described here.
func (l *RaftLog) Snapshot() (*raftpb.Snapshot, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return proto.Clone(l.snapshot).(*raftpb.Snapshot), nil
}

// SnapshotIndex returns the index of the last snapshot recorded
// (CreateSnapshot, InstallSnapshot, ApplySnapshot).
func (l *RaftLog) SnapshotIndex() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.snapshot.GetMetadata().GetIndex()
}

// Save persists what a Ready asks to be persisted: the entries (replacing
// any conflicting suffix of the log) and the hard state, in one batch,
// synced when mustSync is set. It returns once the batch is durable.
func (l *RaftLog) Save(hs *raftpb.HardState, ents []*raftpb.Entry, mustSync bool) error {
	if raft.IsEmptyHardState(hs) && len(ents) == 0 {
		return nil
	}
	b := l.db.NewBatch()
	defer b.Close()
	l.mu.Lock()
	last := l.lastIndex
	truncIndex := l.truncIndex
	l.mu.Unlock()
	newLast := last
	if len(ents) > 0 {
		first := ents[0].GetIndex()
		if first > last+1 {
			return fmt.Errorf("raft log gap: appending entry %d after last index %d", first, last)
		}
		if first <= truncIndex {
			return fmt.Errorf("raft log: appending entry %d at or before the compacted index %d", first, truncIndex)
		}
		if first <= last {
			// Raft overwrites a conflicting suffix: drop it first.
			if err := b.DeleteRange(logKey(first), logKey(last+1), nil); err != nil {
				return err
			}
		}
		for _, e := range ents {
			if err := b.Set(logKey(e.GetIndex()), encodeEntry(e), nil); err != nil {
				return err
			}
		}
		newLast = ents[len(ents)-1].GetIndex()
	}
	if !raft.IsEmptyHardState(hs) {
		if err := setProto(b, keyHardState, hs); err != nil {
			return err
		}
	}
	opts := pebble.NoSync
	if mustSync {
		opts = pebble.Sync
	}
	if err := b.Commit(opts); err != nil {
		return fmt.Errorf("persist raft log: %w", err)
	}
	l.mu.Lock()
	l.lastIndex = newLast
	l.appendTail(ents)
	if !raft.IsEmptyHardState(hs) {
		l.hardState = proto.Clone(hs).(*raftpb.HardState)
	}
	l.mu.Unlock()
	return nil
}

// CreateSnapshot records a snapshot of the applied state at index, whose
// entry has the given term, and then drops the log up to and including
// compactTo (which must not exceed index). The caller guarantees that the
// state up to index has been applied; the batch is synced so that the applied
// state it depends on is durable before the entries that produced it go.
func (l *RaftLog) CreateSnapshot(index, term uint64, cs *raftpb.ConfState, compactTo uint64) error {
	if compactTo > index {
		return fmt.Errorf("raft log: cannot compact to %d beyond the snapshot at %d", compactTo, index)
	}
	l.mu.Lock()
	truncIndex, truncTerm := l.truncIndex, l.truncTerm
	l.mu.Unlock()
	snap := &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: new(index), Term: new(term), ConfState: proto.Clone(cs).(*raftpb.ConfState)}}
	b := l.db.NewBatch()
	defer b.Close()
	if err := setProto(b, keySnapshot, snap.Metadata); err != nil {
		return err
	}
	newTrunc, newTruncTerm := truncIndex, truncTerm
	if compactTo > truncIndex {
		t, err := l.Term(compactTo)
		if err != nil {
			return fmt.Errorf("raft log: term of compaction point %d: %w", compactTo, err)
		}
		newTrunc, newTruncTerm = compactTo, t
		if err := b.DeleteRange(logKey(0), logKey(compactTo+1), nil); err != nil {
			return err
		}
		v := binary.BigEndian.AppendUint64(nil, newTrunc)
		v = binary.BigEndian.AppendUint64(v, newTruncTerm)
		if err := b.Set(keyTruncated, v, nil); err != nil {
			return err
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("persist raft snapshot: %w", err)
	}
	l.mu.Lock()
	l.snapshot = snap
	l.truncIndex, l.truncTerm = newTrunc, newTruncTerm
	l.mu.Unlock()
	return nil
}

// SetConfState records, in the apply batch b, the conf state that results
// from applying a conf change. It becomes the InitialState of the next start.
func (l *RaftLog) SetConfState(b *pebble.Batch, cs *raftpb.ConfState) error {
	if err := setProto(b, keyConfState, cs); err != nil {
		return err
	}
	return nil
}

// ConfStateApplied updates the in-memory conf state once the batch written
// by SetConfState has been committed.
func (l *RaftLog) ConfStateApplied(cs *raftpb.ConfState) {
	l.mu.Lock()
	l.confState = proto.Clone(cs).(*raftpb.ConfState)
	l.mu.Unlock()
}

// ConfState returns the conf state as of the applied index.
func (l *RaftLog) ConfState() *raftpb.ConfState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return proto.Clone(l.confState).(*raftpb.ConfState)
}

func get(r pebble.Reader, key []byte) ([]byte, bool, error) {
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer closer.Close()
	return append([]byte(nil), v...), true, nil
}

func getProto(r pebble.Reader, key []byte, m proto.Message) error {
	v, ok, err := get(r, key)
	if err != nil || !ok {
		return err
	}
	return proto.Unmarshal(v, m)
}

func setProto(b *pebble.Batch, key []byte, m proto.Message) error {
	v, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	return b.Set(key, v, nil)
}
