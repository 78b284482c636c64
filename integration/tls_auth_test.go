package integration

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/keeldb/keel/config"
	"github.com/keeldb/keel/internal/keeltest"
	"github.com/keeldb/keel/pki"
)

// TestTLSCommonNameIsTheUser checks etcd's identity rule under
// --client-cert-auth with auth enabled: a request without a token acts as
// the user named by its client certificate's CN, with that user's
// permissions; a token, when sent, wins over the certificate.
func TestTLSCommonNameIsTheUser(t *testing.T) {
	p := newTestPKI(t)
	srv := p.server("server")
	rootCert := p.issue("root", pki.Request{CommonName: "root", Usage: pki.Client})
	aliceCert := p.issue("alice", pki.Request{CommonName: "alice", Usage: pki.Client})
	m := keeltest.Start(t, keeltest.WithClientTLS(
		config.TLS{CertFile: srv.CertFile, KeyFile: srv.KeyFile, TrustedCAFile: p.CAFile, ClientCertAuth: true}, p.clientTLS(&rootCert)),
		keeltest.WithConfig(func(cfg *config.Config) { cfg.BcryptCost = 4 }))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	root := m.Client
	steps := []func() error{
		func() error { _, err := root.Put(ctx, "k", "v"); return err },
		func() error { _, err := root.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := root.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := root.RoleAdd(ctx, "reader"); return err },
		func() error {
			_, err := root.RoleGrantPermission(ctx, "reader", "k", "", clientv3.PermissionType(clientv3.PermRead))
			return err
		},
		func() error {
			_, err := root.UserAddWithOptions(ctx, "alice", "", &clientv3.UserAddOptions{NoPassword: true})
			return err
		},
		func() error { _, err := root.UserGrantRole(ctx, "alice", "reader"); return err },
		func() error { _, err := root.AuthEnable(ctx); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("setup step %d: %v", i, err)
		}
	}

	// The root certificate alone is root: a management call works.
	if _, err := root.UserList(ctx); err != nil {
		t.Fatalf("user list with the root certificate: %v", err)
	}

	alice := newTLSClient(t, m.Endpoint, p.clientTLS(&aliceCert))
	resp, err := alice.Get(ctx, "k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("alice reads k: %v %v", resp, err)
	}
	if _, err := alice.Put(ctx, "k", "w"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Fatalf("alice writes k: %v, want %v", err, rpctypes.ErrPermissionDenied)
	}
	if _, err := alice.UserList(ctx); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Fatalf("alice lists users: %v, want %v", err, rpctypes.ErrPermissionDenied)
	}

	// With alice's certificate but root's password, the token names root.
	// The client logs in while it connects, within DialTimeout: leave room
	// for a loaded machine.
	withToken, err := clientv3.New(clientv3.Config{Endpoints: []string{m.Endpoint}, DialTimeout: 20 * time.Second,
		TLS: p.clientTLS(&aliceCert), Username: "root", Password: "rootpw", Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer withToken.Close()
	if _, err := withToken.Put(ctx, "k", "w"); err != nil {
		t.Fatalf("put as root by token over alice's certificate: %v", err)
	}
}
