package snapshot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"

	"github.com/keeldb/keel/mvcc"
)

// boltFile writes a small etcd-shaped bbolt database (no sha256 trailer,
// as a member's db file) with the given page size and returns its path.
func boltFile(t *testing.T, pageSize, keys int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "db")
	db, err := bolt.Open(p, 0o600, &bolt.Options{PageSize: pageSize})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		kb, err := tx.CreateBucket(etcdKeyBucket)
		if err != nil {
			return err
		}
		mb, err := tx.CreateBucket(etcdMetaBucket)
		if err != nil {
			return err
		}
		if err := mb.Put(etcdStorageVersion, []byte("3.7.0")); err != nil {
			return err
		}
		for i := 1; i <= keys; i++ {
			kv, err := proto.Marshal(&mvccpb.KeyValue{Key: fmt.Appendf(nil, "k%06d", i), Value: []byte("value"),
				CreateRevision: int64(i + 1), ModRevision: int64(i + 1), Version: 1})
			if err != nil {
				return err
			}
			if err := kb.Put(etcdRevKey(mvcc.Revision{Main: int64(i + 1)}, false), kv); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A second transaction, so that both meta pages describe the data.
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(etcdMetaBucket).Put(etcdConsistentIndex, make([]byte, 8))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBoltPagesFindsThePageSizeAsBboltDoes: with the first meta page
// damaged, bbolt finds the second by trying each power of two; so must the
// page walk, or a valid file made with 16 KiB pages is refused.
func TestBoltPagesFindsThePageSizeAsBboltDoes(t *testing.T) {
	for _, ps := range []int{4096, 16384} {
		p := boltFile(t, ps, 10)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b[boltHeaderLen+56] ^= 0xff // the first meta page's checksum
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		src, err := OpenEtcd(p, true)
		if err != nil {
			t.Fatalf("page size %d, first meta damaged: %v", ps, err)
		}
		if got := src.Info().TotalKeys; got == 0 {
			t.Errorf("page size %d: no keys", ps)
		}
		src.Close()
	}
}

// TestBoltPagesRefusesACycle: a branch page whose first child is itself
// sends bbolt's cursor down for ever; the walk refuses it.
func TestBoltPagesRefusesACycle(t *testing.T) {
	const ps = 1024
	p := boltFile(t, ps, 500)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	// The newer meta's root bucket page is a leaf listing the buckets;
	// find the "key" bucket's root, a branch page with this many keys.
	m0, _ := parseBoltMeta(b[boltHeaderLen:])
	m1, _ := parseBoltMeta(b[ps+boltHeaderLen:])
	m := m0
	if m1.txid > m0.txid {
		m = m1
	}
	root := b[int(m.root)*ps:]
	branch := uint64(0)
	for i := range int(le.Uint16(root[10:])) {
		e := root[boltHeaderLen+i*boltElemLen:]
		k := e[le.Uint32(e[4:]):][:le.Uint32(e[8:])]
		if string(k) == string(etcdKeyBucket) {
			branch = le.Uint64(e[le.Uint32(e[4:])+le.Uint32(e[8:]):])
		}
	}
	page := b[int(branch)*ps:]
	if branch == 0 || le.Uint16(page[8:]) != boltBranchPage {
		t.Fatalf("the key bucket's root %d is not a branch page", branch)
	}
	le.PutUint64(page[boltHeaderLen+8:], branch) // first child: itself
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = OpenEtcd(p, true)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a cycle in the page tree: %v, want ErrCorrupt", err)
	}
	t.Log(err)
}
