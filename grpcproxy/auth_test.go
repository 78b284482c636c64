package grpcproxy_test

import (
	"context"
	"errors"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/keeldb/keel/internal/keeltest"
)

// TestAuthPassesThroughTheProxy: clients authenticate through the proxy,
// their tokens travel with their requests, and neither the range cache nor
// a shared upstream watcher lets a client read what it may not.
func TestAuthPassesThroughTheProxy(t *testing.T) {
	m := keeltest.Start(t)
	tp := startProxy(t, m)
	ctx := testCtx(t)
	anon := tp.client(t)
	if _, err := anon.Put(ctx, "secret", "s"); err != nil {
		t.Fatal(err)
	}
	// Cached while auth is off.
	if _, err := anon.Get(ctx, "secret", clientv3.WithSerializable()); err != nil {
		t.Fatal(err)
	}
	for _, step := range []func() error{
		func() error { _, err := anon.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := anon.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := anon.RoleAdd(ctx, "reader"); return err },
		func() error {
			_, err := anon.RoleGrantPermission(ctx, "reader", "pub/", clientv3.GetPrefixRangeEnd("pub/"), clientv3.PermissionType(clientv3.PermRead))
			return err
		},
		func() error { _, err := anon.UserAdd(ctx, "alice", "alicepw"); return err },
		func() error { _, err := anon.UserGrantRole(ctx, "alice", "reader"); return err },
		func() error { _, err := anon.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	login := func(user, pw string) *clientv3.Client {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{tp.Endpoint}, DialTimeout: keeltest.DialTimeout,
			Logger: zap.NewNop(), Username: user, Password: pw})
		if err != nil {
			t.Fatalf("log in as %s through the proxy: %v", user, err)
		}
		t.Cleanup(func() { cli.Close() })
		return cli
	}
	root := login("root", "rootpw")
	alice := login("alice", "alicepw")

	if _, err := anon.Get(ctx, "secret", clientv3.WithSerializable()); !errors.Is(err, rpctypes.ErrUserEmpty) {
		t.Fatalf("tokenless serializable read after auth enable: %v, want %v", err, rpctypes.ErrUserEmpty)
	}
	if _, err := root.Put(ctx, "pub/1", "p"); err != nil {
		t.Fatal(err)
	}
	if r, err := alice.Get(ctx, "pub/1", clientv3.WithSerializable()); err != nil || len(r.Kvs) != 1 {
		t.Fatalf("alice reads pub/1: %v %v", r, err)
	}
	if _, err := root.Get(ctx, "secret", clientv3.WithSerializable()); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Get(ctx, "secret", clientv3.WithSerializable()); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Fatalf("alice reads secret: %v, want %v", err, rpctypes.ErrPermissionDenied)
	}
	if _, err := alice.Put(ctx, "pub/1", "x"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Fatalf("alice writes pub/1: %v, want %v", err, rpctypes.ErrPermissionDenied)
	}

	// Root watches secret; alice's watch on it would share root's
	// upstream watcher, and must be refused.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rw := root.Watch(wctx, "secret", clientv3.WithCreatedNotify())
	if wr := <-rw; !wr.Created {
		t.Fatalf("root's watch: %+v", wr)
	}
	aw := alice.Watch(wctx, "secret", clientv3.WithCreatedNotify())
	wr := <-aw
	if !wr.Canceled || !errors.Is(wr.Err(), rpctypes.ErrPermissionDenied) {
		t.Fatalf("alice's watch on secret: canceled=%v err=%v, want permission denied", wr.Canceled, wr.Err())
	}
	if st := tp.WatchStats(); st.Downstream != 1 {
		t.Fatalf("stats %+v: alice's refused watcher joined", st)
	}
	pw := alice.Watch(wctx, "pub/", clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	if wr := <-pw; !wr.Created || wr.Canceled {
		t.Fatalf("alice's watch on pub/: %+v", wr)
	}
	if _, err := root.Put(ctx, "pub/2", "q"); err != nil {
		t.Fatal(err)
	}
	if wr := <-pw; len(wr.Events) != 1 || string(wr.Events[0].Kv.Key) != "pub/2" {
		t.Fatalf("alice's watch event: %+v", wr)
	}
}
