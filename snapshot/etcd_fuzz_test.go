package snapshot

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecodeEtcd feeds the etcd import damaged etcd databases, seeded with
// an exported one. Each input is imported with its hash checked (as saved,
// and with the trailer recomputed so the bbolt decoding behind the checksum
// is explored) and as a data-dir copy (--skip-hash-check). The import must
// never crash and must fail only with ErrCorrupt or ErrMissingHash.
//
// bbolt trusts the pages it reads: the import first walks the page tree
// itself (checkBoltPages: bounds, cycles, depth) and runs bbolt's reads
// under a guard that turns its panics and memory faults into ErrCorrupt.
// testdata/fuzz holds inputs that once hung or crashed the import.
//
// Inputs are large (a whole database), so shorten the minimisation of
// each new input or it takes most of the run:
//
//	go test -run XXX -fuzz=FuzzDecodeEtcd -fuzztime=60s -fuzzminimizetime=2s ./snapshot
func FuzzDecodeEtcd(f *testing.F) {
	fx := richState(f)
	data, _ := fx.save(f)
	p := filepath.Join(f.TempDir(), "seed.db")
	if _, err := ExportEtcd(bytes.NewReader(data), p); err != nil {
		f.Fatal(err)
	}
	seed, err := os.ReadFile(p)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add(seed[:len(seed)-32])
	f.Add(seed[:8192])
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		try := func(name string, content []byte, skip bool) {
			path := filepath.Join(dir, name)
			if err := os.WriteFile(path, content, 0o600); err != nil {
				t.Fatal(err)
			}
			src, err := OpenEtcd(path, skip)
			if err != nil {
				if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrMissingHash) {
					t.Fatalf("error %v wraps neither ErrCorrupt nor ErrMissingHash", err)
				}
				return
			}
			defer src.Close()
			if err := src.Records(func(k, v []byte) error { return nil }); err != nil {
				t.Fatalf("a file OpenEtcd accepted fails to convert: %v", err)
			}
		}
		try("as-is", b, false)
		try("skip", b, true)
		if len(b) > 32 {
			body := append([]byte(nil), b[:len(b)-32]...)
			sum := sha256.Sum256(body)
			try("resummed", append(body, sum[:]...), false)
		}
	})
}
