package discovery_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keeldb/keel/config"
	"github.com/keeldb/keel/discovery"
	"github.com/keeldb/keel/internal/keeltest"
)

func discoveryConfig(m *keeltest.Member, token string) config.Discovery {
	cfg := config.Default().Discovery
	cfg.Endpoints = []string{m.Endpoint}
	cfg.Token = token
	return cfg
}

func put(t *testing.T, c *clientv3.Client, k, v string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, k, v); err != nil {
		t.Fatal(err)
	}
}

func TestKeyLayoutIsEtcds(t *testing.T) {
	if got := discovery.SizeKey("tok"); got != "/_etcd/registry/tok/_config/size" {
		t.Errorf("SizeKey = %q", got)
	}
	if got := discovery.MemberKey("tok", 0xabc); got != "/_etcd/registry/tok/members/abc" {
		t.Errorf("MemberKey = %q", got)
	}
}

func TestJoinClusterSizeErrors(t *testing.T) {
	svc := keeltest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := discovery.JoinCluster(ctx, nil, discoveryConfig(svc, "none"), 1, "a=http://127.0.0.1:1")
	if !errors.Is(err, discovery.ErrSizeNotFound) || err.Error() != "discovery: size key not found" {
		t.Errorf("no size key: %v", err)
	}
	for _, bad := range []string{"0", "-1", "three", ""} {
		put(t, svc.Client, discovery.SizeKey("bad"), bad)
		_, err := discovery.JoinCluster(ctx, nil, discoveryConfig(svc, "bad"), 1, "a=http://127.0.0.1:1")
		if !errors.Is(err, discovery.ErrBadSizeKey) || err.Error() != "discovery: size key is bad" {
			t.Errorf("size %q: %v", bad, err)
		}
	}
	// Nothing was registered by the failed attempts.
	resp, err := svc.Client.Get(ctx, "/_etcd/registry/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 1 {
		t.Errorf("registry holds %v keys (%v), want only the size key", resp.Count, err)
	}
}

func TestJoinClusterWaitsForAllThenRefusesMore(t *testing.T) {
	svc := keeltest.Start(t)
	put(t, svc.Client, discovery.SizeKey("t"), "3")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// A member registered before the others sees them all, in
	// registration order.
	results := make([]string, 3)
	errs := make([]error, 3)
	first := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			if i > 0 {
				<-first
			}
			results[i], errs[i] = discovery.JoinCluster(ctx, nil, discoveryConfig(svc, "t"), uint64(i+1),
				fmt.Sprintf("m%d=http://127.0.0.1:%d", i+1, 2380+i))
		})
		if i == 0 {
			// Wait until the first registered, so the order is known.
			for {
				resp, err := svc.Client.Get(ctx, discovery.MemberKey("t", 1))
				if err != nil {
					t.Fatal(err)
				}
				if len(resp.Kvs) == 1 {
					break
				}
				select {
				case <-ctx.Done():
					t.Fatal("the first member never registered")
				case <-time.After(10 * time.Millisecond):
				}
			}
			close(first)
		}
	}
	wg.Wait()
	for i := range 3 {
		if errs[i] != nil {
			t.Fatalf("member %d: %v", i+1, errs[i])
		}
		if !strings.HasPrefix(results[i], "m1=http://127.0.0.1:2380,") || strings.Count(results[i], "=") != 3 {
			t.Errorf("member %d got %q", i+1, results[i])
		}
		if results[i] != results[0] {
			t.Errorf("member %d got %q, member 1 %q", i+1, results[i], results[0])
		}
	}

	// A member already registered may ask again (a restart during
	// bootstrap) and gets the same cluster.
	again, err := discovery.JoinCluster(ctx, nil, discoveryConfig(svc, "t"), 2, "m2=http://127.0.0.1:2381")
	if err != nil || again != results[0] {
		t.Errorf("registered member again: %q, %v", again, err)
	}
	// A fourth is refused and does not register.
	_, err = discovery.JoinCluster(ctx, nil, discoveryConfig(svc, "t"), 4, "m4=http://127.0.0.1:2383")
	if !errors.Is(err, discovery.ErrFullCluster) || err.Error() != "discovery: cluster is full" {
		t.Errorf("fourth member: %v", err)
	}
	resp, _ := svc.Client.Get(ctx, discovery.MemberKey("t", 4))
	if len(resp.Kvs) != 0 {
		t.Error("the fourth member registered")
	}
}

func TestJoinClusterRejectsInvalidRegistrations(t *testing.T) {
	svc := keeltest.Start(t)
	put(t, svc.Client, discovery.SizeKey("v"), "2")
	// Not name=url: skipped, as etcd skips it.
	put(t, svc.Client, discovery.MemberKey("v", 9), "garbage")
	// name=url without a valid URL: counted, and the result is refused.
	put(t, svc.Client, discovery.MemberKey("v", 8), "x=not a url")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := discovery.JoinCluster(ctx, nil, discoveryConfig(svc, "v"), 1, "a=http://127.0.0.1:1")
	if !errors.Is(err, discovery.ErrInvalidURL) {
		t.Errorf("got %q, %v; want %v", got, err, discovery.ErrInvalidURL)
	}
}
