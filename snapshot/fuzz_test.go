package snapshot

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"testing"
)

// FuzzDecode feeds the decoder damaged snapshot files, seeded with real ones.
// Every input is decoded twice: as it is, and with its trailer recomputed so
// that the structural checks behind the checksum are explored too. The
// decoder must never panic, must fail only with ErrCorrupt, and must accept
// only a file whose records re-encode to the same state.
//
//	go test -fuzz=FuzzDecode -fuzztime=60s ./snapshot
func FuzzDecode(f *testing.F) {
	for _, n := range []int{0, 3, 40} {
		fx := newFixture(f)
		if n > 0 {
			fx.populate(f, n)
		}
		data, _ := fx.save(f)
		f.Add(data)
		f.Add(data[:len(data)/2])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDecode(t, data)
		if len(data) > 32 {
			fixed := append([]byte(nil), data[:len(data)-32]...)
			sum := sha256.Sum256(fixed)
			checkDecode(t, append(fixed, sum[:]...))
		}
	})
}

func checkDecode(t *testing.T, data []byte) {
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("NewReader: %v is not ErrCorrupt", err)
		}
		return
	}
	type kv struct{ k, v []byte }
	var recs []kv
	for {
		k, v, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Next: %v is not ErrCorrupt", err)
			}
			if _, _, again := r.Next(); again == nil || errors.Is(again, io.EOF) {
				t.Fatalf("Next after %v returned %v", err, again)
			}
			return
		}
		recs = append(recs, kv{append([]byte(nil), k...), append([]byte(nil), v...)})
	}
	// Accepted: it must describe itself truthfully and re-encode to the same
	// state.
	info := r.Info()
	if info.Size != int64(len(data)) || info.Records != int64(len(recs)) {
		t.Fatalf("accepted %d bytes with %d records, info says %d bytes, %d records", len(data), len(recs), info.Size, info.Records)
	}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, r.Header())
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		if err := w.Add(rec.k, rec.v); err != nil {
			t.Fatalf("an accepted record does not re-encode: %v", err)
		}
	}
	again, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if again.Hash != info.Hash || again.Revision != info.Revision || again.TotalKeys != info.TotalKeys || again.CompactRevision != info.CompactRevision {
		t.Fatalf("re-encoded %+v, accepted %+v", again, info)
	}
	if _, err := Verify(&buf); err != nil {
		t.Fatalf("the re-encoding does not verify: %v", err)
	}
}
