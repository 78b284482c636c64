package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/keeldb/keel/config"
	"github.com/keeldb/keel/internal/keeltest"
	"github.com/keeldb/keel/server"
)

// TestS1BootstrapFromConfigFiles bootstraps scenario S1's three-member
// cluster with each member configured only by a YAML file in etcd's layout
// (--config-file), ETCD_* variables that would break it being ignored.
func TestS1BootstrapFromConfigFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	names := []string{"m1", "m2", "m3"}
	peers := make([]string, 3)
	clients := make([]string, 3)
	for i := range names {
		var err error
		if peers[i], err = keeltest.NewPeerURL(); err != nil {
			t.Fatal(err)
		}
		port, err := keeltest.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = fmt.Sprintf("http://127.0.0.1:%d", port)
	}
	initial := ""
	for i, n := range names {
		if i > 0 {
			initial += ","
		}
		initial += n + "=" + peers[i]
	}
	cfgs := make([]*config.Config, 3)
	for i, n := range names {
		path := filepath.Join(dir, n+".yml")
		text := fmt.Sprintf(`# S1, member %s
name: %s
data-dir: %s
listen-peer-urls: %s
initial-advertise-peer-urls: %s
listen-client-urls: %s
advertise-client-urls: %s
initial-cluster-token: tok
initial-cluster-state: new
initial-cluster: %s
heartbeat-interval: 50
election-timeout: 500
log-outputs: [stderr]
`, n, n, filepath.Join(dir, n+".keel"), peers[i], peers[i], clients[i], clients[i], initial)
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, _, err := config.Parse([]string{"--config-file", path},
			[]string{"ETCD_INITIAL_CLUSTER_TOKEN=wrong", "ETCD_NAME=wrong", "ETCD_SNAPSHOT_COUNT=bad"})
		if err != nil {
			t.Fatal(err)
		}
		cfgs[i] = cfg
	}
	servers := make([]*server.Server, 3)
	errs := make(chan error, 3)
	for i := range cfgs {
		go func() {
			lg := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)).Named(names[i])
			s, err := server.Start(cfgs[i], lg)
			servers[i] = s
			errs <- err
		}()
	}
	for range cfgs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range servers {
		t.Cleanup(s.Stop)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: clients, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ml, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ml.Members {
		got = append(got, m.Name+" "+m.PeerURLs[0]+" "+m.ClientURLs[0])
	}
	slices.Sort(got)
	want := []string{names[0] + " " + peers[0] + " " + clients[0], names[1] + " " + peers[1] + " " + clients[1], names[2] + " " + peers[2] + " " + clients[2]}
	if !slices.Equal(got, want) {
		t.Fatalf("members %q, want %q", got, want)
	}
	if _, err := cli.Put(ctx, "s1", "from-config-files"); err != nil {
		t.Fatal(err)
	}
	for _, ep := range clients {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Get(ctx, "s1")
		c.Close()
		if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "from-config-files" {
			t.Fatalf("get from %s: %v %v", ep, resp, err)
		}
	}
}
