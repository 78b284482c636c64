package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keeldb/keel/snapshot"
)

// TestSnapshotDoesNotBlockWritesAndIsOfItsStart opens a snapshot with the
// official client, reads one byte of it, writes while the stream is held
// open, then reads the rest: the write succeeds, and the file is the state
// from before it.
func TestSnapshotDoesNotBlockWritesAndIsOfItsStart(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	for i := range 300 { // more than one 32 KiB chunk
		put(t, cli, fmt.Sprintf("k/%03d", i), string(bytes.Repeat([]byte{'v'}, 200)))
	}
	before, err := cli.Get(ctx(t), "k/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cli.SnapshotWithVersion(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Snapshot.Close()
	if resp.Version != "3.7.0" {
		t.Fatalf("version %q, want etcd's storage version 3.7.0", resp.Version)
	}
	first := make([]byte, 1)
	if _, err := io.ReadFull(resp.Snapshot, first); err != nil {
		t.Fatal(err)
	}
	put(t, cli, "after", "x") // must not wait for the snapshot
	if _, err := cli.Delete(ctx(t), "k/000"); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(resp.Snapshot)
	if err != nil {
		t.Fatal(err)
	}
	data := append(first, rest...)
	if len(data)%512 != 32 {
		t.Fatalf("%d bytes: not etcd's layout with a sha256 trailer", len(data))
	}
	info, err := snapshot.Verify(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if info.Revision != before.Header.Revision || info.TotalKeys != before.Count {
		t.Fatalf("snapshot at revision %d with %d keys, want %d with %d", info.Revision, info.TotalKeys, before.Header.Revision, before.Count)
	}
	if info.ClusterID != before.Header.ClusterId || info.MemberID != before.Header.MemberId {
		t.Fatalf("snapshot of member %x in cluster %x, want %x in %x", info.MemberID, info.ClusterID, before.Header.MemberId, before.Header.ClusterId)
	}
}

// TestSnapshotUnderWriteLoadIsOnePointInTime saves while writers run: the
// live keys the file holds are exactly those a read at its revision sees.
func TestSnapshotUnderWriteLoadIsOnePointInTime(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	wctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var writes atomic.Int64
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5000 && wctx.Err() == nil; i++ {
				if _, err := cli.Put(wctx, fmt.Sprintf("w%d/%d", w, i), "v"); err == nil {
					writes.Add(1)
				}
				if i%5 == 4 {
					cli.Delete(wctx, fmt.Sprintf("w%d/%d", w, i-2))
				}
			}
		}()
	}
	defer func() { stop(); wg.Wait() }()
	for writes.Load() < 50 {
		if _, err := cli.Get(ctx(t), "w0/0"); err != nil { // paces the poll
			t.Fatal(err)
		}
	}
	rc, err := cli.Snapshot(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	info, err := snapshot.Verify(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	at, err := cli.Get(ctx(t), "", clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithRev(info.Revision))
	if err != nil {
		t.Fatal(err)
	}
	if info.TotalKeys != at.Count {
		t.Fatalf("snapshot at revision %d holds %d live keys, a read at that revision sees %d", info.Revision, info.TotalKeys, at.Count)
	}
	if at.Header.Revision <= info.Revision {
		t.Logf("no write landed after the snapshot (head %d)", at.Header.Revision)
	}
}
