package grpcproxy_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/keeldb/keel/grpcproxy"
	"github.com/keeldb/keel/internal/keeltest"
)

// upstreamCounter counts, on the proxy's connection to the cluster, the
// Watch streams opened and the watch create requests sent on them: the
// measure of watch coalescing that does not trust the proxy's own figures.
type upstreamCounter struct {
	mu             sync.Mutex
	watchStreams   int
	watchCreates   int
	keepAliveOpens int
}

func (c *upstreamCounter) streamInterceptor(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cs, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return cs, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case strings.HasSuffix(method, "/Watch"):
		c.watchStreams++
		return &countingStream{ClientStream: cs, c: c}, nil
	case strings.HasSuffix(method, "/LeaseKeepAlive"):
		c.keepAliveOpens++
	}
	return cs, nil
}

func (c *upstreamCounter) counts() (streams, creates, keepAlives int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.watchStreams, c.watchCreates, c.keepAliveOpens
}

type countingStream struct {
	grpc.ClientStream
	c *upstreamCounter
}

func (s *countingStream) SendMsg(m any) error {
	if r, ok := m.(*pb.WatchRequest); ok && r.GetCreateRequest() != nil {
		s.c.mu.Lock()
		s.c.watchCreates++
		s.c.mu.Unlock()
	}
	return s.ClientStream.SendMsg(m)
}

// testProxy is a proxy in front of one member, serving on loopback.
type testProxy struct {
	*grpcproxy.Proxy
	Endpoint string
	Counter  *upstreamCounter
	// Upstream is the proxy's client of the cluster.
	Upstream *clientv3.Client
}

// startProxy starts a proxy in front of m; everything it starts is stopped
// by t's cleanup.
func startProxy(t *testing.T, m *keeltest.Member, edit ...func(*grpcproxy.Config)) *testProxy {
	t.Helper()
	return startProxyFor(t, []string{m.Endpoint}, edit...)
}

// startProxyFor starts a proxy in front of the cluster at endpoints.
func startProxyFor(t *testing.T, endpoints []string, edit ...func(*grpcproxy.Config)) *testProxy {
	t.Helper()
	uc := &upstreamCounter{}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: keeltest.DialTimeout,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithChainStreamInterceptor(uc.streamInterceptor)},
	})
	if err != nil {
		t.Fatalf("connect proxy to %s: %v", endpoints, err)
	}
	cfg := grpcproxy.Config{Client: cli}
	for _, f := range edit {
		f(&cfg)
	}
	p := grpcproxy.New(cfg)
	gs := grpc.NewServer()
	p.Register(gs)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = gs.Serve(l)
	}()
	t.Cleanup(func() {
		gs.Stop()
		<-served
		p.Close()
		cli.Close()
	})
	return &testProxy{Proxy: p, Endpoint: l.Addr().String(), Counter: uc, Upstream: cli}
}

// client returns a client of the proxy, closed by t's cleanup.
func (tp *testProxy) client(t *testing.T) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{tp.Endpoint}, DialTimeout: keeltest.DialTimeout, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("connect to proxy: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// testCtx bounds a test's calls.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
