package crashtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The key space under test. Overlapping keys are written and deleted by
// every worker; distinct keys are written once each, under a prefix of
// their round, and never deleted.
const (
	keyPrefix      = "/crash/"
	overlapPrefix  = "/crash/k/"
	distinctPrefix = "/crash/u/"
	overlapKeys    = 24
)

// overlapEnd ends the range of overlapping keys.
var overlapEnd = prefixEnd(overlapPrefix)

func overlapKey(i int) string { return fmt.Sprintf("%s%03d", overlapPrefix, i) }

func roundPrefix(round int) string { return fmt.Sprintf("%s%03d/", distinctPrefix, round) }

func distinctKey(round, worker, seq int) string {
	return fmt.Sprintf("%sw%d-%05d", roundPrefix(round), worker, seq)
}

// prefixEnd returns the end of the range of keys starting with p.
func prefixEnd(p string) string {
	b := []byte(p)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return "\x00"
}

// kv is one key's version as read back.
type kv struct {
	key, value           string
	create, mod, version int64
}

func (k kv) String() string {
	return fmt.Sprintf("%s=%q(create %d, mod %d, version %d)", k.key, k.value, k.create, k.mod, k.version)
}

type opKind uint8

const (
	opPut opKind = iota
	opDelete
	opTxn
)

// op is one write issued by a worker, with its outcome.
type op struct {
	round, worker, seq int
	kind               opKind
	// key is the put key, or the first key deleted; end ends the deleted
	// range ("" deletes key alone).
	key, end string
	// value is unique to the op: every key it puts gets it.
	value string
	// A txn puts value under thenPuts and deletes thenDels when cmpKey
	// exists (version > 0), else puts value under elsePuts. Every branch
	// puts at least one key, so an applied txn always takes a revision.
	cmpKey                       string
	thenPuts, thenDels, elsePuts []string

	// acked is set when the response arrived; rev is its header revision,
	// deleted and succeeded the delete's count and the txn's branch.
	acked     bool
	rev       int64
	deleted   int64
	succeeded bool
	// late is set when the response arrived after the crash point of a crash
	// that may lose it (power loss): if the write survived it must be at rev,
	// but it need not survive.
	late bool
	err  error
	// The keys the op was seen to put and delete, once verified.
	sawPuts, sawDels []string
}

func (o *op) String() string {
	var s string
	switch o.kind {
	case opPut:
		s = fmt.Sprintf("put %s=%s", o.key, o.value)
	case opDelete:
		if o.end == "" {
			s = fmt.Sprintf("delete %s", o.key)
		} else {
			s = fmt.Sprintf("delete [%s, %s)", o.key, o.end)
		}
	case opTxn:
		s = fmt.Sprintf("txn if version(%s)>0 then put %v=%s delete %v else put %v=%s", o.cmpKey, o.thenPuts, o.value, o.thenDels, o.elsePuts, o.value)
	}
	switch {
	case o.acked && o.late:
		s += fmt.Sprintf(" (acknowledged after the crash point at revision %d)", o.rev)
	case o.acked:
		s += fmt.Sprintf(" (acknowledged at revision %d)", o.rev)
	default:
		s += fmt.Sprintf(" (not acknowledged: %v)", o.err)
	}
	return fmt.Sprintf("r%d/w%d/#%d %s", o.round, o.worker, o.seq, s)
}

// durable reports whether the op's outcome must survive the crash.
func (o *op) durable() bool { return o.acked && !o.late }

// changes reports whether an acknowledged op took a revision of its own.
func (o *op) changes() bool {
	switch o.kind {
	case opDelete:
		return o.deleted > 0
	default:
		return true
	}
}

func (o *op) inRange(k string) bool {
	if o.end == "" {
		return k == o.key
	}
	return k >= o.key && k < o.end
}

// genOp draws the next op of a worker.
func genOp(rng *rand.Rand, round, worker, seq int) *op {
	o := &op{round: round, worker: worker, seq: seq, value: fmt.Sprintf("r%d.w%d.%d", round, worker, seq)}
	x := rng.IntN(100)
	switch {
	case x < 35:
		o.kind, o.key = opPut, overlapKey(rng.IntN(overlapKeys))
	case x < 50:
		o.kind, o.key = opPut, distinctKey(round, worker, seq)
	case x < 60:
		o.kind, o.key = opDelete, overlapKey(rng.IntN(overlapKeys))
	case x < 65:
		a := rng.IntN(overlapKeys - 4)
		o.kind, o.key, o.end = opDelete, overlapKey(a), overlapKey(a+2+rng.IntN(3))
	default:
		o.kind = opTxn
		perm := rng.Perm(overlapKeys)
		o.cmpKey = overlapKey(perm[0])
		n := 1 + rng.IntN(3)
		for _, i := range perm[1 : 1+n] {
			o.thenPuts = append(o.thenPuts, overlapKey(i))
		}
		if rng.IntN(2) == 0 {
			o.thenDels = append(o.thenDels, overlapKey(perm[1+n]))
		}
		for _, i := range perm[5 : 6+rng.IntN(2)] {
			o.elsePuts = append(o.elsePuts, overlapKey(i))
		}
		if rng.IntN(2) == 0 {
			o.elsePuts = append(o.elsePuts, distinctKey(round, worker, seq))
		}
	}
	return o
}

// kvStore is the member under test as the load and the verifier use it
// (clientStore: through the official client). Revisions are response header
// revisions.
type kvStore interface {
	Put(ctx context.Context, key, value string) (rev int64, err error)
	// Delete deletes key, or [key, end) when end is not empty.
	Delete(ctx context.Context, key, end string) (rev, deleted int64, err error)
	// Txn runs o's txn and reports which branch ran.
	Txn(ctx context.Context, o *op) (rev int64, succeeded bool, err error)
	Compact(ctx context.Context, rev int64, physical bool) error
	// Range reads [key, end) at rev (0: the current revision), keeping only
	// versions with a mod revision of at least minMod when minMod > 0.
	Range(ctx context.Context, key, end string, rev, minMod int64) (kvs []kv, headerRev int64, err error)
	// IsCompacted reports whether err says the revision read was compacted.
	IsCompacted(err error) bool
}

// load is one round of concurrent writes.
type load struct {
	round   int
	workers int
	seed    uint64
	// compactTo, when > 0, is compacted to concurrently with the writes.
	compactTo int64
	physical  bool
	// lateAcks marks responses that arrive after crashed is set as late:
	// the crash may have lost them.
	lateAcks bool
	crashed  *atomic.Bool
}

// Per-op and per-round bounds of the load.
const (
	opTimeout       = 10 * time.Second
	maxOpsPerWorker = 20000
)

// loadResult is what a round of load did.
type loadResult struct {
	ops        [][]*op // per worker, in issue order
	compaction *compaction
}

type compaction struct {
	rev   int64
	acked bool
	err   error
}

// run issues writes until ctx ends and returns every op issued. Each worker
// draws its ops from its own generator seeded from the round's seed, so the
// ops are a function of the seed; only how many get issued depends on
// scheduling.
func (l *load) run(ctx context.Context, st kvStore) *loadResult {
	res := &loadResult{ops: make([][]*op, l.workers)}
	var wg sync.WaitGroup
	for w := range l.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(l.seed, uint64(l.round)<<16|uint64(w)))
			for seq := 0; seq < maxOpsPerWorker && ctx.Err() == nil; seq++ {
				o := genOp(rng, l.round, w, seq)
				res.ops[w] = append(res.ops[w], o)
				l.issue(ctx, st, o)
			}
		}()
	}
	if l.compactTo > 0 {
		c := &compaction{rev: l.compactTo}
		res.compaction = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, opTimeout)
			defer cancel()
			c.err = st.Compact(cctx, c.rev, l.physical)
			c.acked = c.err == nil && !(l.lateAcks && l.crashed.Load())
		}()
	}
	wg.Wait()
	return res
}

func (l *load) issue(ctx context.Context, st kvStore, o *op) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	switch o.kind {
	case opPut:
		o.rev, o.err = st.Put(ctx, o.key, o.value)
	case opDelete:
		o.rev, o.deleted, o.err = st.Delete(ctx, o.key, o.end)
	case opTxn:
		o.rev, o.succeeded, o.err = st.Txn(ctx, o)
	}
	if o.err == nil {
		o.acked = true
		// Loaded after the response arrived: if crashed is still false, the
		// crash point comes later and the write was durable before it.
		o.late = l.lateAcks && l.crashed.Load()
	}
}

// summary counts ops by outcome for the log.
func (r *loadResult) summary() string {
	var acked, late, unacked int
	for _, ops := range r.ops {
		for _, o := range ops {
			switch {
			case o.durable():
				acked++
			case o.acked:
				late++
			default:
				unacked++
			}
		}
	}
	s := fmt.Sprintf("%d acknowledged, %d acknowledged after the crash point, %d unacknowledged", acked, late, unacked)
	if c := r.compaction; c != nil {
		s += fmt.Sprintf("; compaction to %d acknowledged=%v", c.rev, c.acked)
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func joinKeys[V any](m map[string]V) string { return strings.Join(sortedKeys(m), ",") }
