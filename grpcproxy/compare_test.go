package grpcproxy_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/keeldb/keel/internal/keeltest"
)

// The official client's KV, watch and lease behaviour through the proxy
// must equal the member's own: each test runs one script against a fresh
// member directly and against another fresh member through the proxy, and
// compares the transcripts (responses without the member-specific header
// fields and lease IDs, and errors).

type transcript struct {
	lines []string
}

func (tr *transcript) add(step string, m proto.Message, err error) {
	if err != nil {
		tr.lines = append(tr.lines, fmt.Sprintf("%s: error %v", step, err))
		return
	}
	tr.lines = append(tr.lines, fmt.Sprintf("%s: %s", step, norm(m)))
}

func (tr *transcript) addf(step, format string, args ...any) {
	tr.lines = append(tr.lines, fmt.Sprintf("%s: %s", step, fmt.Sprintf(format, args...)))
}

// norm prints m without what differs between two members: cluster and
// member IDs, raft terms and lease IDs.
func norm(m proto.Message) string {
	if m == nil {
		return "<nil>"
	}
	c := proto.Clone(m)
	scrub(c.ProtoReflect())
	b, _ := prototext.MarshalOptions{}.Marshal(c)
	return strings.Join(strings.Fields(string(b)), " ")
}

func scrub(m protoreflect.Message) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Name() == "cluster_id" || fd.Name() == "member_id" || fd.Name() == "raft_term":
			m.Clear(fd)
		case fd.Name() == "ID" && strings.Contains(string(m.Descriptor().Name()), "Lease"):
			m.Clear(fd)
		case fd.Name() == "lease" && fd.Kind() == protoreflect.Int64Kind:
			if v.Int() != 0 {
				m.Set(fd, protoreflect.ValueOfInt64(1))
			}
		case fd.Kind() == protoreflect.MessageKind && fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				scrub(l.Get(i).Message())
			}
		case fd.Kind() == protoreflect.MessageKind && !fd.IsMap():
			scrub(v.Message())
		}
		return true
	})
}

func compareThroughProxy(t *testing.T, script func(ctx context.Context, t *testing.T, cli *clientv3.Client, tr *transcript), opts ...keeltest.Option) {
	direct := keeltest.Start(t, opts...)
	behind := keeltest.Start(t, opts...)
	tp := startProxy(t, behind)
	var want, got transcript
	script(testCtx(t), t, direct.Client, &want)
	script(testCtx(t), t, tp.client(t), &got)
	if len(want.lines) != len(got.lines) {
		t.Fatalf("transcripts differ in length: direct %d, proxy %d\ndirect:\n%s\nproxy:\n%s", len(want.lines), len(got.lines),
			strings.Join(want.lines, "\n"), strings.Join(got.lines, "\n"))
	}
	for i := range want.lines {
		if want.lines[i] != got.lines[i] {
			t.Errorf("step %d differs:\ndirect: %s\nproxy:  %s", i, want.lines[i], got.lines[i])
		}
	}
	if testing.Verbose() {
		t.Logf("transcript:\n%s", strings.Join(want.lines, "\n"))
	}
}

func TestKVThroughProxyAnswersAsTheMember(t *testing.T) {
	compareThroughProxy(t, func(ctx context.Context, t *testing.T, cli *clientv3.Client, tr *transcript) {
		put := func(step, k, v string, opts ...clientv3.OpOption) {
			r, err := cli.Put(ctx, k, v, opts...)
			tr.add(step, (*pb.PutResponse)(r), err)
		}
		get := func(step, k string, opts ...clientv3.OpOption) {
			r, err := cli.Get(ctx, k, opts...)
			tr.add(step, (*pb.RangeResponse)(r), err)
		}
		put("put a", "a", "1")
		put("put a prev", "a", "2", clientv3.WithPrevKV())
		put("put b", "b", "x")
		put("put c", "c", "y")
		get("get a", "a")
		get("get prefix sorted", "", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend), clientv3.WithLimit(2))
		get("get sort target without order", "", clientv3.WithFromKey(), clientv3.WithSort(clientv3.SortByValue, clientv3.SortNone))
		get("get count", "", clientv3.WithPrefix(), clientv3.WithCountOnly())
		get("get keys range", "a", clientv3.WithRange("c"), clientv3.WithKeysOnly())
		get("get min mod rev", "", clientv3.WithPrefix(), clientv3.WithMinModRev(4))
		get("get serializable", "b", clientv3.WithSerializable())

		txn := func(step string, cmp clientv3.Cmp) {
			r, err := cli.Txn(ctx).If(cmp).
				Then(clientv3.OpPut("a", "3", clientv3.WithPrevKV()), clientv3.OpGet("b")).
				Else(clientv3.OpGet("c"), clientv3.OpTxn(nil, []clientv3.Op{clientv3.OpDelete("zz")}, nil)).Commit()
			tr.add(step, (*pb.TxnResponse)(r), err)
		}
		txn("txn success", clientv3.Compare(clientv3.Value("a"), "=", "2"))
		txn("txn failure", clientv3.Compare(clientv3.Version("a"), ">", 10))
		txn("txn range compare", clientv3.Compare(clientv3.ModRevision("a").WithPrefix(), "<", 100))
		txn("txn create rev", clientv3.Compare(clientv3.CreateRevision("nope"), "=", 0))
		txn("txn lease compare", clientv3.Compare(clientv3.LeaseValue("a"), "=", clientv3.NoLease))
		r, err := cli.Txn(ctx).Then(clientv3.OpPut("d", "1"), clientv3.OpPut("d", "2")).Commit()
		tr.add("txn duplicate key", (*pb.TxnResponse)(r), err)

		d, err := cli.Delete(ctx, "b", clientv3.WithPrevKV())
		tr.add("delete b", (*pb.DeleteRangeResponse)(d), err)
		d, err = cli.Delete(ctx, "nothing/", clientv3.WithPrefix())
		tr.add("delete none", (*pb.DeleteRangeResponse)(d), err)
		get("get at rev 2", "a", clientv3.WithRev(2))
		get("get future rev", "a", clientv3.WithRev(1000))
		c, err := cli.Compact(ctx, 4)
		tr.add("compact 4", (*pb.CompactionResponse)(c), err)
		get("get compacted", "a", clientv3.WithRev(2))
		get("get compacted serializable", "a", clientv3.WithRev(2), clientv3.WithSerializable())
		c, err = cli.Compact(ctx, 3)
		tr.add("compact again", (*pb.CompactionResponse)(c), err)
		c, err = cli.Compact(ctx, 1000)
		tr.add("compact future", (*pb.CompactionResponse)(c), err)
		put("put empty key", "", "v")
		put("put missing lease", "e", "v", clientv3.WithLease(12345))
		put("put ignore value missing key", "nokey", "", clientv3.WithIgnoreValue())

		// A serializable read, a write, the same read: the write shows.
		get("serializable before", "a", clientv3.WithSerializable())
		get("serializable again", "a", clientv3.WithSerializable())
		put("overwrite a", "a", "4")
		get("serializable after write", "a", clientv3.WithSerializable())
		d, err = cli.Delete(ctx, "", clientv3.WithPrefix())
		tr.add("delete all", (*pb.DeleteRangeResponse)(d), err)
		get("serializable after delete", "a", clientv3.WithSerializable())
		r, err = cli.Txn(ctx).Then(clientv3.OpPut("a", "5")).Commit()
		tr.add("txn put", (*pb.TxnResponse)(r), err)
		get("serializable after txn", "a", clientv3.WithSerializable())
	})
}

func TestLeaseThroughProxyAnswersAsTheMember(t *testing.T) {
	compareThroughProxy(t, func(ctx context.Context, t *testing.T, cli *clientv3.Client, tr *transcript) {
		g, err := cli.Grant(ctx, 60)
		if err != nil {
			t.Fatal(err)
		}
		tr.addf("grant", "ttl=%d err=%q", g.TTL, g.Error)
		ka, err := cli.KeepAliveOnce(ctx, g.ID)
		if err != nil {
			t.Fatal(err)
		}
		tr.addf("keepalive once", "ttl=%d", ka.TTL)
		p, err := cli.Put(ctx, "leased", "v", clientv3.WithLease(g.ID))
		tr.add("put leased", (*pb.PutResponse)(p), err)
		ttl, err := cli.TimeToLive(ctx, g.ID, clientv3.WithAttachedKeys())
		if err != nil {
			t.Fatal(err)
		}
		tr.addf("timetolive", "granted=%d keys=%q ttl>50=%v", ttl.GrantedTTL, ttl.Keys, ttl.TTL > 50)
		ls, err := cli.Leases(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tr.addf("leases", "n=%d", len(ls.Leases))
		kctx, kcancel := context.WithCancel(ctx)
		kch, err := cli.KeepAlive(kctx, g.ID)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-kch:
			tr.addf("keepalive stream", "ttl=%d", r.TTL)
		case <-ctx.Done():
			t.Fatal("no keep-alive response")
		}
		kcancel()
		rv, err := cli.Revoke(ctx, g.ID)
		tr.add("revoke", (*pb.LeaseRevokeResponse)(rv), err)
		ttl, err = cli.TimeToLive(ctx, g.ID)
		if err != nil {
			t.Fatal(err)
		}
		tr.addf("timetolive revoked", "ttl=%d", ttl.TTL)
		_, err = cli.KeepAliveOnce(ctx, g.ID)
		tr.addf("keepalive revoked", "%v", err)
		_, err = cli.Revoke(ctx, g.ID)
		tr.addf("revoke again", "%v", err)
		gr, err := cli.Get(ctx, "leased", clientv3.WithSerializable())
		tr.add("leased key gone", (*pb.RangeResponse)(gr), err)
		_, err = cli.Grant(ctx, 0)
		tr.addf("grant ttl 0", "%v", err)
	})
}

func TestWatchThroughProxyAnswersAsTheMember(t *testing.T) {
	compareThroughProxy(t, func(ctx context.Context, t *testing.T, cli *clientv3.Client, tr *transcript) {
		next := func(step string, ch clientv3.WatchChan) clientv3.WatchResponse {
			t.Helper()
			select {
			case wr, ok := <-ch:
				if !ok {
					tr.addf(step, "closed")
					return wr
				}
				evs := make([]string, len(wr.Events))
				for i, e := range wr.Events {
					evs[i] = norm(e)
				}
				tr.addf(step, "rev=%d created=%v canceled=%v compact=%d progress=%v err=%v events=%q",
					wr.Header.Revision, wr.Created, wr.Canceled, wr.CompactRevision, wr.IsProgressNotify(), wr.Err(), evs)
				return wr
			case <-time.After(20 * time.Second):
				t.Fatalf("%s: no watch response", step)
			}
			return clientv3.WatchResponse{}
		}
		if _, err := cli.Put(ctx, "w/0", "first"); err != nil {
			t.Fatal(err)
		}
		wctx, wcancel := context.WithCancel(ctx)
		defer wcancel()
		w1 := cli.Watch(wctx, "w/", clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithCreatedNotify())
		next("w1 created", w1)
		w2ctx, w2cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		w2 := cli.Watch(w2ctx, "w/1", clientv3.WithFilterPut(), clientv3.WithCreatedNotify())
		next("w2 created", w2)
		for _, kv := range [][2]string{{"w/1", "a"}, {"w/2", "b"}, {"w/1", "c"}} {
			if _, err := cli.Put(ctx, kv[0], kv[1]); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := cli.Delete(ctx, "w/1"); err != nil {
			t.Fatal(err)
		}
		n := 0
		for n < 4 {
			wr := next(fmt.Sprintf("w1 events after %d", n), w1)
			n += len(wr.Events)
			if wr.Canceled {
				t.Fatal("w1 cancelled")
			}
		}
		next("w2 delete only", w2)
		w2cancel()
		for closed := false; !closed; {
			select {
			case _, ok := <-w2:
				closed = !ok
			case <-time.After(20 * time.Second):
				t.Fatal("w2 not closed after cancel")
			}
		}
		tr.addf("w2 after cancel", "closed")

		if err := cli.RequestProgress(wctx); err != nil {
			t.Fatal(err)
		}
		next("w1 progress", w1)

		// From a past revision.
		w3 := cli.Watch(wctx, "w/2", clientv3.WithRev(2), clientv3.WithCreatedNotify())
		next("w3 created", w3)
		next("w3 history", w3)
		// A watcher from "now" on w1's range, and one from the future.
		w4 := cli.Watch(wctx, "w/", clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithCreatedNotify())
		next("w4 created", w4)
		w5 := cli.Watch(wctx, "w/", clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithRev(8), clientv3.WithCreatedNotify())
		next("w5 created", w5)
		if _, err := cli.Put(ctx, "w/3", "x"); err != nil { // rev 7
			t.Fatal(err)
		}
		if _, err := cli.Put(ctx, "w/3", "y"); err != nil { // rev 8
			t.Fatal(err)
		}
		next("w4 event 1", w4)
		next("w4 event 2", w4)
		next("w5 event", w5)
		next("w1 event 1", w1)
		next("w1 event 2", w1)

		// Compaction cancels a watcher that starts below it.
		if _, err := cli.Compact(ctx, 6); err != nil {
			t.Fatal(err)
		}
		w6 := cli.Watch(wctx, "w/", clientv3.WithPrefix(), clientv3.WithRev(3))
		next("w6 compacted", w6)
		next("w6 closed", w6)
		// An empty range is refused.
		w7 := cli.Watch(wctx, "b", clientv3.WithRange("a"))
		next("w7 refused", w7)
	})
}
