package grpcproxy_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/keeldb/keel/grpcproxy"
	"github.com/keeldb/keel/internal/keeltest"
)

// TestThousandWatchersShareOneUpstreamWatch is the must-show: 1,000
// watchers on one key, over ten client connections, cost the cluster one
// upstream watch stream and one watcher (counted on the proxy's upstream
// connection), and every watcher receives every event of a write sequence,
// in order.
func TestThousandWatchersShareOneUpstreamWatch(t *testing.T) {
	const (
		clients  = 10
		watchers = 1000
		writes   = 30
	)
	m := keeltest.Start(t)
	tp := startProxy(t, m)
	ctx := testCtx(t)

	chans := make([]clientv3.WatchChan, 0, watchers)
	for c := range clients {
		cli := tp.client(t)
		for range watchers / clients {
			chans = append(chans, cli.Watch(ctx, "hot", clientv3.WithCreatedNotify(), clientv3.WithPrevKV()))
		}
		_ = c
	}
	for i, ch := range chans {
		select {
		case wr := <-ch:
			if !wr.Created {
				t.Fatalf("watcher %d: first response is not created: %+v", i, wr)
			}
		case <-ctx.Done():
			t.Fatalf("watcher %d not created", i)
		}
	}
	streams, creates, _ := tp.Counter.counts()
	st := tp.WatchStats()
	t.Logf("upstream watch streams=%d, upstream watch creates=%d, proxy stats=%+v", streams, creates, st)
	if streams != 1 || creates != 1 {
		t.Fatalf("upstream: %d watch streams, %d watch creates; want 1 and 1", streams, creates)
	}
	if st.Upstream != 1 || st.Downstream != watchers {
		t.Fatalf("proxy stats %+v, want 1 upstream watcher serving %d", st, watchers)
	}
	// The same figures on /proxy/metrics.
	wantMetrics := map[string]float64{"etcd_grpc_proxy_watchers_coalescing_total": watchers - 1,
		"keel_grpc_proxy_watchers": watchers, "keel_grpc_proxy_upstream_watchers": 1}
	mfs, err := tp.Metrics().Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if want, ok := wantMetrics[mf.GetName()]; ok {
			if got := mf.GetMetric()[0].GetGauge().GetValue(); got != want {
				t.Errorf("%s = %v, want %v", mf.GetName(), got, want)
			}
			delete(wantMetrics, mf.GetName())
		}
	}
	if len(wantMetrics) > 0 {
		t.Errorf("metrics missing: %v", wantMetrics)
	}

	// The write sequence: puts and deletes of the key.
	var want []string
	for i := range writes {
		if i%5 == 4 {
			r, err := m.Client.Delete(ctx, "hot")
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, fmt.Sprintf("DELETE@%d", r.Header.Revision))
			continue
		}
		r, err := m.Client.Put(ctx, "hot", fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprintf("PUT %d@%d", i, r.Header.Revision))
	}

	var wg sync.WaitGroup
	errs := make(chan error, watchers)
	for i, ch := range chans {
		wg.Go(func() {
			var got []string
			for len(got) < len(want) {
				select {
				case wr, ok := <-ch:
					if !ok || wr.Canceled {
						errs <- fmt.Errorf("watcher %d ended after %d events: %v", i, len(got), wr.Err())
						return
					}
					for _, e := range wr.Events {
						if e.Type == mvccpb.DELETE {
							got = append(got, fmt.Sprintf("DELETE@%d", e.Kv.ModRevision))
						} else {
							got = append(got, fmt.Sprintf("PUT %s@%d", e.Kv.Value, e.Kv.ModRevision))
						}
					}
				case <-ctx.Done():
					errs <- fmt.Errorf("watcher %d: %d of %d events", i, len(got), len(want))
					return
				}
			}
			for j := range want {
				if got[j] != want[j] {
					errs <- fmt.Errorf("watcher %d event %d: got %s, want %s", i, j, got[j], want[j])
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if streams, creates, _ = tp.Counter.counts(); streams != 1 || creates != 1 {
		t.Fatalf("after the writes: %d upstream watch streams, %d creates; want 1 and 1", streams, creates)
	}
}

// TestCancelledWatchersReleaseTheUpstreamWatch: the last watcher of a
// group to leave ends the upstream watcher; a cancelled watcher gets no
// more events while the others do.
func TestCancelledWatchersReleaseTheUpstreamWatch(t *testing.T) {
	m := keeltest.Start(t)
	tp := startProxy(t, m)
	ctx := testCtx(t)
	cli := tp.client(t)
	c1, cancel1 := context.WithCancel(ctx)
	w1 := cli.Watch(c1, "k", clientv3.WithCreatedNotify())
	<-w1
	c2, cancel2 := context.WithCancel(clientv3.WithRequireLeader(ctx))
	w2 := cli.Watch(c2, "k", clientv3.WithCreatedNotify())
	<-w2
	if st := tp.WatchStats(); st.Upstream != 1 || st.Downstream != 2 {
		t.Fatalf("stats %+v, want 1 upstream for 2", st)
	}
	cancel1()
	waitFor(t, "the cancelled watcher to leave", func() bool { return tp.WatchStats().Downstream == 1 })
	if _, err := m.Client.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	if wr := <-w2; len(wr.Events) != 1 {
		t.Fatalf("remaining watcher got %+v", wr)
	}
	cancel2()
	waitFor(t, "the upstream watcher to end", func() bool { return tp.WatchStats().Upstream == 0 })
}

// TestWatchFragmentsLargeResponses: a watcher that asked for fragments
// gets a large response in fragments (reassembled by the client), one that
// did not gets it whole.
func TestWatchFragmentsLargeResponses(t *testing.T) {
	m := keeltest.Start(t)
	tp := startProxy(t, m, func(c *grpcproxy.Config) { c.FragmentBytes = 64 * 1024 })
	ctx := testCtx(t)
	big := string(make([]byte, 30*1024))
	var first int64
	for i := range 6 {
		r, err := m.Client.Put(ctx, fmt.Sprintf("f/%d", i), big)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = r.Header.Revision
		}
	}
	conn, err := grpc.NewClient(tp.Endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, fragment := range []bool{true, false} {
		ws, err := pb.NewWatchClient(conn).Watch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		err = ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{
			Key: []byte("f/"), RangeEnd: []byte("f0"), StartRevision: first, Fragment: fragment}}})
		if err != nil {
			t.Fatal(err)
		}
		var responses, events, fragments int
		for events < 6 {
			r, err := ws.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if r.Created {
				continue
			}
			responses++
			events += len(r.Events)
			if r.Fragment {
				fragments++
			}
		}
		t.Logf("fragment=%v: %d responses, %d marked fragment", fragment, responses, fragments)
		if fragment && (responses < 2 || fragments != responses-1) {
			t.Errorf("fragment=true: %d responses, %d fragments; want the 6 events split", responses, fragments)
		}
		if !fragment && fragments != 0 {
			t.Errorf("fragment=false: %d fragments", fragments)
		}
		_ = ws.CloseSend()
	}
}

// TestKeepAlivesShareOneUpstreamStream: keep-alives from many client
// streams travel on one upstream stream, and the cluster renews each lease
// at most once per request in flight.
func TestKeepAlivesShareOneUpstreamStream(t *testing.T) {
	const clients = 20
	m := keeltest.Start(t)
	tp := startProxy(t, m)
	ctx := testCtx(t)
	g, err := m.Client.Grant(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for range clients {
		cli := tp.client(t)
		wg.Go(func() {
			for range 5 {
				r, err := cli.KeepAliveOnce(ctx, g.ID)
				if err != nil {
					errs <- err
					return
				}
				if r.TTL <= 0 || r.ID != g.ID {
					errs <- fmt.Errorf("keep-alive answer %+v", r)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := tp.KeepAliveStats()
	_, _, opens := tp.Counter.counts()
	t.Logf("keep-alive stats %+v, upstream keep-alive streams opened %d", st, opens)
	if opens != 1 || st.UpstreamStreams != 1 {
		t.Fatalf("%d upstream keep-alive streams, want 1", opens)
	}
	if st.DownstreamRequests != clients*5 || st.UpstreamRequests > st.DownstreamRequests || st.UpstreamRequests == 0 {
		t.Fatalf("stats %+v: want %d client keep-alives, at most as many upstream", st, clients*5)
	}
	// A lease that does not exist: TTL 0, as from a member.
	if _, err := tp.client(t).KeepAliveOnce(ctx, 777); err == nil {
		t.Fatal("keep-alive of a missing lease succeeded")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSerializableReadsComeFromTheCache: a serializable read is answered
// by the proxy's cache (a write made directly to the member is not seen,
// as serializable reads may be stale) until a write through the proxy
// invalidates it; linearizable reads always go to the cluster.
func TestSerializableReadsComeFromTheCache(t *testing.T) {
	m := keeltest.Start(t)
	tp := startProxy(t, m)
	ctx := testCtx(t)
	cli := tp.client(t)
	value := func(opts ...clientv3.OpOption) string {
		t.Helper()
		r, err := cli.Get(ctx, "c", opts...)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Kvs) == 0 {
			return ""
		}
		return string(r.Kvs[0].Value)
	}
	if _, err := cli.Put(ctx, "c", "1"); err != nil {
		t.Fatal(err)
	}
	if v := value(clientv3.WithSerializable()); v != "1" {
		t.Fatalf("serializable read %q, want 1", v)
	}
	if _, err := m.Client.Put(ctx, "c", "2"); err != nil { // behind the proxy's back
		t.Fatal(err)
	}
	if v := value(clientv3.WithSerializable()); v != "1" {
		t.Fatalf("serializable read %q, want the cached 1", v)
	}
	if v := value(); v != "2" {
		t.Fatalf("linearizable read %q, want 2", v)
	}
	// The linearizable answer refreshed the cache.
	if v := value(clientv3.WithSerializable()); v != "2" {
		t.Fatalf("serializable read %q after a linearizable one, want 2", v)
	}
	if _, err := m.Client.Put(ctx, "c", "3"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "other", "x"); err != nil { // unrelated write
		t.Fatal(err)
	}
	if v := value(clientv3.WithSerializable()); v != "2" {
		t.Fatalf("serializable read %q after an unrelated write, want the cached 2", v)
	}
	if _, err := cli.Delete(ctx, "b", clientv3.WithRange("d")); err != nil { // covers c
		t.Fatal(err)
	}
	if v := value(clientv3.WithSerializable()); v != "" {
		t.Fatalf("serializable read %q after a delete through the proxy, want none", v)
	}
}
