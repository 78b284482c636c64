package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/cheggaaa/pb/v3"
	"github.com/dustin/go-humanize"
	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"
	etcdpb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/keeldb/keel/snapshot"
)

func snapshotCommands(g *globals) []*cobra.Command {
	cmd := &cobra.Command{
		Use:     "snapshot <subcommand>",
		Short:   "Saves a member's state to a file, and describes such files",
		GroupID: groupCluster,
	}
	cmd.AddCommand(snapshotSaveCommand(g), snapshotStatusCommand(g), snapshotRestoreCommand(g), snapshotExportCommand(g))
	return []*cobra.Command{cmd}
}

func snapshotSaveCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "save <filename>",
		Short: "Saves the state of the one member --endpoints names to a file",
	}
	cmd.RunE = g.run(func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return badArgs("snapshot save expects one argument <filename>")
		}
		// As etcdctl: no deadline unless --command-timeout is given.
		ctx, cancel := context.WithCancel(context.Background())
		if g.flags.Changed("command-timeout") || os.Getenv(envPrefix+"COMMAND_TIMEOUT") != "" {
			ctx, cancel = g.envCommandContext()
		}
		defer cancel()
		path := args[0]
		ver, err := g.saveSnapshot(ctx, path)
		if err != nil {
			return withCode(ExitInterrupted, err)
		}
		fmt.Fprintf(g.stdio.Out, "Snapshot saved at %s\n", path)
		if ver != "" {
			fmt.Fprintf(g.stdio.Out, "Server version %s\n", ver)
		}
		return nil
	})
	return cmd
}

// saveSnapshot fetches the snapshot of the single endpoint into path.part,
// checks it ends with a sha256 trailer, syncs it and renames it to path,
// logging each step as etcdctl does; it returns the server's storage
// version. path.part is removed whatever happens.
func (g *globals) saveSnapshot(ctx context.Context, path string) (string, error) {
	spec, err := g.clientSpec()
	if err != nil {
		return "", err
	}
	if len(spec.Endpoints) != 1 {
		return "", fmt.Errorf("snapshot must be requested to one selected node, not multiple %v", spec.Endpoints)
	}
	lg := g.logger()
	cfg, err := g.clientConfig(nil)
	if err != nil {
		return "", err
	}
	if !g.debug {
		cfg.Logger = lg.Named("client")
	}
	c, err := newClient(cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()

	part := path + ".part"
	defer os.RemoveAll(part)
	f, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return "", fmt.Errorf("could not open %s (%w)", part, err)
	}
	defer f.Close()
	lg.Info("created temporary db file", zap.String("path", part))

	start := time.Now()
	// Waiting for the endpoint to be ready, as the client library's
	// Maintenance does: an endpoint that does not answer is retried until
	// the context ends (for ever without --command-timeout, as etcdctl).
	// Its retry layer logs a stream that could not be created.
	stream, err := etcdpb.NewMaintenanceClient(c.ActiveConnection()).Snapshot(ctx, &etcdpb.SnapshotRequest{}, grpc.WaitForReady(true))
	if err != nil {
		c.GetLogger().Error("streamer failed to create ClientStream", zap.Error(err))
		return "", clientv3.ContextError(ctx, err)
	}
	// The client library's log lines, named as etcdctl's client logger
	// names them: the stream opened, then, once the stream ends, that it
	// ended or why.
	clg := c.GetLogger()
	clg.Info("opened snapshot stream; downloading")
	closing := func(err error) {
		if errors.Is(err, io.EOF) {
			clg.Info("completed snapshot read; closing")
		} else {
			clg.Warn("failed to receive from snapshot stream; closing", zap.Error(err))
		}
	}
	resp, err := stream.Recv()
	if err != nil {
		closing(err)
		return "", err
	}
	lg.Info("fetching snapshot", zap.String("endpoint", spec.Endpoints[0]))
	bar := g.progressBar()
	var size int64
	var ver string
	for first := true; ; first = false {
		if !first {
			resp, err = stream.Recv()
		}
		if err != nil {
			closing(err)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			bar.stop()
			return ver, fmt.Errorf("could not write snapshot: %w", err)
		}
		ver = resp.Version
		if _, err := f.Write(resp.Blob); err != nil {
			bar.stop()
			return ver, fmt.Errorf("could not write snapshot: %w", err)
		}
		size += int64(len(resp.Blob))
		bar.set(size, size+int64(resp.RemainingBytes))
	}
	bar.stop()
	if size%512 != 32 {
		return ver, fmt.Errorf("sha256 checksum not found [bytes: %d]", size)
	}
	if err := f.Sync(); err != nil {
		return ver, fmt.Errorf("could not fsync snapshot: %w", err)
	}
	if err := f.Close(); err != nil {
		return ver, fmt.Errorf("could not close file descriptor: %w", err)
	}
	lg.Info("fetched snapshot", zap.String("endpoint", spec.Endpoints[0]),
		zap.String("size", humanize.Bytes(uint64(size))), zap.Duration("took", time.Since(start)),
		zap.String("etcd-version", ver))
	if err := os.Rename(part, path); err != nil {
		return ver, fmt.Errorf("could not rename %s to %s (%w)", part, path, err)
	}
	lg.Info("saved", zap.String("path", path))
	return ver, nil
}

// byteBar is the download progress on standard error when it is a
// terminal; elsewhere it shows nothing, so scripts and logs stay clean.
type byteBar struct{ bar *pb.ProgressBar }

func (g *globals) progressBar() byteBar {
	f, ok := g.stdio.Err.(*os.File)
	if !ok || !isatty.IsTerminal(f.Fd()) {
		return byteBar{}
	}
	bar := pb.New64(0).Set(pb.Bytes, true)
	bar.SetWriter(f)
	return byteBar{bar.Start()}
}

func (b byteBar) set(done, total int64) {
	if b.bar != nil {
		b.bar.SetTotal(total)
		b.bar.SetCurrent(done)
	}
}

func (b byteBar) stop() {
	if b.bar != nil {
		b.bar.Finish()
	}
}

func snapshotStatusCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status <filename>",
		Short: "Verifies a keel snapshot file and prints its hash, revision, key count and size",
		Long: `Reads the whole file, checks its structure and its sha256 trailer, and prints
HASH (CRC-32C over its records), REVISION, TOTAL KEYS (live keys), TOTAL SIZE
and VERSION. With --write-out=simple the values are comma-separated.`,
	}
	cmd.RunE = g.run(func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return badArgs("snapshot status requires exactly one argument")
		}
		p, err := g.printer()
		if err != nil {
			return err
		}
		if _, err := os.Stat(args[0]); err != nil {
			return err
		}
		if etcd, _ := snapshot.IsEtcdFile(args[0]); etcd {
			return etcdStatus(p, args[0])
		}
		f, err := os.Open(args[0])
		if err != nil {
			return err
		}
		defer f.Close()
		info, err := snapshot.Verify(f)
		if err != nil {
			return fmt.Errorf("%s: %w", args[0], err)
		}
		return p.snapshotStatus(info)
	})
	return cmd
}

// snapshotStatus prints what etcdutl's `snapshot status` prints, for a
// keel file.
func (p *printer) snapshotStatus(info snapshot.Info) error {
	header := []string{"hash", "revision", "total keys", "total size", "version"}
	rows := [][]string{{
		fmt.Sprintf("%x", info.Hash),
		fmt.Sprint(info.Revision),
		fmt.Sprint(info.TotalKeys),
		humanize.Bytes(uint64(info.Size)),
		info.StorageVersion,
	}}
	switch p.format {
	case formatSimple:
		p.rows(rows)
	case formatTable:
		return p.table(header, rows)
	case formatJSON:
		return p.json(struct {
			Hash      uint32 `json:"hash"`
			Revision  int64  `json:"revision"`
			TotalKey  int64  `json:"totalKey"`
			TotalSize int64  `json:"totalSize"`
			Version   string `json:"version"`
		}{info.Hash, info.Revision, info.TotalKeys, info.Size, info.StorageVersion})
	case formatFields:
		p.printf("\"Hash\" : %d\n\"Revision\" : %d\n\"Keys\" : %d\n\"Size\" : %d\n\"Version\" : %s\n",
			info.Hash, info.Revision, info.TotalKeys, info.Size, info.StorageVersion)
	default:
		return p.unsupported()
	}
	return nil
}
