package mvcc

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestPaginatedCountsMatchAFullCount pages through ranges as Kubernetes
// does (limit+1 keys, the next page from right after the last key shown,
// at the first page's revision) while writes go on, and checks every
// page's count against a recount of the same range with a fresh store
// view that has no cached counts.
func TestPaginatedCountsMatchAFullCount(t *testing.T) {
	s, _ := openTestStore(t, vfs.NewMem())
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range 300 {
		put(t, s, fmt.Sprintf("/r/%04d", i), "v")
	}
	for i := 0; i < 300; i += 7 {
		del(t, s, fmt.Sprintf("/r/%04d", i), "")
	}
	ctx := context.Background()
	end := []byte("/r0")
	for round := range 20 {
		rev := s.Rev()
		limit := int64(1 + rng.IntN(40))
		key := []byte("/r/")
		seen := 0
		for page := 0; ; page++ {
			ro := RangeOptions{Limit: limit + 1, Rev: rev, WithTotalCount: true}
			got, err := s.Read().Range(ctx, key, end, ro)
			if err != nil {
				t.Fatal(err)
			}
			fresh := &Store{db: s.db, lg: s.lg, counts: newCountCache()}
			fresh.rev.Store(s.rev.Load())
			fresh.compactRev.Store(s.compactRev.Load())
			want, err := fresh.Read().Range(ctx, key, end, ro)
			if err != nil {
				t.Fatal(err)
			}
			if got.Count != want.Count || len(got.KVs) != len(want.KVs) {
				t.Fatalf("round %d page %d from %q at rev %d: count %d with %d keys, want %d with %d keys",
					round, page, key, rev, got.Count, len(got.KVs), want.Count, len(want.KVs))
			}
			for i := range got.KVs {
				if string(got.KVs[i].Key) != string(want.KVs[i].Key) {
					t.Fatalf("round %d page %d: key %d is %q, want %q", round, page, i, got.KVs[i].Key, want.KVs[i].Key)
				}
			}
			if int64(len(got.KVs)) <= limit {
				seen += len(got.KVs)
				break
			}
			shown := got.KVs[:limit]
			seen += len(shown)
			key = append(append([]byte(nil), shown[len(shown)-1].Key...), 0)
			// Writes between pages must not change what the pages see.
			k := fmt.Sprintf("/r/%04d", rng.IntN(330))
			if rng.IntN(2) == 0 {
				put(t, s, k, "w")
			} else {
				del(t, s, k, "")
			}
		}
		first, err := s.Read().Range(ctx, []byte("/r/"), end, RangeOptions{Rev: rev, CountOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		if seen != first.Count {
			t.Fatalf("round %d: the pages showed %d keys, the range at rev %d holds %d", round, seen, rev, first.Count)
		}
	}
}
