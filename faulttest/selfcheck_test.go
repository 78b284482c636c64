package faulttest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// history builds records for the checker's self-tests: each call is
// [call, ret] on a made-up clock.
type history []record

func (h *history) add(client int, call, ret int64, in opInput, out opOutput, err error) {
	*h = append(*h, record{client: client, in: in, call: call, ret: ret, out: out, err: err})
}

func getOut(rev int64, key int, k kv) opOutput {
	var o opOutput
	o.rev = rev
	o.kvs[key] = k
	return o
}

// storeOf is the store's history for a list of (revision, event).
func storeOf(final int64, events ...event) *kvHistory {
	h := &kvHistory{final: final, byRev: map[int64]event{}, byValue: map[string]event{}}
	for _, e := range events {
		h.byRev[e.rev] = e
		if e.put {
			h.byValue[e.value] = e
		}
	}
	return h
}

// baseHistory is a linearizable history of two clients on key 0: put a
// (rev 2), txn mod==2 put b (rev 3), reads in between, an indeterminate put
// c that took effect (rev 4), an indeterminate put d that did not, an
// indeterminate delete, and a final range.
func baseHistory() (history, *kvHistory) {
	var h history
	a := kv{value: "a", mod: 2, create: 2, version: 1}
	b := kv{value: "b", mod: 3, create: 2, version: 2}
	c := kv{value: "c", mod: 4, create: 2, version: 3}
	h.add(0, 0, 10, opInput{kind: opPut, key: 0, value: "a"}, opOutput{rev: 2}, nil)
	h.add(1, 5, 15, opInput{kind: opGet, key: 0}, getOut(2, 0, a), nil)
	h.add(0, 20, 30, opInput{kind: opTxn, key: 0, cmpMod: true, cmpRev: 2, value: "b"}, opOutput{rev: 3, succeeded: true}, nil)
	h.add(1, 25, 28, opInput{kind: opGet, key: 0}, getOut(2, 0, a), nil) // concurrent with the txn: may see a
	h.add(1, 31, 35, opInput{kind: opTxn, key: 0, cmpValue: "a", value: "x"}, getOut(3, 0, b), nil)
	h.add(0, 40, 50, opInput{kind: opPut, key: 0, value: "c"}, opOutput{}, errors.New("timeout"))
	h.add(1, 41, 42, opInput{kind: opPut, key: 1, value: "d"}, opOutput{}, errors.New("unavailable"))
	h.add(1, 60, 70, opInput{kind: opGet, key: 0}, getOut(4, 0, c), nil)
	h.add(0, 60, 61, opInput{kind: opGet, key: 1}, opOutput{}, errors.New("failed read"))
	h.add(0, 80, 90, opInput{kind: opDelete, key: 0}, opOutput{}, errors.New("timeout"))
	var all opOutput
	all.rev, all.kvs[0] = 4, c
	h.add(1, 75, 78, opInput{kind: opRange}, all, nil)
	return h, storeOf(4,
		event{rev: 2, key: 0, put: true, value: "a"},
		event{rev: 3, key: 0, put: true, value: "b"},
		event{rev: 4, key: 0, put: true, value: "c"})
}

func check(t *testing.T, h history, store *kvHistory) (problems []string, err error) {
	t.Helper()
	ops, problems := resolve(h, store)
	return problems, checkLinearizable(ops, t.TempDir())
}

func TestCheckerAcceptsALinearizableHistoryWithIndeterminateWrites(t *testing.T) {
	h, store := baseHistory()
	problems, err := check(t, h, store)
	if len(problems) > 0 || err != nil {
		t.Fatalf("problems %v, err %v: want a clean history", problems, err)
	}
}

func TestCheckerCatchesAStaleRead(t *testing.T) {
	h, store := baseHistory()
	// A get that starts after the txn returned (rev 3) sees a, with the
	// header revision of either then or before.
	for _, rev := range []int64{2, 3} {
		bad := append(history(nil), h...)
		bad.add(1, 36, 38, opInput{kind: opGet, key: 0}, getOut(rev, 0, kv{value: "a", mod: 2, create: 2, version: 1}), nil)
		problems, err := check(t, bad, store)
		if len(problems) > 0 {
			t.Fatalf("problems %v: the store's history is fine, the read is not", problems)
		}
		if err == nil || !strings.Contains(err.Error(), "not linearizable") {
			t.Fatalf("stale read at header revision %d: got %v, want a linearizability violation", rev, err)
		}
	}
}

func TestCheckerCatchesALostWrite(t *testing.T) {
	h, store := baseHistory()
	// The store lost the acknowledged txn's write at revision 3.
	lost := storeOf(3, event{rev: 2, key: 0, put: true, value: "a"}, event{rev: 3, key: 0, put: true, value: "c"})
	problems, _ := check(t, h, lost)
	if len(problems) == 0 || !strings.Contains(strings.Join(problems, "\n"), `acknowledged txn(fault/0 mod==2 ? put "b" : get) at revision 3 is not in the history`) {
		t.Fatalf("problems %v: want the lost txn reported", problems)
	}
	// A read after the write that does not see it.
	bad := append(history(nil), h...)
	var all opOutput
	all.rev, all.kvs[0] = 4, kv{value: "a", mod: 2, create: 2, version: 1}
	bad.add(0, 100, 110, opInput{kind: opRange}, all, nil)
	if _, err := check(t, bad, store); err == nil {
		t.Fatalf("a range missing an acknowledged write passed the checker")
	}
}

func TestCheckerCatchesWrongRevisionsAndUnexplainedChanges(t *testing.T) {
	h, store := baseHistory()
	dup := append(history(nil), h...)
	dup.add(1, 100, 110, opInput{kind: opPut, key: 2, value: "e"}, opOutput{rev: 4}, nil) // rev 4 is c's
	store.byRev[5], store.byValue["e"] = event{rev: 5, key: 2, put: true, value: "e"}, event{rev: 5, key: 2, put: true, value: "e"}
	store.final = 5
	problems, _ := check(t, dup, store)
	if len(problems) == 0 {
		t.Fatalf("a put acknowledged at another write's revision passed")
	}
	h, store = baseHistory()
	store.byRev[5] = event{rev: 5, key: 3, put: true, value: "phantom"}
	store.byValue["phantom"] = store.byRev[5]
	store.final = 5
	problems, _ = check(t, h, store)
	if !strings.Contains(strings.Join(problems, "\n"), "which no operation wrote") {
		t.Fatalf("problems %v: want the phantom write reported", problems)
	}
}

// TestCheckerCatchesViolationsInjectedIntoARecordedHistory records a real
// history from a healthy cluster, checks it passes, then injects a stale
// read and a lost write into it and checks that both are caught.
func TestCheckerCatchesViolationsInjectedIntoARecordedHistory(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	tgt := faultTarget(t)
	dir := artifactDir(t, "selfcheck")
	c := startCluster(t, tgt, dir, 1, clusterOpts{size: 3})
	var clis []*clientv3.Client
	for i := range 4 {
		cli, err := c.client(c.member[i%3])
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		clis = append(clis, cli)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	recs := runWorkload(ctx, clis, 1)
	cancel()
	rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer rcancel()
	rev, err := c.converge(rctx)
	if err != nil {
		t.Fatal(err)
	}
	var store *kvHistory
	if err := c.withClient(c.member[0], func(cli *clientv3.Client) error {
		store, err = readHistory(rctx, cli, rev)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	ops, problems := resolve(recs, store)
	if len(problems) > 0 {
		t.Fatalf("recorded history: %v", problems)
	}
	if err := checkLinearizable(ops, t.TempDir()); err != nil {
		t.Fatalf("recorded history: %v", err)
	}

	// Stale read: a get that returned after a later write of its key
	// returned, rewritten to show the key before that write.
	stale := injectStaleRead(t, ops, store)
	if err := checkLinearizable(stale, t.TempDir()); err == nil || errors.Is(err, errCheckerTimedOut) {
		t.Fatalf("stale read injected into %d operations: got %v, want a violation", len(ops), err)
	}

	// Lost write: an acknowledged put removed from the store's history.
	for _, r := range recs {
		if r.err == nil && r.in.kind == opPut {
			delete(store.byValue, r.in.value)
			store.byRev[r.out.rev] = event{rev: r.out.rev, key: r.in.key}
			break
		}
	}
	if _, problems := resolve(recs, store); len(problems) == 0 {
		t.Fatalf("lost write injected into the store's history: not reported")
	}
}

// injectStaleRead finds a successful get of a key that was written at least
// twice and makes it return the key's version before the one it saw.
func injectStaleRead(t *testing.T, ops []porcupine.Operation, store *kvHistory) []porcupine.Operation {
	t.Helper()
	out := append([]porcupine.Operation(nil), ops...)
	for i, op := range out {
		in, o := op.Input.(opInput), op.Output.(opOutput)
		if in.kind != opGet || o.unknown {
			continue
		}
		seen := o.kvs[in.key]
		if seen.version < 2 {
			continue
		}
		for rev := seen.mod - 1; rev >= 2; rev-- {
			e := store.byRev[rev]
			if e.key != in.key || !e.put {
				continue
			}
			o.kvs[in.key] = kv{value: e.value, mod: e.rev, create: seen.create, version: seen.version - 1}
			out[i].Output = o
			return out
		}
	}
	t.Fatalf("no get in %d operations saw a key written twice", len(ops))
	return nil
}

// TestCheckerCatchesStaleReadsFromAPartitionedMember shows the whole
// pipeline (proxy partition, recording, resolution, porcupine) catching a
// real stale read: serializable reads from a member cut off from the
// others return what it had before the majority moved on.
func TestCheckerCatchesStaleReadsFromAPartitionedMember(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	tgt := faultTarget(t)
	if !tgt.grpcPeers {
		t.Skip("needs proxies that cut single links (keel's peer transport); etcd's members can only be stopped")
	}
	dir := artifactDir(t, "stale")
	c := startCluster(t, tgt, dir, 2, clusterOpts{size: 3})
	cut, other := c.member[0], c.member[1]
	cliCut, err := c.client(cut)
	if err != nil {
		t.Fatal(err)
	}
	defer cliCut.Close()
	cliOther, err := c.client(other)
	if err != nil {
		t.Fatal(err)
	}
	defer cliOther.Close()

	w := &workload{start: time.Now()}
	first := w.call(1, cliOther, opInput{kind: opPut, key: 0, value: "before"})
	if first.err != nil {
		t.Fatal(first.err)
	}
	// Wait until the member to cut has applied the first write.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for attempt := 0; ; attempt++ {
		resp, err := cliCut.Get(ctx, keyName(0), clientv3.WithSerializable())
		if err == nil && resp.Header.Revision >= first.out.rev {
			break
		}
		if attempt > 100 || !pauseCtx(ctx, 50*time.Millisecond) {
			t.Fatalf("%s did not apply revision %d: %v", cut.name, first.out.rev, err)
		}
	}
	heal := c.cut([]*member{cut})
	second := w.call(1, cliOther, opInput{kind: opPut, key: 0, value: "after"})
	if second.err != nil {
		// The majority may need a moment if the cut member led.
		second = w.call(1, cliOther, opInput{kind: opPut, key: 0, value: "after-retry"})
		if second.err != nil {
			t.Fatalf("write to the majority: %v", second.err)
		}
	}
	stale := w.call(0, cliCut, opInput{kind: opGet, key: 0, serializable: true})
	if stale.err != nil {
		t.Fatalf("serializable read from the cut member: %v", stale.err)
	}
	heal()
	rev, err := c.converge(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var store *kvHistory
	if err := c.withClient(other, func(cli *clientv3.Client) error {
		store, err = readHistory(ctx, cli, rev)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	ops, problems := resolve(w.recs, store)
	if len(problems) > 0 {
		t.Fatalf("the store's history is fine, but resolve reports %v", problems)
	}
	err = checkLinearizable(ops, t.TempDir())
	if err == nil || errors.Is(err, errCheckerTimedOut) {
		t.Fatalf("read %v at revision %d from the cut member after %q was acknowledged at %d: checker says %v, want a violation",
			stale.out.kvs[0], stale.out.rev, second.in.value, second.out.rev, err)
	}
	t.Logf("caught: %v", err)
}
