package faulttest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// opTimeout bounds each client call; a write that times out is
// indeterminate.
const opTimeout = 2 * time.Second

// record is one call of the workload as the client saw it. Times are
// nanoseconds since the workload's start, on the monotonic clock.
type record struct {
	client    int
	in        opInput
	call, ret int64
	out       opOutput
	err       error // the call failed: a read is dropped, a write is indeterminate
}

// workload runs clients against a cluster and records their calls.
type workload struct {
	start time.Time
	mu    sync.Mutex
	recs  []record
}

// runWorkload runs one client per entry of clis until ctx is done and
// returns every call. Client i's choices come from seed and i.
func runWorkload(ctx context.Context, clis []*clientv3.Client, seed uint64) []record {
	w := &workload{start: time.Now()}
	var wg sync.WaitGroup
	for i, cli := range clis {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.client(ctx, i, cli, rand.New(rand.NewPCG(seed, uint64(i)+1)))
		}()
	}
	wg.Wait()
	return w.recs
}

func (w *workload) now() int64 { return int64(time.Since(w.start)) }

// maxOpsPerClient bounds a client's calls, whatever the duration.
const maxOpsPerClient = 20000

func (w *workload) client(ctx context.Context, id int, cli *clientv3.Client, rnd *rand.Rand) {
	var seen [numKeys]kv // the last version of each key this client saw
	for seq := 0; seq < maxOpsPerClient && ctx.Err() == nil; seq++ {
		in := opInput{key: rnd.IntN(numKeys)}
		switch p := rnd.IntN(100); {
		case p < 30:
			in.kind = opPut
		case p < 50:
			in.kind = opTxn
			k := seen[in.key]
			in.cmpMod = rnd.IntN(2) == 0
			in.cmpRev, in.cmpValue = k.mod, k.value
			if !in.cmpMod && k.version == 0 {
				in.cmpValue = "never-written"
			}
		case p < 70:
			in.kind = opGet
		case p < 85:
			in.kind = opRange
		default:
			in.kind = opDelete
		}
		if in.kind == opPut || in.kind == opTxn {
			in.value = fmt.Sprintf("c%d-%d", id, seq)
		}
		r := w.call(id, cli, in)
		if r.err == nil {
			learn(&seen, in, r.out)
		}
		if r.err != nil {
			// Do not spin against a member that is down.
			pauseCtx(ctx, 20*time.Millisecond)
		}
	}
}

// call makes one call and records it. Its deadline is its own, not tied
// to the workload's context: stopping the workload must not turn calls in
// flight into errors.
func (w *workload) call(id int, cli *clientv3.Client, in opInput) record {
	r := record{client: id, in: in}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	r.call = w.now()
	r.out, r.err = do(ctx, cli, in)
	r.ret = w.now()
	w.mu.Lock()
	w.recs = append(w.recs, r)
	w.mu.Unlock()
	return r
}

// learn updates what a client knows of the keys from one result.
func learn(seen *[numKeys]kv, in opInput, out opOutput) {
	switch in.kind {
	case opRange:
		*seen = out.kvs
	case opGet:
		seen[in.key] = out.kvs[in.key]
	case opTxn:
		if !out.succeeded {
			seen[in.key] = out.kvs[in.key]
		}
	}
}

func keyIndex(k []byte) (int, bool) {
	s, ok := strings.CutPrefix(string(k), keyPrefix)
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(s)
	if err != nil || i < 0 || i >= numKeys {
		return 0, false
	}
	return i, true
}

func fromKV(k *mvccpb.KeyValue) kv {
	return kv{value: string(k.Value), mod: k.ModRevision, create: k.CreateRevision, version: k.Version}
}

// do issues one call.
func do(ctx context.Context, cli *clientv3.Client, in opInput) (opOutput, error) {
	var out opOutput
	key := keyName(in.key)
	switch in.kind {
	case opPut:
		resp, err := cli.Put(ctx, key, in.value)
		if err != nil {
			return out, err
		}
		out.rev = resp.Header.Revision
	case opGet, opRange:
		var resp *clientv3.GetResponse
		var err error
		if in.kind == opGet {
			var opts []clientv3.OpOption
			if in.serializable {
				opts = append(opts, clientv3.WithSerializable())
			}
			resp, err = cli.Get(ctx, key, opts...)
		} else {
			resp, err = cli.Get(ctx, keyPrefix, clientv3.WithPrefix())
		}
		if err != nil {
			return out, err
		}
		out.rev = resp.Header.Revision
		for _, k := range resp.Kvs {
			i, ok := keyIndex(k.Key)
			if !ok {
				return out, badResponse{fmt.Sprintf("unexpected key %q in the response", k.Key)}
			}
			out.kvs[i] = fromKV(k)
		}
	case opDelete:
		resp, err := cli.Delete(ctx, key)
		if err != nil {
			return out, err
		}
		out.rev, out.deleted = resp.Header.Revision, resp.Deleted
	case opTxn:
		cmp := clientv3.Compare(clientv3.Value(key), "=", in.cmpValue)
		if in.cmpMod {
			cmp = clientv3.Compare(clientv3.ModRevision(key), "=", in.cmpRev)
		}
		resp, err := cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(key, in.value)).Else(clientv3.OpGet(key)).Commit()
		if err != nil {
			return out, err
		}
		out.rev, out.succeeded = resp.Header.Revision, resp.Succeeded
		if !resp.Succeeded {
			if len(resp.Responses) != 1 || resp.Responses[0].GetResponseRange() == nil {
				return out, badResponse{fmt.Sprintf("failed txn answered %v, want one range response", resp.Responses)}
			}
			for _, k := range resp.Responses[0].GetResponseRange().Kvs {
				out.kvs[in.key] = fromKV(k)
			}
		}
	}
	return out, nil
}

// badResponse is a response that no correct server gives; it fails the run.
type badResponse struct{ msg string }

func (e badResponse) Error() string { return e.msg }
