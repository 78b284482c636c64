// Package grpcproxy is a stateless etcd v3 gRPC proxy: it serves the KV,
// Watch, Lease, Cluster, Maintenance and Auth services to many clients and
// forwards them to a cluster through one official client
// (go.etcd.io/etcd/client/v3). It saves the cluster work three ways:
//
//   - serializable ranges are answered from a bounded LRU cache that writes
//     made through the proxy invalidate;
//   - watchers on the same key range whose start revisions allow it share
//     one upstream watcher (coalescing), each keeping its own watch ID,
//     filters, prev_kv, progress and cancel;
//   - keep-alives of many client streams travel on one upstream
//     LeaseKeepAlive stream, and a lease renewed by several clients at once
//     is renewed upstream once.
//
// `keel grpc-proxy start` (package proxymain) wires it to listeners.
package grpcproxy

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/namespace"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// DefaultCacheEntries is the number of range responses the cache keeps, as
// etcd's proxy does.
const DefaultCacheEntries = 2048

// DefaultFragmentBytes is the size above which a watch response is split
// for a watcher that asked for fragments: etcd's default
// --max-request-bytes.
const DefaultFragmentBytes = 1536 * 1024

// Config configures a Proxy.
type Config struct {
	// Client is the connection to the cluster. The proxy does not close it.
	Client *clientv3.Client
	// KV, when set, replaces Client.KV for key-value requests (e.g. the
	// ordering or leasing wrappers of the client module).
	KV clientv3.KV
	// Namespace prefixes every key the proxy's clients use (--namespace).
	Namespace string
	// CacheEntries bounds the range cache; 0 means DefaultCacheEntries.
	CacheEntries int
	// FragmentBytes: see DefaultFragmentBytes; 0 means the default.
	FragmentBytes int
	// AdvertiseClientURL is what MemberList answers when set
	// (--advertise-client-url), as etcd's proxy does; empty passes
	// MemberList through to the cluster.
	AdvertiseClientURL string
	// ResolverPrefix: MemberList answers the proxies registered under
	// it (see Register) when AdvertiseClientURL is set too.
	ResolverPrefix string
	Logger         *zap.Logger
}

// Proxy implements the etcd v3 gRPC services by forwarding to a cluster.
// Register it on a grpc.Server; Close stops its background work.
type Proxy struct {
	cfg Config
	lg  *zap.Logger
	kv  clientv3.KV
	// plainKV is the client's KV in the namespace, without the ordering
	// or leasing layers: for the proxy's own checks.
	plainKV clientv3.KV
	watcher clientv3.Watcher
	cache   *cache
	metrics *Metrics
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	watch *watchProxy
	lease *leaseProxy

	// lastRev is the newest revision of the cluster the proxy has seen in
	// a response.
	lastRev atomic.Int64
}

// noteRev records the revision of a response header from the cluster.
func (p *Proxy) noteRev(h *pb.ResponseHeader) {
	if h == nil {
		return
	}
	for {
		cur := p.lastRev.Load()
		if h.Revision <= cur || p.lastRev.CompareAndSwap(cur, h.Revision) {
			return
		}
	}
}

// New builds a proxy over cfg.Client.
func New(cfg Config) *Proxy {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.CacheEntries <= 0 {
		cfg.CacheEntries = DefaultCacheEntries
	}
	if cfg.FragmentBytes <= 0 {
		cfg.FragmentBytes = DefaultFragmentBytes
	}
	ctx, cancel := context.WithCancel(cfg.Client.Ctx())
	p := &Proxy{cfg: cfg, lg: cfg.Logger, ctx: ctx, cancel: cancel, metrics: newMetrics()}
	p.kv = cfg.KV
	if p.kv == nil {
		p.kv = cfg.Client.KV
	}
	p.watcher = cfg.Client.Watcher
	p.plainKV = cfg.Client.KV
	if cfg.Namespace != "" {
		p.kv = namespace.NewKV(p.kv, cfg.Namespace)
		p.plainKV = namespace.NewKV(p.plainKV, cfg.Namespace)
		p.watcher = namespace.NewWatcher(p.watcher, cfg.Namespace)
	}
	p.cache = newCache(cfg.CacheEntries)
	p.watch = newWatchProxy(p)
	p.lease = newLeaseProxy(p)
	p.metrics.registerProxy(p)
	return p
}

// Register registers the proxy's services on s.
func (p *Proxy) Register(s *grpc.Server) {
	kp := &kvProxy{p: p}
	if p.cfg.Namespace == "" && p.cfg.KV == nil {
		kp.raw = pb.NewKVClient(p.cfg.Client.ActiveConnection())
	}
	pb.RegisterKVServer(s, kp)
	pb.RegisterWatchServer(s, p.watch)
	pb.RegisterLeaseServer(s, p.lease)
	pb.RegisterClusterServer(s, &clusterProxy{p: p, c: pb.NewClusterClient(p.cfg.Client.ActiveConnection())})
	pb.RegisterMaintenanceServer(s, &maintenanceProxy{p: p, c: pb.NewMaintenanceClient(p.cfg.Client.ActiveConnection())})
	pb.RegisterAuthServer(s, &authProxy{p: p, c: pb.NewAuthClient(p.cfg.Client.ActiveConnection())})
}

// Metrics returns the proxy's own metrics (served on /proxy/metrics).
func (p *Proxy) Metrics() *Metrics { return p.metrics }

// Close stops the upstream watches and the keep-alive stream and waits for
// their goroutines. Downstream streams still open end with an error.
func (p *Proxy) Close() {
	p.cancel()
	p.wg.Wait()
}

// hostname is what MemberList names the proxy, as etcd's does.
func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	return h
}

// upstream returns the context of an upstream call made for the client
// request ctx: the client's auth token (if any) travels with it, so the
// cluster checks the client's permissions, not the proxy's.
func upstream(ctx context.Context) context.Context {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return ctx
	}
	if ts := md.Get(rpctypes.TokenFieldNameGRPC); len(ts) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, rpctypes.TokenFieldNameGRPC, ts[0])
	}
	return ctx
}

// hasToken reports whether the client request ctx carries an auth token.
func hasToken(ctx context.Context) bool {
	md, ok := metadata.FromIncomingContext(ctx)
	return ok && len(md.Get(rpctypes.TokenFieldNameGRPC)) > 0
}

// toGRPC turns an error of the official client back into the gRPC status
// the cluster sent, so that the proxy's clients see the same code and
// message as they would from a member.
func toGRPC(err error) error {
	if err == nil {
		return nil
	}
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return status.Error(ee.Code(), ee.Error())
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return status.Error(codes.Unavailable, err.Error())
}
