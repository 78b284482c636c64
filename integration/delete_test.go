package integration

import (
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// seedDeleteData writes a, b, c, d/1, d/2, e at revisions 2..7.
func seedDeleteData(t *testing.T, cli *clientv3.Client) []*mvccpb.KeyValue {
	t.Helper()
	var out []*mvccpb.KeyValue
	for i, k := range []string{"a", "b", "c", "d/1", "d/2", "e"} {
		r := int64(i + 2)
		if got := put(t, cli, k, "v-"+k); got != r {
			t.Fatalf("put %q: revision %d, want %d", k, got, r)
		}
		out = append(out, kv(k, "v-"+k, r, r, 1))
	}
	return out
}

// TestDeleteRange covers single, range, prefix and from-key deletes: the
// deleted count, prev_kv, the header revision, and what remains.
func TestDeleteRange(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		key     string
		opts    []clientv3.OpOption
		deleted []string // keys deleted, in key order
	}{
		{name: "single key", key: "b", deleted: []string{"b"}},
		{name: "missing key", key: "zz"},
		{name: "key that is only a prefix of others", key: "d"},
		{name: "range", key: "b", opts: []clientv3.OpOption{clientv3.WithRange("d/2")}, deleted: []string{"b", "c", "d/1"}},
		{name: "inverted range", key: "d", opts: []clientv3.OpOption{clientv3.WithRange("b")}},
		{name: "empty range", key: "b", opts: []clientv3.OpOption{clientv3.WithRange("b")}},
		{name: "range with no keys", key: "c0", opts: []clientv3.OpOption{clientv3.WithRange("d")}},
		{name: "prefix", key: "d/", opts: []clientv3.OpOption{clientv3.WithPrefix()}, deleted: []string{"d/1", "d/2"}},
		{name: "from key", key: "c", opts: []clientv3.OpOption{clientv3.WithFromKey()}, deleted: []string{"c", "d/1", "d/2", "e"}},
		{name: "every key", key: "", opts: []clientv3.OpOption{clientv3.WithPrefix()}, deleted: []string{"a", "b", "c", "d/1", "d/2", "e"}},
	}
	for _, tt := range tests {
		for _, prevKV := range []bool{false, true} {
			name := tt.name
			if prevKV {
				name += " with prev_kv"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				m := startMember(t)
				cli := m.cli()
				seeded := seedDeleteData(t, cli)
				opts := tt.opts
				if prevKV {
					opts = append(append([]clientv3.OpOption(nil), opts...), clientv3.WithPrevKV())
				}
				resp, err := cli.Delete(ctx(t), tt.key, opts...)
				if err != nil {
					t.Fatal(err)
				}
				if resp.Deleted != int64(len(tt.deleted)) {
					t.Errorf("deleted %d, want %d", resp.Deleted, len(tt.deleted))
				}
				// A delete that removes keys is one revision; one that removes
				// nothing leaves the revision as it is.
				wantRev := int64(7)
				if len(tt.deleted) > 0 {
					wantRev = 8
				}
				if resp.Header.Revision != wantRev {
					t.Errorf("header revision %d, want %d", resp.Header.Revision, wantRev)
				}
				gone := make(map[string]bool)
				var wantPrev, remaining []*mvccpb.KeyValue
				for _, k := range tt.deleted {
					gone[k] = true
				}
				for _, kv := range seeded {
					if gone[string(kv.Key)] {
						wantPrev = append(wantPrev, kv)
					} else {
						remaining = append(remaining, kv)
					}
				}
				if prevKV {
					wantKVs(t, resp.PrevKvs, wantPrev...)
				} else if len(resp.PrevKvs) != 0 {
					t.Errorf("prev_kvs without asking: %s", kvsString(resp.PrevKvs))
				}
				all := get(t, cli, "", clientv3.WithPrefix())
				wantKVs(t, all.Kvs, remaining...)
				if all.Header.Revision != wantRev {
					t.Errorf("revision after the delete %d, want %d", all.Header.Revision, wantRev)
				}
				// The deleted keys are still there at the revision before.
				wantKVs(t, get(t, cli, "", clientv3.WithPrefix(), clientv3.WithRev(7)).Kvs, seeded...)
			})
		}
	}
}

// TestDeleteThenRecreate checks that a key deleted by a range delete comes
// back with version 1 and a new create revision, and that deleting it again
// (already deleted) is a no-op.
func TestDeleteThenRecreate(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	seedDeleteData(t, cli)
	put(t, cli, "b", "v2") // rev 8: b version 2
	resp, err := cli.Delete(ctx(t), "a", clientv3.WithRange("c"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Deleted != 2 || resp.Header.Revision != 9 {
		t.Fatalf("deleted %d at %d, want 2 at 9", resp.Deleted, resp.Header.Revision)
	}
	resp, err = cli.Delete(ctx(t), "b")
	if err != nil {
		t.Fatal(err)
	}
	if resp.Deleted != 0 || resp.Header.Revision != 9 {
		t.Fatalf("deleting a deleted key: deleted %d at %d, want 0 at 9", resp.Deleted, resp.Header.Revision)
	}
	if got := put(t, cli, "b", "reborn"); got != 10 {
		t.Fatalf("recreate at %d, want 10", got)
	}
	wantKVs(t, get(t, cli, "b").Kvs, kv("b", "reborn", 10, 10, 1))
	wantKVs(t, get(t, cli, "b", clientv3.WithRev(8)).Kvs, kv("b", "v2", 3, 8, 2))
	wantKVs(t, get(t, cli, "b", clientv3.WithRev(9)).Kvs)
}

// TestDeleteEmptyKeyFails checks that a delete needs a key.
func TestDeleteEmptyKeyFails(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	_, err := m.cli().Delete(ctx(t), "")
	wantErr(t, err, rpctypes.ErrGRPCEmptyKey)
	_, err = m.cli().Delete(ctx(t), "", clientv3.WithRange("z"))
	wantErr(t, err, rpctypes.ErrGRPCEmptyKey)
}
