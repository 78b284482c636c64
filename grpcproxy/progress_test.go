package grpcproxy_test

import (
	"context"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/keeldb/keel/internal/keeltest"
)

// rawWatch opens a Watch stream on endpoint.
func rawWatch(t *testing.T, ctx context.Context, endpoint string) pb.Watch_WatchClient {
	t.Helper()
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ws, err := pb.NewWatchClient(conn).Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return ws
}

func create(t *testing.T, ws pb.Watch_WatchClient, key string, start int64) *pb.WatchResponse {
	t.Helper()
	if err := ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{
		Key: []byte(key), StartRevision: start}}}); err != nil {
		t.Fatal(err)
	}
	r, err := ws.Recv()
	if err != nil || !r.Created {
		t.Fatalf("create %s: %v %v", key, r, err)
	}
	return r
}

// TestProgressRequestAnsweredDespiteAFutureWatcherElsewhere: a member
// answers a progress request once the stream's own watchers are synced; a
// watcher waiting for a future revision on another client's stream must not
// hold the answer back, although the proxy shares upstream streams.
func TestProgressRequestAnsweredDespiteAFutureWatcherElsewhere(t *testing.T) {
	for _, through := range []string{"member", "proxy"} {
		t.Run(through, func(t *testing.T) {
			m := keeltest.Start(t)
			ep := m.HostPort()
			if through == "proxy" {
				ep = startProxy(t, m).Endpoint
			}
			ctx := testCtx(t)
			other := rawWatch(t, ctx, ep)
			create(t, other, "future", 1000)
			ws := rawWatch(t, ctx, ep)
			create(t, ws, "x", 0)
			var last int64
			for i := range 3 {
				r, err := m.Client.Put(ctx, "x", "v")
				if err != nil {
					t.Fatal(err)
				}
				last = r.Header.Revision
				if ev, err := ws.Recv(); err != nil || len(ev.Events) != 1 {
					t.Fatalf("event %d: %v %v", i, ev, err)
				}
			}
			if err := ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}}); err != nil {
				t.Fatal(err)
			}
			r, err := ws.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if r.WatchId != -1 || len(r.Events) != 0 || r.Header.Revision != last {
				t.Fatalf("progress response %v, want watch id -1 at revision %d", r, last)
			}
		})
	}
}
