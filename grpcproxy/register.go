package grpcproxy

import (
	"context"
	"sort"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/naming/endpoints"
	"go.uber.org/zap"
)

// Register keeps addr registered as a proxy endpoint under prefix
// (prefix/addr, with a lease of ttl seconds kept alive) until ctx ends,
// registering again whenever the lease is lost (--resolver-prefix). The
// gRPC naming resolver of the client module, and MemberList of every proxy
// sharing prefix, then list it.
func Register(ctx context.Context, lg *zap.Logger, c *clientv3.Client, prefix, addr string, ttl int) {
	em, err := endpoints.NewManager(c, prefix)
	if err != nil {
		lg.Error("cannot register the proxy", zap.String("prefix", prefix), zap.Error(err))
		return
	}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		if err := registerOnce(ctx, em, c, prefix, addr, ttl); err != nil && ctx.Err() == nil {
			lg.Warn("proxy registration lost; registering again", zap.String("prefix", prefix), zap.String("address", addr),
				zap.Error(err), zap.Duration("backoff", backoff))
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func registerOnce(ctx context.Context, em endpoints.Manager, c *clientv3.Client, prefix, addr string, ttl int) error {
	g, err := c.Grant(ctx, int64(ttl))
	if err != nil {
		return err
	}
	err = em.AddEndpoint(ctx, prefix+"/"+addr, endpoints.Endpoint{Addr: addr, Metadata: hostname()}, clientv3.WithLease(g.ID))
	if err != nil {
		return err
	}
	ka, err := c.KeepAlive(ctx, g.ID)
	if err != nil {
		return err
	}
	for range ka {
	}
	return ctx.Err()
}

// registeredMembers lists the proxies registered under prefix as members.
func registeredMembers(ctx context.Context, c *clientv3.Client, prefix string) ([]*pb.Member, error) {
	em, err := endpoints.NewManager(c, prefix)
	if err != nil {
		return nil, err
	}
	eps, err := em.List(ctx)
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(eps))
	for k := range eps {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	ms := make([]*pb.Member, 0, len(keys))
	for _, k := range keys {
		ep := eps[k]
		name, _ := ep.Metadata.(string)
		ms = append(ms, &pb.Member{Name: name, ClientURLs: []string{ep.Addr}})
	}
	return ms, nil
}
