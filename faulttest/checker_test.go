package faulttest

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// checkTimeout bounds porcupine; the workload is sized so that it never
// takes near this long.
const checkTimeout = 60 * time.Second

// event is one revision of the store: every workload operation changes at
// most one key, so each revision holds exactly one event.
type event struct {
	rev   int64
	key   int
	put   bool
	value string
}

// kvHistory is the store's whole history, read after the run.
type kvHistory struct {
	final   int64
	byRev   map[int64]event
	byValue map[string]event
}

// readHistory reads every change up to revision final with a watch from
// revision 1 (the workload never compacts), and checks that the revisions
// are 2..final with one event each.
func readHistory(ctx context.Context, cli *clientv3.Client, final int64) (*kvHistory, error) {
	h := &kvHistory{final: final, byRev: map[int64]event{}, byValue: map[string]event{}}
	if final <= 1 {
		return h, nil
	}
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := cli.Watch(ctx, keyPrefix, clientv3.WithPrefix(), clientv3.WithRev(1))
	last := int64(1)
	for last < final {
		resp, ok := <-wch
		if !ok {
			return nil, fmt.Errorf("watch ended at revision %d of %d: %w", last, final, ctx.Err())
		}
		if err := resp.Err(); err != nil {
			return nil, fmt.Errorf("watch at revision %d: %w", last, err)
		}
		for _, ev := range resp.Events {
			k, ok := keyIndex(ev.Kv.Key)
			if !ok {
				return nil, fmt.Errorf("watch: unexpected key %q", ev.Kv.Key)
			}
			e := event{rev: ev.Kv.ModRevision, key: k, put: ev.Type == clientv3.EventTypePut, value: string(ev.Kv.Value)}
			if e.rev != last+1 {
				return nil, fmt.Errorf("watch: event at revision %d follows revision %d (want one event per revision)", e.rev, last)
			}
			last = e.rev
			if e.rev > final {
				continue
			}
			h.byRev[e.rev] = e
			if e.put {
				if prev, dup := h.byValue[e.value]; dup {
					return nil, fmt.Errorf("value %q written twice, at revisions %d and %d", e.value, prev.rev, e.rev)
				}
				h.byValue[e.value] = e
			}
		}
	}
	return h, nil
}

// resolve turns the records into porcupine's history. Failed reads are
// dropped. A failed put or txn carries a unique value: if the value is in
// the store's history it took effect, at that revision, at some time after
// its call; if not, it had no effect and is dropped. A failed delete stays
// of unknown outcome. It also returns every acknowledged write that the
// history contradicts, every change that no operation can explain, and
// every response no correct server gives.
func resolve(recs []record, h *kvHistory) (ops []porcupine.Operation, problems []string) {
	writers := map[string]record{}
	deletes := map[int]bool{} // keys with a delete that succeeded or may have
	for _, r := range recs {
		var bad badResponse
		if errors.As(r.err, &bad) {
			problems = append(problems, fmt.Sprintf("client %d: %v -> %v", r.client, r.in, bad))
			continue
		}
		op := porcupine.Operation{ClientId: r.client, Input: r.in, Call: r.call, Output: r.out, Return: r.ret}
		switch r.in.kind {
		case opGet, opRange:
			if r.err != nil {
				continue
			}
		case opPut, opTxn:
			writers[r.in.value] = r
			e, found := h.byValue[r.in.value]
			if found && e.key != r.in.key {
				problems = append(problems, fmt.Sprintf("%v: its value was written to key %d at revision %d", r.in, e.key, e.rev))
			}
			if r.err != nil {
				if !found {
					continue
				}
				op.Output, op.Return = opOutput{rev: e.rev, succeeded: true}, neverReturned
				break
			}
			if r.in.kind == opTxn && !r.out.succeeded {
				if found {
					problems = append(problems, fmt.Sprintf("%v answered failed at revision %d, but its value was written at revision %d", r.in, r.out.rev, e.rev))
				}
				break
			}
			if !found || e.rev != r.out.rev {
				problems = append(problems, fmt.Sprintf("acknowledged %v at revision %d is not in the history (found %v at %d)", r.in, r.out.rev, found, e.rev))
			}
		case opDelete:
			if r.err != nil {
				deletes[r.in.key] = true
				op.Output, op.Return = opOutput{unknown: true}, neverReturned
				break
			}
			if r.out.deleted > 0 {
				deletes[r.in.key] = true
				if e, ok := h.byRev[r.out.rev]; !ok || e.put || e.key != r.in.key {
					problems = append(problems, fmt.Sprintf("acknowledged %v at revision %d is not in the history (found %+v)", r.in, r.out.rev, e))
				}
			}
		}
		ops = append(ops, op)
	}
	for rev := int64(2); rev <= h.final; rev++ {
		e := h.byRev[rev]
		switch {
		case e.put:
			if w, ok := writers[e.value]; !ok || w.in.key != e.key {
				problems = append(problems, fmt.Sprintf("revision %d puts %q on key %d, which no operation wrote", rev, e.value, e.key))
			}
		case !deletes[e.key]:
			problems = append(problems, fmt.Sprintf("revision %d deletes key %d, which no operation deleted", rev, e.key))
		}
	}
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].Call < ops[j].Call })
	return ops, problems
}

// errCheckerTimedOut means porcupine could not decide within checkTimeout.
var errCheckerTimedOut = errors.New("checker timed out")

// checkLinearizable runs porcupine over ops. On a violation it writes the
// visualization into dir and names it in the error.
func checkLinearizable(ops []porcupine.Operation, dir string) error {
	res, info := porcupine.CheckOperationsVerbose(kvModel, ops, checkTimeout)
	switch res {
	case porcupine.Ok:
		return nil
	case porcupine.Unknown:
		return fmt.Errorf("%w after %v on %d operations", errCheckerTimedOut, checkTimeout, len(ops))
	}
	path := filepath.Join(dir, "linearizability.html")
	if err := porcupine.VisualizePath(kvModel, info, path); err != nil {
		return fmt.Errorf("history of %d operations is not linearizable (visualization failed: %v)", len(ops), err)
	}
	return fmt.Errorf("history of %d operations is not linearizable; see %s", len(ops), path)
}
