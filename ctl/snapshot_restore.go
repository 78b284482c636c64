package ctl

import (
	"context"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keeldb/keel/snapshot"
	"github.com/keeldb/keel/storage"
)

// snapshotRestoreCommand is etcdutl's `snapshot restore`, with its flags
// and defaults, except that the data dir defaults to keel's "<name>.keel".
func snapshotRestoreCommand(g *globals) *cobra.Command {
	var (
		cfg         snapshot.RestoreConfig
		walDir      string
		peerURLs    string
		skipHash    bool
		initialMmap uint64
	)
	cmd := &cobra.Command{
		Use:   "restore <filename> --data-dir {output dir} [options]",
		Short: "Restores a member's data dir from a snapshot file, a copy of a data dir, or an etcd snapshot",
		Long: `Builds a fresh data dir for one member of a new cluster from a snapshot: a file
saved by 'snapshot save', a copy of a stopped keel member's data dir (with
--skip-hash-check), or a snapshot or database file of etcd.

The key space with its history since the last compaction, the leases and the
users and roles are kept. The old cluster's membership, alarms and member
identity are dropped: the new cluster is the one --initial-cluster describes,
with member and cluster IDs derived from it and --initial-cluster-token as at a
bootstrap. Run it once per member, with the same file and the same
--initial-cluster and --initial-cluster-token, then start every member with its
data dir. An existing, non-empty data dir is never overwritten.`,
	}
	cmd.Flags().StringVar(&cfg.DataDir, "data-dir", "", `data dir to create for the member (default "<name>.keel"); it must not exist or be empty`)
	cmd.Flags().StringVar(&walDir, "wal-dir", "", "accepted for etcdutl scripts; keel keeps its log inside the data dir, so only that location is allowed")
	cmd.Flags().StringVar(&cfg.InitialCluster, "initial-cluster", "default=http://localhost:2380", "members of the new cluster, name=peer-url,... (every member is restored with the same value)")
	cmd.Flags().StringVar(&cfg.InitialClusterToken, "initial-cluster-token", "etcd-cluster", "token of the new cluster; it enters the member and cluster IDs")
	cmd.Flags().StringVar(&peerURLs, "initial-advertise-peer-urls", "http://localhost:2380", "this member's peer URLs, comma-separated; they must be its URLs in --initial-cluster")
	cmd.Flags().StringVar(&cfg.Name, "name", "default", "this member's name in --initial-cluster")
	cmd.Flags().BoolVar(&skipHash, "skip-hash-check", false, "restore a source without a sha256 trailer (a copy of a data dir); a keel snapshot file is always checked")
	cmd.Flags().Uint64Var(&initialMmap, "initial-memory-map-size", 0, "accepted for etcdutl scripts and ignored: keel has no memory map to size")
	cmd.Flags().Uint64Var(&cfg.BumpRevision, "bump-revision", 0, "raise the restored revision by this much (with --mark-compacted)")
	cmd.Flags().BoolVar(&cfg.MarkCompacted, "mark-compacted", false, "compact the restored store at its new revision, so watchers of older revisions see a compaction (needs --bump-revision)")
	cmd.RunE = g.run(func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return badArgs("snapshot restore requires exactly one argument")
		}
		if (cfg.BumpRevision == 0) == cfg.MarkCompacted {
			return withCode(ExitBadArgs, snapshot.ErrBumpNeedsMarkCompacted)
		}
		if cfg.DataDir == "" {
			cfg.DataDir = cfg.Name + ".keel"
		}
		if walDir != "" && filepath.Clean(walDir) != filepath.Clean(cfg.DataDir) &&
			filepath.Clean(walDir) != filepath.Join(filepath.Clean(cfg.DataDir), "member", "wal") {
			return badArgs("--wal-dir %q: keel keeps its write-ahead log inside the data dir (%s), so a separate WAL directory cannot be restored; leave --wal-dir out",
				walDir, storage.DBDir(cfg.DataDir))
		}
		cfg.PeerURLs = strings.Split(peerURLs, ",")
		lg := g.logger()
		src, err := snapshot.Open(args[0], skipHash)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = snapshot.Restore(context.Background(), src, cfg, lg)
		return err
	})
	return cmd
}
