package crashtest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"
)

// verifier holds what is known about the member's history and checks each
// restart against it.
//
// The model is the key space under test as of revision rev, built from the
// history read back and checked after every crash. Every write takes exactly
// one revision (the member runs nothing else that takes one), so every
// revision after rev must be the whole effect of one op issued in the
// round: the acknowledged op that got that revision, or else one op whose
// response never arrived. A revision that is only part of an op (a torn
// txn), or that no op explains, or an acknowledged op missing, is a failure.
type verifier struct {
	t *testing.T

	model map[string]kv
	rev   int64
	// ends are the verified states at the end of each round, re-read after
	// every later crash (unless compacted).
	ends []roundEnd
	// acked are all acknowledged ops that took a revision, all rounds.
	acked       []*op
	compactions []*compaction
	// lastAcked and lastTouched record, per key, the last acknowledged write
	// and the last revision that changed the key.
	lastAcked   map[string]ackedWrite
	lastTouched map[string]int64

	errs int
}

type roundEnd struct {
	rev   int64
	state map[string]kv
}

type ackedWrite struct {
	rev     int64
	value   string
	deleted bool
	op      *op
}

// maxErrors stops a verification that has found this many problems.
const maxErrors = 25

// verifyTimeout bounds one verification.
const verifyTimeout = 2 * time.Minute

func newVerifier(t *testing.T) *verifier {
	// A new store is at revision 1 and holds nothing.
	v := &verifier{t: t, model: map[string]kv{}, rev: 1, lastAcked: map[string]ackedWrite{}, lastTouched: map[string]int64{}}
	v.ends = append(v.ends, roundEnd{rev: 1, state: map[string]kv{}})
	return v
}

func (v *verifier) errorf(format string, args ...any) {
	v.t.Helper()
	v.errs++
	if v.errs <= maxErrors {
		v.t.Errorf(format, args...)
	}
}

func (v *verifier) tooMany() bool { return v.errs >= maxErrors }

// compactionChoice picks a revision to compact to during a round: one of the
// verified round ends beyond every compaction issued so far, so that the
// state there is known and the history of the round stays readable.
func (v *verifier) compactionChoice(pick func(n int) int) int64 {
	var floor int64
	for _, c := range v.compactions {
		floor = max(floor, c.rev)
	}
	var cands []int64
	for _, e := range v.ends {
		if e.rev > floor && e.rev >= 2 {
			cands = append(cands, e.rev)
		}
	}
	if len(cands) == 0 {
		return 0
	}
	return cands[pick(len(cands))]
}

// compactFloors returns the highest compaction issued (reads below it may
// fail) and the highest acknowledged one (reads below it must fail).
func (v *verifier) compactFloors() (issued, acked int64) {
	for _, c := range v.compactions {
		issued = max(issued, c.rev)
		if c.acked {
			acked = max(acked, c.rev)
		}
	}
	return issued, acked
}

// verify checks the restarted member st after the round whose load res was,
// and moves the model to the member's current revision. res is nil for a
// restart without load.
func (v *verifier) verify(st kvStore, round int, res *loadResult) {
	v.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), verifyTimeout)
	defer cancel()
	v.errs = 0
	if res == nil {
		res = &loadResult{}
	}
	if res.compaction != nil {
		v.compactions = append(v.compactions, res.compaction)
	}

	cur, curRev, err := st.Range(ctx, keyPrefix, prefixEnd(keyPrefix), 0, 0)
	if err != nil {
		v.errorf("round %d: read the current state: %v", round, err)
		return
	}
	if curRev < v.rev {
		v.errorf("round %d: revision went backwards: current revision %d, but revision %d was verified before the crash", round, curRev, v.rev)
	}

	// Index the round's ops.
	var (
		ackedAt = map[int64]*op{}
		noops   = map[int64][]*op{} // acknowledged deletes that deleted nothing, by header revision
		byValue = map[string]*op{}
		unacked []*op // may or may not have been applied
		maxAck  int64
	)
	for w, ops := range res.ops {
		var prev *op
		for _, o := range ops {
			byValue[o.value] = o
			if !o.durable() {
				unacked = append(unacked, o)
				continue
			}
			maxAck = max(maxAck, o.rev)
			if prev != nil && (o.rev < prev.rev || (o.changes() && o.rev == prev.rev)) {
				v.errorf("round %d: worker %d got revision %d for %v after revision %d for %v", round, w, o.rev, o, prev.rev, prev)
			}
			prev = o
			if !o.changes() {
				noops[o.rev] = append(noops[o.rev], o)
				continue
			}
			if other := ackedAt[o.rev]; other != nil {
				v.errorf("round %d: two writes acknowledged at revision %d: %v and %v", round, o.rev, other, o)
			}
			ackedAt[o.rev] = o
			if o.rev <= v.rev {
				v.errorf("round %d: %v got a revision not after %d, the revision verified before the round", round, o, v.rev)
			}
		}
	}
	issued := 0
	for _, ops := range res.ops {
		issued += len(ops)
	}
	if curRev-v.rev > int64(issued) {
		v.errorf("round %d: current revision %d is %d revisions past %d, more than the %d writes issued", round, curRev, curRev-v.rev, v.rev, issued)
		return
	}
	if maxAck > curRev {
		v.errorf("round %d: current revision %d after restart is behind the highest acknowledged revision %d", round, curRev, maxAck)
	}
	for rev, o := range ackedAt {
		if rev > curRev {
			v.errorf("round %d: acknowledged write lost: %v (current revision %d)", round, o, curRev)
		}
	}

	// Compactions.
	floor, ackedFloor := v.compactFloors()
	if ackedFloor > 0 {
		_, _, err := st.Range(ctx, keyPrefix, prefixEnd(keyPrefix), ackedFloor-1, 0)
		if !st.IsCompacted(err) {
			v.errorf("round %d: read at revision %d after an acknowledged compaction to %d: got error %v, want the compacted error", round, ackedFloor-1, ackedFloor, err)
		}
	}

	// Nothing verified before may have changed.
	for _, e := range v.ends {
		if e.rev < floor {
			continue
		}
		got, _, err := st.Range(ctx, keyPrefix, prefixEnd(keyPrefix), e.rev, 0)
		if err != nil {
			v.errorf("round %d: read at revision %d, verified earlier: %v", round, e.rev, err)
			continue
		}
		if d := diffState(got, e.state); d != "" {
			v.errorf("round %d: the state at revision %d changed since it was verified:\n%s", round, e.rev, d)
		}
	}
	if v.tooMany() {
		return
	}

	// Walk the round's history one revision at a time.
	type pendingDelete struct {
		rev   int64
		dels  map[string]bool
		cands []*op
	}
	var (
		used    = map[*op]bool{}
		pending []pendingDelete
	)
	checkNoops := func(rev int64) {
		for _, o := range noops[rev] {
			for k := range v.model {
				if o.inRange(k) {
					v.errorf("round %d: %v deleted nothing, but %s existed at revision %d", round, o, v.model[k], rev)
				}
			}
		}
		delete(noops, rev)
	}
	checkNoops(v.rev)
	// The round's distinct keys are each written once and never deleted, so
	// the current state says at which revision each was written.
	rp, rpEnd := roundPrefix(round), prefixEnd(roundPrefix(round))
	distAt := map[int64][]kv{}
	for _, k := range cur {
		if k.key < rp || k.key >= rpEnd {
			continue
		}
		if k.version != 1 || k.create != k.mod || k.mod <= v.rev {
			v.errorf("round %d: %v was written once in the round after revision %d: want version 1 and create revision = mod revision", round, k, v.rev)
			continue
		}
		distAt[k.mod] = append(distAt[k.mod], k)
	}
	for r := v.rev + 1; r <= curRev && !v.tooMany(); r++ {
		over, _, err := st.Range(ctx, overlapPrefix, overlapEnd, r, 0)
		if err != nil {
			v.errorf("round %d: read at revision %d: %v", round, r, err)
			return
		}
		dist := distAt[r]
		eff, ok := v.observe(round, r, over, dist)
		if !ok {
			return
		}
		if len(eff.puts) == 0 && len(eff.dels) == 0 {
			v.errorf("round %d: revision %d changed no key", round, r)
			continue
		}
		if o := ackedAt[r]; o != nil {
			if d := v.explains(o, eff); d != "" {
				v.errorf("round %d: revision %d is not the acknowledged %v: %s", round, r, o, d)
			}
			used[o] = true
			v.noteAcked(o, eff, r)
		} else if len(eff.puts) > 0 {
			var val string
			for _, p := range eff.puts {
				val = p.value
				break
			}
			o := byValue[val]
			switch {
			case o == nil:
				v.errorf("round %d: revision %d wrote %s, which no write of the round wrote: %s", round, r, val, eff)
			case o.durable():
				v.errorf("round %d: revision %d repeats %v: %s", round, r, o, eff)
			case used[o]:
				v.errorf("round %d: revision %d applies %v a second time: %s", round, r, o, eff)
			default:
				if d := v.explains(o, eff); d != "" {
					v.errorf("round %d: revision %d is only part of (or not) the unacknowledged %v: %s", round, r, o, d)
				}
				if o.late && o.rev != r {
					v.errorf("round %d: %v survived the crash at revision %d", round, o, r)
				}
				used[o] = true
			}
		} else {
			pd := pendingDelete{rev: r, dels: eff.dels}
			for _, o := range unacked {
				if o.kind == opDelete && (!o.late || (o.changes() && o.rev == r)) && v.explains(o, eff) == "" {
					pd.cands = append(pd.cands, o)
				}
			}
			pending = append(pending, pd)
		}
		v.apply(eff, r)
		checkNoops(r)
	}
	for rev, o := range noops {
		v.errorf("round %d: acknowledged deletes at revision %d are beyond the current revision %d: %v", round, rev, curRev, o)
	}
	// Each delete-only revision needs its own unacknowledged delete.
	cands := make([][]*op, len(pending))
	for i, pd := range pending {
		cands[i] = pd.cands
	}
	if unmatched := matchAll(cands); len(unmatched) > 0 {
		for _, i := range unmatched {
			v.errorf("round %d: revision %d deleted %s, which no unacknowledged delete of the round explains", round, pending[i].rev, joinKeys(pending[i].dels))
		}
	}
	if v.tooMany() {
		return
	}

	// The current state is the model, and every key whose last change was
	// acknowledged holds that write.
	if d := diffState(cur, v.model); d != "" {
		v.errorf("round %d: the current state at revision %d is not the history read back:\n%s", round, curRev, d)
	}
	curByKey := map[string]kv{}
	for _, k := range cur {
		curByKey[k.key] = k
	}
	for key, a := range v.lastAcked {
		if v.lastTouched[key] != a.rev {
			continue
		}
		got, ok := curByKey[key]
		switch {
		case a.deleted && ok:
			v.errorf("round %d: %s exists as %v, but its last change was the acknowledged %v", round, key, got, a.op)
		case !a.deleted && (!ok || got.mod != a.rev || got.value != a.value):
			v.errorf("round %d: %s is %v (exists %v), but its last change was the acknowledged %v", round, key, got, ok, a.op)
		}
	}

	// Every acknowledged write of every round is still readable at its
	// revision unless compacted.
	v.checkAcked(ctx, st, round, floor)

	v.rev = curRev
	v.ends = append(v.ends, roundEnd{rev: curRev, state: maps.Clone(v.model)})
	v.t.Logf("round %d: verified revisions up to %d (%d acknowledged writes checked in all, %d keys, compacted to %d)", round, curRev, len(v.acked), len(v.model), floor)
}

// effect is what one revision changed.
type effect struct {
	puts map[string]kv
	dels map[string]bool
}

func (e effect) String() string {
	return fmt.Sprintf("put [%s] deleted [%s]", joinKeys(e.puts), joinKeys(e.dels))
}

// observe derives what revision r changed from the overlapping keys read at r
// and the round's distinct keys written at r (as the current state says),
// checking that every other overlapping key is as the model says.
func (v *verifier) observe(round int, r int64, over, dist []kv) (effect, bool) {
	eff := effect{puts: map[string]kv{}, dels: map[string]bool{}}
	ok := true
	seen := map[string]bool{}
	checkPut := func(k kv) {
		prev, existed := v.model[k.key]
		switch {
		case existed && (k.create != prev.create || k.version != prev.version+1):
			v.errorf("round %d: revision %d put %v over %v: create revision or version do not follow", round, r, k, prev)
		case !existed && (k.create != r || k.version != 1):
			v.errorf("round %d: revision %d created %v: want create revision %d and version 1", round, r, k, r)
		}
		eff.puts[k.key] = k
	}
	for _, k := range over {
		seen[k.key] = true
		switch {
		case k.mod > r:
			v.errorf("round %d: read at revision %d returned a later version %v", round, r, k)
			ok = false
		case k.mod == r:
			checkPut(k)
		default:
			if prev, existed := v.model[k.key]; !existed || prev != k {
				v.errorf("round %d: at revision %d %v, which the history read back does not explain (it has %v, exists %v)", round, r, k, prev, existed)
				ok = false
			}
		}
	}
	for key := range v.model {
		if key >= overlapPrefix && key < overlapEnd && !seen[key] {
			eff.dels[key] = true
		}
	}
	for _, k := range dist {
		checkPut(k)
	}
	return eff, ok
}

// expect returns what o does when applied on the model.
func (v *verifier) expect(o *op) (puts map[string]string, dels map[string]bool, branch bool) {
	puts, dels = map[string]string{}, map[string]bool{}
	switch o.kind {
	case opPut:
		puts[o.key] = o.value
	case opDelete:
		for k := range v.model {
			if o.inRange(k) {
				dels[k] = true
			}
		}
	case opTxn:
		_, branch = v.model[o.cmpKey]
		if branch {
			for _, k := range o.thenPuts {
				puts[k] = o.value
			}
			for _, k := range o.thenDels {
				if _, ok := v.model[k]; ok {
					dels[k] = true
				}
			}
		} else {
			for _, k := range o.elsePuts {
				puts[k] = o.value
			}
		}
	}
	return puts, dels, branch
}

// explains returns "" when eff is exactly what o does on the model (and
// what o's response said it did), else what differs.
func (v *verifier) explains(o *op, eff effect) string {
	puts, dels, branch := v.expect(o)
	var diffs []string
	for k, val := range puts {
		got, ok := eff.puts[k]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("%s not put", k))
		} else if got.value != val {
			diffs = append(diffs, fmt.Sprintf("%s put with %q, want %q", k, got.value, val))
		}
	}
	for k := range eff.puts {
		if _, ok := puts[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s put unexpectedly as %v", k, eff.puts[k]))
		}
	}
	if !maps.Equal(dels, eff.dels) {
		diffs = append(diffs, fmt.Sprintf("deleted [%s], want [%s]", joinKeys(eff.dels), joinKeys(dels)))
	}
	if o.acked {
		switch o.kind {
		case opTxn:
			if o.succeeded != branch {
				diffs = append(diffs, fmt.Sprintf("response said succeeded=%v, but %s existed=%v before", o.succeeded, o.cmpKey, branch))
			}
		case opDelete:
			if o.deleted != int64(len(dels)) {
				diffs = append(diffs, fmt.Sprintf("response said %d deleted, want %d", o.deleted, len(dels)))
			}
		}
	}
	if len(diffs) == 0 {
		return ""
	}
	slices.Sort(diffs)
	return fmt.Sprintf("%v (revision: %s)", diffs, eff)
}

// noteAcked records an acknowledged op found at revision r.
func (v *verifier) noteAcked(o *op, eff effect, r int64) {
	o.sawPuts, o.sawDels = sortedKeys(eff.puts), sortedKeys(eff.dels)
	v.acked = append(v.acked, o)
	for k, p := range eff.puts {
		v.lastAcked[k] = ackedWrite{rev: r, value: p.value, op: o}
	}
	for k := range eff.dels {
		v.lastAcked[k] = ackedWrite{rev: r, deleted: true, op: o}
	}
}

// apply moves the model to revision r.
func (v *verifier) apply(eff effect, r int64) {
	for k, p := range eff.puts {
		v.model[k] = p
		v.lastTouched[k] = r
	}
	for k := range eff.dels {
		delete(v.model, k)
		v.lastTouched[k] = r
	}
}

// checkParallelism is how many reads checkAcked keeps in flight.
const checkParallelism = 8

// checkAcked reads every acknowledged write of every round at its revision.
func (v *verifier) checkAcked(ctx context.Context, st kvStore, round int, floor int64) {
	type check struct {
		o   *op
		key string
		del bool
	}
	work := make(chan check)
	var (
		mu   sync.Mutex
		errs []string
		wg   sync.WaitGroup
	)
	report := func(format string, args ...any) {
		mu.Lock()
		errs = append(errs, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	for range checkParallelism {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				kvs, _, err := st.Range(ctx, c.key, "", c.o.rev, 0)
				switch {
				case err != nil:
					report("read %s at revision %d for %v: %v", c.key, c.o.rev, c.o, err)
				case c.del && len(kvs) != 0:
					report("%s exists as %v at revision %d, where %v deleted it", c.key, kvs[0], c.o.rev, c.o)
				case !c.del && (len(kvs) != 1 || kvs[0].mod != c.o.rev || kvs[0].value != c.o.value):
					report("%s at revision %d is %v, want the value %q of %v at that mod revision", c.key, c.o.rev, kvs, c.o.value, c.o)
				}
			}
		}()
	}
	for _, o := range v.acked {
		if o.rev < floor {
			continue
		}
		for _, k := range o.sawPuts {
			work <- check{o: o, key: k}
		}
		for _, k := range o.sawDels {
			work <- check{o: o, key: k, del: true}
		}
	}
	close(work)
	wg.Wait()
	slices.Sort(errs)
	for _, e := range errs {
		v.errorf("round %d: acknowledged write not readable at its revision: %s", round, e)
		if v.tooMany() {
			return
		}
	}
}

// diffState describes how got differs from want ("" if equal).
func diffState(got []kv, want map[string]kv) string {
	var out []string
	seen := map[string]bool{}
	for _, k := range got {
		seen[k.key] = true
		if w, ok := want[k.key]; !ok {
			out = append(out, fmt.Sprintf("  unexpected %v", k))
		} else if w != k {
			out = append(out, fmt.Sprintf("  got %v, want %v", k, w))
		}
	}
	for _, key := range sortedKeys(want) {
		if !seen[key] {
			out = append(out, fmt.Sprintf("  missing %v", want[key]))
		}
	}
	const maxLines = 20
	if len(out) > maxLines {
		out = append(out[:maxLines], fmt.Sprintf("  ... and %d more", len(out)-maxLines))
	}
	s := ""
	for _, l := range out {
		s += l + "\n"
	}
	return s
}

// matchAll assigns each slot (a delete-only revision) a distinct candidate op
// and returns the slots left without one (bipartite matching by augmenting
// paths; the slots number at most the workers' in-flight deletes).
func matchAll(cands [][]*op) []int {
	owner := map[*op]int{}
	var try func(i int, seen map[*op]bool) bool
	try = func(i int, seen map[*op]bool) bool {
		for _, o := range cands[i] {
			if seen[o] {
				continue
			}
			seen[o] = true
			j, taken := owner[o]
			if !taken || try(j, seen) {
				owner[o] = i
				return true
			}
		}
		return false
	}
	var unmatched []int
	for i := range cands {
		if !try(i, map[*op]bool{}) {
			unmatched = append(unmatched, i)
		}
	}
	return unmatched
}
