package storage

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
)

// Restoring a member
//
// `keelctl snapshot restore` builds a data dir that a member starts from as
// if it had restarted: the restored state, a member identity, and the Raft
// side a member has after it installed a Raft snapshot (snapshot metadata,
// no log entries, a hard state committed up to the snapshot, the applied
// index at the snapshot). The functions below are what it needs of this
// package; the rest (which records to keep, the membership) is package
// snapshot's.

// InitRestored records in b, for an engine that holds no Raft state yet (it
// fails on one that does), a
// member restored from a snapshot: its identity id, and a Raft state as if
// it had just installed a Raft snapshot described by meta: the snapshot
// metadata, an empty log starting after meta.Index, a hard state of
// meta.Term committed up to meta.Index with no vote, the applied index
// meta.Index and the conf state meta.ConfState. Every member restored with
// the same meta agrees on the log, so that none of them needs to send the
// others anything before the first election.
func (e *Engine) InitRestored(b *pebble.Batch, id Identity, meta *raftpb.SnapshotMetadata) error {
	if has, err := e.HasRaftState(); err != nil || has {
		if err == nil {
			err = fmt.Errorf("restore: the database at %s already holds Raft state", e.dir)
		}
		return err
	}
	if meta.GetIndex() == 0 || meta.GetTerm() == 0 {
		return fmt.Errorf("restore: raft snapshot at index %d term %d: both must be above 0", meta.GetIndex(), meta.GetTerm())
	}
	if err := SetIdentity(b, id); err != nil {
		return err
	}
	if err := SetApplied(b, meta.GetIndex()); err != nil {
		return err
	}
	cs := meta.GetConfState()
	if cs == nil {
		cs = &raftpb.ConfState{}
	}
	if err := setProto(b, keyConfState, cs); err != nil {
		return err
	}
	return raftSnapshotBatch(e.db, b, meta)
}

// IsStateKey reports whether k is part of a member's state as a state
// stream and a snapshot carry it: every key but the Raft namespace and the
// member identity.
func IsStateKey(k []byte) bool { return isStateKey(k) }

// ErrInstallPending is the error of OpenReadOnly on a data dir whose last
// Raft snapshot install was interrupted: its state is half-replaced.
var ErrInstallPending = errors.New("an interrupted Raft snapshot install is pending in this data dir")

// OpenReadOnly opens the Pebble database in dir without writing to it
// (Pebble's read-only mode: the write-ahead log is replayed in memory, no
// file is created, changed or removed), for reading a copy of a stopped
// member's data dir. A database whose Raft snapshot install was interrupted
// is refused with ErrInstallPending: only a normal start finishes it. The
// engine must not be written to; Defragment and InstallSnapshot fail.
func OpenReadOnly(dir string, opts Options) (*Engine, error) {
	fs := opts.FS
	if fs == nil {
		fs = vfs.Default
	}
	lg := opts.Logger
	if lg == nil {
		lg = zap.NewNop()
	}
	if _, err := fs.Stat(dir); err != nil {
		return nil, fmt.Errorf("open database at %s: %w", dir, err)
	}
	cache := pebble.NewCache(16 << 20)
	defer cache.Unref()
	db, err := pebble.Open(dir, &pebble.Options{
		FS:                 fs,
		Cache:              cache,
		ReadOnly:           true,
		FormatMajorVersion: FormatVersion,
		ErrorIfNotExists:   true,
		Logger:             pebbleLogger{lg.Named("pebble").Sugar()},
	})
	if err != nil {
		return nil, fmt.Errorf("open database at %s read-only: %w", dir, err)
	}
	e := &Engine{db: db, dir: dir, fs: fs, lg: lg, streams: make(map[*StateStream]struct{}), defragSem: make(chan struct{}, 1)}
	e.defragCtx, e.defragStop = context.WithCancel(context.Background())
	if _, ok, err := get(db, keyInstall); err != nil || ok {
		db.Close()
		if err == nil {
			err = fmt.Errorf("%s: %w; start the member once to finish it, stop it, and copy its data dir again", dir, ErrInstallPending)
		}
		return nil, err
	}
	return e, nil
}

// EachState calls fn for every state key of the engine (see IsStateKey) and
// its value, in key order, as of one Pebble snapshot taken when it starts.
// fn must not keep key or value after it returns; EachState returns fn's
// first error.
func (e *Engine) EachState(fn func(key, value []byte) error) error {
	snap := e.db.NewSnapshot()
	defer snap.Close()
	return eachState(snap, fn)
}

// SyncDir makes the entries of directory dir (on the real filesystem)
// durable: after a rename into it, for instance.
func SyncDir(dir string) error { return syncDir(vfs.Default, dir) }

// MkdirAllDurable creates dir and its missing parents (mode 0700) on the
// real filesystem, syncing each new entry into its parent.
func MkdirAllDurable(dir string) error {
	return mkdirAllDurable(vfs.Default, filepath.Clean(dir))
}
