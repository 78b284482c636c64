package ctl

import (
	"errors"
	"fmt"
	"os"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/keeldb/keel/snapshot"
)

// snapshotEtcdCommands adds what moving between etcd and keel needs to the
// snapshot command: `snapshot export`, and `snapshot status` on a file of
// real etcd (the status subcommand already added to parent answers for
// keel files; etcd files are described here, with etcdutl's fields).
// etcdStatus prints etcdutl's `snapshot status` for an etcd file: HASH over
// bbolt's buckets, keys and values, REVISION, TOTAL KEYS, TOTAL SIZE (the
// database's, without the trailer) and VERSION. Like etcdutl, it does not
// check the sha256 trailer.
func etcdStatus(p *printer, path string) error {
	src, err := snapshot.OpenEtcd(path, true)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer src.Close()
	return p.snapshotStatus(src.Info())
}

func snapshotExportCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "export <keel-snapshot-file> <etcd-db-file>",
		Short: "Converts a keel snapshot into an etcd snapshot file, for etcdutl snapshot restore",
		Long: `Reads and verifies a keel snapshot file (from keelctl snapshot save) and writes
the same state as an etcd 3.7 database file ending in etcd's sha256 checksum,
as etcdctl snapshot save writes it. Restore etcd members from it with
  etcdutl snapshot restore <etcd-db-file> --name ... --data-dir ...
It carries the keys with their history since the last compaction, the
compaction revision, leases and auth (users with their password hashes, roles,
the auth flag). Membership and alarms are not carried. An existing
<etcd-db-file> is never overwritten.`,
	}
	cmd.RunE = g.run(func(cmd *cobra.Command, args []string) error {
		if len(args) != 2 {
			return badArgs("snapshot export expects two arguments <keel-snapshot-file> <etcd-db-file>")
		}
		in, err := os.Open(args[0])
		if err != nil {
			return err
		}
		defer in.Close()
		info, err := snapshot.ExportEtcd(in, args[1])
		if errors.Is(err, snapshot.ErrCorrupt) {
			return fmt.Errorf("%s: %w", args[0], err)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(g.stdio.Out, "Exported %s to %s (etcd format): revision %d, %d keys, %s, hash %x\n",
			args[0], args[1], info.Revision, info.TotalKeys, humanize.Bytes(uint64(info.Size)), info.Hash)
		return nil
	})
	return cmd
}
