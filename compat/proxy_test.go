package compat

import (
	"net"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/keeldb/keel/grpcproxy"
)

// viaProxy selects keel behind keel's gRPC proxy as the system under test
// of the differential tests (KEEL_COMPAT_VIA_PROXY=1), so that etcd's
// answers are compared with the proxy's:
//
//	KEEL_COMPAT_VIA_PROXY=1 go test -run 'TestDifferential(KV|Watch|Lease)$' .
//
// TestDifferential*ThroughProxy do the same without the variable.
func viaProxy() bool { return envBool("KEEL_COMPAT_VIA_PROXY") }

// startKeelBehindProxy starts a keel member and keel's gRPC proxy in front
// of it, in this process, and returns a target connected to the proxy.
func startKeelBehindProxy(t *testing.T, name string) *target {
	t.Helper()
	ep := startKeelServer(t, name, keelConfig(t))
	up, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: startTimeout,
		MaxCallSendMsgSize: clientMaxSendBytes, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("proxy client for %s: %v", name, err)
	}
	p := grpcproxy.New(grpcproxy.Config{Client: up, Logger: serverLogger(t, name+"-proxy")})
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
		_ = up.Close()
	})
	return newTarget(t, name+"-proxy", l.Addr().String())
}

// The differential tests with keel behind its gRPC proxy: every response
// of the proxy must equal etcd's.
func TestDifferentialKVThroughProxy(t *testing.T) {
	t.Setenv("KEEL_COMPAT_VIA_PROXY", "1")
	TestDifferentialKV(t)
}

func TestDifferentialWatchThroughProxy(t *testing.T) {
	t.Setenv("KEEL_COMPAT_VIA_PROXY", "1")
	TestDifferentialWatch(t)
}

func TestDifferentialLeaseThroughProxy(t *testing.T) {
	t.Setenv("KEEL_COMPAT_VIA_PROXY", "1")
	TestDifferentialLease(t)
}
