package compat

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/keeldb/keel/config"
	"github.com/keeldb/keel/server"
)

// TestV3DiscoveryThroughEtcd bootstraps three keel members with real etcd
// 3.7.3 as the v3 discovery service, then starts a fourth keel member and a
// fourth etcd member against the same token: both must fail with the same
// error.
func TestV3DiscoveryThroughEtcd(t *testing.T) {
	svc := startEtcd(t, "etcd-discovery")
	const token = "compat-token"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := svc.client.Put(ctx, "/_etcd/registry/"+token+"/_config/size", "3"); err != nil {
		t.Fatal(err)
	}
	keelMember := func(name string) *config.Config {
		cfg := keelConfig(t)
		cfg.Name = name
		cfg.InitialCluster = ""
		cfg.Discovery.Endpoints = []string{svc.endpoint}
		cfg.Discovery.Token = token
		return cfg
	}
	type started struct {
		s   *server.Server
		err error
	}
	results := make(chan started, 3)
	for i := range 3 {
		cfg := keelMember(fmt.Sprintf("k%d", i+1))
		go func() {
			s, err := server.Start(cfg, serverLogger(t, cfg.Name))
			results <- started{s, err}
		}()
	}
	var servers []*server.Server
	for range 3 {
		select {
		case r := <-results:
			if r.err != nil {
				t.Fatal(r.err)
			}
			t.Cleanup(r.s.Stop)
			servers = append(servers, r.s)
		case <-ctx.Done():
			t.Fatal("the members did not start")
		}
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: servers[0].ClientURLs(), DialTimeout: startTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ml, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names, ids []string
	for _, m := range ml.Members {
		names = append(names, m.Name)
		ids = append(ids, "/_etcd/registry/"+token+"/members/"+strconv.FormatUint(m.ID, 16))
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"k1", "k2", "k3"}) {
		t.Fatalf("members %q", names)
	}
	// Every member registered under its ID, as etcd members do.
	resp, err := svc.client.Get(ctx, "/_etcd/registry/"+token+"/members/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	slices.Sort(keys)
	slices.Sort(ids)
	if !slices.Equal(keys, ids) {
		t.Errorf("registrations %q, want %q", keys, ids)
	}

	// A fourth member: keel and etcd refuse it alike.
	_, keelErr := server.Start(keelMember("k4"), serverLogger(t, "k4"))
	ecfg := etcdConfig(t, "e4")
	ecfg.Name = "e4"
	ecfg.InitialCluster = ""
	ecfg.DiscoveryCfg.Endpoints = []string{svc.endpoint}
	ecfg.DiscoveryCfg.Token = token
	e, etcdErr := embed.StartEtcd(ecfg)
	if etcdErr == nil {
		e.Close()
		t.Fatal("etcd started a fourth member")
	}
	if keelErr == nil || keelErr.Error() != etcdErr.Error() {
		t.Errorf("fourth member: keel %v, etcd %v", keelErr, etcdErr)
	}
}
