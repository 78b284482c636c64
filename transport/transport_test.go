package transport

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

const waitLimit = 20 * time.Second

// waitFor polls cond until it holds, failing the test after waitLimit.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type snapReport struct {
	id     uint64
	status raft.SnapshotStatus
}

// fakeHandler records what the transport delivers and reports.
type fakeHandler struct {
	mu            sync.Mutex
	msgs          []*raftpb.Message
	unreachable   map[uint64]int
	snapReports   []snapReport
	snapshots     [][]byte // state of each snapshot handed over
	snapPaths     []string
	removed       map[uint64]bool
	block         chan struct{} // when set, Process waits for it to close
	openSnapshot  func(m *raftpb.Message) (io.ReadCloser, error)
	members       *pb.MemberListResponse
	leases        map[int64]int64
	promoteResult []*pb.Member
	// hashes are HashKV's answers by revision; the current revision is
	// hashRev, and a revision below hashCompact is compacted.
	hashes      map[int64]uint32
	hashRev     int64
	hashCompact int64
}

func newFakeHandler() *fakeHandler {
	return &fakeHandler{unreachable: map[uint64]int{}, removed: map[uint64]bool{}, leases: map[int64]int64{}}
}

func (h *fakeHandler) Process(ctx context.Context, m *raftpb.Message) error {
	h.mu.Lock()
	block := h.block
	h.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs = append(h.msgs, m)
	return nil
}

func (h *fakeHandler) ProcessSnapshot(ctx context.Context, m *raftpb.Message, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.snapshots = append(h.snapshots, data)
	h.snapPaths = append(h.snapPaths, path)
	return nil
}

func (h *fakeHandler) OpenSnapshot(m *raftpb.Message) (io.ReadCloser, error) {
	return h.openSnapshot(m)
}

func (h *fakeHandler) ReportUnreachable(id uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.unreachable[id]++
}

func (h *fakeHandler) ReportSnapshot(id uint64, s raft.SnapshotStatus) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.snapReports = append(h.snapReports, snapReport{id, s})
}

func (h *fakeHandler) IsRemoved(id uint64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.removed[id]
}

func (h *fakeHandler) MemberList(ctx context.Context) (*pb.MemberListResponse, error) {
	return h.members, nil
}

func (h *fakeHandler) LeaseRenew(ctx context.Context, id int64) (int64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ttl, ok := h.leases[id]
	if !ok {
		return 0, rpctypes.ErrGRPCLeaseNotFound
	}
	return ttl, nil
}

func (h *fakeHandler) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ttl, ok := h.leases[r.ID]
	if !ok {
		return nil, rpctypes.ErrGRPCLeaseNotFound
	}
	resp := &pb.LeaseTimeToLiveResponse{ID: r.ID, TTL: ttl, GrantedTTL: 60}
	if r.Keys {
		resp.Keys = [][]byte{[]byte("a"), []byte("b")}
	}
	return resp, nil
}

func (h *fakeHandler) MemberPromote(ctx context.Context, id uint64) ([]*pb.Member, error) {
	if id != 3 {
		return nil, rpctypes.ErrGRPCMemberNotLearner
	}
	return h.promoteResult, nil
}

func (h *fakeHandler) HashKV(ctx context.Context, rev int64) (*pb.HashKVResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case rev > h.hashRev:
		return nil, rpctypes.ErrGRPCFutureRev
	case rev == 0:
		rev = h.hashRev
	case rev < h.hashCompact:
		return nil, rpctypes.ErrGRPCCompacted
	}
	return &pb.HashKVResponse{Header: &pb.ResponseHeader{Revision: h.hashRev}, Hash: h.hashes[rev],
		CompactRevision: h.hashCompact, HashRevision: rev}, nil
}

func (h *fakeHandler) received() []*raftpb.Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*raftpb.Message(nil), h.msgs...)
}

func (h *fakeHandler) unreachableCount(id uint64) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.unreachable[id]
}

func (h *fakeHandler) reports() []snapReport {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]snapReport(nil), h.snapReports...)
}

// node is a transport serving on loopback with a fake handler.
type node struct {
	tr   *Transport
	h    *fakeHandler
	url  string
	dir  string
	logs *observer.ObservedLogs
}

type nodeOpts struct {
	clusterID uint64
	addr      string // listen here rather than on a free port
	onRemoved func()
}

func startNode(t *testing.T, id uint64, o nodeOpts) *node {
	t.Helper()
	if o.clusterID == 0 {
		o.clusterID = 0xc1
	}
	addr := o.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return serveNode(t, id, o, l)
}

func serveNode(t *testing.T, id uint64, o nodeOpts, l net.Listener) *node {
	t.Helper()
	if o.clusterID == 0 {
		o.clusterID = 0xc1
	}
	obs, logs := observer.New(zapcore.InfoLevel)
	lg := zap.New(zapcore.NewTee(zaptest.NewLogger(t, zaptest.Level(zapcore.InfoLevel)).Core(), obs))
	n := &node{h: newFakeHandler(), url: "http://" + l.Addr().String(), dir: t.TempDir(), logs: logs}
	n.tr = New(Config{ID: id, ClusterID: o.clusterID, SnapshotDir: n.dir, OnRemoved: o.onRemoved, Logger: lg})
	n.tr.SetHandler(n.h)
	done := make(chan error, 1)
	go func() { done <- n.tr.Serve(l) }()
	t.Cleanup(func() {
		n.tr.Stop()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return n
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func app(from, to, index uint64) *raftpb.Message {
	return &raftpb.Message{Type: raftpb.MessageType_MsgApp.Enum(), From: proto.Uint64(from), To: proto.Uint64(to), Index: proto.Uint64(index)}
}

func TestStreamDeliversMessagesInOrder(t *testing.T) {
	a, b := startNode(t, 1, nodeOpts{}), startNode(t, 2, nodeOpts{})
	a.tr.AddPeer(2, []string{b.url})
	waitFor(t, "stream to 2 to become active", func() bool { return !a.tr.ActiveSince(2).IsZero() })

	const total, chunk = 10000, 1000
	for i := 0; i < total; i += chunk {
		// Keep what is queued below the queue size so that nothing drops.
		waitFor(t, "delivery to catch up", func() bool { return len(b.h.received()) >= i-3*chunk })
		msgs := make([]*raftpb.Message, chunk)
		for j := range msgs {
			msgs[j] = app(1, 2, uint64(i+j))
		}
		a.tr.Send(msgs)
	}
	waitFor(t, "all messages to arrive", func() bool { return len(b.h.received()) >= total })
	got := b.h.received()
	if len(got) != total {
		t.Fatalf("received %d messages, want %d", len(got), total)
	}
	for i, m := range got {
		if m.GetIndex() != uint64(i) || m.GetFrom() != 1 || m.GetTo() != 2 {
			t.Fatalf("message %d: got index %d from %x to %x", i, m.GetIndex(), m.GetFrom(), m.GetTo())
		}
	}
	if n := a.h.unreachableCount(2); n != 0 {
		t.Errorf("peer reported unreachable %d times on a healthy stream", n)
	}
}

func TestBatchTakesEverythingQueuedUpToFrameSize(t *testing.T) {
	p := newPeer(New(Config{ID: 1}), 2, nil)
	for i := range 3 {
		p.queue <- app(1, 2, uint64(i+1))
	}
	frame, err := p.batch(app(1, 2, 0))
	if err != nil {
		t.Fatal(err)
	}
	var idx []uint64
	decodeBatch(frame, func(m *raftpb.Message) error { idx = append(idx, m.GetIndex()); return nil })
	if len(idx) != 4 || idx[0] != 0 || idx[3] != 3 {
		t.Fatalf("batch holds indexes %v, want 0..3", idx)
	}

	// A frame is cut once it reaches maxFrameBytes; the rest stays queued.
	big := func(i uint64) *raftpb.Message {
		m := app(1, 2, i)
		m.Entries = []*raftpb.Entry{{Data: make([]byte, maxFrameBytes/2)}}
		return m
	}
	p.queue <- big(1)
	p.queue <- big(2)
	p.queue <- big(3)
	frame, err = p.batch(big(0))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	decodeBatch(frame, func(*raftpb.Message) error { n++; return nil })
	if n != 2 || len(p.queue) != 2 {
		t.Fatalf("frame holds %d messages and %d stay queued, want 2 and 2", n, len(p.queue))
	}
}

func TestFullQueueDropsAndReportsUnreachableWithoutBlocking(t *testing.T) {
	a, b := startNode(t, 1, nodeOpts{}), startNode(t, 2, nodeOpts{})
	release := make(chan struct{})
	b.h.block = release
	t.Cleanup(func() { close(release) })
	a.tr.AddPeer(2, []string{b.url})
	waitFor(t, "stream to 2 to become active", func() bool { return !a.tr.ActiveSince(2).IsZero() })

	// The receiver is stuck in Process, so frames back up until the queue
	// is full. Send must keep returning meanwhile.
	payload := make([]byte, 1024)
	for round := 0; a.tr.peer(2).dropped.Load() == 0; round++ {
		if round == 1000 {
			t.Fatal("no message dropped after 100000 sent to a stuck peer")
		}
		msgs := make([]*raftpb.Message, 100)
		for i := range msgs {
			msgs[i] = app(1, 2, uint64(round*100+i))
			msgs[i].Entries = []*raftpb.Entry{{Data: payload}}
		}
		sent := make(chan struct{})
		go func() { a.tr.Send(msgs); close(sent) }()
		select {
		case <-sent:
		case <-time.After(waitLimit):
			t.Fatal("Send blocked on a stuck peer")
		}
	}
	if a.h.unreachableCount(2) == 0 {
		t.Fatal("a dropped message did not report the peer unreachable")
	}
}

func TestSendToDownPeerReportsUnreachableAndRecoversWhenItStarts(t *testing.T) {
	addr := freeAddr(t)
	a := startNode(t, 1, nodeOpts{})
	a.tr.AddPeer(2, []string{"http://" + addr})
	a.tr.Send([]*raftpb.Message{app(1, 2, 1)})
	waitFor(t, "peer 2 to be reported unreachable", func() bool { return a.h.unreachableCount(2) > 0 })
	if !a.tr.ActiveSince(2).IsZero() {
		t.Fatal("ActiveSince is set for a peer that is down")
	}

	var l net.Listener
	waitFor(t, "the peer's address to be free again", func() bool {
		var err error
		l, err = net.Listen("tcp", addr)
		return err == nil
	})
	b := serveNode(t, 2, nodeOpts{}, l)
	waitFor(t, "delivery to resume", func() bool {
		a.tr.Send([]*raftpb.Message{app(1, 2, 2)})
		return len(b.h.received()) > 0
	})
	waitFor(t, "ActiveSince to be set", func() bool { return !a.tr.ActiveSince(2).IsZero() })
}

func TestPeerWithSeveralURLsUsesTheOneThatWorks(t *testing.T) {
	a, b := startNode(t, 1, nodeOpts{}), startNode(t, 2, nodeOpts{})
	a.tr.AddPeer(2, []string{"http://" + freeAddr(t), b.url})
	waitFor(t, "delivery through the second URL", func() bool {
		a.tr.Send([]*raftpb.Message{app(1, 2, 1)})
		return len(b.h.received()) > 0
	})
}

// As in etcd, a member whose peer URLs are updated keeps receiving on its old
// address while it still listens there: it must hear the commit of its own
// update before it restarts on the new URL. Once the old address fails,
// delivery moves to the new one.
func TestUpdatePeerKeepsTheWorkingStreamUntilItFails(t *testing.T) {
	a, b1 := startNode(t, 1, nodeOpts{}), startNode(t, 2, nodeOpts{})
	a.tr.AddPeer(2, []string{b1.url})
	waitFor(t, "delivery to the first address", func() bool {
		a.tr.Send([]*raftpb.Message{app(1, 2, 1)})
		return len(b1.h.received()) > 0
	})
	b2 := startNode(t, 2, nodeOpts{})
	a.tr.UpdatePeer(2, []string{b2.url})
	before := len(b1.h.received())
	a.tr.Send([]*raftpb.Message{app(1, 2, 2)})
	waitFor(t, "delivery to the old address after the update", func() bool {
		return len(b1.h.received()) > before
	})
	if n := len(b2.h.received()); n != 0 {
		t.Fatalf("the new address received %d messages while the old one still worked", n)
	}
	b1.tr.Stop()
	waitFor(t, "delivery to the new address", func() bool {
		a.tr.Send([]*raftpb.Message{app(1, 2, 3)})
		return len(b2.h.received()) > 0
	})
}

// A stream to an address dropped by UpdatePeer must move to the new URLs
// however it ends, even when something still answers at the old address and
// refuses the stream (here another member took the old address over).
func TestUpdatePeerLeavesAnOldAddressThatRefuses(t *testing.T) {
	a, b1 := startNode(t, 1, nodeOpts{}), startNode(t, 2, nodeOpts{})
	a.tr.AddPeer(2, []string{b1.url})
	waitFor(t, "delivery to the first address", func() bool {
		a.tr.Send([]*raftpb.Message{app(1, 2, 1)})
		return len(b1.h.received()) > 0
	})
	b2 := startNode(t, 2, nodeOpts{})
	a.tr.UpdatePeer(2, []string{b2.url})
	oldAddr := strings.TrimPrefix(b1.url, "http://")
	b1.tr.Stop()
	startNode(t, 3, nodeOpts{addr: oldAddr})
	waitFor(t, "delivery to the new address", func() bool {
		a.tr.Send([]*raftpb.Message{app(1, 2, 2)})
		return len(b2.h.received()) > 0
	})
}

// refusedLogged reports whether n logged that peer refused its stream with
// an error containing want.
func refusedLogged(n *node, want string) bool {
	for _, e := range n.logs.FilterMessageSnippet("peer refused the stream").All() {
		if err, ok := e.ContextMap()["error"].(string); ok && strings.Contains(err, want) {
			return true
		}
	}
	return false
}

func TestClusterIDMismatchIsRefused(t *testing.T) {
	a := startNode(t, 1, nodeOpts{clusterID: 0xaa})
	b := startNode(t, 2, nodeOpts{clusterID: 0xbb})
	a.tr.AddPeer(2, []string{b.url})
	a.tr.Send([]*raftpb.Message{app(1, 2, 1)})
	waitFor(t, "the stream to be refused", func() bool {
		a.tr.Send([]*raftpb.Message{app(1, 2, 1)})
		return refusedLogged(a, "cluster ID mismatch")
	})

	_, err := a.tr.LeaseRenew(context.Background(), 2, 1)
	if !errors.Is(err, ErrClusterIDMismatch) {
		t.Fatalf("LeaseRenew: got %v, want ErrClusterIDMismatch", err)
	}
	want := "cluster ID mismatch: this member belongs to cluster bb, the peer 1 to cluster aa"
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition || st.Message() != want {
		t.Fatalf("LeaseRenew: got %v %q, want FailedPrecondition %q", st.Code(), st.Message(), want)
	}
	if n := len(b.h.received()); n != 0 {
		t.Fatalf("%d messages delivered from another cluster", n)
	}
	if !a.tr.ActiveSince(2).IsZero() {
		t.Fatal("a refused stream is reported active")
	}
	if n := b.logs.FilterMessageSnippet("cluster ID mismatch").Len(); n != 1 {
		t.Fatalf("receiver logged the mismatch %d times, want once (rate-limited)", n)
	}
}

func TestRequestForAnotherMemberIsRefused(t *testing.T) {
	a, b := startNode(t, 1, nodeOpts{}), startNode(t, 2, nodeOpts{})
	// Member 3's URL points at member 2 by mistake.
	a.tr.AddPeer(3, []string{b.url})
	waitFor(t, "the stream to be refused", func() bool {
		a.tr.Send([]*raftpb.Message{app(1, 3, 1)})
		return refusedLogged(a, "addressed to member 3")
	})
	_, err := a.tr.LeaseRenew(context.Background(), 3, 1)
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), "addressed to member 3 reached member 2") {
		t.Fatalf("LeaseRenew: got %v, want a refusal naming both members", err)
	}
	if n := len(b.h.received()); n != 0 {
		t.Fatalf("%d messages delivered to the wrong member", n)
	}
}

func TestRemovedMemberIsRefusedAndToldOnce(t *testing.T) {
	var calls atomic.Int32
	a := startNode(t, 1, nodeOpts{onRemoved: func() { calls.Add(1) }})
	b := startNode(t, 2, nodeOpts{})
	a.tr.AddPeer(2, []string{b.url})
	waitFor(t, "delivery before the removal", func() bool {
		a.tr.Send([]*raftpb.Message{app(1, 2, 1)})
		return len(b.h.received()) > 0
	})

	// Removed while its stream is open: the next frame ends the stream.
	b.h.mu.Lock()
	b.h.removed[1] = true
	b.h.mu.Unlock()
	waitFor(t, "OnRemoved", func() bool {
		a.tr.Send([]*raftpb.Message{app(1, 2, 2)})
		return calls.Load() > 0
	})
	// The stream has ended: nothing more is delivered. New streams and
	// requests are refused too, without telling the member again.
	delivered := len(b.h.received())
	waitFor(t, "a new stream to be refused", func() bool {
		a.tr.Send([]*raftpb.Message{app(1, 2, 3)})
		return b.logs.FilterMessageSnippet("rejected peer because it was removed").Len() > 0
	})
	for range 3 {
		if _, err := a.tr.LeaseRenew(context.Background(), 2, 1); !errors.Is(err, ErrMemberRemoved) {
			t.Fatalf("LeaseRenew: got %v, want ErrMemberRemoved", err)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("OnRemoved called %d times, want once", n)
	}
	if n := len(b.h.received()); n != delivered {
		t.Fatalf("%d messages delivered from a removed member", n-delivered)
	}
}

func snapMsg(from, to, index uint64) *raftpb.Message {
	return &raftpb.Message{
		Type: raftpb.MessageType_MsgSnap.Enum(), From: proto.Uint64(from), To: proto.Uint64(to),
		Snapshot: &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: proto.Uint64(index), Term: proto.Uint64(2)}},
	}
}

// files returns the names of the files in dir.
func files(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestSnapshotStateArrivesWhole(t *testing.T) {
	a, b := startNode(t, 1, nodeOpts{}), startNode(t, 2, nodeOpts{})
	state := make([]byte, 5<<20+123)
	rand.Read(state)
	a.h.openSnapshot = func(m *raftpb.Message) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(state)), nil
	}
	a.tr.AddPeer(2, []string{b.url})
	a.tr.Send([]*raftpb.Message{snapMsg(1, 2, 10)})
	waitFor(t, "the snapshot to be reported", func() bool { return len(a.h.reports()) > 0 })
	if got := a.h.reports(); len(got) != 1 || got[0] != (snapReport{2, raft.SnapshotFinish}) {
		t.Fatalf("reports %v, want one SnapshotFinish for peer 2", got)
	}
	b.h.mu.Lock()
	defer b.h.mu.Unlock()
	if len(b.h.snapshots) != 1 || !bytes.Equal(b.h.snapshots[0], state) {
		t.Fatalf("handler got %d snapshots, want one with the %d bytes sent", len(b.h.snapshots), len(state))
	}
	if dir := filepath.Dir(b.h.snapPaths[0]); dir != b.dir {
		t.Fatalf("snapshot handed over in %s, want in the snapshot dir %s", dir, b.dir)
	}
	if names := files(t, b.dir); len(names) != 1 || !strings.HasSuffix(names[0], completeSuffix) {
		t.Fatalf("snapshot dir holds %v, want only the handed-over file", names)
	}
}

// failingReader returns n bytes and then an error.
type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, errors.New("disk on fire")
	}
	k := min(len(p), r.n)
	r.n -= k
	return k, nil
}

func TestSnapshotReaderFailureIsReportedAndLeavesNothing(t *testing.T) {
	a, b := startNode(t, 1, nodeOpts{}), startNode(t, 2, nodeOpts{})
	a.h.openSnapshot = func(m *raftpb.Message) (io.ReadCloser, error) {
		return io.NopCloser(&failingReader{n: 2<<20 + 5}), nil
	}
	a.tr.AddPeer(2, []string{b.url})
	a.tr.Send([]*raftpb.Message{snapMsg(1, 2, 10)})
	waitFor(t, "the snapshot to be reported", func() bool { return len(a.h.reports()) > 0 })
	if got := a.h.reports(); len(got) != 1 || got[0] != (snapReport{2, raft.SnapshotFailure}) {
		t.Fatalf("reports %v, want one SnapshotFailure for peer 2", got)
	}
	waitFor(t, "the partial file to be removed", func() bool { return len(files(t, b.dir)) == 0 })
	b.h.mu.Lock()
	defer b.h.mu.Unlock()
	if len(b.h.snapshots) != 0 {
		t.Fatal("a broken snapshot reached the handler")
	}
}

func TestCorruptSnapshotNeverReachesTheHandler(t *testing.T) {
	b := startNode(t, 2, nodeOpts{})
	cc, err := dial(b.url, nil, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx := metadata.AppendToOutgoingContext(context.Background(), MDClusterID, "c1", MDFrom, "1", MDTo, "2")
	cs, err := cc.NewStream(ctx, &snapshotDesc, methodSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	hdr, _ := proto.Marshal(snapMsg(1, 2, 10))
	state := []byte("some state")
	wrong := sha256.Sum256([]byte("other state"))
	for _, f := range [][]byte{append([]byte{snapHeader}, hdr...), append([]byte{snapChunk}, state...), trailerFrame(wrong[:], int64(len(state)))} {
		if err := cs.SendMsg(f); err != nil {
			t.Fatal(err)
		}
	}
	cs.CloseSend()
	var out []byte
	if err := cs.RecvMsg(&out); status.Code(err) != codes.DataLoss {
		t.Fatalf("corrupt snapshot: got %v, want DataLoss", err)
	}
	if names := files(t, b.dir); len(names) != 0 {
		t.Fatalf("corrupt snapshot left %v", names)
	}
	b.h.mu.Lock()
	defer b.h.mu.Unlock()
	if len(b.h.snapshots) != 0 {
		t.Fatal("a corrupt snapshot reached the handler")
	}
}

func TestForwardedRequestsRoundTrip(t *testing.T) {
	a, b := startNode(t, 1, nodeOpts{}), startNode(t, 2, nodeOpts{})
	b.h.leases[7] = 42
	b.h.promoteResult = []*pb.Member{{ID: 3, Name: "m3", PeerURLs: []string{"http://127.0.0.1:1"}}}
	a.tr.AddPeer(2, []string{b.url})
	ctx := context.Background()

	if ttl, err := a.tr.LeaseRenew(ctx, 2, 7); err != nil || ttl != 42 {
		t.Fatalf("LeaseRenew: got %d, %v; want 42", ttl, err)
	}
	sameStatus := func(what string, err, want error) {
		t.Helper()
		got, exp := status.Convert(err), status.Convert(want)
		if err == nil || got.Code() != exp.Code() || got.Message() != exp.Message() {
			t.Fatalf("%s: got %v, want %v", what, err, want)
		}
	}
	_, err := a.tr.LeaseRenew(ctx, 2, 8)
	sameStatus("LeaseRenew of a missing lease", err, rpctypes.ErrGRPCLeaseNotFound)

	ttl, err := a.tr.LeaseTimeToLive(ctx, 2, &pb.LeaseTimeToLiveRequest{ID: 7, Keys: true})
	want := &pb.LeaseTimeToLiveResponse{ID: 7, TTL: 42, GrantedTTL: 60, Keys: [][]byte{[]byte("a"), []byte("b")}}
	if err != nil || !proto.Equal(ttl, want) {
		t.Fatalf("LeaseTimeToLive: got %v, %v; want %v", ttl, err, want)
	}
	_, err = a.tr.LeaseTimeToLive(ctx, 2, &pb.LeaseTimeToLiveRequest{ID: 8})
	sameStatus("LeaseTimeToLive of a missing lease", err, rpctypes.ErrGRPCLeaseNotFound)

	ms, err := a.tr.MemberPromote(ctx, 2, 3)
	if err != nil || len(ms) != 1 || !proto.Equal(ms[0], b.h.promoteResult[0]) {
		t.Fatalf("MemberPromote: got %v, %v; want %v", ms, err, b.h.promoteResult)
	}
	_, err = a.tr.MemberPromote(ctx, 2, 4)
	sameStatus("MemberPromote of a voter", err, rpctypes.ErrGRPCMemberNotLearner)

	if _, err := a.tr.LeaseRenew(ctx, 9, 7); status.Code(err) != codes.Unavailable {
		t.Fatalf("LeaseRenew to an unknown peer: got %v, want Unavailable", err)
	}
}

func TestHashKVRoundTripKeepsErrorsApart(t *testing.T) {
	a, b := startNode(t, 1, nodeOpts{}), startNode(t, 2, nodeOpts{})
	b.h.hashes = map[int64]uint32{5: 0xdead, 9: 0xbeef}
	b.h.hashRev, b.h.hashCompact = 9, 4
	a.tr.AddPeer(2, []string{b.url})
	ctx := context.Background()

	got, err := a.tr.HashKV(ctx, 2, 5)
	want := &pb.HashKVResponse{Header: &pb.ResponseHeader{Revision: 9}, Hash: 0xdead, CompactRevision: 4, HashRevision: 5}
	if err != nil || !proto.Equal(got, want) {
		t.Fatalf("HashKV(5): got %v, %v; want %v", got, err, want)
	}
	if got, err := a.tr.HashKV(ctx, 2, 0); err != nil || got.Hash != 0xbeef || got.HashRevision != 9 {
		t.Fatalf("HashKV(0): got %v, %v; want the hash at the current revision 9", got, err)
	}
	if _, err := a.tr.HashKV(ctx, 2, 3); !errors.Is(err, rpctypes.ErrGRPCCompacted) || errors.Is(err, rpctypes.ErrGRPCFutureRev) {
		t.Fatalf("HashKV of a compacted revision: got %v, want ErrGRPCCompacted", err)
	}
	if _, err := a.tr.HashKV(ctx, 2, 10); !errors.Is(err, rpctypes.ErrGRPCFutureRev) || errors.Is(err, rpctypes.ErrGRPCCompacted) {
		t.Fatalf("HashKV of a future revision: got %v, want ErrGRPCFutureRev", err)
	}
	if _, err := a.tr.HashKV(ctx, 9, 5); status.Code(err) != codes.Unavailable {
		t.Fatalf("HashKV of an unknown peer: got %v, want Unavailable", err)
	}

	// A member of another cluster is refused, and the caller can tell.
	c := startNode(t, 3, nodeOpts{clusterID: 0xc2})
	a.tr.AddPeer(3, []string{c.url})
	if _, err := a.tr.HashKV(ctx, 3, 5); !errors.Is(err, ErrClusterIDMismatch) {
		t.Fatalf("HashKV of another cluster's member: got %v, want ErrClusterIDMismatch", err)
	}
	// A dead peer fails rather than hanging until the deadline (Canceled
	// when the peer's stream loop drops the failed connection meanwhile).
	a.tr.AddPeer(4, []string{"http://" + freeAddr(t)})
	dctx, cancel := context.WithTimeout(ctx, waitLimit)
	defer cancel()
	if _, err := a.tr.HashKV(dctx, 4, 5); status.Code(err) != codes.Unavailable && status.Code(err) != codes.Canceled {
		t.Fatalf("HashKV of a dead peer: got %v, want Unavailable or Canceled", err)
	}
}

func TestFetchMembersSkipsADeadURL(t *testing.T) {
	b := startNode(t, 2, nodeOpts{})
	b.h.members = &pb.MemberListResponse{
		Header:  &pb.ResponseHeader{ClusterId: 0xc1, MemberId: 2, RaftTerm: 3},
		Members: []*pb.Member{{ID: 2, Name: "b", PeerURLs: []string{b.url}}},
	}
	got, err := FetchMembers(context.Background(), []string{"http://" + freeAddr(t), b.url}, nil, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, b.h.members) {
		t.Fatalf("FetchMembers: got %v, want %v", got, b.h.members)
	}
	if _, err := FetchMembers(context.Background(), []string{"http://" + freeAddr(t)}, nil, nil); err == nil {
		t.Fatal("FetchMembers with only a dead URL succeeded")
	}
}

func TestFetchMembersWhereAsksOnUntilAnAnswerFits(t *testing.T) {
	behind, ahead := startNode(t, 2, nodeOpts{}), startNode(t, 3, nodeOpts{})
	header := &pb.ResponseHeader{ClusterId: 0xc1, MemberId: 2, RaftTerm: 3}
	behind.h.members = &pb.MemberListResponse{Header: header, Members: []*pb.Member{{ID: 2, PeerURLs: []string{behind.url}}}}
	ahead.h.members = &pb.MemberListResponse{Header: header, Members: []*pb.Member{{ID: 2, PeerURLs: []string{behind.url}}, {ID: 4}}}
	hasFour := func(r *pb.MemberListResponse) bool { return len(r.GetMembers()) == 2 }
	urls := []string{"http://" + freeAddr(t), behind.url, ahead.url}
	got, err := FetchMembersWhere(context.Background(), urls, hasFour, nil, zaptest.NewLogger(t))
	if err != nil || !proto.Equal(got, ahead.h.members) {
		t.Fatalf("FetchMembersWhere: got %v %v, want the answer that lists member 4: %v", got, err, ahead.h.members)
	}
	never := func(*pb.MemberListResponse) bool { return false }
	got, err = FetchMembersWhere(context.Background(), urls, never, nil, zaptest.NewLogger(t))
	if err != nil || !proto.Equal(got, behind.h.members) {
		t.Fatalf("FetchMembersWhere with no fitting answer: got %v %v, want the first answer %v", got, err, behind.h.members)
	}
}

func TestSendSkipsSelfAndUnknownPeersAndDoesNothingAfterStop(t *testing.T) {
	a, b := startNode(t, 1, nodeOpts{}), startNode(t, 2, nodeOpts{})
	a.tr.AddPeer(2, []string{b.url})
	a.tr.AddPeer(1, []string{b.url}) // the local member is never a peer
	a.tr.Send([]*raftpb.Message{app(1, 1, 1), app(1, 5, 1)})
	waitFor(t, "delivery", func() bool {
		a.tr.Send([]*raftpb.Message{app(1, 2, 2)})
		return len(b.h.received()) > 0
	})
	for _, m := range b.h.received() {
		if m.GetTo() != 2 {
			t.Fatalf("message to %x delivered to 2", m.GetTo())
		}
	}
	a.tr.Stop()
	a.tr.Send([]*raftpb.Message{app(1, 2, 3)})
	a.tr.AddPeer(3, []string{b.url})
	if !a.tr.ActiveSince(2).IsZero() {
		t.Fatal("ActiveSince set after Stop")
	}
}

// TestStreamThatSwallowsFramesIsReopened connects a sender to a receiver
// that takes frames but never acknowledges them, as a stuck proxy would:
// the sender must give the stream up and open a new one.
func TestStreamThatSwallowsFramesIsReopened(t *testing.T) {
	saved := ackTimeout
	t.Cleanup(func() { ackTimeout = saved }) // after the node's cleanup, which stops its goroutines
	ackTimeout = 200 * time.Millisecond
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opened atomic.Int32
	srv := grpc.NewServer(grpc.ForceServerCodecV2(rawCodec{}), grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
		opened.Add(1)
		ss.SendHeader(metadata.MD{})
		var b []byte
		for {
			if err := ss.RecvMsg(&b); err != nil {
				return err
			}
		}
	}))
	go srv.Serve(l)
	defer srv.Stop()
	a := startNode(t, 1, nodeOpts{})
	a.tr.AddPeer(2, []string{"http://" + l.Addr().String()})
	waitFor(t, "the swallowing stream to be reopened", func() bool {
		a.tr.Send([]*raftpb.Message{app(1, 2, 1)})
		return opened.Load() >= 2
	})
	if a.h.unreachableCount(2) == 0 {
		t.Fatal("the peer was not reported unreachable when its stream was given up")
	}
}
