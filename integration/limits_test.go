package integration

import (
	"fmt"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
)

// grpcOverhead is the room etcd's gRPC server allows above
// --max-request-bytes before gRPC itself rejects a message.
const grpcOverhead = 512 * 1024

// TestRequestTooLargeFails covers --max-request-bytes: a request whose Raft
// proposal would exceed it fails with "request is too large", one beyond the
// gRPC receive limit is refused by gRPC with ResourceExhausted, and one a
// little under the limit passes.
func TestRequestTooLargeFails(t *testing.T) {
	t.Parallel()
	const limit = 16 * 1024
	m := startMember(t, withMaxRequestBytes(limit))
	// The client's own send limit (2 MiB by default) is not the subject here.
	cli := m.newClient(t, func(c *clientv3.Config) { c.MaxCallSendMsgSize = 8 << 20 })
	value := func(n int) string { return strings.Repeat("x", n) }

	if _, err := cli.Put(ctx(t), "k", value(limit-128)); err != nil {
		t.Fatalf("put just under the limit: %v", err)
	}
	tests := []struct {
		name string
		size int
	}{
		{"exactly the limit", limit},
		{"just over the limit", limit + 1},
		{"far over the limit but under the gRPC limit", limit + grpcOverhead/2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := cli.Put(ctx(t), "k", value(tt.size))
			wantErr(t, err, rpctypes.ErrGRPCRequestTooLarge)
		})
	}
	t.Run("txn over the limit", func(t *testing.T) {
		_, err := cli.Txn(ctx(t)).Then(clientv3.OpPut("a", value(limit/2)), clientv3.OpPut("b", value(limit/2))).Commit()
		wantErr(t, err, rpctypes.ErrGRPCRequestTooLarge)
	})
	t.Run("over the gRPC limit", func(t *testing.T) {
		_, err := cli.Put(ctx(t), "k", value(limit+grpcOverhead+1024))
		if code := errCode(err); code != codes.ResourceExhausted {
			t.Fatalf("got %v (code %v), want code ResourceExhausted", err, code)
		}
	})
	// Reads are not proposed, so --max-request-bytes does not bound them.
	t.Run("large range", func(t *testing.T) {
		if _, err := cli.Get(ctx(t), value(limit+1024)); err != nil {
			t.Fatalf("range with a key over the limit: %v", err)
		}
	})
	t.Run("large read-only txn", func(t *testing.T) {
		if _, err := cli.Txn(ctx(t)).If(clientv3.Compare(clientv3.Value("k"), "=", value(limit+1024))).Then(clientv3.OpGet("k")).Commit(); err != nil {
			t.Fatalf("read-only txn over the limit: %v", err)
		}
	})
	t.Run("large write txn that writes nothing", func(t *testing.T) {
		_, err := cli.Txn(ctx(t)).If(clientv3.Compare(clientv3.Value("k"), "=", value(limit+1024))).Then(clientv3.OpDelete("nothing")).Commit()
		wantErr(t, err, rpctypes.ErrGRPCRequestTooLarge)
	})
	if got := rev(t, cli); got != 2 {
		t.Fatalf("revision %d after refused requests, want 2", got)
	}
	wantKVs(t, get(t, cli, "k").Kvs, kv("k", value(limit-128), 2, 2, 1))
}

// TestDefaultMaxRequestBytes checks the default limit of 1.5 MiB.
func TestDefaultMaxRequestBytes(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	const limit = 1536 * 1024
	cli := m.newClient(t, func(c *clientv3.Config) { c.MaxCallSendMsgSize = 8 << 20 })
	if _, err := cli.Put(ctx(t), "k", strings.Repeat("x", limit-1024)); err != nil {
		t.Fatalf("put under the default limit: %v", err)
	}
	_, err := cli.Put(ctx(t), "k", strings.Repeat("x", limit+1))
	wantErr(t, err, rpctypes.ErrGRPCRequestTooLarge)
	resp := get(t, cli, "k")
	if len(resp.Kvs) != 1 || len(resp.Kvs[0].Value) != limit-1024 || resp.Kvs[0].ModRevision != 2 {
		t.Fatalf("the large value did not come back whole")
	}
}

// puts returns n puts of distinct keys (or of the same key when same).
func puts(n int, same bool) []clientv3.Op {
	ops := make([]clientv3.Op, n)
	for i := range ops {
		k := fmt.Sprintf("k%03d", i)
		if same {
			k = "k"
		}
		ops[i] = clientv3.OpPut(k, "v")
	}
	return ops
}

// cmps returns n compares that hold on a fresh member.
func cmps(n int) []clientv3.Cmp {
	out := make([]clientv3.Cmp, n)
	for i := range out {
		out[i] = clientv3.Compare(clientv3.Version(fmt.Sprintf("c%03d", i)), "=", 0)
	}
	return out
}

// TestTooManyTxnOpsFails covers --max-txn-ops: no list of a txn (compares,
// then, else) may be longer, and a nested txn gets what its parent's
// longest list left over. The size check comes before the duplicate check.
func TestTooManyTxnOpsFails(t *testing.T) {
	t.Parallel()
	type txnCase struct {
		name string
		cmps []clientv3.Cmp
		then []clientv3.Op
		els  []clientv3.Op
		fail bool
	}
	nested := func(then []clientv3.Op) clientv3.Op { return clientv3.OpTxn(nil, then, nil) }
	run := func(t *testing.T, cli *clientv3.Client, tests []txnCase) {
		t.Helper()
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := cli.Txn(ctx(t)).If(tt.cmps...).Then(tt.then...).Else(tt.els...).Commit()
				if !tt.fail {
					if err != nil {
						t.Fatalf("got %v, want no error", err)
					}
					return
				}
				wantErr(t, err, rpctypes.ErrGRPCTooManyOps)
			})
		}
	}
	t.Run("custom", func(t *testing.T) {
		t.Parallel()
		m := startMember(t, withMaxTxnOps(4))
		run(t, m.cli(), []txnCase{
			{name: "four puts", then: puts(4, false)},
			{name: "five puts", then: puts(5, false), fail: true},
			{name: "five puts in else", els: puts(5, false), fail: true},
			{name: "four compares", cmps: cmps(4), then: puts(4, false), els: puts(4, false)},
			{name: "five compares", cmps: cmps(5), fail: true},
			{name: "five puts of one key", then: puts(5, true), fail: true},
			{name: "nested txn within what is left", then: []clientv3.Op{nested(puts(2, false)), clientv3.OpPut("x", "y")}},
			{name: "nested txn over what is left", then: []clientv3.Op{nested(puts(3, false)), clientv3.OpPut("x", "y")}, fail: true},
			{name: "nested txn under a longer compare list", cmps: cmps(3), then: []clientv3.Op{nested(puts(2, false))}, fail: true},
			{name: "nested txn in the else branch over what is left", cmps: cmps(1), els: []clientv3.Op{nested(puts(4, false))}, fail: true},
			{name: "nested txn alone", then: []clientv3.Op{nested(puts(3, false))}},
		})
	})
	t.Run("default", func(t *testing.T) {
		t.Parallel()
		m := startMember(t)
		run(t, m.cli(), []txnCase{
			{name: "128 puts", then: puts(128, false)},
			{name: "129 puts", then: puts(129, false), fail: true},
			{name: "129 puts of one key", then: puts(129, true), fail: true},
			{name: "129 compares", cmps: cmps(129), fail: true},
		})
	})
}
