package ctl

import (
	"context"
	"errors"
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

// keyMirror copies keys from src to dst, renamed, and counts them.
type keyMirror struct {
	src, dst *clientv3.Client
	// from is the source prefix, replaced by to in the destination.
	from, to string
	// maxOps bounds a destination transaction; 0 leaves it unbounded.
	maxOps int
	// written counts the keys written and deleted in the destination.
	written atomic.Int64
}

// makeMirror copies the keys under o.prefix to dst as they are now (unless
// o.rev says where to start following instead), then follows their changes
// until ctx ends or a failure, which it returns. Every mirrorProgressEvery
// it prints how many keys it has written so far.
func makeMirror(ctx context.Context, src, dst *clientv3.Client, o mirrorOptions, p *printer) error {
	m := &keyMirror{src: src, dst: dst, from: o.prefix, to: o.destPrefix, maxOps: int(o.maxTxnOps)}
	stopReporting := reportEvery(p, mirrorProgressEvery, &m.written)
	defer stopReporting()
	if o.rev > 1 {
		// Following from a revision, the prefix is cut unless
		// --dest-prefix names another one, as etcdctl does.
		return m.follow(ctx, mirror.NewSyncer(src, o.prefix, o.rev-1))
	}
	if !o.noDestPrefix && o.destPrefix == "" {
		m.to = o.prefix
	}
	s := mirror.NewSyncer(src, o.prefix, 0)
	if err := m.copyAll(ctx, s); err != nil {
		return err
	}
	return m.follow(ctx, s)
}

// reportEvery prints n every period until stop, which waits for its
// goroutine to end.
func reportEvery(p *printer, period time.Duration, n *atomic.Int64) (stop func()) {
	tick := time.NewTicker(period)
	quit, ended := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ended)
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
				p.println(n.Load())
			}
		}
	}()
	return func() {
		tick.Stop()
		close(quit)
		<-ended
	}
}

// rename is key's name in the destination. The syncer only yields keys
// under m.from.
func (m *keyMirror) rename(key []byte) string {
	return m.to + string(key[len(m.from):])
}

// copyAll writes the keys the syncer reads at its revision to the
// destination, one put each. On a failed put it stops the syncer and
// drains what it already read, so that its goroutine ends.
func (m *keyMirror) copyAll(ctx context.Context, s mirror.Syncer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pages, readErr := s.SyncBase(ctx)
	var putErr error
	for page := range pages {
		for _, kv := range page.Kvs {
			if putErr != nil {
				break
			}
			if _, putErr = m.dst.Put(ctx, m.rename(kv.Key), string(kv.Value)); putErr == nil {
				m.written.Add(1)
			}
		}
		if putErr != nil {
			cancel()
		}
	}
	if putErr != nil {
		return putErr
	}
	return <-readErr
}

// follow replays the changes the syncer watches in the destination until
// the watch ends (nil) or a failure. A compaction that skips changes
// fails.
func (m *keyMirror) follow(ctx context.Context, s mirror.Syncer) error {
	for resp := range s.SyncUpdates(ctx) {
		if resp.CompactRevision != 0 {
			return rpctypes.ErrCompacted
		}
		if err := m.replay(ctx, resp.Events); err != nil {
			return err
		}
	}
	return nil
}

// replay writes events, in order, to the destination: the events of one
// source revision in one transaction, split every m.maxOps operations.
func (m *keyMirror) replay(ctx context.Context, events []*clientv3.Event) error {
	for len(events) > 0 {
		n := 1
		for n < len(events) && (m.maxOps == 0 || n < m.maxOps) && events[n].Kv.ModRevision == events[0].Kv.ModRevision {
			n++
		}
		ops := make([]clientv3.Op, n)
		for i, ev := range events[:n] {
			key := m.rename(ev.Kv.Key)
			if ev.Type == mvccpb.DELETE {
				ops[i] = clientv3.OpDelete(key)
			} else {
				ops[i] = clientv3.OpPut(key, string(ev.Kv.Value))
			}
		}
		m.written.Add(int64(n))
		if _, err := m.dst.Txn(ctx).Then(ops...).Commit(); err != nil {
			return err
		}
		events = events[n:]
	}
	return nil
}
