package api_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keeldb/keel/internal/keeltest"
)

func leaseCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestLeaseAndAttachedKeysSurviveRestart(t *testing.T) {
	m := keeltest.Start(t)
	ctx := leaseCtx(t)
	g, err := m.Client.Grant(ctx, 600)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"b", "a"} {
		if _, err := m.Client.Put(ctx, k, "v", clientv3.WithLease(g.ID)); err != nil {
			t.Fatal(err)
		}
	}
	m.Restart(t)
	ttl, err := m.Client.TimeToLive(ctx, g.ID, clientv3.WithAttachedKeys())
	if err != nil {
		t.Fatal(err)
	}
	// Promotion at start adds the election timeout (1s by default).
	if ttl.GrantedTTL != 600 || ttl.TTL < 595 || ttl.TTL > 601 || fmt.Sprintf("%s", ttl.Keys) != "[a b]" {
		t.Fatalf("after restart: TTL %d, granted %d, keys %s", ttl.TTL, ttl.GrantedTTL, ttl.Keys)
	}
	rev, err := m.Client.Revoke(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	get, err := m.Client.Get(ctx, "", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if get.Count != 0 || get.Header.Revision != rev.Header.Revision {
		t.Fatalf("after revoke: %d keys at revision %d, revoke answered revision %d", get.Count, get.Header.Revision, rev.Header.Revision)
	}
}

func TestKeepAliveAndTimeToLiveOfAnUnknownLease(t *testing.T) {
	m := keeltest.Start(t)
	ctx := leaseCtx(t)
	ka, err := m.Client.KeepAliveOnce(ctx, 12345)
	if err == nil {
		t.Fatalf("KeepAliveOnce of an unknown lease succeeded: %v", ka)
	}
	// The raw stream answers TTL 0; the client turns that into an error.
	stream, err := pb.NewLeaseClient(m.Client.ActiveConnection()).LeaseKeepAlive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pb.LeaseKeepAliveRequest{ID: 12345}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if resp.ID != 12345 || resp.TTL != 0 || resp.Header.MemberId == 0 || resp.Header.Revision != 1 {
		t.Fatalf("keepalive of an unknown lease answered %v, want ID 12345, TTL 0, a full header", resp)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	ttl, err := m.Client.TimeToLive(ctx, 12345)
	if err != nil {
		t.Fatal(err)
	}
	if ttl.TTL != -1 || ttl.ID != 12345 || ttl.ResponseHeader.Revision != 1 {
		t.Fatalf("TimeToLive of an unknown lease answered %v, want TTL -1", ttl)
	}
}
