package scenario

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestKVKeysAreFixedWidthAndCoverTheKeySpace(t *testing.T) {
	const size, space = 6, 1000
	w := newKVWorker(0, size, 0, nil)
	seen := map[string]bool{}
	// Two passes over the key space: the second writes the same keys.
	for n := range uint64(2 * space) {
		k := w.key(n % space)
		if len(k) != size {
			t.Fatalf("key %d = %q: %d bytes, want %d", n, k, len(k), size)
		}
		seen[k] = true
	}
	if len(seen) != space {
		t.Fatalf("%d distinct keys, want %d", len(seen), space)
	}
	if got := w.key(42); got != "000042" {
		t.Fatalf("key 42 = %q, want 000042", got)
	}
}

func TestKVTxnPutKeysAreDistinctWithinATxnAndCoverTheKeySpace(t *testing.T) {
	const ops, space = 4, 10
	seen := map[uint64]bool{}
	for n := range uint64(space) {
		inTxn := map[uint64]bool{}
		for j := range uint64(ops) {
			k := txnKey(n, j, ops, space)
			if k >= space {
				t.Fatalf("request %d op %d: key %d outside the key space", n, j, k)
			}
			if inTxn[k] {
				t.Fatalf("request %d writes key %d twice", n, k)
			}
			inTxn[k] = true
			seen[k] = true
		}
	}
	if len(seen) != space {
		t.Fatalf("%d keys written, want %d", len(seen), space)
	}
}

func TestKVValuesAreFreshRandomBytesOfTheValueSize(t *testing.T) {
	w := newKVWorker(0, 8, 256, nil)
	a, b := w.value(), w.value()
	if len(a) != 256 || len(b) != 256 {
		t.Fatalf("values of %d and %d bytes, want 256", len(a), len(b))
	}
	if a == b {
		t.Fatal("two values are equal; every value must be fresh")
	}
}

func TestKVValidateRejectsAKeySpaceThatDoesNotFitTheKeySize(t *testing.T) {
	l := KVLoad{Members: 1, Clients: 1, Conns: 1, Duration: time.Second, KeySize: 3}
	if err := (KVPut{KVLoad: l, KeySpace: 1000}).Validate(); err != nil {
		t.Fatalf("1000 keys of 3 digits: %v", err)
	}
	if err := (KVPut{KVLoad: l, KeySpace: 1001}).Validate(); err == nil {
		t.Fatal("1001 keys of 3 digits accepted")
	}
	if err := (KVTxnPut{KVLoad: l, KeySpace: 3, Ops: 4}).Validate(); err == nil {
		t.Fatal("a txn of 4 distinct keys out of 3 accepted")
	}
	l.Conns = 2
	if err := (KVPut{KVLoad: l, KeySpace: 10}).Validate(); err == nil {
		t.Fatal("more connections than clients accepted")
	}
}

func TestFetchProfileSavesTheBodyAndReportsA404(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/debug/pprof/heap" {
			w.Write([]byte("profile"))
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	dir := t.TempDir()

	path := filepath.Join(dir, "heap.pprof")
	r := fetchProfile(t.Context(), http.DefaultClient, srv.URL+"/debug/pprof/heap", path, 5*time.Second)
	if r.err != nil || r.absent || r.path != path {
		t.Fatalf("fetch heap: %+v", r)
	}
	if data, err := os.ReadFile(path); err != nil || string(data) != "profile" {
		t.Fatalf("saved %q, %v", data, err)
	}

	path = filepath.Join(dir, "cpu.pprof")
	r = fetchProfile(t.Context(), http.DefaultClient, srv.URL+"/debug/pprof/profile?seconds=1", path, 5*time.Second)
	if !r.absent {
		t.Fatalf("fetch from a server without profiles: %+v, want absent", r)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("a file was saved for a 404: %v", err)
	}
}
