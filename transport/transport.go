// Package transport carries the traffic between the members of a cluster:
// Raft messages on one long-lived gRPC stream per (sender, receiver) pair,
// snapshots on streams of their own, the requests that only the leader can
// answer (lease renewals and TimeToLive, learner promotion), the member
// list a joining member asks for, and the key-space hashes the corruption
// checks compare.
//
// The gRPC service "keel.peer.v1.Peer" is defined by hand and every message
// is raw bytes encoded by this package, so that a proxy can forward its
// frames without knowing them. Every RPC carries the metadata MDClusterID,
// MDFrom and MDTo; the receiver refuses a peer of another cluster, a request
// meant for another member and a member that was removed.
package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/keeldb/keel/internal/loglimit"
	"github.com/keeldb/keel/metrics"
	"github.com/keeldb/keel/tlsutil"
)

// Metadata keys sent on every peer RPC. IDs are lower-case hex (%x). A fault
// proxy in tests routes on them.
const (
	MDClusterID = "keel-cluster-id" // the sender's cluster ID
	MDFrom      = "keel-from"       // the sender's member ID
	MDTo        = "keel-to"         // the receiver's member ID ("" on FetchMembers)
)

// Errors with which a member refuses a peer. The refusal a peer receives for
// a cluster ID mismatch names both cluster IDs; errors.Is(err,
// ErrClusterIDMismatch) holds for it on the client side.
var (
	ErrMemberRemoved     = status.Error(codes.FailedPrecondition, "the member has been permanently removed from the cluster")
	ErrClusterIDMismatch = status.Error(codes.FailedPrecondition, "cluster ID mismatch")
)

// Handler serves what peers send. Process, ProcessSnapshot, MemberList,
// LeaseRenew, LeaseTimeToLive, MemberPromote and HashKV are called concurrently,
// from the goroutines that serve RPCs, with contexts that end when the RPC
// or the transport does; Process is called in the order the sender sent the
// messages of one stream. ReportUnreachable may be called from within Send;
// it and ReportSnapshot must not block for long. An error that is a gRPC
// status error reaches the caller of the client method with the same code
// and message.
type Handler interface {
	// Process steps Raft with a message from a peer (never MsgSnap).
	Process(ctx context.Context, m *raftpb.Message) error
	// ProcessSnapshot steps Raft with MsgSnap m whose state was received,
	// synced and verified into the file path. After a nil return the handler
	// owns the file; after an error the transport removes it.
	ProcessSnapshot(ctx context.Context, m *raftpb.Message, path string) error
	// OpenSnapshot returns the state to stream with the outgoing MsgSnap m.
	// The transport closes it.
	OpenSnapshot(m *raftpb.Message) (io.ReadCloser, error)
	// ReportUnreachable says that messages to peer id were lost.
	ReportUnreachable(id uint64)
	// ReportSnapshot says how sending a snapshot to peer id ended.
	ReportSnapshot(id uint64, status raft.SnapshotStatus)
	// IsRemoved reports whether member id was removed from the cluster;
	// RPCs from a removed member are refused with ErrMemberRemoved.
	IsRemoved(id uint64) bool
	// MemberList answers FetchMembers; its header carries the cluster ID.
	MemberList(ctx context.Context) (*pb.MemberListResponse, error)
	// LeaseRenew renews lease id for a follower and returns its TTL.
	LeaseRenew(ctx context.Context, id int64) (int64, error)
	// LeaseTimeToLive answers a follower's TimeToLive.
	LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error)
	// MemberPromote promotes learner id for a follower and returns the
	// members after the change.
	MemberPromote(ctx context.Context, id uint64) ([]*pb.Member, error)
	// HashKV answers a peer's corruption check: the hash of the key space
	// at rev (0: the current revision) with its HashRevision and
	// CompactRevision, and the member's current revision in the header.
	// A compacted or future rev is rpctypes.ErrGRPCCompacted or
	// rpctypes.ErrGRPCFutureRev, which the caller receives as such.
	HashKV(ctx context.Context, rev int64) (*pb.HashKVResponse, error)
}

// Config configures a Transport.
type Config struct {
	// ID and ClusterID identify the local member.
	ID, ClusterID uint64
	// SnapshotDir is where received snapshots are staged; it is created if
	// missing, and partial files left by a crash are removed by New.
	SnapshotDir string
	// DialTimeout bounds connecting to a peer and opening a stream; 0 means
	// one second.
	DialTimeout time.Duration
	// OnRemoved is called once, on a goroutine of its own (so it may call
	// Stop), when a peer refuses this member because it was removed from
	// the cluster.
	OnRemoved func()
	// ClientTLS secures the connections to https:// peer URLs; without it
	// they cannot be dialled. http:// URLs are dialled in plain text. The
	// listeners given to Serve do their own TLS (tlsutil.NewListener).
	ClientTLS TLSFor
	// ExplainDialError, when set, turns an error from dialling a peer URL
	// into a sentence naming the cause (a TLS mistake), "" when it cannot.
	ExplainDialError func(url string, err error) string
	// Metrics counts the bytes and failures of the Raft streams and their
	// round trips; may be nil.
	Metrics *metrics.Metrics
	Logger  *zap.Logger
}

const (
	// queueSize bounds the messages queued for one peer; Send drops beyond it.
	queueSize = 4096
	// Backoff between attempts to open a stream to a peer. It stays short:
	// a peer that comes back must hear the leader within a heartbeat or
	// two, not after a long backoff, and a few dials a second to a dead
	// peer cost nothing.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 200 * time.Millisecond
	// writeTimeout bounds writing one frame; a peer that does not take a
	// frame for that long is treated as gone and the stream is reopened.
	writeTimeout = 5 * time.Second
	// logEvery rate-limits repeated log lines about one peer.
	logEvery = 10 * time.Second
	// maxMsgBytes is the largest gRPC message accepted: one Raft message can
	// be larger than maxFrameBytes.
	maxMsgBytes = 1<<31 - 1
	// fetchTimeout bounds asking one URL for the member list.
	fetchTimeout = 3 * time.Second
)

// ackTimeout bounds how long the oldest unacknowledged frame on a stream
// may wait for the peer's acknowledgement before the stream is treated as
// broken and reopened: it catches paths that take frames but never deliver
// them. A variable so that tests can shorten it.
var ackTimeout = 5 * time.Second

// Transport sends Raft messages and snapshots to the peers it knows and
// serves the peer RPCs of the local member. All methods are safe for
// concurrent use.
type Transport struct {
	cfg     Config
	lg      *zap.Logger
	handler atomic.Value // handlerBox, set once by SetHandler
	srv     *grpc.Server
	ctx     context.Context // ends at Stop
	cancel  context.CancelFunc
	limiter *loglimit.Limiter
	removed sync.Once
	wg      sync.WaitGroup // peer goroutines and snapshot senders

	mu      sync.RWMutex
	peers   map[uint64]*peer
	stopped bool
}

// New returns a transport for the member cfg.ID; it sends nothing before
// AddPeer and serves nothing before Serve.
func New(cfg Config) *Transport {
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = time.Second
	}
	lg := cfg.Logger
	if lg == nil {
		lg = zap.NewNop()
	}
	t := &Transport{cfg: cfg, lg: lg, peers: map[uint64]*peer{}}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.limiter = loglimit.New(logEvery, 0) // per key only (Allow)
	t.srv = grpc.NewServer(
		grpc.Creds(tlsutil.ServerCredentials()),
		grpc.ForceServerCodecV2(rawCodec{}),
		grpc.MaxRecvMsgSize(maxMsgBytes),
		grpc.MaxSendMsgSize(maxMsgBytes),
		// Ping a silent peer every second so that a dead connection is
		// closed; let peers ping as often.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: time.Second, Timeout: 2 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: time.Second, PermitWithoutStream: true}),
		grpc.WaitForHandlers(true),
	)
	t.srv.RegisterService(&serviceDesc, t)
	if cfg.SnapshotDir != "" {
		if err := os.MkdirAll(cfg.SnapshotDir, 0o700); err != nil {
			lg.Warn("failed to create the snapshot staging directory", zap.String("path", cfg.SnapshotDir), zap.Error(err))
		}
		partial, _ := filepath.Glob(filepath.Join(cfg.SnapshotDir, "*"+partialSuffix))
		for _, p := range partial {
			os.Remove(p)
		}
	}
	return t
}

// SetHandler sets what serves the peers' RPCs and receives the reports; it
// must be called before Serve and before the first AddPeer.
func (t *Transport) SetHandler(h Handler) { t.handler.Store(handlerBox{h}) }

// handlerBox lets an interface value live in an atomic.Value.
type handlerBox struct{ Handler }

// h returns the handler, nil before SetHandler. Peer goroutines may run
// before the handler is set: the member adds peers while it starts.
func (t *Transport) h() Handler {
	b, _ := t.handler.Load().(handlerBox)
	return b.Handler
}

// Serve serves the peer service on l until Stop, which closes l; it may be
// called for several listeners. It returns nil after Stop.
func (t *Transport) Serve(l net.Listener) error { return t.srv.Serve(l) }

// AddPeer starts sending to member id at urls (http://host:port, tried in
// order until one works). Adding a known peer updates its URLs; adding the
// local member does nothing.
func (t *Transport) AddPeer(id uint64, urls []string) {
	if id == t.cfg.ID {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	if p, ok := t.peers[id]; ok {
		p.setURLs(urls)
		return
	}
	p := newPeer(t, id, urls)
	t.peers[id] = p
	t.cfg.Metrics.PeerKnown(t.cfg.ID, id, true)
	t.wg.Add(1)
	go p.run()
	t.lg.Info("added remote peer", t.localField(), idField("remote-peer-id", id), zap.Strings("remote-peer-urls", urls))
}

// UpdatePeer changes the URLs of peer id. A working stream to an address no
// longer listed is kept until it ends (the moved member listens there until
// it restarts); the next one goes to the new URLs.
func (t *Transport) UpdatePeer(id uint64, urls []string) {
	if p := t.peer(id); p != nil {
		p.setURLs(urls)
		t.lg.Info("updated remote peer", t.localField(), idField("remote-peer-id", id), zap.Strings("remote-peer-urls", urls))
	}
}

// RemovePeer stops sending to peer id and drops what is queued for it. It
// does not wait for the peer's goroutines (Stop does); a snapshot in flight
// to it is aborted and reported as failed.
func (t *Transport) RemovePeer(id uint64) {
	t.mu.Lock()
	p, ok := t.peers[id]
	delete(t.peers, id)
	t.mu.Unlock()
	if ok {
		p.close()
		t.cfg.Metrics.PeerKnown(t.cfg.ID, id, false)
		t.lg.Info("removed remote peer", t.localField(), idField("remote-peer-id", id))
	}
}

// Send queues msgs for their peers and returns without waiting for the
// network. A message to an unknown peer or to the local member is dropped;
// a message that finds its peer's queue full is dropped and the peer
// reported unreachable (Raft retransmits). MsgSnap is sent on a stream of
// its own, at most one at a time per peer. Send after Stop does nothing.
func (t *Transport) Send(msgs []*raftpb.Message) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.stopped {
		return
	}
	for _, m := range msgs {
		to := m.GetTo()
		if to == t.cfg.ID {
			continue
		}
		p, ok := t.peers[to]
		if !ok {
			t.lg.Debug("dropped Raft message to unknown peer", t.localField(), idField("remote-peer-id", to), zap.Stringer("message-type", m.GetType()))
			continue
		}
		if m.GetType() == raftpb.MessageType_MsgSnap {
			p.sendSnapshot(m)
			continue
		}
		p.enqueue(m)
	}
}

// ActiveSince returns when the stream to peer id became healthy, or the
// zero time while it is not connected.
func (t *Transport) ActiveSince(id uint64) time.Time {
	if p := t.peer(id); p != nil {
		return p.activeSince()
	}
	return time.Time{}
}

// Stop stops serving, closes every stream and connection and waits for the
// transport's goroutines and RPC handlers to return. The handler is not
// called after Stop returns.
func (t *Transport) Stop() {
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		return
	}
	t.stopped = true
	peers := t.peers
	t.peers = map[uint64]*peer{}
	t.mu.Unlock()
	t.cancel()
	t.srv.Stop()
	for _, p := range peers {
		p.close()
	}
	t.wg.Wait()
}

// LeaseRenew asks member to (the leader) to renew lease id and returns the
// lease's TTL.
func (t *Transport) LeaseRenew(ctx context.Context, to uint64, id int64) (int64, error) {
	resp := &pb.LeaseKeepAliveResponse{}
	if err := t.invoke(ctx, to, methodLeaseRenew, &pb.LeaseKeepAliveRequest{ID: id}, resp); err != nil {
		return 0, err
	}
	return resp.TTL, nil
}

// LeaseTimeToLive asks member to (the leader) for the TimeToLive of a lease.
func (t *Transport) LeaseTimeToLive(ctx context.Context, to uint64, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	resp := &pb.LeaseTimeToLiveResponse{}
	if err := t.invoke(ctx, to, methodLeaseTimeToLive, r, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// MemberPromote asks member to (the leader) to promote learner id and
// returns the members after the change.
func (t *Transport) MemberPromote(ctx context.Context, to uint64, id uint64) ([]*pb.Member, error) {
	resp := &pb.MemberPromoteResponse{}
	if err := t.invoke(ctx, to, methodMemberPromote, &pb.MemberPromoteRequest{ID: id}, resp); err != nil {
		return nil, err
	}
	return resp.Members, nil
}

// HashKV asks member to for the hash of its key space at rev, for the
// corruption checks. Errors are gRPC status errors: the peer's refusal of a
// compacted or future revision compares equal (errors.Is) to
// rpctypes.ErrGRPCCompacted or rpctypes.ErrGRPCFutureRev, a peer of another
// cluster matches ErrClusterIDMismatch, an unreachable one has
// codes.Unavailable or codes.DeadlineExceeded.
func (t *Transport) HashKV(ctx context.Context, to uint64, rev int64) (*pb.HashKVResponse, error) {
	resp := &pb.HashKVResponse{}
	if err := t.invoke(ctx, to, methodHashKV, &pb.HashKVRequest{Revision: rev}, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// invoke calls a unary method of peer to on the peer's connection. It fails
// at once with codes.Unavailable when the peer cannot be reached.
func (t *Transport) invoke(ctx context.Context, to uint64, method string, req, resp proto.Message) error {
	p := t.peer(to)
	if p == nil {
		return status.Errorf(codes.Unavailable, "transport: member %x is not a known peer", to)
	}
	cc, _, err := p.conn()
	if err != nil {
		return err
	}
	in, err := proto.Marshal(req)
	if err != nil {
		return err
	}
	var out []byte
	if err := cc.Invoke(t.outgoing(ctx, to), method, in, &out); err != nil {
		return t.refusal(to, err)
	}
	return proto.Unmarshal(out, resp)
}

// TLSFor returns the TLS configuration for dialling the peer at host (the
// host of its URL, without port); the configuration must verify that the
// peer's certificate covers host (see tlsutil.Source.ClientConfigFor).
type TLSFor func(host string) *tls.Config

// FetchMembers asks the members at urls, in order, for the member list and
// returns the first answer; a member joining an existing cluster learns the
// cluster ID and the members this way. Each URL gets a few seconds.
// https:// URLs are dialled with tlsCfg (see Config.ClientTLS).
func FetchMembers(ctx context.Context, urls []string, tlsCfg TLSFor, lg *zap.Logger) (*pb.MemberListResponse, error) {
	return FetchMembersWhere(ctx, urls, nil, tlsCfg, lg)
}

// FetchMembersWhere is FetchMembers that goes on asking while the answers
// do not satisfy want: it returns the first answer that does, or else the
// first answer there was. A nil want takes the first answer.
func FetchMembersWhere(ctx context.Context, urls []string, want func(*pb.MemberListResponse) bool, tlsCfg TLSFor, lg *zap.Logger) (*pb.MemberListResponse, error) {
	if lg == nil {
		lg = zap.NewNop()
	}
	var first *pb.MemberListResponse
	var errs []error
	for _, u := range urls {
		resp, err := fetchMembers(ctx, u, tlsCfg)
		if err == nil && (want == nil || want(resp)) {
			return resp, nil
		}
		if err == nil {
			lg.Info("member list from peer is not the one wanted; asking the next peer", zap.String("remote-peer-url", u))
			if first == nil {
				first = resp
			}
		} else {
			lg.Warn("failed to get the member list from peer", zap.String("remote-peer-url", u), zap.Error(err))
			errs = append(errs, fmt.Errorf("%s: %w", u, err))
		}
		if ctx.Err() != nil {
			break
		}
	}
	if first != nil {
		return first, nil
	}
	return nil, fmt.Errorf("could not get the member list from any of the peer URLs %s: %w", strings.Join(urls, ","), errors.Join(errs...))
}

func fetchMembers(ctx context.Context, u string, tlsCfg TLSFor) (*pb.MemberListResponse, error) {
	cc, err := dial(u, tlsCfg, fetchTimeout, nil)
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	in, _ := proto.Marshal(&pb.MemberListRequest{})
	var out []byte
	ctx = metadata.AppendToOutgoingContext(ctx, MDClusterID, "", MDFrom, "", MDTo, "")
	if err := cc.Invoke(ctx, methodMembers, in, &out); err != nil {
		return nil, err
	}
	resp := &pb.MemberListResponse{}
	if err := proto.Unmarshal(out, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// dial returns a client connection to the peer URL u; it connects lazily.
// An https:// URL is dialled with TLS configured by tlsCfg for its host, an
// http:// one in plain text; failed handshakes are recorded in last, if
// given.
func dial(u string, tlsCfg TLSFor, dialTimeout time.Duration, last *lastHandshake) (*grpc.ClientConn, error) {
	parsed, err := url.Parse(u)
	if err != nil || parsed.Host == "" {
		return nil, fmt.Errorf("invalid peer URL %q", u)
	}
	creds := insecure.NewCredentials()
	switch parsed.Scheme {
	case "http":
	case "https":
		if tlsCfg == nil {
			return nil, fmt.Errorf("peer URL %s is https but this member has no peer TLS set-up: give it --peer-cert-file and --peer-key-file (or --peer-auto-tls)", u)
		}
		creds = credentials.NewTLS(tlsCfg(parsed.Hostname()))
		if last != nil {
			creds = recordingCreds{creds, last}
		}
	default:
		return nil, fmt.Errorf("peer URL %s: unsupported scheme %q (want http or https)", u, parsed.Scheme)
	}
	return grpc.NewClient("passthrough:///"+parsed.Host,
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{}), grpc.MaxCallRecvMsgSize(maxMsgBytes), grpc.MaxCallSendMsgSize(maxMsgBytes)),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: minBackoff, Multiplier: 1.6, Jitter: 0.2, MaxDelay: maxBackoff},
			MinConnectTimeout: dialTimeout,
		}),
		// 10s is the shortest interval gRPC allows a client; the receiver
		// pings every second, which keeps a healthy connection from pinging.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 2 * time.Second}),
	)
}

// lastHandshake keeps the error of the last failed TLS handshake of a
// peer's connections: gRPC reports it to the caller only as text, and
// naming the cause needs the error itself.
type lastHandshake struct{ err atomic.Pointer[error] }

// take returns the error recorded since the last take, nil if none.
func (l *lastHandshake) take() error {
	if p := l.err.Swap(nil); p != nil {
		return *p
	}
	return nil
}

// recordingCreds records the client handshake errors of its credentials.
type recordingCreds struct {
	credentials.TransportCredentials
	last *lastHandshake
}

func (c recordingCreds) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	nc, info, err := c.TransportCredentials.ClientHandshake(ctx, authority, conn)
	if err != nil {
		c.last.err.Store(&err)
	}
	return nc, info, err
}

func (c recordingCreds) Clone() credentials.TransportCredentials {
	return recordingCreds{c.TransportCredentials.Clone(), c.last}
}

func (t *Transport) peer(id uint64) *peer {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.peers[id]
}

// outgoing adds the peer metadata for a call to member to.
func (t *Transport) outgoing(ctx context.Context, to uint64) context.Context {
	return metadata.AppendToOutgoingContext(ctx,
		MDClusterID, hexID(t.cfg.ClusterID), MDFrom, hexID(t.cfg.ID), MDTo, hexID(to))
}

// refusal inspects the error of an RPC to peer to: a refusal because this
// member was removed triggers OnRemoved; a cluster ID mismatch is returned
// as an error that matches ErrClusterIDMismatch and keeps the peer's status.
func (t *Transport) refusal(to uint64, err error) error {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.FailedPrecondition {
		return err
	}
	switch {
	case st.Message() == status.Convert(ErrMemberRemoved).Message():
		t.removed.Do(func() {
			t.lg.Warn("a peer says this member was removed from the cluster", t.localField(), idField("remote-peer-id", to))
			if t.cfg.OnRemoved != nil {
				go t.cfg.OnRemoved()
			}
		})
		return ErrMemberRemoved
	case strings.HasPrefix(st.Message(), status.Convert(ErrClusterIDMismatch).Message()):
		return &mismatchError{st}
	}
	return err
}

// mismatchError is the refusal of a peer of another cluster.
type mismatchError struct{ st *status.Status }

func (e *mismatchError) Error() string              { return e.st.Err().Error() }
func (e *mismatchError) GRPCStatus() *status.Status { return e.st }
func (e *mismatchError) Is(target error) bool       { return target == ErrClusterIDMismatch }

// explainDial names the cause of a failure to dial url, "" if unknown.
func (t *Transport) explainDial(url string, err error) string {
	if t.cfg.ExplainDialError == nil || url == "" {
		return ""
	}
	return t.cfg.ExplainDialError(url, err)
}

func (t *Transport) localField() zap.Field { return idField("local-member-id", t.cfg.ID) }

func idField(key string, id uint64) zap.Field { return zap.String(key, hexID(id)) }

func hexID(id uint64) string { return strconv.FormatUint(id, 16) }
