package integration

import (
	"fmt"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// seedCompactData writes a history of three keys, up to revision 7:
// a=1 (2), a=2 (3), b=1 (4), del b (5), c=1 (6), a=3 (7).
func seedCompactData(t *testing.T, cli *clientv3.Client) {
	t.Helper()
	put(t, cli, "a", "1")
	put(t, cli, "a", "2")
	put(t, cli, "b", "1")
	if _, err := cli.Delete(ctx(t), "b"); err != nil {
		t.Fatal(err)
	}
	put(t, cli, "c", "1")
	if got := put(t, cli, "a", "3"); got != 7 {
		t.Fatalf("seed ends at revision %d, want 7", got)
	}
}

// TestRangeAtCompactedRevisionFails checks which reads a compaction cuts
// off: revisions below the compaction revision fail, the compaction revision
// itself and later ones still read the history, for Range, count-only
// Range, txn ranges and RangeStream alike.
func TestRangeAtCompactedRevisionFails(t *testing.T) {
	t.Parallel()
	for _, physical := range []bool{false, true} {
		t.Run(fmt.Sprintf("physical=%v", physical), func(t *testing.T) {
			t.Parallel()
			m := startMember(t)
			cli := m.cli()
			seedCompactData(t, cli)
			var opts []clientv3.CompactOption
			if physical {
				opts = append(opts, clientv3.WithCompactPhysical())
			}
			resp, err := cli.Compact(ctx(t), 5, opts...)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Header.Revision != 7 {
				t.Fatalf("compact header revision %d, want the current revision 7", resp.Header.Revision)
			}
			for _, r := range []int64{1, 2, 3, 4} {
				_, err := cli.Get(ctx(t), "a", clientv3.WithRev(r))
				wantErr(t, err, rpctypes.ErrGRPCCompacted)
				_, err = cli.Get(ctx(t), "", clientv3.WithPrefix(), clientv3.WithRev(r), clientv3.WithCountOnly())
				wantErr(t, err, rpctypes.ErrGRPCCompacted)
				_, err = cli.Get(ctx(t), "a", clientv3.WithRev(r), clientv3.WithSerializable())
				wantErr(t, err, rpctypes.ErrGRPCCompacted)
			}
			history := []struct {
				rev  int64
				want []*mvccpb.KeyValue
			}{
				{5, []*mvccpb.KeyValue{kv("a", "2", 2, 3, 2)}},
				{6, []*mvccpb.KeyValue{kv("a", "2", 2, 3, 2), kv("c", "1", 6, 6, 1)}},
				{7, []*mvccpb.KeyValue{kv("a", "3", 2, 7, 3), kv("c", "1", 6, 6, 1)}},
				{0, []*mvccpb.KeyValue{kv("a", "3", 2, 7, 3), kv("c", "1", 6, 6, 1)}},
			}
			for _, h := range history {
				resp := get(t, cli, "", clientv3.WithPrefix(), clientv3.WithRev(h.rev))
				wantKVs(t, resp.Kvs, h.want...)
				if resp.Count != int64(len(h.want)) || resp.Header.Revision != 7 {
					t.Fatalf("at %d: count %d revision %d, want %d at 7", h.rev, resp.Count, resp.Header.Revision, len(h.want))
				}
			}
			// A txn reading a compacted revision fails as a whole.
			_, err = cli.Txn(ctx(t)).Then(clientv3.OpPut("x", "1"), clientv3.OpGet("a", clientv3.WithRev(4))).Commit()
			wantErr(t, err, rpctypes.ErrGRPCCompacted)
			_, err = cli.Txn(ctx(t)).Then(clientv3.OpGet("a", clientv3.WithRev(3))).Commit()
			wantErr(t, err, rpctypes.ErrGRPCCompacted)
			// RangeStream too.
			stream, err := m.kv().RangeStream(ctx(t), &pb.RangeRequest{Key: []byte("a"), Revision: 4})
			if err == nil {
				_, err = stream.Recv()
			}
			wantErr(t, err, rpctypes.ErrGRPCCompacted)
			// Writes go on from the current revision.
			if got := put(t, cli, "d", "1"); got != 8 {
				t.Fatalf("put after compaction at %d, want 8", got)
			}
		})
	}
}

// TestCompactRevisionErrors covers compacting revisions that are already
// compacted or in the future, and the revisions a fresh member accepts.
func TestCompactRevisionErrors(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	steps := []struct {
		rev  int64
		want error // nil: succeeds
	}{
		// A fresh member (revision 1) has compacted nothing yet.
		{0, nil},
		{-1, rpctypes.ErrGRPCCompacted},
		{0, rpctypes.ErrGRPCCompacted},
		{2, rpctypes.ErrGRPCFutureRev},
		{1, nil},
		{1, rpctypes.ErrGRPCCompacted},
	}
	for i, s := range steps {
		resp, err := cli.Compact(ctx(t), s.rev)
		if s.want == nil {
			if err != nil {
				t.Fatalf("step %d: compact %d: %v", i, s.rev, err)
			}
			if resp.Header.Revision != 1 {
				t.Fatalf("step %d: compact header revision %d, want 1", i, resp.Header.Revision)
			}
			continue
		}
		wantErr(t, err, s.want)
	}

	seedCompactData(t, cli)
	steps = []struct {
		rev  int64
		want error
	}{
		{8, rpctypes.ErrGRPCFutureRev},
		{1 << 40, rpctypes.ErrGRPCFutureRev},
		{4, nil},
		{4, rpctypes.ErrGRPCCompacted},
		{3, rpctypes.ErrGRPCCompacted},
		{6, nil},
		{7, nil}, // the current revision
		{7, rpctypes.ErrGRPCCompacted},
		{8, rpctypes.ErrGRPCFutureRev},
	}
	for i, s := range steps {
		resp, err := cli.Compact(ctx(t), s.rev, clientv3.WithCompactPhysical())
		if s.want == nil {
			if err != nil {
				t.Fatalf("step %d: compact %d: %v", i, s.rev, err)
			}
			if resp.Header.Revision != 7 {
				t.Fatalf("step %d: compact header revision %d, want 7", i, resp.Header.Revision)
			}
			continue
		}
		wantErr(t, err, s.want)
	}
	// Compacted to the current revision: only the current state is left.
	_, err := cli.Get(ctx(t), "a", clientv3.WithRev(6))
	wantErr(t, err, rpctypes.ErrGRPCCompacted)
	wantKVs(t, get(t, cli, "", clientv3.WithPrefix(), clientv3.WithRev(7)).Kvs, kv("a", "3", 2, 7, 3), kv("c", "1", 6, 6, 1))
	if got := rev(t, cli); got != 7 {
		t.Fatalf("compactions moved the revision to %d", got)
	}
}

// TestPhysicalCompactionKeepsLiveHistory writes many versions of a few keys,
// compacts physically in the middle, and checks every revision from the
// compaction on still reads exactly what it did before.
func TestPhysicalCompactionKeepsLiveHistory(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	const writes = 120
	for i := range writes {
		k := fmt.Sprintf("k%d", i%4)
		if i%7 == 6 {
			if _, err := cli.Delete(ctx(t), k); err != nil {
				t.Fatal(err)
			}
			continue
		}
		put(t, cli, k, fmt.Sprintf("v%d", i))
	}
	last := rev(t, cli)
	before := make(map[int64]string)
	for r := int64(1); r <= last; r++ {
		before[r] = kvsString(get(t, cli, "k", clientv3.WithPrefix(), clientv3.WithRev(r)).Kvs)
	}
	compactAt := last / 2
	if _, err := cli.Compact(ctx(t), compactAt, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	for r := int64(1); r <= last; r++ {
		resp, err := cli.Get(ctx(t), "k", clientv3.WithPrefix(), clientv3.WithRev(r))
		if r < compactAt {
			wantErr(t, err, rpctypes.ErrGRPCCompacted)
			continue
		}
		if err != nil {
			t.Fatalf("at %d: %v", r, err)
		}
		if got := kvsString(resp.Kvs); got != before[r] {
			t.Fatalf("at %d after compaction:\n  %s\nbefore:\n  %s", r, got, before[r])
		}
	}
	// A second compaction to the end, then new writes on top.
	if _, err := cli.Compact(ctx(t), last, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	if got := kvsString(get(t, cli, "k", clientv3.WithPrefix()).Kvs); got != before[last] {
		t.Fatalf("after compacting everything:\n  %s\nwant\n  %s", got, before[last])
	}
	// Compaction keeps create revisions and versions counting.
	prev := get(t, cli, "k1")
	if len(prev.Kvs) != 1 {
		t.Fatalf("k1 is gone after compaction")
	}
	if got := put(t, cli, "k1", "after"); got != last+1 {
		t.Fatalf("put after compaction at %d, want %d", got, last+1)
	}
	p := prev.Kvs[0]
	wantKVs(t, get(t, cli, "k1").Kvs, kv("k1", "after", p.CreateRevision, last+1, p.Version+1))
}
