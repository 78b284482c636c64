package integration

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keeldb/keel/config"
	"github.com/keeldb/keel/internal/keeltest"
)

// rawWatch is one Watch stream opened with the raw gRPC stub, for the fields
// and the control messages the official client hides (watch ids, created
// and canceled responses, fragments, progress responses with id -1).
//
// A rawWatch is used from the test goroutine only: gRPC allows one sender
// and one receiver at a time, and the tests keep both on one goroutine.
type rawWatch struct {
	t      *testing.T
	stream pb.Watch_WatchClient
}

// openRawWatch opens a Watch stream on cli's connection. The stream ends
// when t ends or after opTimeout, whichever comes first, so a Recv that
// waits for a response the server never sends fails the test instead of
// hanging it.
func openRawWatch(t *testing.T, cli *clientv3.Client) *rawWatch {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), opTimeout)
	t.Cleanup(cancel)
	s, err := pb.NewWatchClient(cli.ActiveConnection()).Watch(c)
	if err != nil {
		t.Fatalf("open watch stream: %v", err)
	}
	return &rawWatch{t: t, stream: s}
}

// create sends a WatchCreateRequest.
func (w *rawWatch) create(req *pb.WatchCreateRequest) {
	w.t.Helper()
	if err := w.stream.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: req}}); err != nil {
		w.t.Fatalf("send create %v: %v", req, err)
	}
}

// cancel sends a WatchCancelRequest for id.
func (w *rawWatch) cancel(id int64) {
	w.t.Helper()
	req := &pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: id}}}
	if err := w.stream.Send(req); err != nil {
		w.t.Fatalf("send cancel %d: %v", id, err)
	}
}

// progress sends a WatchProgressRequest.
func (w *rawWatch) progress() {
	w.t.Helper()
	req := &pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}}
	if err := w.stream.Send(req); err != nil {
		w.t.Fatalf("send progress request: %v", err)
	}
}

// recv returns the next response and fails the test on a stream error.
func (w *rawWatch) recv() *pb.WatchResponse {
	w.t.Helper()
	resp, err := w.stream.Recv()
	if err != nil {
		w.t.Fatalf("receive watch response: %v", err)
	}
	return resp
}

// mustCreate creates a watcher and returns its id, failing the test unless
// the next response on the stream is a successful created response.
func (w *rawWatch) mustCreate(req *pb.WatchCreateRequest) int64 {
	w.t.Helper()
	w.create(req)
	resp := w.recv()
	if !resp.Created || resp.Canceled {
		w.t.Fatalf("create %v: got %s, want a created response", req, respString(resp))
	}
	return resp.WatchId
}

// ctrl is the expected shape of a control response: everything of a
// WatchResponse except the header's ids and term, and the events.
type ctrl struct {
	watchID         int64
	created         bool
	canceled        bool
	compactRevision int64
	cancelReason    string
	revision        int64
}

// wantCtrl fails the test unless resp is the control response want: no
// events, no fragment flag, and the member's cluster id, member id and
// term in the header.
func wantCtrl(t *testing.T, m *member, resp *pb.WatchResponse, want ctrl) {
	t.Helper()
	got := ctrl{resp.WatchId, resp.Created, resp.Canceled, resp.CompactRevision, resp.CancelReason, resp.GetHeader().GetRevision()}
	if got != want || len(resp.Events) != 0 || resp.Fragment {
		t.Fatalf("got %s\nwant %+v and no events", respString(resp), want)
	}
	wantMemberHeader(t, m, resp.Header)
}

// wantMemberHeader fails the test unless h names the member's cluster, the
// member and the current term, as every other response of the member does.
func wantMemberHeader(t *testing.T, m *member, h *pb.ResponseHeader) {
	t.Helper()
	ref := get(t, m.cli(), "header-probe").Header
	if h.GetClusterId() != ref.ClusterId || h.GetMemberId() != ref.MemberId || h.GetRaftTerm() != ref.RaftTerm {
		t.Fatalf("header %v: want cluster %x member %x term %d", h, ref.ClusterId, ref.MemberId, ref.RaftTerm)
	}
}

// evString renders an event with every field, previous value included.
func evString(ev *mvccpb.Event) string {
	if ev == nil {
		return "<nil>"
	}
	s := ev.Type.String() + " "
	if ev.Kv == nil {
		s += "<no kv>"
	} else {
		s += kvString(ev.Kv)
	}
	if ev.PrevKv != nil {
		s += " prev(" + kvString(ev.PrevKv) + ")"
	}
	return s
}

// evsString renders a list of events, one per line.
func evsString(evs []*mvccpb.Event) string {
	if len(evs) == 0 {
		return "[]"
	}
	parts := make([]string, len(evs))
	for i, ev := range evs {
		parts[i] = "  " + evString(ev)
	}
	return "[\n" + strings.Join(parts, "\n") + "\n]"
}

// respString renders a raw watch response for failure messages.
func respString(r *pb.WatchResponse) string {
	return fmt.Sprintf("{id %d created %v canceled %v compact %d reason %q fragment %v rev %d events %s}",
		r.WatchId, r.Created, r.Canceled, r.CompactRevision, r.CancelReason, r.Fragment, r.GetHeader().GetRevision(), evsString(r.Events))
}

// clientRespString renders a client watch response for failure messages.
func clientRespString(r clientv3.WatchResponse) string {
	return fmt.Sprintf("{created %v canceled %v compact %d reason %q progress %v err %v rev %d events %s}",
		r.Created, r.Canceled, r.CompactRevision, r.CancelReason, r.IsProgressNotify(), r.Err(), r.Header.GetRevision(), evsString(r.Events))
}

// putEv and delEv build expected events. A delete event carries only the
// key and the revision of the delete.
func putEv(key, val string, create, mod, version int64) *mvccpb.Event {
	return &mvccpb.Event{Type: mvccpb.PUT, Kv: kv(key, val, create, mod, version)}
}

func delEv(key string, mod int64) *mvccpb.Event {
	return &mvccpb.Event{Type: mvccpb.DELETE, Kv: &mvccpb.KeyValue{Key: []byte(key), ModRevision: mod}}
}

// withPrev returns ev with prev as its previous key-value pair.
func withPrev(ev *mvccpb.Event, prev *mvccpb.KeyValue) *mvccpb.Event {
	ev.PrevKv = prev
	return ev
}

// wantEvents fails the test unless got holds exactly want, field by field.
func wantEvents(t *testing.T, got []*mvccpb.Event, want ...*mvccpb.Event) {
	t.Helper()
	if g, w := evsString(got), evsString(want); g != w {
		t.Fatalf("got events %s\nwant %s", g, w)
	}
}

// nextResp receives the next client watch response, failing the test if
// the channel closes or the test's context ends first.
func nextResp(t *testing.T, c context.Context, wch clientv3.WatchChan) clientv3.WatchResponse {
	t.Helper()
	select {
	case resp, ok := <-wch:
		if !ok {
			t.Fatalf("watch channel closed")
		}
		return resp
	case <-c.Done():
		t.Fatalf("no watch response: %v", c.Err())
	}
	panic("unreachable")
}

// collectUntil reads events from wch until it has seen an event for key
// with value val (a marker the test writes last), and returns every event
// received, marker included. It fails the test on an error response, a
// closed channel, more than maxResps responses or the end of c.
func collectUntil(t *testing.T, c context.Context, wch clientv3.WatchChan, key, val string, maxResps int) []*mvccpb.Event {
	t.Helper()
	var evs []*mvccpb.Event
	for range maxResps {
		resp := nextResp(t, c, wch)
		if err := resp.Err(); err != nil {
			t.Fatalf("watch response error %v: %s", err, clientRespString(resp))
		}
		evs = append(evs, resp.Events...)
		for _, ev := range resp.Events {
			if string(ev.Kv.Key) == key && string(ev.Kv.Value) == val {
				return evs
			}
		}
	}
	t.Fatalf("no event %s=%s in %d responses; got %s", key, val, maxResps, evsString(evs))
	return nil
}

// startMemberStablePort starts a member whose client URL stays the same over
// m.restart, so that a client connected before the restart reconnects to the
// restarted member by itself (etcd keeps its configured URL; keeltest binds
// a new free port on every start unless told otherwise).
func startMemberStablePort(t *testing.T, opts ...memberOpt) *member {
	t.Helper()
	if os.Getenv(etcdEnv) != "" {
		return startMember(t, opts...)
	}
	var o memberOpts
	for _, f := range opts {
		f(&o)
	}
	port, err := keeltest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	u := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(port)}
	kopts := append(o.keelOptions(), keeltest.WithConfig(func(c *config.Config) {
		c.ListenClientURLs = []url.URL{u}
		c.AdvertiseClientURLs = []url.URL{u}
	}))
	return &member{keel: keeltest.Start(t, kopts...)}
}
