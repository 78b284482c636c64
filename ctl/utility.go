package ctl

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	etcdversion "go.etcd.io/etcd/api/v3/version"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/mirror"

	"github.com/keeldb/keel/version"
)

func utilityCommands(g *globals) []*cobra.Command {
	return []*cobra.Command{checkCommand(g), makeMirrorCommand(g), versionCommand(g)}
}

// versionCommand prints keelctl's own version and the etcd API version it
// speaks (that of the etcd API package it is built with, as etcdctl), in
// etcdctl's two-line shape: scripts parse the "API version" line.
// As etcdctl, it ignores its arguments, the output format and the
// environment.
func versionCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Prints the versions of keelctl and of the API it speaks",
		GroupID: groupUtility,
		Run: func(cmd *cobra.Command, args []string) {
			p := &printer{w: g.stdio.Out}
			p.println("keelctl version:", version.Version)
			p.println("API version:", etcdversion.APIVersion)
		},
	}
}

// mirrorOptions are make-mirror's flags.
type mirrorOptions struct {
	prefix, destPrefix string
	noDestPrefix       bool
	rev                int64
	maxTxnOps          uint
	cert, key, cacert  string
	insecureTransport  bool
	user, password     string
}

// mirrorProgressEvery is how often make-mirror prints the number of keys it
// has synced so far, as etcdctl.
const mirrorProgressEvery = 30 * time.Second

func makeMirrorCommand(g *globals) *cobra.Command {
	var o mirrorOptions
	cmd := &cobra.Command{
		Use:     "make-mirror [options] <destination>",
		Short:   "Copies keys to another cluster and keeps copying their changes",
		GroupID: groupUtility,
	}
	f := cmd.Flags()
	f.StringVar(&o.prefix, "prefix", "", "copy only the keys that start with this")
	f.Int64Var(&o.rev, "rev", 0, "skip the initial copy and replay the changes from this revision on")
	f.UintVar(&o.maxTxnOps, "max-txn-ops", 128, "most changes written in one transaction at the destination")
	f.StringVar(&o.destPrefix, "dest-prefix", "", "rename --prefix to this at the destination")
	f.BoolVar(&o.noDestPrefix, "no-dest-prefix", false, "drop --prefix from the key names at the destination")
	f.StringVar(&o.cert, "dest-cert", "", "TLS certificate keelctl presents to the destination")
	f.StringVar(&o.key, "dest-key", "", "private key of --dest-cert")
	f.StringVar(&o.cacert, "dest-cacert", "", "CA bundle that signed the destination's certificate")
	f.BoolVar(&o.insecureTransport, "dest-insecure-transport", true, "talk plain text to the destination when no TLS file is given")
	f.StringVar(&o.user, "dest-user", "", "log in to the destination as this user; add :password or be asked for it")
	f.StringVar(&o.password, "dest-password", "", "password at the destination; --dest-user then holds the name alone")
	cmd.RunE = g.run(func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return badArgs("make-mirror takes one destination argument")
		}
		dc, err := g.mirrorDestination(args[0], &o)
		if err != nil {
			return err
		}
		defer dc.Close()
		p, err := g.printer() // etcdctl checks -w here, though it prints no response
		if err != nil {
			return err
		}
		c, err := g.client()
		if err != nil {
			return err
		}
		defer c.Close()
		if o.noDestPrefix && o.destPrefix != "" {
			return badArgs("`--dest-prefix` and `--no-dest-prefix` cannot be set at the same time, choose one")
		}
		err = makeMirror(context.Background(), c, dc, o, p)
		// As etcdctl, an end without error (the watch closed) is reported too.
		return withCode(ExitError, errOrNil(err))
	})
	return cmd
}

// errOrNil is err, or an error reading "<nil>" as etcdctl prints for none.
func errOrNil(err error) error {
	if err == nil {
		return errors.New("<nil>")
	}
	return err
}

// mirrorDestination connects to the destination with the global timeouts
// and limits and make-mirror's own TLS and credentials.
func (g *globals) mirrorDestination(endpoint string, o *mirrorOptions) (*clientv3.Client, error) {
	auth, err := authConfig(o.user, o.password, "", "Destination Password: ", g.stdio.Out)
	if err != nil {
		return nil, err
	}
	spec := &clientv3.ConfigSpec{
		Endpoints:          []string{endpoint},
		DialTimeout:        g.dialTimeout,
		KeepAliveTime:      g.keepAliveTime,
		KeepAliveTimeout:   g.keepAliveTimeout,
		MaxCallSendMsgSize: g.maxRequestBytes,
		MaxCallRecvMsgSize: g.maxRecvBytes,
		Secure: &clientv3.SecureConfig{
			Cert: o.cert, Key: o.key, Cacert: o.cacert, InsecureTransport: o.insecureTransport,
		},
		Auth: auth,
	}
	cfg, err := clientv3.NewClientConfig(spec, g.logger())
	if err != nil {
		return nil, withCode(ExitBadArgs, err)
	}
	return newClient(*cfg)
}

// makeMirror copies the keys under o.prefix from c to dc (unless o.rev is
// set), then follows the changes from there until ctx ends or an error,
// which it returns. Every mirrorProgressEvery it prints how many keys it
// has written so far.
func makeMirror(ctx context.Context, c, dc *clientv3.Client, o mirrorOptions, p *printer) error {
	var total atomic.Int64
	go func() {
		t := time.NewTicker(mirrorProgressEvery)
		defer t.Stop()
		for range t.C {
			p.println(total.Load())
		}
	}()
	startRev := max(o.rev-1, 0)
	s := mirror.NewSyncer(c, o.prefix, startRev)
	if startRev == 0 {
		// As etcdctl, the destination prefix defaults to --prefix only
		// when the keys are copied first: with --rev, the prefix is cut.
		if !o.noDestPrefix && o.destPrefix == "" {
			o.destPrefix = o.prefix
		}
		if err := copyKeys(ctx, s, dc, o, &total); err != nil {
			return err
		}
	}
	for wr := range s.SyncUpdates(ctx) {
		if wr.CompactRevision != 0 {
			return rpctypes.ErrCompacted
		}
		if err := applyEvents(ctx, dc, wr.Events, o, &total); err != nil {
			return err
		}
	}
	return nil
}

// copyKeys writes the keys the syncer reads at its start revision to dc.
func copyKeys(ctx context.Context, s mirror.Syncer, dc *clientv3.Client, o mirrorOptions, total *atomic.Int64) error {
	rc, errc := s.SyncBase(ctx)
	for r := range rc {
		for _, kv := range r.Kvs {
			if _, err := dc.Put(ctx, o.destKey(kv.Key), string(kv.Value)); err != nil {
				return err
			}
			total.Add(1)
		}
	}
	return <-errc
}

// applyEvents replays one watch response's events on dc: one transaction
// per source revision, split every o.maxTxnOps operations.
func applyEvents(ctx context.Context, dc *clientv3.Client, events []*clientv3.Event, o mirrorOptions, total *atomic.Int64) error {
	var ops []clientv3.Op
	commit := func() error {
		if len(ops) == 0 {
			return nil
		}
		_, err := dc.Txn(ctx).Then(ops...).Commit()
		ops = ops[:0]
		return err
	}
	var lastRev int64
	for _, ev := range events {
		if (lastRev != 0 && ev.Kv.ModRevision > lastRev) || len(ops) == int(o.maxTxnOps) {
			if err := commit(); err != nil {
				return err
			}
		}
		lastRev = ev.Kv.ModRevision
		key := o.destKey(ev.Kv.Key)
		if ev.Type == mvccpb.DELETE {
			ops = append(ops, clientv3.OpDelete(key))
		} else {
			ops = append(ops, clientv3.OpPut(key, string(ev.Kv.Value)))
		}
		total.Add(1)
	}
	return commit()
}

// destKey is key's name in the destination: the first occurrence of
// --prefix replaced by the destination prefix, as etcdctl does.
func (o mirrorOptions) destKey(key []byte) string {
	return strings.Replace(string(key), o.prefix, o.destPrefix, 1)
}
