package integration

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestDefragmentReclaimsSpaceWhileServing writes 4 MiB, deletes and
// compacts it, then defragments while a writer and a reader keep going:
// the database shrinks (Status's DbSize and DbSizeInUse), no request fails,
// and every key written meanwhile is there afterwards.
func TestDefragmentReclaimsSpaceWhileServing(t *testing.T) {
	t.Parallel()
	// A small snapshot count and catch-up window let the Raft log that
	// carried the 4 MiB be truncated too.
	m := startMember(t, withSnapshotCount(100), withSnapshotCatchUp(100))
	cli := m.cli()
	rnd := rand.New(rand.NewPCG(7, 8))
	val := make([]byte, 2048)
	for i := 0; i < 2048; i++ {
		for j := range val {
			val[j] = byte(rnd.Uint32()) // incompressible
		}
		put(t, cli, fmt.Sprintf("big/%04d", i), string(val))
	}
	del, err := cli.Delete(ctx(t), "big/", clientv3.WithPrefix())
	if err != nil || del.Deleted != 2048 {
		t.Fatalf("delete big/: %v, %+v", err, del)
	}
	if _, err := cli.Compact(ctx(t), del.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	before, err := cli.Status(ctx(t), m.endpoint())
	if err != nil {
		t.Fatal(err)
	}
	if before.DbSize < 4<<20 {
		t.Fatalf("db size %d before defragment, want the deleted 4 MiB still held", before.DbSize)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var writes, reads int
	var failures []error
	fail := func(err error) {
		mu.Lock()
		failures = append(failures, err)
		mu.Unlock()
	}
	wg.Add(2)
	go func() { // writer
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := cli.Put(ctx(t), fmt.Sprintf("w/%06d", i), "v"); err != nil {
				fail(fmt.Errorf("put w/%06d: %w", i, err))
				continue
			}
			mu.Lock()
			writes++
			mu.Unlock()
		}
	}()
	go func() { // reader
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := cli.Get(ctx(t), "w/", clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
				fail(fmt.Errorf("get w/: %w", err))
				continue
			}
			mu.Lock()
			reads++
			mu.Unlock()
		}
	}()
	// Let both get going before the defragmentation starts.
	for deadline := time.Now().Add(opTimeout); ; time.Sleep(time.Millisecond) {
		mu.Lock()
		w, r := writes, reads
		mu.Unlock()
		if w >= 10 && r >= 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("load did not start: %d writes, %d reads", w, r)
		}
	}
	resp, err := cli.Defragment(ctx(t), m.endpoint())
	if err != nil {
		t.Fatalf("defragment: %v", err)
	}
	if resp.Header != nil {
		t.Errorf("defragment response header %v, want none as etcd", resp.Header)
	}
	mu.Lock()
	atDefragEnd := writes
	mu.Unlock()
	// A few more writes after it, then stop.
	for deadline := time.Now().Add(opTimeout); ; time.Sleep(time.Millisecond) {
		mu.Lock()
		w := writes
		mu.Unlock()
		if w >= atDefragEnd+10 || time.Now().After(deadline) {
			break
		}
	}
	close(stop)
	wg.Wait()
	if len(failures) != 0 {
		t.Fatalf("%d of %d writes and %d reads failed during defragment, first: %v", len(failures), writes, reads, failures[0])
	}

	// Pebble removes the obsolete files in the background.
	var after *clientv3.StatusResponse
	for deadline := time.Now().Add(opTimeout); ; time.Sleep(20 * time.Millisecond) {
		after, err = cli.Status(ctx(t), m.endpoint())
		if err != nil {
			t.Fatal(err)
		}
		if after.DbSize < before.DbSize-3<<20 || time.Now().After(deadline) {
			break
		}
	}
	if after.DbSize >= before.DbSize-3<<20 {
		t.Errorf("db size %d after defragment, %d before: want 3 MiB less", after.DbSize, before.DbSize)
	}
	if after.DbSizeInUse > after.DbSize || after.DbSizeInUse >= before.DbSize-3<<20 {
		t.Errorf("db size in use %d after defragment (size %d, %d before)", after.DbSizeInUse, after.DbSize, before.DbSize)
	}
	got, err := cli.Get(ctx(t), "w/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if got.Count != int64(writes) {
		t.Errorf("%d keys w/ after defragment, want the %d written", got.Count, writes)
	}
}

// TestDefragmentNeedsRoot checks etcd's refusal of a non-root user once
// auth is on.
func TestDefragmentNeedsRoot(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	for _, step := range []func() error{
		func() error { _, err := cli.UserAdd(ctx(t), "root", "rootpw"); return err },
		func() error { _, err := cli.UserGrantRole(ctx(t), "root", "root"); return err },
		func() error { _, err := cli.UserAdd(ctx(t), "alice", "alicepw"); return err },
		func() error { _, err := cli.AuthEnable(ctx(t)); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	alice := m.newClient(t, func(c *clientv3.Config) { c.Username, c.Password = "alice", "alicepw" })
	_, err := alice.Defragment(ctx(t), m.endpoint())
	wantErr(t, err, rpctypes.ErrGRPCPermissionDenied)
	root := m.newClient(t, func(c *clientv3.Config) { c.Username, c.Password = "root", "rootpw" })
	if _, err := root.Defragment(ctx(t), m.endpoint()); err != nil {
		t.Fatalf("root defragment: %v", err)
	}
}
