package scenario

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestKeyNamerSortsKeysInLoadOrder(t *testing.T) {
	for _, n := range []int{1, 999, 1000, 20000, 1000000} {
		k := newKeyNamer("/registry/pods/", n)
		prev := ""
		for _, i := range []int{0, 1, 9, 10, 999, 1000, 1001, 9999, 10000, 99999, 100000, 999999} {
			if i >= n {
				break
			}
			key := k.key(i)
			if key <= prev {
				t.Fatalf("n=%d: key(%d) = %q sorts before %q", n, i, key, prev)
			}
			prev = key
		}
	}
	if got, want := newKeyNamer("/p/", 1000000).key(123456), "/p/ns-123/pod-123456"; got != want {
		t.Errorf("key(123456) = %q, want %q", got, want)
	}
	if got, want := newKeyNamer("/p/", 20000).key(7), "/p/ns-00/pod-00007"; got != want {
		t.Errorf("key(7) = %q, want %q", got, want)
	}
}

// fakeStore is a key-value store with history: revision r holds the keys of
// revs[r-1]. Its Get interprets the options the way the server does, for the
// options listAll uses, and records the requests.
type fakeStore struct {
	revs [][]string
	// emptyMore makes every page after the first empty but with More set.
	emptyMore bool
	requests  []clientv3.Op
}

func (f *fakeStore) Get(_ context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	op := clientv3.OpGet(key, opts...)
	f.requests = append(f.requests, op)
	head := int64(len(f.revs))
	rev := op.Rev()
	if rev == 0 {
		rev = head
	}
	keys := f.revs[rev-1]
	lo := sort.SearchStrings(keys, string(op.KeyBytes()))
	hi := sort.SearchStrings(keys, string(op.RangeBytes()))
	resp := &clientv3.GetResponse{Header: &pb.ResponseHeader{Revision: head}, Count: int64(hi - lo)}
	if f.emptyMore && len(f.requests) > 1 {
		resp.More = true
		return resp, nil
	}
	for _, k := range keys[lo:hi] {
		if op.Limit() > 0 && int64(len(resp.Kvs)) == op.Limit() {
			resp.More = true
			break
		}
		resp.Kvs = append(resp.Kvs, &mvccpb.KeyValue{Key: []byte(k)})
	}
	return resp, nil
}

func TestListAllPagesThroughOneRevision(t *testing.T) {
	names := newKeyNamer("/registry/pods/", 1234)
	var keys []string
	for i := range 1234 {
		keys = append(keys, names.key(i))
	}
	// Revision 1 has a key beside the prefix, which the list must not
	// return; revision 2, written after the first page, has one more key
	// under the prefix, which the list must not see either.
	rev1 := slices.Sorted(slices.Values(append(slices.Clone(keys), "/registry/podsx")))
	later := slices.Sorted(slices.Values(append(slices.Clone(rev1), "/registry/pods/zz")))
	f := &fakeStore{revs: [][]string{rev1}}

	var lat latencies
	// The first page is read at revision 1; the store then moves on.
	first := true
	g := getterFunc(func(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
		resp, err := f.Get(ctx, key, opts...)
		if first {
			first = false
			f.revs = append(f.revs, later)
		}
		return resp, err
	})
	res, err := listAll(context.Background(), g, "/registry/pods/", 500, 10, lat.shard())
	if err != nil {
		t.Fatal(err)
	}
	if res.keys != 1234 || res.pages != 3 || res.count != 1234 {
		t.Errorf("listAll = %+v, want 1234 keys in 3 pages, count 1234", res)
	}
	if n := len(lat.merge()); n != 3 {
		t.Errorf("%d latencies recorded, want 3", n)
	}
	for i, op := range f.requests {
		wantRev := int64(1)
		if i == 0 {
			wantRev = 0
		}
		if op.Rev() != wantRev || op.Limit() != 500 || string(op.RangeBytes()) != "/registry/pods0" {
			t.Errorf("request %d: rev %d, limit %d, end %q; want rev %d, limit 500, end the prefix's end", i, op.Rev(), op.Limit(), op.RangeBytes(), wantRev)
		}
		if i > 0 && !strings.HasSuffix(string(op.KeyBytes()), "\x00") {
			t.Errorf("request %d starts at %q, want just after the last key returned", i, op.KeyBytes())
		}
	}
}

func TestListAllFailsOnEmptyPagesWithMore(t *testing.T) {
	f := &fakeStore{revs: [][]string{{"/a/1", "/a/2", "/a/3"}}, emptyMore: true}
	var lat latencies
	_, err := listAll(context.Background(), f, "/a/", 1, 100, lat.shard())
	if err == nil || !strings.Contains(err.Error(), "no keys but More") {
		t.Fatalf("listAll = %v, want an error about an empty page with More", err)
	}
}

func TestListAllStopsAtMaxPages(t *testing.T) {
	var keys []string
	for i := range 10 {
		keys = append(keys, fmt.Sprintf("/a/%02d", i))
	}
	f := &fakeStore{revs: [][]string{keys}}
	var lat latencies
	if _, err := listAll(context.Background(), f, "/a/", 1, 4, lat.shard()); err == nil {
		t.Fatal("listAll of 10 pages with at most 4 succeeded")
	}
	if len(f.requests) != 4 {
		t.Errorf("%d requests, want 4", len(f.requests))
	}
}

type getterFunc func(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error)

func (g getterFunc) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	return g(ctx, key, opts...)
}

func TestDatasetValidate(t *testing.T) {
	good := Dataset{Members: 1, Keys: 10, ValueSize: 1, KeyPrefix: "/p/", Batch: 100, LoadClients: 4, LoadConns: 2, PageSize: 5, ListRounds: 1}
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate(%+v) = %v", good, err)
	}
	for _, bad := range []func(*Dataset){
		func(d *Dataset) { d.Keys = 0 },
		func(d *Dataset) { d.Batch = 0 },
		func(d *Dataset) { d.LoadConns = 5 },
		func(d *Dataset) { d.PageSize = 0 },
		func(d *Dataset) { d.KeyPrefix = "" },
	} {
		d := good
		bad(&d)
		if d.Validate() == nil {
			t.Errorf("Validate(%+v) accepted it", d)
		}
	}
}
