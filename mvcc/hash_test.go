package mvcc

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// history applies the same writes to a store (which starts at revision 1):
// puts, overwrites, deletes and a compaction at compactAt, then revisions
// 8..11.
func history(t *testing.T, s *Store, compactAt int64) {
	t.Helper()
	for i := range 4 {
		put(t, s, fmt.Sprintf("k%d", i), "v1") // revs 2..5
	}
	put(t, s, "k0", "v2") // 6
	del(t, s, "k1", "")   // 7
	if compactAt > 0 {
		write(t, s, func(tx *Txn) {
			if err := tx.w.Compact(compactAt); err != nil {
				t.Fatal(err)
			}
		})
	}
	put(t, s, "k2", "v2") // 8
	put(t, s, "k9", "v1") // 9
	del(t, s, "k9", "")   // 10
	put(t, s, "k3", "v3") // 11
}

func TestHashKVIsEqualForTheSameRevisionsWhateverPhysicalCompactionDid(t *testing.T) {
	a, _ := openTestStore(t, vfs.NewMem())
	b, _ := openTestStore(t, vfs.NewMem())
	history(t, a, 6)
	history(t, b, 6)
	<-a.WaitCompactions() // a has dropped the superseded versions, b may not have
	ctx := context.Background()
	for _, rev := range []int64{0, 6, 7, 9, 11} {
		ha, err := a.HashKV(ctx, rev)
		if err != nil {
			t.Fatalf("rev %d: %v", rev, err)
		}
		hb, err := b.HashKV(ctx, rev)
		if err != nil {
			t.Fatalf("rev %d: %v", rev, err)
		}
		if ha != hb {
			t.Errorf("rev %d: hashes differ: %+v vs %+v", rev, ha, hb)
		}
		if ha.CompactRevision != 6 {
			t.Errorf("rev %d: compact revision %d, want 6", rev, ha.CompactRevision)
		}
	}
	if h, _ := a.HashKV(ctx, 0); h.Revision != 11 {
		t.Errorf("hash of rev 0 is of revision %d, want the current one, 11", h.Revision)
	}
}

func TestHashKVDiffersWhenTheKeySpaceDiffers(t *testing.T) {
	a, _ := openTestStore(t, vfs.NewMem())
	b, _ := openTestStore(t, vfs.NewMem())
	history(t, a, 0)
	history(t, b, 0)
	put(t, a, "x", "1")
	put(t, b, "x", "2")
	ctx := context.Background()
	ha, _ := a.HashKV(ctx, 0)
	hb, _ := b.HashKV(ctx, 0)
	if ha.Hash == hb.Hash {
		t.Fatal("different values hash the same")
	}
	if ha.CompactRevision != -1 {
		t.Errorf("never compacted: compact revision %d, want -1 as etcd", ha.CompactRevision)
	}
	// The revisions before the difference still agree.
	ha, _ = a.HashKV(ctx, 11)
	hb, _ = b.HashKV(ctx, 11)
	if ha != hb {
		t.Fatalf("rev 11 differs: %+v vs %+v", ha, hb)
	}
}

func TestHashKVRefusesFutureAndCompactedRevisions(t *testing.T) {
	s, _ := openTestStore(t, vfs.NewMem())
	history(t, s, 6)
	ctx := context.Background()
	if _, err := s.HashKV(ctx, 12); !errors.Is(err, ErrFutureRev) {
		t.Errorf("future revision: %v, want ErrFutureRev", err)
	}
	if _, err := s.HashKV(ctx, 5); !errors.Is(err, ErrCompacted) {
		t.Errorf("compacted revision: %v, want ErrCompacted", err)
	}
}
