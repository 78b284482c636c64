package faulttest

import (
	"fmt"
	"hash/fnv"
	"math"
	"strings"

	"github.com/anishathalye/porcupine"
)

// numKeys is the size of the workload's key set; keys are keyName(0..numKeys-1).
const numKeys = 8

const keyPrefix = "fault/"

func keyName(i int) string { return fmt.Sprintf("%s%d", keyPrefix, i) }

// kv is one key in the model; version 0 means the key does not exist (and
// then the other fields are zero too).
type kv struct {
	value                string
	mod, create, version int64
}

func (k kv) String() string {
	if k.version == 0 {
		return "-"
	}
	return fmt.Sprintf("%q@%d(c%d,v%d)", k.value, k.mod, k.create, k.version)
}

// modelState is the whole store: the revision and every key. It is a
// comparable value, so porcupine's default equality works and a step copies
// it.
type modelState struct {
	rev int64
	kvs [numKeys]kv
}

type opKind uint8

const (
	opPut opKind = iota
	opGet
	opRange
	opDelete
	opTxn
)

func (k opKind) String() string {
	return [...]string{"put", "get", "range", "delete", "txn"}[k]
}

// opInput is one client call.
type opInput struct {
	kind  opKind
	key   int    // put, get, delete, txn
	value string // put, txn: unique per operation
	// txn: if compare then put(key, value) else get(key). The compare is
	// mod_revision(key) == cmpRev when cmpMod, else value(key) == cmpValue.
	cmpMod   bool
	cmpRev   int64
	cmpValue string
	// get: read from the member's own state (a serializable read, which
	// may be stale); only the checker's self-tests use it
	serializable bool
}

// opOutput is what the client got back. Failed reads are not in the
// history; failed writes are either resolved into a known output or left
// unknown (deletes).
type opOutput struct {
	unknown   bool  // the outcome is not known: the model accepts either
	rev       int64 // header revision
	succeeded bool  // txn
	deleted   int64 // delete
	kvs       [numKeys]kv
	// get and failed txn: kvs[key]; range: all keys
}

func (in opInput) String() string {
	switch in.kind {
	case opPut:
		return fmt.Sprintf("put(%s, %q)", keyName(in.key), in.value)
	case opGet:
		return fmt.Sprintf("get(%s)", keyName(in.key))
	case opRange:
		return "range(" + keyPrefix + "*)"
	case opDelete:
		return fmt.Sprintf("delete(%s)", keyName(in.key))
	}
	cmp := fmt.Sprintf("value==%q", in.cmpValue)
	if in.cmpMod {
		cmp = fmt.Sprintf("mod==%d", in.cmpRev)
	}
	return fmt.Sprintf("txn(%s %s ? put %q : get)", keyName(in.key), cmp, in.value)
}

func describeOutput(in opInput, out opOutput) string {
	if out.unknown {
		return "unknown"
	}
	switch in.kind {
	case opPut:
		return fmt.Sprintf("ok@%d", out.rev)
	case opGet:
		return fmt.Sprintf("%v @%d", out.kvs[in.key], out.rev)
	case opRange:
		parts := make([]string, 0, numKeys)
		for i, k := range out.kvs {
			if k.version != 0 {
				parts = append(parts, fmt.Sprintf("%d=%v", i, k))
			}
		}
		return fmt.Sprintf("{%s} @%d", strings.Join(parts, " "), out.rev)
	case opDelete:
		return fmt.Sprintf("deleted %d @%d", out.deleted, out.rev)
	}
	if out.succeeded {
		return fmt.Sprintf("succeeded @%d", out.rev)
	}
	return fmt.Sprintf("failed, %v @%d", out.kvs[in.key], out.rev)
}

// compares evaluates a txn's compare as etcd does: a value compare on a
// missing key is false; a mod_revision compare sees 0 for it.
func (in opInput) compares(s *modelState) bool {
	k := s.kvs[in.key]
	if in.cmpMod {
		return k.mod == in.cmpRev
	}
	return k.version != 0 && k.value == in.cmpValue
}

func (s modelState) put(key int, value string) modelState {
	s.rev++
	k := s.kvs[key]
	if k.version == 0 {
		k.create = s.rev
	}
	k.value, k.mod = value, s.rev
	k.version++
	s.kvs[key] = k
	return s
}

func (s modelState) del(key int) modelState {
	s.rev++
	s.kvs[key] = kv{}
	return s
}

// step is etcd's KV for one operation on a store that starts at revision 1
// and is never compacted.
func step(st, i, o any) (bool, any) {
	s, in, out := st.(modelState), i.(opInput), o.(opOutput)
	switch in.kind {
	case opPut:
		if !out.unknown && out.rev != s.rev+1 {
			return false, s
		}
		return true, s.put(in.key, in.value)
	case opGet:
		return out.rev == s.rev && out.kvs[in.key] == s.kvs[in.key], s
	case opRange:
		return out.rev == s.rev && out.kvs == s.kvs, s
	case opDelete:
		exists := s.kvs[in.key].version != 0
		if out.unknown {
			if exists {
				return true, s.del(in.key)
			}
			return true, s
		}
		if !exists {
			return out.deleted == 0 && out.rev == s.rev, s
		}
		return out.deleted == 1 && out.rev == s.rev+1, s.del(in.key)
	case opTxn:
		if in.compares(&s) {
			if out.unknown || (out.succeeded && out.rev == s.rev+1) {
				return true, s.put(in.key, in.value)
			}
			return false, s
		}
		if out.unknown {
			return true, s
		}
		return !out.succeeded && out.rev == s.rev && out.kvs[in.key] == s.kvs[in.key], s
	}
	return false, s
}

// kvModel is the porcupine model of the workload. It is not partitioned by
// key: the revision is global, and checking it is what makes the search
// fast (every write's revision fixes its place).
var kvModel = porcupine.Model{
	Init: func() any { return modelState{rev: 1} },
	Step: step,
	Hash: func(st any) uint64 {
		s := st.(modelState)
		h := fnv.New64a()
		fmt.Fprint(h, s.rev)
		for _, k := range s.kvs {
			fmt.Fprint(h, ",", k.mod)
		}
		return h.Sum64()
	},
	DescribeOperation: func(i, o any) string {
		in, out := i.(opInput), o.(opOutput)
		return in.String() + " -> " + describeOutput(in, out)
	},
	DescribeState: func(st any) string {
		s := st.(modelState)
		parts := []string{fmt.Sprintf("rev %d", s.rev)}
		for i, k := range s.kvs {
			if k.version != 0 {
				parts = append(parts, fmt.Sprintf("%d=%v", i, k))
			}
		}
		return strings.Join(parts, " ")
	},
}

// neverReturned is the return time of an operation whose effect may come at
// any time after its call.
const neverReturned = math.MaxInt64
