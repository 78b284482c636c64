package snapshot

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/keeldb/keel/auth"
	"github.com/keeldb/keel/lease"
	"github.com/keeldb/keel/mvcc"
	"github.com/keeldb/keel/storage"
)

// loaded is a keel state opened the way a member opens it.
type loaded struct {
	e      *storage.Engine
	store  *mvcc.Store
	leases *lease.Lessor
	auth   *auth.Store
}

func openLoaded(t testing.TB, e *storage.Engine) *loaded {
	t.Helper()
	s, err := mvcc.Open(e.DB(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	l, err := lease.Load(e.DB(), lease.Config{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.Load(e.DB(), auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &loaded{e: e, store: s, leases: l, auth: a}
}

// importInto writes every record of src into a fresh engine, as a restore
// stages them, and opens the state.
func importInto(t testing.TB, src Source) *loaded {
	t.Helper()
	e, err := storage.Open("imported", storage.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	b := e.DB().NewBatch()
	seen := map[string]bool{}
	if err := src.Records(func(k, v []byte) error {
		if seen[string(k)] {
			return fmt.Errorf("record %x twice", k)
		}
		seen[string(k)] = true
		return b.Set(k, v, nil)
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(nil); err != nil {
		t.Fatal(err)
	}
	return openLoaded(t, e)
}

// richState is a fixture with history, a compaction, leases with attached
// keys and auth enabled with a user and a role.
func richState(t testing.TB) *fixture {
	f := newFixture(t)
	f.populate(t, 30)
	ctx := context.Background()
	b := f.e.DB().NewBatch()
	set := func(k, v []byte) {
		if err := b.Set(k, v, nil); err != nil {
			t.Fatal(err)
		}
	}
	set(lease.LeaseRecord(0x100, 60, 0))
	set(lease.LeaseRecord(0x200, 3600, 1200))
	set(lease.AttachRecord(0x100, []byte("leased/a")))
	set(lease.AttachRecord(0x200, []byte("leased/b")))
	u := &authpb.User{Name: []byte("root"), Password: []byte("$2a$10$abcdefghijklmnopqrstuuJ2PzVaRk4yq9V8NsCuNVUnGBLLdS3sq"), Roles: []string{"root"}}
	uk, uv, _ := auth.UserRecord(u)
	set(uk, uv)
	u2 := &authpb.User{Name: []byte("app"), Roles: []string{"reader"}, Options: &authpb.UserAddOptions{NoPassword: true}}
	uk, uv, _ = auth.UserRecord(u2)
	set(uk, uv)
	for _, r := range []*authpb.Role{{Name: []byte("root")}, {Name: []byte("reader"), KeyPermission: []*authpb.Permission{
		{PermType: authpb.Permission_READ, Key: []byte("key/"), RangeEnd: []byte("key0")}}}} {
		rk, rv, _ := auth.RoleRecord(r)
		set(rk, rv)
	}
	set(auth.EnabledRecord(true))
	set(auth.RevisionRecord(7))
	if err := b.Commit(nil); err != nil {
		t.Fatal(err)
	}
	f.write(t, 1000, func(_ *mvcc.Writer, tx *mvcc.Txn) error {
		if _, err := tx.Put([]byte("leased/a"), []byte("A"), 0x100); err != nil {
			return err
		}
		_, err := tx.Put([]byte("leased/b"), []byte("B"), 0x200)
		return err
	})
	f.write(t, 1001, func(_ *mvcc.Writer, tx *mvcc.Txn) error {
		_, _, err := tx.DeleteRange(ctx, []byte("key/0010"), []byte("key/0013"))
		return err
	})
	return f
}

// sameState checks that got reads like want at every revision, and has the
// same leases and auth.
func sameState(t *testing.T, want, got *loaded) {
	t.Helper()
	ctx := context.Background()
	if want.store.Rev() != got.store.Rev() || want.store.CompactRev() != got.store.CompactRev() {
		t.Fatalf("revision %d compacted %d, want %d compacted %d", got.store.Rev(), got.store.CompactRev(), want.store.Rev(), want.store.CompactRev())
	}
	for rev := max(want.store.CompactRev(), 1); rev <= want.store.Rev(); rev++ {
		w, err := want.store.Read().Range(ctx, []byte{0}, []byte{}, mvcc.RangeOptions{Rev: rev})
		if err != nil {
			t.Fatal(err)
		}
		g, err := got.store.Read().Range(ctx, []byte{0}, []byte{}, mvcc.RangeOptions{Rev: rev})
		if err != nil {
			t.Fatalf("range at %d: %v", rev, err)
		}
		if !kvsEqual(w.KVs, g.KVs) {
			t.Fatalf("at revision %d:\n got %v\nwant %v", rev, g.KVs, w.KVs)
		}
	}
	if c := want.store.CompactRev(); c > 1 {
		if _, err := got.store.Read().Range(ctx, []byte{0}, []byte{}, mvcc.RangeOptions{Rev: c - 1}); !errors.Is(err, mvcc.ErrCompacted) {
			t.Fatalf("range below the compaction: %v, want ErrCompacted", err)
		}
	}
	wh, err := want.store.HashKV(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	gh, err := got.store.HashKV(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if wh != gh {
		t.Fatalf("HashKV %+v, want %+v", gh, wh)
	}
	if w, g := want.leases.Leases(), got.leases.Leases(); !reflect.DeepEqual(w, g) {
		t.Fatalf("leases %v, want %v", g, w)
	}
	for _, id := range want.leases.Leases() {
		wk, _ := want.leases.Keys(want.e.DB(), id)
		gk, _ := got.leases.Keys(got.e.DB(), id)
		if !reflect.DeepEqual(wk, gk) {
			t.Fatalf("lease %x keys %q, want %q", id, gk, wk)
		}
	}
	if w, g := leaseRecords(t, want.e), leaseRecords(t, got.e); !reflect.DeepEqual(w, g) {
		t.Fatalf("lease records %v, want %v", g, w)
	}
	if w, g := want.auth.AuthStatus(), got.auth.AuthStatus(); !proto.Equal(w, g) {
		t.Fatalf("auth status %v, want %v", g, w)
	}
	if w, g := want.auth.UserList(), got.auth.UserList(); !proto.Equal(w, g) {
		t.Fatalf("users %v, want %v", g, w)
	}
	if w, g := want.auth.RoleList(), got.auth.RoleList(); !proto.Equal(w, g) {
		t.Fatalf("roles %v, want %v", g, w)
	}
	for _, r := range want.auth.RoleList().Roles {
		w, _ := want.auth.RoleGet(&pb.AuthRoleGetRequest{Role: r})
		g, _ := got.auth.RoleGet(&pb.AuthRoleGetRequest{Role: r})
		if !proto.Equal(w, g) {
			t.Fatalf("role %s %v, want %v", r, g, w)
		}
	}
}

// leaseRecords decodes every record of the lessor in e.
func leaseRecords(t *testing.T, e *storage.Engine) []lease.Record {
	t.Helper()
	it, err := e.DB().NewIter(&pebble.IterOptions{LowerBound: []byte{storage.PrefixLease}, UpperBound: []byte{storage.PrefixLease + 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var out []lease.Record
	for ok := it.First(); ok; ok = it.Next() {
		r, _, err := lease.DecodeRecord(it.Key(), it.Value())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func kvsEqual(a, b []*mvccpb.KeyValue) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func exportFixture(t *testing.T, f *fixture) (string, Info) {
	t.Helper()
	data, _ := f.save(t)
	path := filepath.Join(t.TempDir(), "etcd.db")
	info, err := ExportEtcd(bytes.NewReader(data), path)
	if err != nil {
		t.Fatal(err)
	}
	return path, info
}

func TestEtcdExportThenImportKeepsTheState(t *testing.T) {
	f := richState(t)
	path, info := exportFixture(t, f)
	want := openLoaded(t, f.e)

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size()%512 != 32 {
		t.Fatalf("exported size %d: no sha256 trailer as etcd lays it out", fi.Size())
	}
	src, err := OpenEtcd(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	si := src.Info()
	if si.Hash != info.Hash || si.Revision != f.store.Rev() || si.CompactRevision != f.store.CompactRev() || si.StorageVersion != "3.7.0" {
		t.Fatalf("imported info %+v, exported %+v; store at %d compacted %d", si, info, f.store.Rev(), f.store.CompactRev())
	}
	live, err := f.store.Read().Range(context.Background(), []byte{0}, []byte{}, mvcc.RangeOptions{CountOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if si.TotalKeys != int64(live.Count) {
		t.Fatalf("total keys %d, want %d", si.TotalKeys, live.Count)
	}
	sameState(t, want, importInto(t, src))
}

func TestEtcdExportRefusesAnExistingFile(t *testing.T) {
	f := newFixture(t)
	data, _ := f.save(t)
	path := filepath.Join(t.TempDir(), "etcd.db")
	if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ExportEtcd(bytes.NewReader(data), path); err == nil {
		t.Fatal("export overwrote an existing file")
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Fatalf("the existing file was changed to %q", b)
	}
}

func TestEtcdExportOfADamagedKeelFileLeavesNothing(t *testing.T) {
	f := richState(t)
	data, _ := f.save(t)
	data[len(data)/2] ^= 0x40
	dir := t.TempDir()
	path := filepath.Join(dir, "etcd.db")
	if _, err := ExportEtcd(bytes.NewReader(data), path); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("export of a damaged file: %v, want ErrCorrupt", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("left %v behind", ents)
	}
}

func TestOpenEtcdHashRules(t *testing.T) {
	f := richState(t)
	path, _ := exportFixture(t, f)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	noHash := write("db", data[:len(data)-32])
	if _, err := OpenEtcd(noHash, false); !errors.Is(err, ErrMissingHash) || err.Error() != "snapshot missing hash but --skip-hash-check=false" {
		t.Fatalf("a file without the trailer: %v, want etcdutl's missing-hash error", err)
	}
	src, err := OpenEtcd(noHash, true)
	if err != nil {
		t.Fatalf("a data-dir copy with --skip-hash-check: %v", err)
	}
	src.Close()
	src, err = OpenEtcd(path, true) // a trailer is fine when skipping
	if err != nil {
		t.Fatal(err)
	}
	src.Close()

	bad := append([]byte(nil), data...)
	bad[len(bad)-1] ^= 1
	if _, err := OpenEtcd(write("badsum", bad), false); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a wrong trailer: %v, want ErrCorrupt", err)
	}
	flipped := append([]byte(nil), data...)
	flipped[3*4096+100] ^= 0xff
	if _, err := OpenEtcd(write("flipped", flipped), false); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a flipped byte: %v, want ErrCorrupt", err)
	}
}

// TestOpenEtcdRejectsTruncatedFiles cuts the database anywhere: with the
// hash check skipped (a data-dir copy) it must be refused, never imported
// in part. (bbolt grows its file ahead of the pages in use: a cut in that
// unused tail loses nothing, and the import must then be whole.)
func TestOpenEtcdRejectsTruncatedFiles(t *testing.T) {
	f := richState(t)
	path, _ := exportFixture(t, f)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	body := data[:len(data)-32]
	dir := t.TempDir()
	want := openLoaded(t, f.e)
	for n := 0; n < len(body); n += 509 {
		p := filepath.Join(dir, fmt.Sprint(n))
		if err := os.WriteFile(p, body[:n], 0o600); err != nil {
			t.Fatal(err)
		}
		src, err := OpenEtcd(p, true)
		if err == nil {
			if src.Info().Size > int64(n) {
				t.Fatalf("a database of %d bytes cut at %d was accepted", src.Info().Size, n)
			}
			sameState(t, want, importInto(t, src))
			src.Close()
			continue
		}
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("cut at %d: %v, want ErrCorrupt", n, err)
		}
	}
}

// etcdFile writes an etcd database by hand with the given key bucket
// entries and meta, as etcd 3.7 lays them out.
func etcdFile(t *testing.T, revs []etcdRev, meta map[string][]byte, leases map[int64][2]int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "member.db")
	db, err := bolt.Open(p, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		kb, _ := tx.CreateBucket(etcdKeyBucket)
		mb, _ := tx.CreateBucket(etcdMetaBucket)
		lb, _ := tx.CreateBucket(etcdLeaseBucket)
		for _, r := range revs {
			v := []byte{}
			if r.key != "" {
				kv := &mvccpb.KeyValue{Key: []byte(r.key)}
				if !r.tomb {
					kv = &mvccpb.KeyValue{Key: []byte(r.key), Value: []byte(r.value), CreateRevision: r.create, ModRevision: r.main, Version: r.version, Lease: r.lease}
				}
				v, _ = proto.Marshal(kv)
			}
			if err := kb.Put(etcdRevKey(mvcc.Revision{Main: r.main, Sub: r.sub}, r.tomb), v); err != nil {
				return err
			}
		}
		for k, v := range meta {
			mb.Put([]byte(k), v)
		}
		for id, l := range leases {
			lb.Put(binary.BigEndian.AppendUint64(nil, uint64(id)), encodeEtcdLease(id, l[0], l[1]))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	return p
}

type etcdRev struct {
	main, sub              int64
	key, value             string
	create, version, lease int64
	tomb                   bool
}

// TestOpenEtcdFollowsEtcdsRestore: a compaction etcd scheduled but did not
// finish is finished by keel; a revision etcdutl --bump-revision added
// moves the revision on; a key attaches to its lease only if the lease
// exists, as etcd attaches them.
func TestOpenEtcdFollowsEtcdsRestore(t *testing.T) {
	rev := func(m int64) []byte { return etcdRevKey(mvcc.Revision{Main: m}, false) }
	p := etcdFile(t, []etcdRev{
		{main: 2, key: "a", value: "1", create: 2, version: 1, lease: 5},
		{main: 3, key: "b", value: "1", create: 3, version: 1},
		{main: 3, sub: 1, key: "c", value: "1", create: 3, version: 1, lease: 9},
		{main: 4, key: "b", tomb: true},
		{main: 5, key: "a", value: "2", create: 2, version: 2, lease: 5},
		{main: 9}, // etcdutl snapshot restore --bump-revision 3 --mark-compacted
	}, map[string][]byte{"scheduledCompactRev": rev(4), "finishedCompactRev": rev(3), "storageVersion": []byte("3.7.0")},
		map[int64][2]int64{5: {30, 12}})
	src, err := OpenEtcd(p, true)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	// etcdutl counts the bump's empty record as a key too.
	if i := src.Info(); i.Revision != 9 || i.CompactRevision != 4 || i.TotalKeys != 3 {
		t.Fatalf("info %+v: want revision 9, compacted 4, 3 keys", i)
	}
	got := importInto(t, src)
	if got.store.Rev() != 9 || got.store.CompactRev() != 4 {
		t.Fatalf("revision %d compacted %d, want 9 and 4", got.store.Rev(), got.store.CompactRev())
	}
	<-got.store.WaitCompactions()
	ctx := context.Background()
	r, err := got.store.Read().Range(ctx, []byte("a"), []byte{}, mvcc.RangeOptions{Rev: 4})
	if err != nil {
		t.Fatal(err)
	}
	want := []*mvccpb.KeyValue{
		{Key: []byte("a"), Value: []byte("1"), CreateRevision: 2, ModRevision: 2, Version: 1, Lease: 5},
		{Key: []byte("c"), Value: []byte("1"), CreateRevision: 3, ModRevision: 3, Version: 1, Lease: 9},
	}
	if !kvsEqual(r.KVs, want) {
		t.Fatalf("at 4: %v, want %v", r.KVs, want)
	}
	if _, err := got.store.Read().Range(ctx, []byte("a"), nil, mvcc.RangeOptions{Rev: 3}); !errors.Is(err, mvcc.ErrCompacted) {
		t.Fatalf("range at 3: %v, want ErrCompacted", err)
	}
	if keys, _ := got.leases.Keys(got.e.DB(), 5); len(keys) != 1 || string(keys[0]) != "a" {
		t.Fatalf("lease 5 keys %q, want [a]", keys)
	}
	if recs := leaseRecords(t, got.e); len(recs) != 2 || !reflect.DeepEqual(recs[1], lease.Record{ID: 5, TTL: 30, Remaining: 12}) {
		t.Fatalf("lease records %+v, want lease 5 with TTL 30, remaining 12, and its key", recs)
	}
	if got.leases.Exists(9) {
		t.Fatal("lease 9 is not in the file but exists")
	}
}

func TestOpenEtcdRefusesAKeelFileAndJunk(t *testing.T) {
	f := newFixture(t)
	data, _ := f.save(t)
	dir := t.TempDir()
	for name, b := range map[string][]byte{"keel": data, "zeros": make([]byte, 8192+32), "short": []byte("x")} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o600)
		if _, err := OpenEtcd(p, true); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: %v, want ErrCorrupt", name, err)
		}
	}
}

// TestEtcdExportKeepsARevisionPastTheLastVersion: etcd derives its revision
// from the last record of its key bucket, so a store whose revision was
// bumped past its last version gets an empty record at that revision, as
// etcdutl's --bump-revision writes; the etcd cluster then never hands out
// a revision twice.
func TestEtcdExportKeepsARevisionPastTheLastVersion(t *testing.T) {
	f := newFixture(t)
	f.populate(t, 5)
	b := f.e.DB().NewBatch()
	want, err := mvcc.BumpRevision(f.e.DB(), b, 1000, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(nil); err != nil {
		t.Fatal(err)
	}
	path, _ := exportFixture(t, f)
	src, err := OpenEtcd(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if got := src.Info().Revision; got != want {
		t.Fatalf("exported revision %d, want %d", got, want)
	}
}
