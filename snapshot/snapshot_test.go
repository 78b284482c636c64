package snapshot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"

	"github.com/keeldb/keel/mvcc"
	"github.com/keeldb/keel/storage"
)

type fixture struct {
	t     *testing.T
	e     *storage.Engine
	store *mvcc.Store
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	e, err := storage.Open("db", storage.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	s, err := mvcc.Open(e.DB(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); e.Close() })
	return &fixture{e: e, store: s}
}

// write runs fn as one transaction in one apply batch, recording applied.
func (f *fixture) write(t testing.TB, applied uint64, fn func(w *mvcc.Writer, tx *mvcc.Txn) error) {
	t.Helper()
	b := f.e.DB().NewIndexedBatch()
	defer b.Close()
	w := f.store.NewWriter(b)
	tx := w.Txn()
	if err := fn(w, tx); err != nil {
		t.Fatal(err)
	}
	tx.End()
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	if err := storage.SetApplied(b, applied); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(nil); err != nil {
		t.Fatal(err)
	}
	f.store.Committed(w)
}

// populate writes n keys (some twice), deletes every third one and compacts
// halfway; it returns the number of live keys.
func (f *fixture) populate(t testing.TB, n int) int64 {
	idx := uint64(10)
	for i := range n {
		idx++
		f.write(t, idx, func(_ *mvcc.Writer, tx *mvcc.Txn) error {
			_, err := tx.Put([]byte(fmt.Sprintf("key/%04d", i)), []byte(fmt.Sprintf("value %d", i)), 0)
			return err
		})
	}
	idx++
	f.write(t, idx, func(w *mvcc.Writer, _ *mvcc.Txn) error { return w.Compact(f.store.Rev() / 2) })
	<-f.store.WaitCompactions()
	live := int64(n)
	for i := 0; i < n; i += 3 {
		idx++
		f.write(t, idx, func(_ *mvcc.Writer, tx *mvcc.Txn) error {
			_, _, err := tx.DeleteRange(context.Background(), []byte(fmt.Sprintf("key/%04d", i)), nil)
			return err
		})
		live--
	}
	for i := 1; i < n; i += 3 {
		idx++
		f.write(t, idx, func(_ *mvcc.Writer, tx *mvcc.Txn) error {
			_, err := tx.Put([]byte(fmt.Sprintf("key/%04d", i)), []byte("again"), 0)
			return err
		})
	}
	return live
}

var testHeader = Header{ClusterID: 0xc1, MemberID: 0x1e, Created: time.Unix(1700000000, 5).UTC(), StorageVersion: "3.7.0"}

func (f *fixture) save(t testing.TB) ([]byte, Info) {
	t.Helper()
	var buf bytes.Buffer
	info, err := Save(context.Background(), f.e, &buf, testHeader)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), info
}

func TestSaveThenVerifyDescribesTheState(t *testing.T) {
	f := newFixture(t)
	live := f.populate(t, 40)
	data, saved := f.save(t)

	if got := len(data) % 512; got != 32 {
		t.Fatalf("len %% 512 = %d, want 32 (etcdctl checks for the sha256 trailer this way)", got)
	}
	if sum := sha256.Sum256(data[:len(data)-32]); !bytes.Equal(sum[:], data[len(data)-32:]) {
		t.Fatal("the trailer is not the sha256 of what precedes it")
	}
	info, err := Verify(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if info != saved {
		t.Fatalf("Verify = %+v, Save returned %+v", info, saved)
	}
	if info.Revision != f.store.Rev() || info.CompactRevision != f.store.CompactRev() || info.TotalKeys != live {
		t.Fatalf("revision %d compacted %d keys %d; want %d %d %d", info.Revision, info.CompactRevision, info.TotalKeys, f.store.Rev(), f.store.CompactRev(), live)
	}
	if applied, _ := f.e.Applied(); info.Applied != applied {
		t.Fatalf("applied %d, want %d", info.Applied, applied)
	}
	if info.Size != int64(len(data)) || info.ClusterID != 0xc1 || info.MemberID != 0x1e ||
		!info.Created.Equal(testHeader.Created) || info.StorageVersion != "3.7.0" {
		t.Fatalf("info %+v", info)
	}

	// The records are exactly the state stream's records.
	var state bytes.Buffer
	if err := storage.WriteState(f.e.DB(), &state); err != nil {
		t.Fatal(err)
	}
	want, err := storage.NewStateReader(&state)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	for {
		wk, wv, werr := want.Next()
		k, v, err := r.Next()
		if errors.Is(werr, io.EOF) {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("after the last state record: %q, %v", k, err)
			}
			break
		}
		if err != nil || !bytes.Equal(k, wk) || !bytes.Equal(v, wv) {
			t.Fatalf("record %q=%q (%v), want %q=%q", k, v, err, wk, wv)
		}
	}
}

func TestSameStateSameHash(t *testing.T) {
	f := newFixture(t)
	f.populate(t, 10)
	_, a := f.save(t)
	_, b := f.save(t)
	if a.Hash != b.Hash {
		t.Fatalf("hash %x then %x", a.Hash, b.Hash)
	}
	f.write(t, 1000, func(_ *mvcc.Writer, tx *mvcc.Txn) error {
		_, err := tx.Put([]byte("more"), nil, 0)
		return err
	})
	if _, c := f.save(t); c.Hash == a.Hash {
		t.Fatal("the hash did not change with the state")
	}
}

func TestEmptyStoreSnapshot(t *testing.T) {
	f := newFixture(t)
	data, _ := f.save(t)
	info, err := Verify(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if info.Revision != 1 || info.TotalKeys != 0 || info.CompactRevision != -1 {
		t.Fatalf("%+v", info)
	}
}

// TestSaveIsOnePointInTime blocks Save after its first bytes, writes, and
// checks the file holds the state from before the writes.
func TestSaveIsOnePointInTime(t *testing.T) {
	f := newFixture(t)
	f.populate(t, 30)
	rev := f.store.Rev()
	pr, pw := io.Pipe()
	type result struct {
		info Info
		err  error
	}
	done := make(chan result, 1)
	go func() {
		info, err := Save(context.Background(), f.e, pw, testHeader)
		pw.CloseWithError(err)
		done <- result{info, err}
	}()
	first := make([]byte, 1)
	if _, err := io.ReadFull(pr, first); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		f.write(t, uint64(5000+i), func(_ *mvcc.Writer, tx *mvcc.Txn) error {
			_, err := tx.Put([]byte(fmt.Sprintf("later/%d", i)), []byte("x"), 0)
			return err
		})
	}
	rest, err := io.ReadAll(pr)
	if err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	info, err := Verify(bytes.NewReader(append(first, rest...)))
	if err != nil {
		t.Fatal(err)
	}
	if info.Revision != rev || res.info.Revision != rev {
		t.Fatalf("snapshot at revision %d (writer said %d), want %d: later writes leaked in", info.Revision, res.info.Revision, rev)
	}
}

func TestSaveStopsWhenContextIsDone(t *testing.T) {
	f := newFixture(t)
	f.populate(t, 5)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Save(ctx, f.e, io.Discard, testHeader); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
}

// verifyAll reads data with Next to the end, as a restore would, and
// returns the error that ended it (nil at a clean io.EOF).
func verifyAll(data []byte) error {
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		return err
	}
	for {
		if _, _, err := r.Next(); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
	}
}

func TestDecodeRejectsDamage(t *testing.T) {
	f := newFixture(t)
	f.populate(t, 20)
	data, _ := f.save(t)
	mutate := func(fn func(b []byte) []byte) []byte {
		return fn(append([]byte(nil), data...))
	}
	withTrailer := func(body []byte) []byte {
		sum := sha256.Sum256(body)
		return append(body, sum[:]...)
	}
	body := data[:len(data)-32]
	endAt := bytes.LastIndexByte(bytes.TrimRight(body, "\x00"), tagEnd) // not exact, but inside the end record or before it
	cases := map[string]struct {
		data []byte
		msg  string
	}{
		"empty":            {nil, "truncated"},
		"magic only":       {[]byte(magic), "truncated"},
		"not a snapshot":   {bytes.Repeat([]byte("hello world "), 100), "not a keel snapshot"},
		"bbolt file":       {append(append(make([]byte, 16), 0xed, 0xda, 0x0c, 0xed), make([]byte, 4076)...), "etcd (bbolt)"},
		"future version":   {mutate(func(b []byte) []byte { b[len(magic)] = 9; return b }), "format version 9"},
		"trailer missing":  {body, ""},
		"one byte more":    {append(append([]byte(nil), data...), 0), ""},
		"flipped trailer":  {mutate(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), "sha256 mismatch"},
		"flipped value":    {mutate(func(b []byte) []byte { b[len(b)-32-600] ^= 0x40; return b }), ""},
		"no padding":       {withTrailer(bytes.TrimRight(body, "\x00")), "multiple of 512"},
		"padding not zero": {mutate(func(b []byte) []byte { b[len(b)-33] = 1; return b }), "after the end record"},
		"records dropped":  {withTrailer(append(append([]byte(nil), body[:endAt]...), make([]byte, 512-endAt%512)...)), ""},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			for _, check := range []func([]byte) error{func(b []byte) error { _, err := Verify(bytes.NewReader(b)); return err }, verifyAll} {
				err := check(c.data)
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("err = %v, want ErrCorrupt", err)
				}
				if c.msg != "" && !bytes.Contains([]byte(err.Error()), []byte(c.msg)) {
					t.Fatalf("err = %v, want it to mention %q", err, c.msg)
				}
			}
		})
	}
}

func TestEveryTruncationIsRejected(t *testing.T) {
	f := newFixture(t)
	f.populate(t, 8)
	data, _ := f.save(t)
	for n := range len(data) {
		if _, err := Verify(bytes.NewReader(data[:n])); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d of %d bytes: err = %v, want ErrCorrupt", n, len(data), err)
		}
	}
}

func TestWriterRefusesKeysOutOfOrder(t *testing.T) {
	w, err := NewWriter(io.Discard, testHeader)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add([]byte("b"), nil); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "b", ""} {
		if err := w.Add([]byte(k), nil); err == nil {
			t.Fatalf("Add(%q) after \"b\" succeeded", k)
		}
	}
}
