package server

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/keeldb/keel/config"
	"github.com/keeldb/keel/storage"
)

func testConfig(t *testing.T, dataDir string) *config.Config {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peer := "http://" + l.Addr().String()
	l.Close()
	cfg := config.Default()
	cfg.Name = "m1"
	cfg.DataDir = dataDir
	client, _ := url.Parse("http://127.0.0.1:0")
	peerURL, _ := url.Parse(peer)
	cfg.ListenClientURLs = []url.URL{*client}
	cfg.AdvertiseClientURLs = []url.URL{*client}
	cfg.ListenPeerURLs = []url.URL{*peerURL}
	cfg.InitialAdvertisePeerURLs = []url.URL{*peerURL}
	cfg.InitialCluster = "m1=" + peer
	return cfg
}

// TestRaftLogIsCompactedBehindSnapshots writes more entries than
// --snapshot-count several times over and checks that a snapshot was
// recorded near the applied index, that the log keeps only
// --snapshot-catchup-entries behind it plus what came since, and that the
// member restarts from that state with every key at its revision.
func TestRaftLogIsCompactedBehindSnapshots(t *testing.T) {
	const (
		snapshotCount = 10
		catchUp       = 5
		keys          = 100
	)
	fs := vfs.NewMem()
	cfg := testConfig(t, "/data")
	cfg.SnapshotCount = snapshotCount
	cfg.SnapshotCatchUpEntries = catchUp
	s, err := Start(cfg, zap.NewNop(), WithFS(fs))
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: s.ClientURLs(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	revs := make(map[string]int64)
	for i := 0; i < keys; i++ {
		k := fmt.Sprintf("k%03d", i)
		r, err := cli.Put(ctx, k, k)
		if err != nil {
			t.Fatal(err)
		}
		revs[k] = r.Header.Revision
	}
	cli.Close()
	s.Stop()

	e, err := storage.Open(storage.DBDir(cfg.DataDir), storage.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	l, err := storage.OpenRaftLog(e)
	if err != nil {
		t.Fatal(err)
	}
	applied, _ := e.Applied()
	first, _ := l.FirstIndex()
	last, _ := l.LastIndex()
	snap, _ := l.Snapshot()
	e.Close()
	if applied < keys {
		t.Fatalf("applied index %d after %d writes", applied, keys)
	}
	if si := snap.GetMetadata().GetIndex(); si+snapshotCount <= applied || si > applied {
		t.Errorf("snapshot at %d, applied %d: want one within the last %d entries", si, applied, snapshotCount)
	}
	if first <= 1 || last-first+1 > snapshotCount+catchUp {
		t.Errorf("raft log holds [%d, %d]: want at most %d entries behind the compaction point", first, last, snapshotCount+catchUp)
	}

	s, err = Start(cfg, zap.NewNop(), WithFS(fs))
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	defer s.Stop()
	cli, err = clientv3.New(clientv3.Config{Endpoints: s.ClientURLs(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	resp, err := cli.Get(ctx, "k", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != keys {
		t.Fatalf("%d keys after restart, want %d", len(resp.Kvs), keys)
	}
	for _, kv := range resp.Kvs {
		if kv.ModRevision != revs[string(kv.Key)] {
			t.Errorf("%s at revision %d after restart, acknowledged at %d", kv.Key, kv.ModRevision, revs[string(kv.Key)])
		}
	}
}

// TestBusyPortFailsBeforeTheDataDirIsCreated checks that a client port in
// use is reported before anything is written.
func TestBusyPortFailsBeforeTheDataDirIsCreated(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fs := vfs.NewMem()
	cfg := testConfig(t, "/data")
	busy, _ := url.Parse("http://" + l.Addr().String())
	cfg.ListenClientURLs = []url.URL{*busy}
	if _, err := Start(cfg, zap.NewNop(), WithFS(fs)); err == nil {
		t.Fatal("started on a busy port")
	}
	if _, err := fs.Stat("/data"); err == nil {
		t.Fatal("the data dir was created")
	}
}

// TestBootstrapConfigurationErrorsLeaveNoDataDir checks that a
// configuration that cannot bootstrap is refused before the data dir exists.
func TestBootstrapConfigurationErrorsLeaveNoDataDir(t *testing.T) {
	for name, edit := range map[string]func(*config.Config){
		"name missing from the initial cluster": func(c *config.Config) { c.Name = "m2" },
		"joining an existing cluster":           func(c *config.Config) { c.InitialClusterState = "existing" },
	} {
		t.Run(name, func(t *testing.T) {
			fs := vfs.NewMem()
			cfg := testConfig(t, "/data")
			edit(cfg)
			if _, err := Start(cfg, zap.NewNop(), WithFS(fs)); err == nil {
				t.Fatal("started")
			}
			if _, err := fs.Stat("/data"); err == nil {
				t.Fatal("the data dir was created")
			}
		})
	}
}
