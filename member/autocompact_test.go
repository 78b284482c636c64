package member

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/keeldb/keel/compactor"
)

// TestAutoCompactionRevisionMode runs --auto-compaction-mode=revision
// --auto-compaction-retention=3 on a leading member with a fake clock:
// nothing is compacted before the 5 minutes pass, then the key space is
// compacted through Raft at the current revision minus 3.
func TestAutoCompactionRevisionMode(t *testing.T) {
	clock := clockwork.NewFakeClock()
	lm := startLeaseMemberWith(t, 0, func(c *Config) {
		c.AutoCompactionMode = compactor.ModeRevision
		c.AutoCompactionRetention = 3
		c.AutoCompactionClock = clock
	})
	for i := 0; i < 9; i++ {
		if _, err := lm.m.Put(lm.ctx(), lm.root(), &pb.PutRequest{Key: fmt.Appendf(nil, "k%d", i), Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	if rev := lm.m.Rev(); rev != 10 {
		t.Fatalf("revision %d, want 10", rev)
	}
	ctx, cancel := context.WithTimeout(context.Background(), leaseTestTimeout)
	defer cancel()
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatalf("auto compactor never waited on its clock: %v", err)
	}
	clock.Advance(compactor.RevisionInterval - time.Second)
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if got := lm.m.kv.CompactRev(); got > 0 {
		t.Fatalf("compacted to %d before 5 minutes", got)
	}
	clock.Advance(time.Second)
	for lm.m.kv.CompactRev() != 7 {
		if ctx.Err() != nil {
			t.Fatalf("compacted to %d, want 7", lm.m.kv.CompactRev())
		}
		time.Sleep(time.Millisecond)
	}
}

// TestAutoCompactionOffOrNegative starts no compactor for a retention of 0
// or a negative one.
func TestAutoCompactionOffOrNegative(t *testing.T) {
	for _, r := range []time.Duration{0, -5 * time.Minute} {
		lm := startLeaseMemberWith(t, 0, func(c *Config) {
			c.AutoCompactionMode = compactor.ModePeriodic
			c.AutoCompactionRetention = r
		})
		if lm.m.autoCompactor != nil {
			t.Errorf("retention %v started a compactor", r)
		}
	}
}
