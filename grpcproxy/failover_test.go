package grpcproxy_test

import (
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keeldb/keel/internal/keeltest"
)

// TestWatchersSurviveTheLossOfTheUpstreamMember: when the member the
// proxy's upstream watch runs on stops, the client module resumes the
// watch on another member from the next revision; the proxy's watchers
// see no cancel and miss no event.
func TestWatchersSurviveTheLossOfTheUpstreamMember(t *testing.T) {
	c := keeltest.StartCluster(t, 3)
	leader := c.Leader(t)
	var members []*keeltest.Member // a follower first, the leader last
	for _, m := range c.Running() {
		if m != leader {
			members = append(members, m)
		}
	}
	members = append(members, leader)
	first := members[0]
	tp := startProxyFor(t, []string{first.Endpoint})
	ctx := testCtx(t)
	cli := tp.client(t)
	const watchers = 5
	chans := make([]clientv3.WatchChan, watchers)
	for i := range chans {
		chans[i] = cli.Watch(ctx, "f", clientv3.WithCreatedNotify())
		<-chans[i]
	}
	writer := leader.Client
	var want []string
	put := func(v string) {
		t.Helper()
		r, err := writer.Put(ctx, "f", v)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprintf("%s@%d", v, r.Header.Revision))
	}
	put("before")
	// Let the proxy fail over to the others, then lose the first member.
	tp.Upstream.SetEndpoints(members[0].Endpoint, members[1].Endpoint, members[2].Endpoint)
	first.Stop()
	for i := range 5 {
		put(fmt.Sprint("after", i))
	}
	for i, ch := range chans {
		var got []string
		for len(got) < len(want) {
			select {
			case wr, ok := <-ch:
				if !ok || wr.Canceled {
					t.Fatalf("watcher %d ended: %v", i, wr.Err())
				}
				for _, e := range wr.Events {
					got = append(got, fmt.Sprintf("%s@%d", e.Kv.Value, e.Kv.ModRevision))
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("watcher %d: got %q of %q", i, got, want)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("watcher %d: got %q, want %q", i, got, want)
		}
	}
	if st := tp.WatchStats(); st.Upstream != 1 || st.Downstream != watchers {
		t.Fatalf("stats after failover %+v", st)
	}
	// The upstream watch really moved: a second stream, one resumed create.
	if streams, creates, _ := tp.Counter.counts(); streams != 2 || creates != 2 {
		t.Fatalf("upstream watch streams %d, creates %d; want 2 and 2 (one resume)", streams, creates)
	}
}
