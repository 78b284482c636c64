package integration

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestConcurrentWritesGetUniqueRevisions writes from several clients at
// once: every acknowledged write has its own revision, the revisions have
// no gaps, and each key's mod revision is the one its put was told.
func TestConcurrentWritesGetUniqueRevisions(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	const workers, perWorker = 6, 25
	clients := make([]*clientv3.Client, workers)
	for i := range clients {
		clients[i] = m.newClient(t)
	}
	revs := make([][]int64, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				resp, err := clients[w].Put(ctx(t), fmt.Sprintf("w%d/%02d", w, i), "v")
				if err != nil {
					errs[w] = err
					return
				}
				revs[w] = append(revs[w], resp.Header.Revision)
			}
		}()
	}
	wg.Wait()
	for w, err := range errs {
		if err != nil {
			t.Fatalf("worker %d: %v", w, err)
		}
	}
	var all []int64
	for w := range workers {
		if !slices.IsSorted(revs[w]) {
			t.Errorf("worker %d saw revisions go back: %v", w, revs[w])
		}
		all = append(all, revs[w]...)
		resp := get(t, m.cli(), fmt.Sprintf("w%d/", w), clientv3.WithPrefix())
		if len(resp.Kvs) != perWorker {
			t.Fatalf("worker %d: %d keys, want %d", w, len(resp.Kvs), perWorker)
		}
		for i, kv := range resp.Kvs {
			if kv.ModRevision != revs[w][i] || kv.CreateRevision != revs[w][i] || kv.Version != 1 {
				t.Errorf("worker %d key %d: %s, want created and modified at %d", w, i, kvString(kv), revs[w][i])
			}
		}
	}
	slices.Sort(all)
	for i, r := range all {
		if r != int64(i+2) {
			t.Fatalf("revisions of the writes are not 2..%d without gaps or repeats: %v", workers*perWorker+1, all)
		}
	}
}

// TestCompareAndSwapIncrementsAreAtomic runs the classic etcd counter:
// clients increment one key with a txn guarded by its mod revision, retrying
// on conflict. No increment may be lost or applied twice.
func TestCompareAndSwapIncrementsAreAtomic(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	put(t, m.cli(), "counter", "0")
	const workers, perWorker, maxAttempts = 4, 10, 1000
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		cli := m.newClient(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perWorker {
				done := false
				for attempt := 0; attempt < maxAttempts && !done; attempt++ {
					resp, err := cli.Get(ctx(t), "counter")
					if err != nil {
						errs[w] = err
						return
					}
					cur := resp.Kvs[0]
					var n int
					fmt.Sscan(string(cur.Value), &n)
					tr, err := cli.Txn(ctx(t)).
						If(clientv3.Compare(clientv3.ModRevision("counter"), "=", cur.ModRevision)).
						Then(clientv3.OpPut("counter", fmt.Sprint(n+1))).Commit()
					if err != nil {
						errs[w] = err
						return
					}
					done = tr.Succeeded
				}
				if !done {
					errs[w] = fmt.Errorf("no increment succeeded in %d attempts", maxAttempts)
					return
				}
			}
		}()
	}
	wg.Wait()
	for w, err := range errs {
		if err != nil {
			t.Fatalf("worker %d: %v", w, err)
		}
	}
	resp := get(t, m.cli(), "counter")
	want := fmt.Sprint(workers * perWorker)
	if string(resp.Kvs[0].Value) != want || resp.Kvs[0].Version != workers*perWorker+1 {
		t.Fatalf("counter %s, want value %s at version %d", kvString(resp.Kvs[0]), want, workers*perWorker+1)
	}
}

// TestLinearizableReadSeesAcknowledgedWrite checks read-your-writes across
// connections: once a put is acknowledged to one client, a linearizable
// read from another client sees it.
func TestLinearizableReadSeesAcknowledgedWrite(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	writer, reader := m.newClient(t), m.newClient(t)
	for i := range 50 {
		v := fmt.Sprint(i)
		r := put(t, writer, "k", v)
		resp := get(t, reader, "k")
		if resp.Header.Revision < r || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != v {
			t.Fatalf("write %d acknowledged at %d; read from another client got revision %d and %s", i, r, resp.Header.Revision, kvsString(resp.Kvs))
		}
		tr, err := reader.Txn(ctx(t)).Then(clientv3.OpGet("k")).Commit()
		if err != nil {
			t.Fatal(err)
		}
		if got := tr.Responses[0].GetResponseRange(); tr.Header.Revision < r || len(got.Kvs) != 1 || string(got.Kvs[0].Value) != v {
			t.Fatalf("write %d acknowledged at %d; read-only txn got revision %d and %s", i, r, tr.Header.Revision, kvsString(got.Kvs))
		}
	}
}

// TestRangeStreamReadsOneRevisionDespiteWrites streams a large range while
// another client rewrites and adds keys inside it: whatever the interleaving,
// the stream must equal a Range at the revision its header reports.
func TestRangeStreamReadsOneRevisionDespiteWrites(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	seedStreamData(t, m.cli(), 300, 8)
	writer := m.newClient(t)
	// The writer has its own context and is stopped and waited for by the
	// cleanup, so it never outlives the test even when the test fails.
	wctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var writeErr error
	t.Cleanup(func() {
		close(stop)
		wg.Wait()
		cancel()
		if writeErr != nil {
			t.Errorf("writer: %v", writeErr)
		}
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 2000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := writer.Put(wctx, fmt.Sprintf("s/%03d", (i*37)%300), fmt.Sprint("w", i)); err != nil {
				writeErr = err
				return
			}
			if _, err := writer.Put(wctx, fmt.Sprintf("s/%03d+%d", (i*11)%300, i), "new"); err != nil {
				writeErr = err
				return
			}
		}
	}()
	kvc := m.kv()
	for round := range 5 {
		chunks, err := streamChunks(t, kvc, &pb.RangeRequest{Key: []byte("s/"), RangeEnd: []byte("s0")})
		if err != nil {
			t.Fatal(err)
		}
		var streamed []string
		for _, c := range chunks {
			for _, kv := range c.Kvs {
				streamed = append(streamed, kvString(kv))
			}
		}
		last := chunks[len(chunks)-1]
		want, err := kvc.Range(ctx(t), &pb.RangeRequest{Key: []byte("s/"), RangeEnd: []byte("s0"), Revision: last.Header.Revision})
		if err != nil {
			t.Fatal(err)
		}
		var wantKVs []string
		for _, kv := range want.Kvs {
			wantKVs = append(wantKVs, kvString(kv))
		}
		if !slices.Equal(streamed, wantKVs) || last.Count != want.Count {
			t.Fatalf("round %d: stream (%d keys, count %d) differs from Range at its revision %d (%d keys, count %d)",
				round, len(streamed), last.Count, last.Header.Revision, len(wantKVs), want.Count)
		}
	}
}
