package mvcc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.uber.org/zap"

	"github.com/keeldb/keel/storage"
)

func openTestStore(t *testing.T, fs vfs.FS) (*Store, *storage.Engine) {
	t.Helper()
	e, err := storage.Open("db", storage.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(e.DB(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); e.Close() })
	return s, e
}

// write runs f as one write transaction in its own apply batch.
func write(t *testing.T, s *Store, f func(tx *Txn)) {
	t.Helper()
	b := s.db.NewIndexedBatch()
	defer b.Close()
	w := s.NewWriter(b)
	tx := w.Txn()
	f(tx)
	tx.End()
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	s.Committed(w)
}

func put(t *testing.T, s *Store, k, v string) {
	t.Helper()
	write(t, s, func(tx *Txn) {
		if _, err := tx.Put([]byte(k), []byte(v), 0); err != nil {
			t.Fatal(err)
		}
	})
}

func del(t *testing.T, s *Store, k, end string) {
	t.Helper()
	write(t, s, func(tx *Txn) {
		var e []byte
		if end != "" {
			e = []byte(end)
		}
		if _, _, err := tx.DeleteRange(context.Background(), []byte(k), e); err != nil {
			t.Fatal(err)
		}
	})
}

func get(t *testing.T, s *Store, k, end []byte, rev int64) (*RangeResult, error) {
	t.Helper()
	return s.Read().Range(context.Background(), k, end, RangeOptions{Rev: rev, WithTotalCount: true})
}

func TestKeyEncodingOrdersLikeUserKeys(t *testing.T) {
	keys := [][]byte{{}, {0}, {0, 0}, {0, 1}, {0, 0xff}, {1}, []byte("a"), []byte("a\x00"), []byte("a\x00\x00"), []byte("a\x00b"), []byte("a\x01"), []byte("ab"), {0xff}, {0xff, 0}, {0xff, 0xff}}
	for i := range keys {
		for j := range keys {
			want := bytes.Compare(keys[i], keys[j])
			got := bytes.Compare(appendKeyPrefix(nil, keys[i]), appendKeyPrefix(nil, keys[j]))
			if want != got {
				t.Errorf("compare(%q, %q): user %d, encoded %d", keys[i], keys[j], want, got)
			}
			// Every version of key i sorts on the same side of key j's versions.
			vi := versionKey(keys[i], Revision{Main: 5, Sub: 3})
			vj := versionKey(keys[j], Revision{Main: 7, Sub: 0})
			if want != 0 && bytes.Compare(vi, vj) != want {
				t.Errorf("versions of %q and %q interleave", keys[i], keys[j])
			}
		}
		dec, err := decodeUserKey(appendKeyPrefix(nil, keys[i]))
		if err != nil || !bytes.Equal(dec, keys[i]) {
			t.Errorf("round trip of %q gave %q, %v", keys[i], dec, err)
		}
	}
}

func TestRevisionsVersionsAndTombstones(t *testing.T) {
	s, _ := openTestStore(t, vfs.NewMem())
	if s.Rev() != 1 {
		t.Fatalf("new store at revision %d, want 1", s.Rev())
	}
	put(t, s, "a", "1") // rev 2
	put(t, s, "a", "2") // rev 3
	put(t, s, "b", "x") // rev 4
	del(t, s, "a", "")  // rev 5
	put(t, s, "a", "3") // rev 6

	check := func(rev int64, want string) {
		t.Helper()
		res, err := get(t, s, []byte("a"), []byte{}, rev)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, kv := range res.KVs {
			got = append(got, fmt.Sprintf("%s=%s c%d m%d v%d", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version))
		}
		if fmt.Sprint(got) != want {
			t.Errorf("at rev %d: got %v, want %s", rev, got, want)
		}
		if res.Rev != 6 {
			t.Errorf("header revision %d, want the current 6", res.Rev)
		}
	}
	check(1, "[]")
	check(2, "[a=1 c2 m2 v1]")
	check(3, "[a=2 c2 m3 v2]")
	check(4, "[a=2 c2 m3 v2 b=x c4 m4 v1]")
	check(5, "[b=x c4 m4 v1]")
	check(6, "[a=3 c6 m6 v1 b=x c4 m4 v1]")
	check(0, "[a=3 c6 m6 v1 b=x c4 m4 v1]")
	if _, err := get(t, s, []byte("a"), nil, 7); !errors.Is(err, ErrFutureRev) {
		t.Errorf("read at a future revision: %v", err)
	}
}

func TestTxnSeesItsOwnWritesAndShareOneRevision(t *testing.T) {
	s, _ := openTestStore(t, vfs.NewMem())
	put(t, s, "k", "old") // rev 2
	write(t, s, func(tx *Txn) {
		res, err := tx.Range(context.Background(), []byte("k"), nil, RangeOptions{})
		if err != nil || len(res.KVs) != 1 || string(res.KVs[0].Value) != "old" || res.Rev != 2 {
			t.Fatalf("before writing: %v %v", res, err)
		}
		if rev, _ := tx.Put([]byte("k"), []byte("new"), 0); rev != 3 {
			t.Fatalf("put at %d", rev)
		}
		if rev, _ := tx.Put([]byte("j"), []byte("x"), 0); rev != 3 {
			t.Fatalf("put at %d", rev)
		}
		res, err = tx.Range(context.Background(), []byte("a"), []byte("z"), RangeOptions{})
		if err != nil || len(res.KVs) != 2 || res.Rev != 3 {
			t.Fatalf("after writing: %v %v", res, err)
		}
		if kv := res.KVs[1]; string(kv.Value) != "new" || kv.Version != 2 || kv.CreateRevision != 2 {
			t.Fatalf("own write: %v", kv)
		}
		// A delete and a put of the same key in one txn (possible in etcd
		// through a "\x00"-ended delete): the put wins at the same revision.
		n, hrev, err := tx.DeleteRange(context.Background(), []byte("j"), []byte{})
		if err != nil || n != 2 || hrev != 3 {
			t.Fatalf("delete: %d %d %v", n, hrev, err)
		}
		tx.Put([]byte("k"), []byte("again"), 0)
	})
	if s.Rev() != 3 {
		t.Fatalf("rev %d, want 3", s.Rev())
	}
	res, _ := get(t, s, []byte("a"), []byte{}, 0)
	if len(res.KVs) != 1 || string(res.KVs[0].Value) != "again" || res.KVs[0].Version != 1 || res.KVs[0].CreateRevision != 3 {
		t.Fatalf("after txn: %v", res.KVs)
	}
}

func TestLimitCountAndKeysOnly(t *testing.T) {
	s, _ := openTestStore(t, vfs.NewMem())
	for i := 0; i < 10; i++ {
		put(t, s, fmt.Sprintf("k%d", i), "v")
	}
	del(t, s, "k3", "")
	res, err := s.Read().Range(context.Background(), []byte("k"), []byte("l"), RangeOptions{Limit: 4, WithTotalCount: true, KeysOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.KVs) != 4 || res.Count != 9 || res.KVs[3].Value != nil || string(res.KVs[3].Key) != "k4" {
		t.Fatalf("limit 4: %d kvs, count %d, %v", len(res.KVs), res.Count, res.KVs)
	}
	res, _ = s.Read().Range(context.Background(), []byte("k"), []byte("l"), RangeOptions{Limit: 4})
	if len(res.KVs) != 4 || res.Count != 4 {
		t.Fatalf("limit without total: %d kvs, count %d", len(res.KVs), res.Count)
	}
	res, _ = s.Read().Range(context.Background(), []byte("k"), []byte("l"), RangeOptions{CountOnly: true, Limit: 2})
	if res.KVs != nil || res.Count != 9 {
		t.Fatalf("count only: %v %d", res.KVs, res.Count)
	}
	res, _ = s.Read().Range(context.Background(), []byte("k5"), []byte("k1"), RangeOptions{})
	if len(res.KVs) != 0 {
		t.Fatalf("inverted range returned %v", res.KVs)
	}
}

func TestCompactionKeepsVisibleVersionsOnly(t *testing.T) {
	fs := vfs.NewMem()
	s, e := openTestStore(t, fs)
	put(t, s, "a", "1") // 2
	put(t, s, "a", "2") // 3
	put(t, s, "b", "1") // 4
	del(t, s, "b", "")  // 5
	put(t, s, "a", "3") // 6
	put(t, s, "c", "1") // 7

	write(t, s, func(tx *Txn) {
		if err := tx.w.Compact(5); err != nil {
			t.Fatal(err)
		}
	})
	<-s.WaitCompactions()
	if _, err := get(t, s, []byte("a"), nil, 4); !errors.Is(err, ErrCompacted) {
		t.Fatalf("read below the compacted revision: %v", err)
	}
	res, err := get(t, s, []byte("a"), []byte{}, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.KVs) != 1 || string(res.KVs[0].Value) != "2" {
		t.Fatalf("at the compacted revision: %v", res.KVs)
	}
	// Count what is physically left: a@3 (visible at 5), a@6, c@7.
	it, _ := e.DB().NewIter(&pebble.IterOptions{LowerBound: kvSpaceStart, UpperBound: kvSpaceEnd})
	var left []string
	for ok := it.First(); ok; ok = it.Next() {
		p, r := splitVersionKey(it.Key())
		k, _ := decodeUserKey(p)
		left = append(left, fmt.Sprintf("%s@%d", k, r.Main))
	}
	it.Close()
	if fmt.Sprint(left) != "[a@6 a@3 c@7]" {
		t.Fatalf("versions left after compaction: %v", left)
	}
	write(t, s, func(tx *Txn) {
		if err := tx.w.Compact(5); !errors.Is(err, ErrCompacted) {
			t.Fatalf("compacting again at 5: %v", err)
		}
		if err := tx.w.Compact(8); !errors.Is(err, ErrFutureRev) {
			t.Fatalf("compacting at a future revision: %v", err)
		}
	})
}

// TestRandomAgainstModel runs random writes, deletes and compactions and
// checks every read at every live revision against a simple in-memory model.
func TestRandomAgainstModel(t *testing.T) {
	s, _ := openTestStore(t, vfs.NewMem())
	rng := rand.New(rand.NewPCG(1, 2))
	keys := []string{"a", "a\x00", "a\x00b", "ab", "b", "\x00", "\xff", "c"}
	type ver struct {
		val         string
		create, mod int64
		version     int64
		deleted     bool
	}
	history := map[string][]ver{} // per key, oldest first
	rev := int64(1)
	compacted := int64(-1)
	modelAt := func(k string, at int64) (ver, bool) {
		var found ver
		ok := false
		for _, v := range history[k] {
			if v.mod <= at {
				found, ok = v, true
			}
		}
		if ok && found.deleted {
			return ver{}, false
		}
		return found, ok
	}
	for step := 0; step < 400; step++ {
		k := keys[rng.IntN(len(keys))]
		switch r := rng.IntN(10); {
		case r < 6:
			val := fmt.Sprint(step)
			write(t, s, func(tx *Txn) { tx.Put([]byte(k), []byte(val), 0) })
			rev++
			prev, ok := modelAt(k, rev-1)
			v := ver{val: val, create: rev, mod: rev, version: 1}
			if ok {
				v.create, v.version = prev.create, prev.version+1
			}
			history[k] = append(history[k], v)
		case r < 9:
			if _, ok := modelAt(k, rev); !ok {
				del(t, s, k, "")
				continue
			}
			del(t, s, k, "")
			rev++
			history[k] = append(history[k], ver{mod: rev, deleted: true})
		default:
			c := compacted + 1 + rng.Int64N(rev-compacted)
			if c <= compacted || c > rev {
				continue
			}
			write(t, s, func(tx *Txn) {
				if err := tx.w.Compact(c); err != nil {
					t.Fatal(err)
				}
			})
			compacted = c
			if rng.IntN(2) == 0 {
				<-s.WaitCompactions()
			}
		}
		if s.Rev() != rev {
			t.Fatalf("step %d: store at %d, model at %d", step, s.Rev(), rev)
		}
		at := rev - rng.Int64N(rev)
		if at < compacted {
			continue
		}
		res, err := get(t, s, []byte{0}, []byte{}, at)
		if err != nil {
			t.Fatalf("step %d: read at %d: %v", step, at, err)
		}
		var want []string
		sorted := append([]string(nil), keys...)
		sort.Strings(sorted)
		for _, mk := range sorted {
			if v, ok := modelAt(mk, at); ok {
				want = append(want, fmt.Sprintf("%q=%s/%d/%d/%d", mk, v.val, v.create, v.mod, v.version))
			}
		}
		var got []string
		for _, kv := range res.KVs {
			got = append(got, kvString(kv))
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("step %d at rev %d (compacted %d):\n got %v\nwant %v", step, at, compacted, got, want)
		}
	}
}

func kvString(kv *mvccpb.KeyValue) string {
	return fmt.Sprintf("%q=%s/%d/%d/%d", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version)
}
