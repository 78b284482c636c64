package grpcproxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// leaseProxy serves Lease. Grant, Revoke, TimeToLive and Leases pass
// through; keep-alives of every client stream are coalesced onto one
// upstream LeaseKeepAlive stream (see keepAliver).
type leaseProxy struct {
	pb.UnimplementedLeaseServer
	p  *Proxy
	c  pb.LeaseClient
	ka *keepAliver
}

func newLeaseProxy(p *Proxy) *leaseProxy {
	c := pb.NewLeaseClient(p.cfg.Client.ActiveConnection())
	lp := &leaseProxy{p: p, c: c, ka: newKeepAliver(p, c)}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		lp.ka.run()
	}()
	return lp
}

func (l *leaseProxy) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	resp, err := l.c.LeaseGrant(upstream(ctx), r)
	if err == nil {
		l.p.noteRev(resp.Header)
	}
	return resp, err
}

func (l *leaseProxy) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	resp, err := l.c.LeaseRevoke(upstream(ctx), r)
	// The lease's keys are gone; which ones is not known here.
	l.p.cache.clear()
	if err == nil {
		l.p.noteRev(resp.Header)
	}
	return resp, err
}

func (l *leaseProxy) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	resp, err := l.c.LeaseTimeToLive(upstream(ctx), r)
	if err != nil || l.p.cfg.Namespace == "" {
		return resp, err
	}
	// Only the keys of the proxy's namespace, without the prefix.
	ns := []byte(l.p.cfg.Namespace)
	keys := resp.Keys[:0]
	for _, k := range resp.Keys {
		if bytes.HasPrefix(k, ns) {
			keys = append(keys, k[len(ns):])
		}
	}
	resp.Keys = keys
	return resp, nil
}

func (l *leaseProxy) LeaseLeases(ctx context.Context, r *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	return l.c.LeaseLeases(upstream(ctx), r)
}

// LeaseKeepAlive serves one client keep-alive stream. Each request is
// answered by the next upstream response for its lease; a lease already
// waiting for one on this stream is not asked for twice.
func (l *leaseProxy) LeaseKeepAlive(srv pb.Lease_LeaseKeepAliveServer) error {
	ctx, cancel := context.WithCancel(srv.Context())
	defer cancel()
	var (
		mu      sync.Mutex
		pending = map[int64]bool{}
		wg      sync.WaitGroup
		sendErr error
	)
	defer wg.Wait()
	for {
		req, err := srv.Recv()
		if errors.Is(err, io.EOF) {
			// As a member does: the client closed its side, the
			// stream ends; answers still due are given first.
			wg.Wait()
			return nil
		}
		if err != nil {
			return err
		}
		l.ka.downstream.Add(1)
		mu.Lock()
		if sendErr != nil {
			mu.Unlock()
			return sendErr
		}
		if pending[req.ID] {
			mu.Unlock()
			continue
		}
		pending[req.ID] = true
		mu.Unlock()
		wg.Add(1)
		go func(id int64) {
			defer wg.Done()
			resp, err := l.ka.keepAlive(ctx, id)
			mu.Lock()
			defer mu.Unlock()
			delete(pending, id)
			if err != nil || sendErr != nil {
				return
			}
			if err := srv.Send(resp); err != nil {
				sendErr = err
				cancel()
			}
		}(req.ID)
	}
}

// keepAliver keeps one upstream LeaseKeepAlive stream open (re-opening it
// when it fails) and sends a lease's keep-alive upstream only when none of
// that lease is already waiting for its answer: every waiter of the lease
// gets the one answer.
type keepAliver struct {
	p *Proxy
	c pb.LeaseClient

	mu      sync.Mutex
	waiting map[int64][]chan *pb.LeaseKeepAliveResponse
	queued  []int64
	kick    chan struct{}

	// Counters for tests and metrics.
	streams, sent, downstream counter
}

type counter struct {
	mu sync.Mutex
	n  int64
}

func (c *counter) Add(d int64) { c.mu.Lock(); c.n += d; c.mu.Unlock() }
func (c *counter) Load() int64 { c.mu.Lock(); defer c.mu.Unlock(); return c.n }

func newKeepAliver(p *Proxy, c pb.LeaseClient) *keepAliver {
	return &keepAliver{p: p, c: c, waiting: make(map[int64][]chan *pb.LeaseKeepAliveResponse), kick: make(chan struct{}, 1)}
}

// KeepAliveStats reports the keep-alive coalescing: upstream streams
// opened, keep-alives sent upstream, and keep-alives received from clients.
type KeepAliveStats struct {
	UpstreamStreams, UpstreamRequests, DownstreamRequests int64
}

// KeepAliveStats returns the current keep-alive figures.
func (p *Proxy) KeepAliveStats() KeepAliveStats {
	ka := p.lease.ka
	return KeepAliveStats{UpstreamStreams: ka.streams.Load(), UpstreamRequests: ka.sent.Load(), DownstreamRequests: ka.downstream.Load()}
}

// keepAlive renews lease id and returns the cluster's answer (TTL 0 for a
// lease that does not exist), or ctx's error.
func (k *keepAliver) keepAlive(ctx context.Context, id int64) (*pb.LeaseKeepAliveResponse, error) {
	ch := make(chan *pb.LeaseKeepAliveResponse, 1)
	k.mu.Lock()
	first := len(k.waiting[id]) == 0
	k.waiting[id] = append(k.waiting[id], ch)
	if first {
		k.queued = append(k.queued, id)
	}
	k.mu.Unlock()
	if first {
		k.signal()
	}
	select {
	case r := <-ch:
		return r, nil
	case <-ctx.Done():
		k.mu.Lock()
		ws := k.waiting[id]
		for i, c := range ws {
			if c == ch {
				ws = append(ws[:i:i], ws[i+1:]...)
				break
			}
		}
		if len(ws) == 0 {
			delete(k.waiting, id)
		} else {
			k.waiting[id] = ws
		}
		k.mu.Unlock()
		return nil, ctx.Err()
	}
}

func (k *keepAliver) signal() {
	select {
	case k.kick <- struct{}{}:
	default:
	}
}

// run owns the upstream stream until the proxy closes. The stream is
// opened when the first keep-alive comes, not before.
func (k *keepAliver) run() {
	select {
	case <-k.kick:
		k.signal() // for serve
	case <-k.p.ctx.Done():
		return
	}
	backoff := 50 * time.Millisecond
	for k.p.ctx.Err() == nil {
		if err := k.serve(); err != nil && k.p.ctx.Err() == nil {
			k.p.lg.Warn("upstream lease keep-alive stream failed; reopening", zap.Error(err), zap.Duration("backoff", backoff))
			select {
			case <-time.After(backoff):
			case <-k.p.ctx.Done():
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
	}
}

// serve runs one upstream stream: it first re-sends the keep-alives still
// unanswered (their answers were lost with the previous stream).
func (k *keepAliver) serve() error {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(k.p.ctx))
	defer cancel()
	st, err := k.c.LeaseKeepAlive(ctx)
	if err != nil {
		return err
	}
	k.streams.Add(1)
	k.mu.Lock()
	k.queued = k.queued[:0]
	for id := range k.waiting {
		k.queued = append(k.queued, id)
	}
	k.mu.Unlock()
	k.signal()
	recvErr := make(chan error, 1)
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			k.deliver(r)
		}
	}()
	for {
		select {
		case <-k.kick:
			k.mu.Lock()
			ids := append([]int64(nil), k.queued...)
			k.queued = k.queued[:0]
			k.mu.Unlock()
			for _, id := range ids {
				if err := st.Send(&pb.LeaseKeepAliveRequest{ID: id}); err != nil {
					return err
				}
				k.sent.Add(1)
			}
		case err := <-recvErr:
			return err
		case <-k.p.ctx.Done():
			return nil
		}
	}
}

func (k *keepAliver) deliver(r *pb.LeaseKeepAliveResponse) {
	k.mu.Lock()
	ws := k.waiting[r.ID]
	delete(k.waiting, r.ID)
	k.mu.Unlock()
	for _, ch := range ws {
		ch <- r // buffered, one answer each
	}
}
