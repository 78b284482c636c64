package snapshot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"

	"github.com/keeldb/keel/config"
	"github.com/keeldb/keel/membership"
	"github.com/keeldb/keel/mvcc"
	"github.com/keeldb/keel/storage"
)

// RestoreConfig says what member a restore builds a data dir for; the
// fields are etcdutl's `snapshot restore` flags.
type RestoreConfig struct {
	// Name is the member's name (--name); it must be in InitialCluster.
	Name string
	// DataDir is the data dir to create (--data-dir). It must not exist, or
	// be empty.
	DataDir string
	// InitialCluster is the new cluster's membership,
	// "name=peerURL,name=peerURL,..." (--initial-cluster).
	InitialCluster string
	// InitialClusterToken enters the member and cluster IDs
	// (--initial-cluster-token), as at a bootstrap.
	InitialClusterToken string
	// PeerURLs are the member's peer URLs (--initial-advertise-peer-urls);
	// they must be its URLs in InitialCluster.
	PeerURLs []string
	// BumpRevision raises the restored store's revision by that much
	// (--bump-revision); MarkCompacted (--mark-compacted) then marks the new
	// revision compacted. One requires the other, as in etcdutl.
	BumpRevision  uint64
	MarkCompacted bool
}

// RestoreResult describes a restored data dir.
type RestoreResult struct {
	MemberID, ClusterID uint64
	// Index is the Raft index (and applied index) the member starts at.
	Index uint64
	// Revision and CompactRevision are the restored store's (after a bump).
	Revision, CompactRevision int64
	// Records is the number of state records restored.
	Records int64
}

// ErrBumpNeedsMarkCompacted is etcdutl's error (and wording) for
// --bump-revision without --mark-compacted, or the other way round.
var ErrBumpNeedsMarkCompacted = errors.New("--mark-compacted required if --revision-bump > 0")

// restoreTerm is the Raft term a restored member starts at: as in etcd,
// the new cluster's history starts over.
const restoreTerm = 1

// restoreBatchBytes is the size at which a restore commits a batch of
// records and starts the next.
const restoreBatchBytes = 16 << 20

// Restore builds a fresh data dir for one member of a new cluster from src,
// as `etcdutl snapshot restore` does:
//
//   - the key space (with its history since the last compaction), the leases
//     and auth are kept; the source's membership, alarms, member identity,
//     applied index and Raft state are dropped;
//   - the membership is the one of cfg.InitialCluster, with member and
//     cluster IDs derived from it and cfg.InitialClusterToken exactly as a
//     bootstrap derives them, and this member's identity;
//   - the Raft side is that of a member that installed a Raft snapshot at
//     index len(members), term 1, with every member a voter, and applied it:
//     the data dir starts as a restart, and every member restored from the
//     same source with the same flags holds the same state and Raft log.
//
// It never writes into cfg.DataDir itself: it builds the data dir in a
// temporary sibling directory, syncs it and renames it into place only once
// src.Records returned nil, so a damaged source or any other failure leaves
// no data dir (and no temporary one) behind. It refuses a cfg.DataDir that
// exists and is not empty. Restore does not close src.
func Restore(ctx context.Context, src Source, cfg RestoreConfig, lg *zap.Logger) (RestoreResult, error) {
	if lg == nil {
		lg = zap.NewNop()
	}
	if (cfg.BumpRevision == 0) == cfg.MarkCompacted {
		return RestoreResult{}, ErrBumpNeedsMarkCompacted
	}
	if cfg.BumpRevision > 1<<62 {
		return RestoreResult{}, fmt.Errorf("--bump-revision %d is too large", cfg.BumpRevision)
	}
	members, self, err := restoreMembers(cfg)
	if err != nil {
		return RestoreResult{}, err
	}
	dataDir := cfg.DataDir
	if dataDir == "" {
		return RestoreResult{}, errors.New("restore: no data dir given")
	}
	if !emptyOrMissing(dataDir) {
		return RestoreResult{}, fmt.Errorf("data-dir %q not empty or could not be read", dataDir)
	}
	res := RestoreResult{MemberID: self.ID, ClusterID: membership.ClusterID(members), Index: uint64(len(members))}
	info := src.Info()
	lg.Info("restoring snapshot",
		zap.String("data-dir", dataDir), zap.String("name", cfg.Name),
		zap.String("member-id", fmt.Sprintf("%x", res.MemberID)), zap.String("cluster-id", fmt.Sprintf("%x", res.ClusterID)),
		zap.String("initial-cluster", cfg.InitialCluster), zap.String("source-cluster-id", fmt.Sprintf("%x", info.ClusterID)),
		zap.String("source-member-id", fmt.Sprintf("%x", info.MemberID)))
	start := time.Now()

	parent := filepath.Dir(filepath.Clean(dataDir))
	if err := storage.MkdirAllDurable(parent); err != nil {
		return RestoreResult{}, fmt.Errorf("create the parent of data-dir %q: %w", dataDir, err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(filepath.Clean(dataDir))+".restoring-")
	if err != nil {
		return RestoreResult{}, fmt.Errorf("create a temporary data dir beside %q: %w", dataDir, err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	if err := buildRestored(ctx, src, tmp, members, self, int64(cfg.BumpRevision), &res, lg); err != nil {
		return RestoreResult{}, err
	}
	// A data dir is private to the member, as etcd makes it.
	if err := os.Chmod(tmp, 0o700); err != nil {
		return RestoreResult{}, err
	}
	if !emptyOrMissing(dataDir) {
		return RestoreResult{}, fmt.Errorf("data-dir %q not empty or could not be read", dataDir)
	}
	// An empty data dir is replaced (os.Remove removes only an empty one).
	if err := os.Remove(dataDir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return RestoreResult{}, fmt.Errorf("data-dir %q not empty or could not be read", dataDir)
	}
	if err := os.Rename(tmp, dataDir); err != nil {
		return RestoreResult{}, fmt.Errorf("move the restored data dir into place at %q: %w", dataDir, err)
	}
	ok = true
	if err := storage.SyncDir(parent); err != nil {
		return RestoreResult{}, fmt.Errorf("sync %s: %w", parent, err)
	}
	lg.Info("restored snapshot",
		zap.String("data-dir", dataDir), zap.String("name", cfg.Name),
		zap.String("member-id", fmt.Sprintf("%x", res.MemberID)), zap.String("cluster-id", fmt.Sprintf("%x", res.ClusterID)),
		zap.Int64("revision", res.Revision), zap.Int64("compact-revision", res.CompactRevision),
		zap.Int64("records", res.Records), zap.Uint64("raft-index", res.Index), zap.Duration("took", time.Since(start)))
	return res, nil
}

// restoreMembers checks cfg as etcd checks a bootstrap and returns the new
// cluster's members, ordered by ID, and this member among them.
func restoreMembers(cfg RestoreConfig) ([]*membership.Member, *membership.Member, error) {
	peerURLs, err := membership.ParsePeerURLs(cfg.PeerURLs)
	if err != nil {
		return nil, nil, fmt.Errorf("--initial-advertise-peer-urls: %w", err)
	}
	c := config.Config{Name: cfg.Name, InitialCluster: cfg.InitialCluster, InitialClusterToken: cfg.InitialClusterToken, InitialClusterState: "new"}
	for _, s := range peerURLs {
		u, err := url.Parse(s)
		if err != nil {
			return nil, nil, err
		}
		c.InitialAdvertisePeerURLs = append(c.InitialAdvertisePeerURLs, *u)
	}
	if err := c.VerifyBootstrap(); err != nil {
		return nil, nil, err
	}
	initial, err := c.InitialClusterMap()
	if err != nil {
		return nil, nil, err
	}
	var members []*membership.Member
	var self *membership.Member
	for name, urls := range initial {
		strs := make([]string, len(urls))
		for i, u := range urls {
			strs[i] = u.String()
		}
		m := membership.NewMember(name, strs, cfg.InitialClusterToken, nil)
		if m.ID == 0 {
			return nil, nil, fmt.Errorf("cannot use %x as member id", 0)
		}
		if slices.ContainsFunc(members, func(o *membership.Member) bool { return o.ID == m.ID }) {
			return nil, nil, fmt.Errorf("member exists with identical ID %x", m.ID)
		}
		members = append(members, m)
		if name == cfg.Name {
			self = m
		}
	}
	slices.SortFunc(members, func(a, b *membership.Member) int { return cmp.Compare(a.ID, b.ID) })
	return members, self, nil
}

// buildRestored writes the restored member into the new data dir dir.
func buildRestored(ctx context.Context, src Source, dir string, members []*membership.Member, self *membership.Member,
	bump int64, res *RestoreResult, lg *zap.Logger) error {
	e, err := storage.Open(storage.DBDir(dir), storage.Options{Logger: lg})
	if err != nil {
		return err
	}
	defer e.Close()
	db := e.DB()
	b := db.NewBatch()
	defer func() { b.Close() }()
	var n int64
	err = src.Records(func(k, v []byte) error {
		keep, err := keepRecord(k)
		if err != nil || !keep {
			return err
		}
		if err := b.Set(k, v, nil); err != nil {
			return err
		}
		n++
		if b.Len() >= restoreBatchBytes {
			if err := ctx.Err(); err != nil {
				return err
			}
			// Unsynced: the data dir is not in place until the last
			// batch is synced and the directory renamed.
			if err := b.Commit(pebble.NoSync); err != nil {
				return fmt.Errorf("write the restored state: %w", err)
			}
			b.Close()
			b = db.NewBatch()
		}
		return nil
	})
	if err != nil {
		return err
	}
	res.Records = n
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("write the restored state: %w", err)
	}
	b.Close()
	b = db.NewBatch()
	if res.Revision, res.CompactRevision, err = mvcc.Revisions(db); err != nil {
		return fmt.Errorf("the restored key space: %w", err)
	}
	if bump > 0 {
		lg.Info("bumping latest revision", zap.Int64("latest-revision", res.Revision), zap.Int64("bump-amount", bump),
			zap.Int64("new-latest-revision", res.Revision+bump))
		rev, err := mvcc.BumpRevision(db, b, bump, true)
		if err != nil {
			return err
		}
		lg.Info("marking revision compacted", zap.Int64("revision", rev))
		res.Revision, res.CompactRevision = rev, rev
	}
	cl, err := membership.Load(db, res.ClusterID)
	if err != nil {
		return err
	}
	voters := make([]uint64, len(members))
	for i, m := range members {
		voters[i] = m.ID
		if err := cl.Add(b, m); err != nil {
			return err
		}
	}
	meta := &raftpb.SnapshotMetadata{
		Index:     new(res.Index),
		Term:      new(uint64(restoreTerm)),
		ConfState: &raftpb.ConfState{Voters: voters},
	}
	if err := e.InitRestored(b, storage.Identity{MemberID: self.ID, ClusterID: res.ClusterID}, meta); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("write the restored member: %w", err)
	}
	return e.Close()
}

// keepRecord says whether a restore keeps a state record: the key space,
// its metadata, leases and auth are kept; the membership, the alarms and
// the member's metadata (applied index, conf state, identity) are the old
// cluster's and are dropped, as is anything of the Raft namespace. A key of
// no namespace keel knows is refused.
func keepRecord(k []byte) (bool, error) {
	if len(k) == 0 {
		return false, fmt.Errorf("%w: a record with an empty key", ErrCorrupt)
	}
	switch k[0] {
	case storage.PrefixKV, storage.PrefixRevLog, storage.PrefixMVCCMeta, storage.PrefixLease, storage.PrefixAuth:
		return true, nil
	case storage.PrefixMeta, storage.PrefixMembers, storage.PrefixAlarms, storage.PrefixRaft:
		return false, nil
	}
	return false, fmt.Errorf("%w: a record with key %x belongs to no namespace this keel knows", ErrCorrupt, k)
}

// emptyOrMissing reports whether dir does not exist or is an empty
// directory; anything unreadable counts as neither.
func emptyOrMissing(dir string) bool {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		_, serr := os.Lstat(dir)
		return errors.Is(serr, os.ErrNotExist)
	}
	return err == nil && len(ents) == 0
}
