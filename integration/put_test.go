package integration

import (
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestPutRevisionsAndVersions checks the header revision of each put and the
// create revision, mod revision and version it leaves, including the version
// restarting at 1 after a delete.
func TestPutRevisionsAndVersions(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	if got := rev(t, cli); got != 1 {
		t.Fatalf("a fresh member is at revision %d, want 1", got)
	}
	steps := []struct {
		op       string // put or del
		key, val string
		rev      int64            // header revision of the response
		want     *mvccpb.KeyValue // the key afterwards; nil when absent
	}{
		{"put", "foo", "bar", 2, kv("foo", "bar", 2, 2, 1)},
		{"put", "foo", "baz", 3, kv("foo", "baz", 2, 3, 2)},
		{"put", "other", "x", 4, kv("other", "x", 4, 4, 1)},
		{"put", "foo", "baz", 5, kv("foo", "baz", 2, 5, 3)}, // same value: still a new version
		{"put", "foo", "", 6, kv("foo", "", 2, 6, 4)},       // empty value
		{"del", "foo", "", 7, nil},
		{"put", "foo", "again", 8, kv("foo", "again", 8, 8, 1)},
		{"put", "foo", "more", 9, kv("foo", "more", 8, 9, 2)},
	}
	for i, s := range steps {
		var got int64
		switch s.op {
		case "put":
			got = put(t, cli, s.key, s.val)
		case "del":
			resp, err := cli.Delete(ctx(t), s.key)
			if err != nil {
				t.Fatal(err)
			}
			got = resp.Header.Revision
		}
		if got != s.rev {
			t.Fatalf("step %d (%s %q): header revision %d, want %d", i, s.op, s.key, got, s.rev)
		}
		resp := get(t, cli, s.key)
		if s.want == nil {
			wantKVs(t, resp.Kvs)
		} else {
			wantKVs(t, resp.Kvs, s.want)
		}
	}
	// Every version stays readable at its revision.
	history := []struct {
		rev  int64
		want *mvccpb.KeyValue
	}{
		{1, nil}, {2, kv("foo", "bar", 2, 2, 1)}, {3, kv("foo", "baz", 2, 3, 2)}, {4, kv("foo", "baz", 2, 3, 2)},
		{5, kv("foo", "baz", 2, 5, 3)}, {6, kv("foo", "", 2, 6, 4)}, {7, nil}, {8, kv("foo", "again", 8, 8, 1)},
	}
	for _, h := range history {
		resp := get(t, cli, "foo", clientv3.WithRev(h.rev))
		if h.want == nil {
			wantKVs(t, resp.Kvs)
		} else {
			wantKVs(t, resp.Kvs, h.want)
		}
	}
}

// TestPutPrevKV checks that prev_kv returns the value replaced, with all its
// fields, and nothing for a new key.
func TestPutPrevKV(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	resp, err := cli.Put(ctx(t), "k", "v1", clientv3.WithPrevKV())
	if err != nil {
		t.Fatal(err)
	}
	if resp.PrevKv != nil {
		t.Fatalf("prev_kv of a new key: %s, want none", kvString(resp.PrevKv))
	}
	resp, err = cli.Put(ctx(t), "k", "v2", clientv3.WithPrevKV())
	if err != nil {
		t.Fatal(err)
	}
	if resp.PrevKv == nil {
		t.Fatal("no prev_kv on the second put")
	}
	wantKVs(t, []*mvccpb.KeyValue{resp.PrevKv}, kv("k", "v1", 2, 2, 1))
	if resp.Header.Revision != 3 {
		t.Fatalf("header revision %d, want 3", resp.Header.Revision)
	}
	// Without the option, no prev_kv.
	resp, err = cli.Put(ctx(t), "k", "v3")
	if err != nil {
		t.Fatal(err)
	}
	if resp.PrevKv != nil {
		t.Fatalf("prev_kv without asking: %s", kvString(resp.PrevKv))
	}
	// After a delete, there is nothing to return.
	if _, err := cli.Delete(ctx(t), "k"); err != nil {
		t.Fatal(err)
	}
	resp, err = cli.Put(ctx(t), "k", "v4", clientv3.WithPrevKV())
	if err != nil {
		t.Fatal(err)
	}
	if resp.PrevKv != nil {
		t.Fatalf("prev_kv of a deleted key: %s, want none", kvString(resp.PrevKv))
	}
}

// TestPutIgnoreValueAndLease checks that ignore_value keeps the value and
// ignore_lease keeps the lease, while the put still makes a new version.
func TestPutIgnoreValueAndLease(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	put(t, cli, "k", "original") // rev 2

	resp, err := cli.Put(ctx(t), "k", "", clientv3.WithIgnoreValue(), clientv3.WithPrevKV())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Revision != 3 {
		t.Fatalf("ignore_value put: revision %d, want 3", resp.Header.Revision)
	}
	if resp.PrevKv == nil {
		t.Fatal("ignore_value put with prev_kv returned no prev_kv")
	}
	wantKVs(t, []*mvccpb.KeyValue{resp.PrevKv}, kv("k", "original", 2, 2, 1))
	wantKVs(t, get(t, cli, "k").Kvs, kv("k", "original", 2, 3, 2))

	resp, err = cli.Put(ctx(t), "k", "changed", clientv3.WithIgnoreLease())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Revision != 4 || resp.PrevKv != nil {
		t.Fatalf("ignore_lease put: revision %d prev_kv %v, want 4 and none", resp.Header.Revision, resp.PrevKv)
	}
	wantKVs(t, get(t, cli, "k").Kvs, kv("k", "changed", 2, 4, 3))

	resp, err = cli.Put(ctx(t), "k", "", clientv3.WithIgnoreValue(), clientv3.WithIgnoreLease())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Revision != 5 {
		t.Fatalf("ignore_value and ignore_lease put: revision %d, want 5", resp.Header.Revision)
	}
	wantKVs(t, get(t, cli, "k").Kvs, kv("k", "changed", 2, 5, 4))

	// An empty value kept by ignore_value stays empty.
	put(t, cli, "empty", "") // rev 6
	if _, err := cli.Put(ctx(t), "empty", "", clientv3.WithIgnoreValue()); err != nil {
		t.Fatal(err)
	}
	wantKVs(t, get(t, cli, "empty").Kvs, kv("empty", "", 6, 7, 2))
}

// TestPutInvalidRequestsFail covers Put's request errors, and checks that a
// failed put changes nothing.
func TestPutInvalidRequestsFail(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	put(t, cli, "exists", "v")                            // rev 2
	put(t, cli, "gone", "v")                              // rev 3
	if _, err := cli.Delete(ctx(t), "gone"); err != nil { // rev 4
		t.Fatal(err)
	}
	kvc := m.kv()
	tests := []struct {
		name string
		req  *pb.PutRequest
		want error
	}{
		{"empty key", &pb.PutRequest{Value: []byte("v")}, rpctypes.ErrGRPCEmptyKey},
		{"empty key with ignore_value", &pb.PutRequest{IgnoreValue: true}, rpctypes.ErrGRPCEmptyKey},
		{"ignore_value with a value", &pb.PutRequest{Key: []byte("exists"), Value: []byte("v"), IgnoreValue: true}, rpctypes.ErrGRPCValueProvided},
		{"ignore_lease with a lease", &pb.PutRequest{Key: []byte("exists"), Lease: 42, IgnoreLease: true}, rpctypes.ErrGRPCLeaseProvided},
		{"ignore_value on a missing key", &pb.PutRequest{Key: []byte("missing"), IgnoreValue: true}, rpctypes.ErrGRPCKeyNotFound},
		{"ignore_lease on a missing key", &pb.PutRequest{Key: []byte("missing"), Value: []byte("v"), IgnoreLease: true}, rpctypes.ErrGRPCKeyNotFound},
		{"ignore_value on a deleted key", &pb.PutRequest{Key: []byte("gone"), IgnoreValue: true}, rpctypes.ErrGRPCKeyNotFound},
		{"ignore_value with prev_kv on a missing key", &pb.PutRequest{Key: []byte("missing"), IgnoreValue: true, PrevKv: true}, rpctypes.ErrGRPCKeyNotFound},
		{"unknown lease", &pb.PutRequest{Key: []byte("k"), Value: []byte("v"), Lease: 0x1234}, rpctypes.ErrGRPCLeaseNotFound},
		{"unknown lease on an existing key", &pb.PutRequest{Key: []byte("exists"), Value: []byte("v"), Lease: 1}, rpctypes.ErrGRPCLeaseNotFound},
		{"negative lease", &pb.PutRequest{Key: []byte("k"), Value: []byte("v"), Lease: -5}, rpctypes.ErrGRPCLeaseNotFound},
		// The lease is checked before the previous value is looked up.
		{"unknown lease and ignore_value on a missing key", &pb.PutRequest{Key: []byte("missing"), Lease: 7, IgnoreValue: true}, rpctypes.ErrGRPCLeaseNotFound},
		// The request's own fields are checked before anything is proposed.
		{"value and lease provided", &pb.PutRequest{Key: []byte("missing"), Value: []byte("v"), IgnoreValue: true, Lease: 3, IgnoreLease: true}, rpctypes.ErrGRPCValueProvided},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := kvc.Put(ctx(t), tt.req)
			wantErr(t, err, tt.want)
		})
	}
	// The high-level client reports the same errors.
	_, err := cli.Put(ctx(t), "k", "v", clientv3.WithLease(clientv3.LeaseID(99)))
	wantErr(t, err, rpctypes.ErrGRPCLeaseNotFound)
	_, err = cli.Put(ctx(t), "", "v")
	wantErr(t, err, rpctypes.ErrGRPCEmptyKey)
	_, err = cli.Put(ctx(t), "missing", "", clientv3.WithIgnoreValue())
	wantErr(t, err, rpctypes.ErrGRPCKeyNotFound)

	if got := rev(t, cli); got != 4 {
		t.Fatalf("revision after failed puts: %d, want 4", got)
	}
	wantKVs(t, get(t, cli, "exists").Kvs, kv("exists", "v", 2, 2, 1))
	wantKVs(t, get(t, cli, "", clientv3.WithPrefix(), clientv3.WithKeysOnly()).Kvs, kv("exists", "", 2, 2, 1))
}
