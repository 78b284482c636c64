package compat

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// The RBAC matrix: the same users, roles and calls on real etcd and on keel,
// every call's outcome (gRPC code and message, or the response's shape)
// recorded and compared step by step.
//
//	go test -run TestRBAC -count=1 .             # etcd, then keel, compared
//	go test -run TestRBAC -count=1 -rbac=etcd .  # etcd only, its record logged

var flagRBAC = flag.String("rbac", "both",
	"sides of TestRBAC: both (etcd then keel, compared) or etcd (record etcd only)")

// rbacPassword is every matrix user's password.
const rbacPassword = "pw"

// permShape is one of the permission shapes a role can hold, with keys
// inside and outside it.
type permShape struct {
	name string
	// key, end: the permission as granted (end "" for a single key).
	key, end string
	// in is a key inside the permission; inKey, inEnd a range inside it
	// (the whole permission); over a range that covers it and more.
	in               string
	inKey, inEnd     string
	overKey, overEnd string
}

var permShapes = []permShape{
	{name: "key", key: "key/k", in: "key/k", inKey: "key/k", overKey: "key/", overEnd: "key0"},
	{name: "range", key: "range/b", end: "range/d", in: "range/c", inKey: "range/b", inEnd: "range/d", overKey: "range/a", overEnd: "range/d"},
	{name: "prefix", key: "prefix/", end: "prefix0", in: "prefix/x", inKey: "prefix/", inEnd: "prefix0", overKey: "prefix", overEnd: "prefix0"},
}

var permTypes = []struct {
	name string
	typ  authpb.Permission_Type
	read bool
	wr   bool
}{
	{"read", authpb.READ, true, false},
	{"write", authpb.WRITE, false, true},
	{"readwrite", authpb.READWRITE, true, true},
}

// outKey is outside every permission.
const outKey = "other"

// rbacCall is one step of the matrix.
type rbacCall struct {
	name string
	// as is the user whose client makes the call: a matrix user, "root",
	// "" (no token), or badToken (a made-up token on a client without one).
	as string
	do func(ctx context.Context, c *rbacConn) (proto.Message, error)
	// shape summarises a successful response; nil: the response as text,
	// without header.
	shape func(proto.Message) string
}

// badToken and bare name the clients without the official client's login:
// one sends a made-up token, the other nothing of its own (its calls add
// the token they test).
const (
	badToken = "!badtoken"
	bare     = "!bare"
)

// rbacConn is one user's connection: the official client (nil for the bad
// token), and the raw services over its connection, which carries the
// client's token.
type rbacConn struct {
	cli   *clientv3.Client
	kv    pb.KVClient
	watch pb.WatchClient
	lease pb.LeaseClient
	clus  pb.ClusterClient
	maint pb.MaintenanceClient
	auth  pb.AuthClient
	token string // sent as metadata when set (the bad-token client)
}

func (c *rbacConn) ctx(ctx context.Context) context.Context {
	if c.token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "token", c.token)
}

// rbacSide is one server under the matrix.
type rbacSide struct {
	t        *testing.T
	name     string
	endpoint string
	conns    map[string]*rbacConn
}

func (s *rbacSide) conn(user string) *rbacConn {
	if c, ok := s.conns[user]; ok {
		return c
	}
	var conn *grpc.ClientConn
	var c *rbacConn
	if user == badToken || user == bare {
		// A bare connection: the official client would retry an invalid
		// token for seconds before giving up with the same error.
		var err error
		conn, err = grpc.NewClient(s.endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			s.t.Fatalf("%s: connection: %v", s.name, err)
		}
		s.t.Cleanup(func() { _ = conn.Close() })
		c = &rbacConn{}
		if user == badToken {
			c.token = "bad-token-for-rbac-matrix"
		}
	} else {
		cfg := clientv3.Config{Endpoints: []string{s.endpoint}, DialTimeout: startTimeout, Logger: zap.NewNop()}
		if user != "" {
			cfg.Username, cfg.Password = user, rbacPassword
		}
		cli, err := clientv3.New(cfg)
		if err != nil {
			s.t.Fatalf("%s: client for %q: %v", s.name, user, err)
		}
		s.t.Cleanup(func() { _ = cli.Close() })
		conn = cli.ActiveConnection()
		c = &rbacConn{cli: cli}
	}
	c.kv, c.watch, c.lease = pb.NewKVClient(conn), pb.NewWatchClient(conn), pb.NewLeaseClient(conn)
	c.clus, c.maint, c.auth = pb.NewClusterClient(conn), pb.NewMaintenanceClient(conn), pb.NewAuthClient(conn)
	s.conns[user] = c
	return c
}

// run makes every call in order and returns one line per call.
func (s *rbacSide) run(calls []rbacCall) []string {
	out := make([]string, 0, len(calls))
	for _, c := range calls {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		resp, err := c.do(ctx, s.conn(c.as))
		cancel()
		out = append(out, c.name+": "+outcome(c, resp, err))
	}
	return out
}

func outcome(c rbacCall, resp proto.Message, err error) string {
	if err != nil {
		st, _ := status.FromError(err)
		return fmt.Sprintf("error %s %q", st.Code(), st.Message())
	}
	if c.shape != nil {
		return "ok " + c.shape(resp)
	}
	return "ok " + noHeader(resp)
}

// noHeader is the response as one line of text, without its header.
func noHeader(m proto.Message) string {
	if m == nil {
		return "<nil>"
	}
	m = proto.Clone(m)
	fd := m.ProtoReflect().Descriptor().Fields().ByName("header")
	if fd != nil {
		m.ProtoReflect().Clear(fd)
	}
	b, err := prototext.MarshalOptions{}.Marshal(m)
	if err != nil {
		return err.Error()
	}
	return strings.Join(strings.Fields(string(b)), " ")
}

func okOnly(proto.Message) string { return "" }

func TestRBAC(t *testing.T) {
	etcdSide := startRBACSide(t, "etcd", startEtcd(t, "etcd").endpoint)
	calls := rbacMatrix(t, etcdSide.memberID())
	ref := etcdSide.run(calls)
	if *flagRBAC == "etcd" {
		t.Logf("etcd's record:\n%s", strings.Join(ref, "\n"))
		return
	}
	keelSide := startRBACSide(t, "keel", startKeel(t, "keel").endpoint)
	got := keelSide.run(rbacMatrix(t, keelSide.memberID()))
	compareRBAC(t, calls, ref, got)
}

// compareRBAC fails the test for every call whose record differs from
// etcd's.
func compareRBAC(t *testing.T, calls []rbacCall, ref, got []string) {
	t.Helper()
	for i := range calls {
		if ref[i] != got[i] {
			t.Errorf("call %d differs:\n etcd: %s\n keel: %s", i, ref[i], got[i])
		}
	}
}

// startRBACSide creates the matrix's users and roles on a fresh server,
// seeds its keys and enables auth.
func startRBACSide(t *testing.T, name, endpoint string) *rbacSide {
	t.Helper()
	s := &rbacSide{t: t, name: name, endpoint: endpoint, conns: map[string]*rbacConn{}}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	a := s.conn("").cli
	must := func(what string, err error) {
		if err != nil {
			t.Fatalf("%s: set up %s: %v", name, what, err)
		}
	}
	_, err := a.UserAdd(ctx, "root", rbacPassword)
	must("root user", err)
	_, err = a.RoleAdd(ctx, "root")
	must("root role", err)
	_, err = a.UserGrantRole(ctx, "root", "root")
	must("root grant", err)
	for _, sh := range permShapes {
		for _, pt := range permTypes {
			user, role := rbacUser(sh, pt.name), "role-"+sh.name+"-"+pt.name
			_, err = a.UserAdd(ctx, user, rbacPassword)
			must(user, err)
			_, err = a.RoleAdd(ctx, role)
			must(role, err)
			_, err = a.RoleGrantPermission(ctx, role, sh.key, sh.end, clientv3.PermissionType(pt.typ))
			must(role+" permission", err)
			_, err = a.UserGrantRole(ctx, user, role)
			must(user+" grant", err)
		}
		_, err = a.Put(ctx, sh.in, "seed")
		must("seed "+sh.in, err)
	}
	_, err = a.Put(ctx, outKey, "seed")
	must("seed "+outKey, err)
	_, err = a.AuthEnable(ctx)
	must("auth enable", err)
	return s
}

func rbacUser(sh permShape, typ string) string { return "user-" + sh.name + "-" + typ }

// memberID is the server's own member ID, for calls that name it.
func (s *rbacSide) memberID() uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	resp, err := s.conn("root").clus.MemberList(ctx, &pb.MemberListRequest{})
	if err != nil || len(resp.Members) != 1 {
		s.t.Fatalf("%s: member list: %v %v", s.name, resp, err)
	}
	return resp.Members[0].ID
}

// rbacMatrix is every call of the matrix, in order. self is the server's
// member ID.
func rbacMatrix(t *testing.T, self uint64) []rbacCall {
	var calls []rbacCall
	for _, sh := range permShapes {
		for i, pt := range permTypes {
			calls = append(calls, userCalls(sh, rbacUser(sh, pt.name), int64(len(calls)*10+i+1000))...)
		}
	}
	calls = append(calls, identityCalls("")...)
	calls = append(calls, identityCalls(badToken)...)
	learnerURL := localURLString(freePort(t))
	calls = append(calls, adminCalls("user-key-readwrite", self, learnerURL, false)...)
	calls = append(calls, adminCalls("root", self, learnerURL, true)...)
	calls = append(calls, revocationCalls()...)
	return calls
}

func putOp(key string, prevKV bool, lease int64) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(key), Value: []byte("v"), PrevKv: prevKV, Lease: lease}}}
}

func rangeOp(key, end string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte(key), RangeEnd: []byte(end)}}}
}

func deleteOp(key, end string, prevKV bool) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte(key), RangeEnd: []byte(end), PrevKv: prevKV}}}
}

func txnOp(t *pb.TxnRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: t}}
}

func cmpExists(key, end string) *pb.Compare {
	return &pb.Compare{Key: []byte(key), RangeEnd: []byte(end), Target: pb.Compare_VERSION, Result: pb.Compare_GREATER, TargetUnion: &pb.Compare_Version{Version: 0}}
}

func rangeCall(name, as, key, end string) rbacCall {
	return rbacCall{name: name, as: as, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
		return c.kv.Range(c.ctx(ctx), &pb.RangeRequest{Key: []byte(key), RangeEnd: []byte(end)})
	}}
}

func putCall(name, as, key string, prevKV bool, lease int64) rbacCall {
	return rbacCall{name: name, as: as, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
		return c.kv.Put(c.ctx(ctx), &pb.PutRequest{Key: []byte(key), Value: []byte("v"), PrevKv: prevKV, Lease: lease})
	}}
}

func deleteCall(name, as, key, end string, prevKV bool) rbacCall {
	return rbacCall{name: name, as: as, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
		return c.kv.DeleteRange(c.ctx(ctx), &pb.DeleteRangeRequest{Key: []byte(key), RangeEnd: []byte(end), PrevKv: prevKV})
	}}
}

func txnCall(name, as string, r *pb.TxnRequest) rbacCall {
	return rbacCall{name: name, as: as, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
		return c.kv.Txn(c.ctx(ctx), r)
	}}
}

// userCalls are the KV, watch and lease calls of one matrix user, inside,
// across and outside the user's permission. lease is a lease ID for the
// user's own calls (lease, lease+1 and lease+2 are used).
func userCalls(sh permShape, u string, lease int64) []rbacCall {
	p := func(s string) string { return u + "/" + s }
	keyLease, outLease, ownLease := lease, lease+1, lease+2
	calls := []rbacCall{
		// Range and RangeStream.
		rangeCall(p("Range in"), u, sh.in, ""),
		rangeCall(p("Range whole permission"), u, sh.inKey, sh.inEnd),
		rangeCall(p("Range over"), u, sh.overKey, sh.overEnd),
		rangeCall(p("Range out"), u, outKey, ""),
		{name: p("Range serializable in"), as: u, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
			return c.kv.Range(c.ctx(ctx), &pb.RangeRequest{Key: []byte(sh.in), Serializable: true})
		}},
		rangeStreamCall(p("RangeStream in"), u, sh.in),
		rangeStreamCall(p("RangeStream out"), u, outKey),

		// Watch.
		watchCall(p("Watch in"), u, sh.in, ""),
		watchCall(p("Watch whole permission"), u, sh.inKey, sh.inEnd),
		watchCall(p("Watch over"), u, sh.overKey, sh.overEnd),
		watchCall(p("Watch out"), u, outKey, ""),

		// Leases: root attaches the user's key to one lease and an outside
		// key to another; the user's own lease has no keys.
		putCall(p("root attaches in to lease"), "root", sh.in, false, 0),
		leaseGrantCall(p("root LeaseGrant key lease"), "root", keyLease),
		leaseGrantCall(p("root LeaseGrant out lease"), "root", outLease),
		putCall(p("root Put in with lease"), "root", sh.in, false, keyLease),
		putCall(p("root Put out with lease"), "root", outKey+"/"+u, false, outLease),
		leaseGrantCall(p("LeaseGrant own"), u, ownLease),
		leaseTTLCall(p("LeaseTimeToLive key lease with keys"), u, keyLease, true),
		leaseTTLCall(p("LeaseTimeToLive key lease without keys"), u, keyLease, false),
		leaseTTLCall(p("LeaseTimeToLive out lease with keys"), u, outLease, true),
		leaseTTLCall(p("LeaseTimeToLive out lease without keys"), u, outLease, false),
		leaseTTLCall(p("LeaseTimeToLive unknown lease with keys"), u, 999999, true),
		{name: p("LeaseLeases"), as: u, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
			return c.lease.LeaseLeases(c.ctx(ctx), &pb.LeaseLeasesRequest{})
		}, shape: leaseCount},
		keepAliveCall(p("LeaseKeepAlive key lease"), u, keyLease),
		keepAliveCall(p("LeaseKeepAlive out lease"), u, outLease),
		keepAliveCall(p("LeaseKeepAlive own lease"), u, ownLease),
		putCall(p("Put in with out lease"), u, sh.in, false, outLease),
		putCall(p("Put in with own lease"), u, sh.in, false, ownLease),
		leaseRevokeCall(p("LeaseRevoke out lease"), u, outLease),
		leaseRevokeCall(p("LeaseRevoke key lease"), u, keyLease),
		leaseRevokeCall(p("LeaseRevoke own lease"), u, ownLease),
		leaseRevokeCall(p("root LeaseRevoke out lease"), "root", outLease),
		leaseRevokeCall(p("root LeaseRevoke key lease"), "root", keyLease),
		putCall(p("root Put in after leases"), "root", sh.in, false, 0),

		// Put.
		putCall(p("Put in"), u, sh.in, false, 0),
		putCall(p("Put in prev_kv"), u, sh.in, true, 0),
		putCall(p("Put out"), u, outKey, false, 0),

		// Txn: compares need read, every op of both branches its own
		// permission, nested txns included.
		txnCall(p("Txn read-only in"), u, &pb.TxnRequest{
			Compare: []*pb.Compare{cmpExists(sh.in, "")},
			Success: []*pb.RequestOp{rangeOp(sh.inKey, sh.inEnd)},
			Failure: []*pb.RequestOp{rangeOp(sh.in, "")},
		}),
		txnCall(p("Txn read-only failure branch out"), u, &pb.TxnRequest{
			Success: []*pb.RequestOp{rangeOp(sh.in, "")},
			Failure: []*pb.RequestOp{rangeOp(outKey, "")},
		}),
		txnCall(p("Txn compare in put in"), u, &pb.TxnRequest{
			Compare: []*pb.Compare{cmpExists(sh.in, "")},
			Success: []*pb.RequestOp{putOp(sh.in, false, 0)},
			Failure: []*pb.RequestOp{rangeOp(sh.in, "")},
		}),
		txnCall(p("Txn put only in"), u, &pb.TxnRequest{
			Success: []*pb.RequestOp{putOp(sh.in, false, 0)},
		}),
		txnCall(p("Txn compare out"), u, &pb.TxnRequest{
			Compare: []*pb.Compare{cmpExists(outKey, "")},
			Success: []*pb.RequestOp{putOp(sh.in, false, 0)},
		}),
		txnCall(p("Txn compare over"), u, &pb.TxnRequest{
			Compare: []*pb.Compare{cmpExists(sh.overKey, sh.overEnd)},
		}),
		txnCall(p("Txn failure branch put out"), u, &pb.TxnRequest{
			Success: []*pb.RequestOp{putOp(sh.in, false, 0)},
			Failure: []*pb.RequestOp{putOp(outKey, false, 0)},
		}),
		txnCall(p("Txn put in prev_kv"), u, &pb.TxnRequest{
			Success: []*pb.RequestOp{putOp(sh.in, true, 0)},
		}),
		txnCall(p("Txn nested delete in prev_kv"), u, &pb.TxnRequest{
			Success: []*pb.RequestOp{txnOp(&pb.TxnRequest{
				Compare: []*pb.Compare{cmpExists(sh.in, "")},
				Success: []*pb.RequestOp{deleteOp(sh.in, "", true)},
			})},
		}),
		txnCall(p("Txn nested failure branch range out"), u, &pb.TxnRequest{
			Success: []*pb.RequestOp{txnOp(&pb.TxnRequest{
				Success: []*pb.RequestOp{putOp(sh.in, false, 0)},
				Failure: []*pb.RequestOp{rangeOp(outKey, "")},
			})},
		}),
		txnCall(p("Txn delete whole permission"), u, &pb.TxnRequest{
			Success: []*pb.RequestOp{deleteOp(sh.inKey, sh.inEnd, false)},
		}),
		txnCall(p("Txn delete over"), u, &pb.TxnRequest{
			Failure: []*pb.RequestOp{deleteOp(sh.overKey, sh.overEnd, false)},
		}),
		txnCall(p("Txn put in with key lease"), u, &pb.TxnRequest{
			Success: []*pb.RequestOp{putOp(sh.in, false, keyLease)},
		}),

		// DeleteRange.
		putCall(p("root Put in"), "root", sh.in, false, 0),
		deleteCall(p("DeleteRange in prev_kv"), u, sh.in, "", true),
		deleteCall(p("DeleteRange in"), u, sh.in, "", false),
		deleteCall(p("DeleteRange whole permission"), u, sh.inKey, sh.inEnd, false),
		deleteCall(p("DeleteRange over"), u, sh.overKey, sh.overEnd, false),
		deleteCall(p("DeleteRange out"), u, outKey, "", false),
		putCall(p("root Put in again"), "root", sh.in, false, 0),
	}
	return calls
}

func rangeStreamCall(name, as, key string) rbacCall {
	return rbacCall{name: name, as: as, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
		st, err := c.kv.RangeStream(c.ctx(ctx), &pb.RangeRequest{Key: []byte(key)})
		if err != nil {
			return nil, err
		}
		var last *pb.RangeStreamResponse
		for range 1000 {
			r, err := st.Recv()
			if errors.Is(err, io.EOF) {
				return last, nil
			}
			if err != nil {
				return nil, err
			}
			last = r
		}
		return nil, errors.New("range stream does not end")
	}, shape: func(m proto.Message) string {
		return noHeader(m.(*pb.RangeStreamResponse).RangeResponse)
	}}
}

// watchCall opens a watch stream, creates one watcher and records the first
// response: created, or created and cancelled with etcd's reason.
func watchCall(name, as, key, end string) rbacCall {
	return rbacCall{name: name, as: as, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		ws, err := c.watch.Watch(c.ctx(ctx))
		if err != nil {
			return nil, err
		}
		req := &pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: []byte(key), RangeEnd: []byte(end)}}}
		if err := ws.Send(req); err != nil {
			return nil, err
		}
		return ws.Recv()
	}}
}

func leaseGrantCall(name, as string, id int64) rbacCall {
	return rbacCall{name: name, as: as, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
		return c.lease.LeaseGrant(c.ctx(ctx), &pb.LeaseGrantRequest{ID: id, TTL: 600})
	}}
}

func leaseRevokeCall(name, as string, id int64) rbacCall {
	return rbacCall{name: name, as: as, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
		return c.lease.LeaseRevoke(c.ctx(ctx), &pb.LeaseRevokeRequest{ID: id})
	}}
}

func leaseTTLCall(name, as string, id int64, keys bool) rbacCall {
	return rbacCall{name: name, as: as, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
		return c.lease.LeaseTimeToLive(c.ctx(ctx), &pb.LeaseTimeToLiveRequest{ID: id, Keys: keys})
	}, shape: func(m proto.Message) string {
		r := m.(*pb.LeaseTimeToLiveResponse)
		var keys []string
		for _, k := range r.Keys {
			keys = append(keys, string(k))
		}
		// The remaining TTL depends on timing; only its sign is compared.
		return fmt.Sprintf("id=%d granted=%d live=%v keys=%q", r.ID, r.GrantedTTL, r.TTL > 0, keys)
	}}
}

func leaseCount(m proto.Message) string {
	return fmt.Sprint(len(m.(*pb.LeaseLeasesResponse).Leases), " leases")
}

func keepAliveCall(name, as string, id int64) rbacCall {
	return rbacCall{name: name, as: as, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		ka, err := c.lease.LeaseKeepAlive(c.ctx(ctx))
		if err != nil {
			return nil, err
		}
		if err := ka.Send(&pb.LeaseKeepAliveRequest{ID: id}); err != nil {
			return nil, err
		}
		return ka.Recv()
	}}
}

// identityCalls are one call of every service as a client without a token
// (as "") or with an invalid one (as badToken).
func identityCalls(as string) []rbacCall {
	who := map[string]string{"": "no token", badToken: "bad token"}[as]
	p := func(s string) string { return who + "/" + s }
	calls := []rbacCall{
		rangeCall(p("Range"), as, outKey, ""),
		rangeStreamCall(p("RangeStream"), as, outKey),
		putCall(p("Put"), as, outKey, false, 0),
		deleteCall(p("DeleteRange"), as, outKey, "", false),
		txnCall(p("Txn read-only"), as, &pb.TxnRequest{Success: []*pb.RequestOp{rangeOp(outKey, "")}}),
		txnCall(p("Txn write"), as, &pb.TxnRequest{Success: []*pb.RequestOp{putOp(outKey, false, 0)}}),
		watchCall(p("Watch"), as, outKey, ""),
		leaseGrantCall(p("LeaseGrant"), as, 500),
		leaseRevokeCall(p("LeaseRevoke"), as, 500),
		leaseTTLCall(p("LeaseTimeToLive"), as, 500, false),
		leaseTTLCall(p("LeaseTimeToLive with keys"), as, 500, true),
		{name: p("LeaseLeases"), as: as, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
			return c.lease.LeaseLeases(c.ctx(ctx), &pb.LeaseLeasesRequest{})
		}, shape: leaseCount},
		keepAliveCall(p("LeaseKeepAlive"), as, 500),
		{name: p("AuthStatus"), as: as, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
			return c.auth.AuthStatus(c.ctx(ctx), &pb.AuthStatusRequest{})
		}},
		{name: p("MemberList"), as: as, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
			return c.clus.MemberList(c.ctx(ctx), &pb.MemberListRequest{})
		}, shape: okOnly},
		{name: p("MemberRemove"), as: as, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
			return c.clus.MemberRemove(c.ctx(ctx), &pb.MemberRemoveRequest{ID: 4242})
		}},
		{name: p("Status"), as: as, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
			return c.maint.Status(c.ctx(ctx), &pb.StatusRequest{})
		}, shape: okOnly},
		{name: p("Alarm get"), as: as, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
			return c.maint.Alarm(c.ctx(ctx), &pb.AlarmRequest{Action: pb.AlarmRequest_GET})
		}},
		{name: p("Hash"), as: as, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
			return c.maint.Hash(c.ctx(ctx), &pb.HashRequest{})
		}, shape: okOnly},
		{name: p("Compact"), as: as, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
			return c.kv.Compact(c.ctx(ctx), &pb.CompactionRequest{Revision: 1})
		}},
		{name: p("Authenticate wrong password"), as: as, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
			return c.auth.Authenticate(c.ctx(ctx), &pb.AuthenticateRequest{Name: "root", Password: "wrong"})
		}},
		{name: p("UserGet root"), as: as, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
			return c.auth.UserGet(c.ctx(ctx), &pb.AuthUserGetRequest{Name: "root"})
		}},
	}
	return calls
}

// adminCalls are the calls that need the root role (Cluster changes,
// Maintenance, Compact, auth management), made as user, and the calls of the
// same services that need only a user. root tells whether user has the root
// role: it then runs the changes for real (a learner added and removed).
func adminCalls(user string, self uint64, learnerURL string, root bool) []rbacCall {
	p := func(s string) string { return user + "/" + s }
	var learner uint64 // the learner root adds, for the later changes
	memberShape := func(m proto.Message) string {
		var n int
		switch r := m.(type) {
		case *pb.MemberAddResponse:
			if r.Member != nil {
				learner = r.Member.ID
			}
			n = len(r.Members)
		case *pb.MemberRemoveResponse:
			n = len(r.Members)
		case *pb.MemberUpdateResponse:
			n = len(r.Members)
		case *pb.MemberPromoteResponse:
			n = len(r.Members)
		case *pb.MemberListResponse:
			n = len(r.Members)
		}
		return fmt.Sprint(n, " members")
	}
	target := func() uint64 {
		if learner != 0 {
			return learner
		}
		return 4242
	}
	calls := []rbacCall{
		{name: p("MemberList"), as: user, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
			return c.clus.MemberList(c.ctx(ctx), &pb.MemberListRequest{})
		}, shape: memberShape},
		{name: p("MemberAdd learner"), as: user, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
			return c.clus.MemberAdd(c.ctx(ctx), &pb.MemberAddRequest{PeerURLs: []string{learnerURL}, IsLearner: true})
		}, shape: memberShape},
		{name: p("MemberUpdate learner"), as: user, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
			return c.clus.MemberUpdate(c.ctx(ctx), &pb.MemberUpdateRequest{ID: target(), PeerURLs: []string{learnerURL}})
		}, shape: memberShape},
		{name: p("MemberPromote learner"), as: user, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
			return c.clus.MemberPromote(c.ctx(ctx), &pb.MemberPromoteRequest{ID: target()})
		}, shape: memberShape},
		{name: p("MemberRemove learner"), as: user, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
			return c.clus.MemberRemove(c.ctx(ctx), &pb.MemberRemoveRequest{ID: target()})
		}, shape: memberShape},
		{name: p("Alarm get"), as: user, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
			return c.maint.Alarm(c.ctx(ctx), &pb.AlarmRequest{Action: pb.AlarmRequest_GET})
		}},
		{name: p("Alarm deactivate"), as: user, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
			return c.maint.Alarm(c.ctx(ctx), &pb.AlarmRequest{Action: pb.AlarmRequest_DEACTIVATE, MemberID: self, Alarm: pb.AlarmType_NOSPACE})
		}},
		{name: p("Status"), as: user, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
			return c.maint.Status(c.ctx(ctx), &pb.StatusRequest{})
		}, shape: okOnly},
		{name: p("Hash"), as: user, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
			return c.maint.Hash(c.ctx(ctx), &pb.HashRequest{})
		}, shape: okOnly},
		{name: p("HashKV"), as: user, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
			return c.maint.HashKV(c.ctx(ctx), &pb.HashKVRequest{})
		}, shape: okOnly},
		{name: p("MoveLeader to self"), as: user, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
			return c.maint.MoveLeader(c.ctx(ctx), &pb.MoveLeaderRequest{TargetID: self})
		}},
		{name: p("Defragment"), as: user, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
			return c.maint.Defragment(c.ctx(ctx), &pb.DefragmentRequest{})
		}},
		{name: p("Snapshot"), as: user, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			st, err := c.maint.Snapshot(c.ctx(ctx), &pb.SnapshotRequest{})
			if err != nil {
				return nil, err
			}
			return st.Recv()
		}, shape: okOnly},
		{name: p("Compact"), as: user, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
			return c.kv.Compact(c.ctx(ctx), &pb.CompactionRequest{Revision: 2})
		}},
	}
	calls = append(calls, authManagementCalls(user, root)...)
	return calls
}

// authManagementCalls are the Auth service's calls as user; with root, the
// changes are made on a scratch user and role.
func authManagementCalls(user string, root bool) []rbacCall {
	p := func(s string) string { return user + "/" + s }
	a := func(name string, do func(ctx context.Context, c pb.AuthClient) (proto.Message, error)) rbacCall {
		return rbacCall{name: p(name), as: user, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
			return do(c.ctx(ctx), c.auth)
		}}
	}
	_ = root
	return []rbacCall{
		a("AuthStatus", func(ctx context.Context, c pb.AuthClient) (proto.Message, error) {
			return c.AuthStatus(ctx, &pb.AuthStatusRequest{})
		}),
		a("UserGet self", func(ctx context.Context, c pb.AuthClient) (proto.Message, error) {
			return c.UserGet(ctx, &pb.AuthUserGetRequest{Name: user})
		}),
		a("UserGet other", func(ctx context.Context, c pb.AuthClient) (proto.Message, error) {
			return c.UserGet(ctx, &pb.AuthUserGetRequest{Name: "user-prefix-read"})
		}),
		a("RoleGet own", func(ctx context.Context, c pb.AuthClient) (proto.Message, error) {
			return c.RoleGet(ctx, &pb.AuthRoleGetRequest{Role: "role-key-readwrite"})
		}),
		a("RoleGet other", func(ctx context.Context, c pb.AuthClient) (proto.Message, error) {
			return c.RoleGet(ctx, &pb.AuthRoleGetRequest{Role: "role-prefix-read"})
		}),
		a("UserList", func(ctx context.Context, c pb.AuthClient) (proto.Message, error) {
			return c.UserList(ctx, &pb.AuthUserListRequest{})
		}),
		a("RoleList", func(ctx context.Context, c pb.AuthClient) (proto.Message, error) {
			return c.RoleList(ctx, &pb.AuthRoleListRequest{})
		}),
		a("UserAdd scratch", func(ctx context.Context, c pb.AuthClient) (proto.Message, error) {
			return c.UserAdd(ctx, &pb.AuthUserAddRequest{Name: "scratch", Password: "x"})
		}),
		a("RoleAdd scratch", func(ctx context.Context, c pb.AuthClient) (proto.Message, error) {
			return c.RoleAdd(ctx, &pb.AuthRoleAddRequest{Name: "scratch"})
		}),
		a("RoleGrantPermission scratch", func(ctx context.Context, c pb.AuthClient) (proto.Message, error) {
			return c.RoleGrantPermission(ctx, &pb.AuthRoleGrantPermissionRequest{Name: "scratch", Perm: &authpb.Permission{PermType: authpb.READ, Key: []byte("s")}})
		}),
		a("UserGrantRole scratch", func(ctx context.Context, c pb.AuthClient) (proto.Message, error) {
			return c.UserGrantRole(ctx, &pb.AuthUserGrantRoleRequest{User: "scratch", Role: "scratch"})
		}),
		a("UserRevokeRole scratch", func(ctx context.Context, c pb.AuthClient) (proto.Message, error) {
			return c.UserRevokeRole(ctx, &pb.AuthUserRevokeRoleRequest{Name: "scratch", Role: "scratch"})
		}),
		a("RoleRevokePermission scratch", func(ctx context.Context, c pb.AuthClient) (proto.Message, error) {
			return c.RoleRevokePermission(ctx, &pb.AuthRoleRevokePermissionRequest{Role: "scratch", Key: []byte("s")})
		}),
		a("UserChangePassword self", func(ctx context.Context, c pb.AuthClient) (proto.Message, error) {
			return c.UserChangePassword(ctx, &pb.AuthUserChangePasswordRequest{Name: user, Password: rbacPassword})
		}),
		a("RoleDelete scratch", func(ctx context.Context, c pb.AuthClient) (proto.Message, error) {
			return c.RoleDelete(ctx, &pb.AuthRoleDeleteRequest{Role: "scratch"})
		}),
		a("UserDelete scratch", func(ctx context.Context, c pb.AuthClient) (proto.Message, error) {
			return c.UserDelete(ctx, &pb.AuthUserDeleteRequest{Name: "scratch"})
		}),
		a("AuthDisable", func(ctx context.Context, c pb.AuthClient) (proto.Message, error) {
			if root {
				// Root keeps auth on for the calls that follow.
				return c.AuthStatus(ctx, &pb.AuthStatusRequest{})
			}
			return c.AuthDisable(ctx, &pb.AuthDisableRequest{})
		}),
	}
}

// revocationCalls change users' permissions while they hold tokens: the
// next calls must see the change.
func revocationCalls() []rbacCall {
	root := func(name string, do func(ctx context.Context, c pb.AuthClient) (proto.Message, error)) rbacCall {
		return rbacCall{name: "revocation/root " + name, as: "root", do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
			return do(ctx, c.auth)
		}}
	}
	u := "user-key-readwrite"
	return []rbacCall{
		rangeCall("revocation/before: Range", u, "key/k", ""),
		putCall("revocation/before: Put", u, "key/k", false, 0),
		root("RoleRevokePermission key", func(ctx context.Context, c pb.AuthClient) (proto.Message, error) {
			return c.RoleRevokePermission(ctx, &pb.AuthRoleRevokePermissionRequest{Role: "role-key-readwrite", Key: []byte("key/k")})
		}),
		rangeCall("revocation/after revoke: Range", u, "key/k", ""),
		putCall("revocation/after revoke: Put", u, "key/k", false, 0),
		watchCall("revocation/after revoke: Watch", u, "key/k", ""),
		root("RoleGrantPermission key read", func(ctx context.Context, c pb.AuthClient) (proto.Message, error) {
			return c.RoleGrantPermission(ctx, &pb.AuthRoleGrantPermissionRequest{Name: "role-key-readwrite", Perm: &authpb.Permission{PermType: authpb.READ, Key: []byte("key/k")}})
		}),
		rangeCall("revocation/after regrant read: Range", u, "key/k", ""),
		putCall("revocation/after regrant read: Put", u, "key/k", false, 0),
		root("UserRevokeRole", func(ctx context.Context, c pb.AuthClient) (proto.Message, error) {
			return c.UserRevokeRole(ctx, &pb.AuthUserRevokeRoleRequest{Name: u, Role: "role-key-readwrite"})
		}),
		rangeCall("revocation/after role revoked: Range", u, "key/k", ""),
		root("RoleDelete prefix-readwrite", func(ctx context.Context, c pb.AuthClient) (proto.Message, error) {
			return c.RoleDelete(ctx, &pb.AuthRoleDeleteRequest{Role: "role-prefix-readwrite"})
		}),
		rangeCall("revocation/after role deleted: Range", "user-prefix-readwrite", "prefix/x", ""),
		root("UserChangePassword range-read", func(ctx context.Context, c pb.AuthClient) (proto.Message, error) {
			return c.UserChangePassword(ctx, &pb.AuthUserChangePasswordRequest{Name: "user-range-read", Password: "new"})
		}),
		rangeCall("revocation/after password change: Range", "user-range-read", "range/c", ""),
		root("UserDelete range-write", func(ctx context.Context, c pb.AuthClient) (proto.Message, error) {
			return c.UserDelete(ctx, &pb.AuthUserDeleteRequest{Name: "user-range-write"})
		}),
		putCall("revocation/after user deleted: Put", "user-range-write", "range/c", false, 0),
		root("UserGrantRole root to key-read", func(ctx context.Context, c pb.AuthClient) (proto.Message, error) {
			return c.UserGrantRole(ctx, &pb.AuthUserGrantRoleRequest{User: "user-key-read", Role: "root"})
		}),
		putCall("revocation/after root granted: Put out", "user-key-read", outKey, false, 0),
		{name: "revocation/after root granted: Compact", as: "user-key-read", do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
			return c.kv.Compact(ctx, &pb.CompactionRequest{Revision: 3})
		}},
	}
}

// TestRBACStaleToken runs, on etcd and keel with JWT tokens (which carry
// the auth revision they were issued at), every kind of call with a token
// issued before an auth change: what etcd refuses with "revision of auth
// store is old" and what it still serves.
//
//	go test -run TestRBACStaleToken -count=1 .
func TestRBACStaleToken(t *testing.T) {
	pub, priv := writeECKeyPair(t)
	jwt := "jwt,pub-key=" + pub + ",priv-key=" + priv + ",sign-method=ES256,ttl=10m"
	etcd := startEtcdWith(t, "etcd", func(cfg *embed.Config) { cfg.AuthToken = jwt })
	etcdSide := startRBACSide(t, "etcd", etcd.endpoint)
	calls := staleTokenCalls()
	ref := etcdSide.run(calls)
	if *flagRBAC == "etcd" {
		t.Logf("etcd's record:\n%s", strings.Join(ref, "\n"))
		return
	}
	cfg := keelConfig(t)
	cfg.AuthToken = jwt
	keelSide := startRBACSide(t, "keel", startKeelConfig(t, "keel", cfg).endpoint)
	compareRBAC(t, calls, ref, keelSide.run(staleTokenCalls()))
}

// staleTokenCalls log user-key-readwrite in, make calls with its token, let
// root change a role, and make them again with the now stale token.
func staleTokenCalls() []rbacCall {
	const u = "user-key-readwrite"
	var token string
	withToken := func(c rbacCall) rbacCall {
		do := c.do
		c.as = bare
		c.do = func(ctx context.Context, rc *rbacConn) (proto.Message, error) {
			return do(metadata.AppendToOutgoingContext(ctx, "token", token), rc)
		}
		return c
	}
	// keyLease holds key/k when the lease calls run; grant is a new lease.
	tokenCalls := func(when string, grant, keyLease int64) []rbacCall {
		p := func(s string) string { return when + "/" + s }
		calls := []rbacCall{
			rangeCall(p("Range"), "", "key/k", ""),
			rangeStreamCall(p("RangeStream"), "", "key/k"),
			putCall(p("Put"), "", "key/k", false, 0),
			deleteCall(p("DeleteRange"), "", "key/k", "", false),
			txnCall(p("Txn read-only"), "", &pb.TxnRequest{Success: []*pb.RequestOp{rangeOp("key/k", "")}}),
			txnCall(p("Txn write"), "", &pb.TxnRequest{Success: []*pb.RequestOp{putOp("key/k", false, 0)}}),
			watchCall(p("Watch"), "", "key/k", ""),
			leaseGrantCall(p("LeaseGrant"), "", grant),
			putCall(p("Put with lease"), "", "key/k", false, grant),
			leaseTTLCall(p("LeaseTimeToLive with keys"), "", keyLease, true),
			{name: p("LeaseLeases"), do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
				return c.lease.LeaseLeases(ctx, &pb.LeaseLeasesRequest{})
			}, shape: leaseCount},
			keepAliveCall(p("LeaseKeepAlive"), "", keyLease),
			leaseRevokeCall(p("LeaseRevoke"), "", keyLease),
			{name: p("Status"), do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
				return c.maint.Status(ctx, &pb.StatusRequest{})
			}, shape: okOnly},
			{name: p("UserGet self"), do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
				return c.auth.UserGet(ctx, &pb.AuthUserGetRequest{Name: u})
			}},
		}
		for i := range calls {
			calls[i] = withToken(calls[i])
		}
		return calls
	}
	calls := []rbacCall{{name: "Authenticate " + u, as: bare, do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
		resp, err := c.auth.Authenticate(ctx, &pb.AuthenticateRequest{Name: u, Password: rbacPassword})
		if err == nil {
			token = resp.Token
		}
		return resp, err
	}, shape: okOnly}}
	calls = append(calls, tokenCalls("fresh token", 700, 700)...)
	calls = append(calls,
		rbacCall{name: "root RoleAdd", as: "root", do: func(ctx context.Context, c *rbacConn) (proto.Message, error) {
			return c.auth.RoleAdd(ctx, &pb.AuthRoleAddRequest{Name: "bump"})
		}},
		leaseGrantCall("root LeaseGrant", "root", 800),
		putCall("root Put with lease", "root", "key/k", false, 800),
	)
	return append(calls, tokenCalls("stale token", 701, 800)...)
}

// writeECKeyPair writes a new ECDSA P-256 key pair as PEM files for
// --auth-token jwt and returns their paths.
func writeECKeyPair(t *testing.T) (pub, priv string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pub, priv = filepath.Join(dir, "jwt.pub"), filepath.Join(dir, "jwt.key")
	for path, block := range map[string]*pem.Block{pub: {Type: "PUBLIC KEY", Bytes: pubDER}, priv: {Type: "EC PRIVATE KEY", Bytes: der}} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return pub, priv
}
