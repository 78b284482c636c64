package compat

import (
	"bytes"
	"context"
	"math/rand/v2"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
)

// keySpace is small on purpose, so that operations collide. The keys share
// prefixes ("a", "a/", "a/b", ...) and contain 0x00 and 0xff bytes so that
// prefix ends, "\x00" range ends and byte ordering all matter.
var keySpace = []string{
	"\x00", "\x00\x00", "\x00\xff",
	"a", "a\x00", "a\x00b", "a/", "a/b", "a/b/c", "a/b/c/d", "a/b\x00", "a/c", "a0", "ab", "a\xff", "a\xff\xff",
	"b", "b\x00", "b\x00\x00", "b/", "b/a", "b/b", "b0", "b\xff",
	"c", "c/1", "c/10", "c/2",
	"foo", "foo/bar", "foo/baz", "foo0", "fop",
	"k", "k/", "k/x",
	"z", "\xfe", "\xff", "\xff\xff",
}

// rangeKeys are start keys for ranges and prefixes that are not themselves in
// keySpace.
var rangeKeys = []string{"a/b/", "fo", "c/1", "b\x00", "\x01", "y", "\xff\xff\xff"}

var valuePool = []string{"", "v", "v1", "v2", "0", "\x00", "\xff", "a/b", "value with spaces"}

// bigKey holds the large values; every put of it is followed by a delete so
// that later ranges stay small.
const bigKey = "a/big"

// Request sizes around the server's limits (etcd's defaults:
// --max-request-bytes 1.5 MiB, gRPC receive limit max-request-bytes+512 KiB).
const (
	maxRequestBytes = 1536 * 1024
	grpcRecvLimit   = maxRequestBytes + 512*1024
	maxTxnOps       = 128
)

// op is one request of the differential sequence; exactly one field is set.
type op struct {
	put     *pb.PutRequest
	del     *pb.DeleteRangeRequest
	rng     *pb.RangeRequest
	txn     *pb.TxnRequest
	compact *pb.CompactionRequest
	note    string // why this op is special, if it is
}

func (o op) kind() string {
	switch {
	case o.put != nil:
		return "Put"
	case o.del != nil:
		return "DeleteRange"
	case o.rng != nil:
		return "Range"
	case o.txn != nil:
		return "Txn"
	default:
		return "Compact"
	}
}

func (o op) request() proto.Message {
	switch {
	case o.put != nil:
		return o.put
	case o.del != nil:
		return o.del
	case o.rng != nil:
		return o.rng
	case o.txn != nil:
		return o.txn
	default:
		return o.compact
	}
}

// do sends the op through the raw gRPC stub, so that the whole response
// message is returned, not the client library's view of it.
func (o op) do(ctx context.Context, kv pb.KVClient) (proto.Message, error) {
	switch {
	case o.put != nil:
		return nilIfErr(kv.Put(ctx, o.put))
	case o.del != nil:
		return nilIfErr(kv.DeleteRange(ctx, o.del))
	case o.rng != nil:
		return nilIfErr(kv.Range(ctx, o.rng))
	case o.txn != nil:
		return nilIfErr(kv.Txn(ctx, o.txn))
	default:
		return nilIfErr(kv.Compact(ctx, o.compact))
	}
}

// nilIfErr turns a typed nil response into an untyped nil.
func nilIfErr[M proto.Message](m M, err error) (proto.Message, error) {
	if err != nil {
		return nil, err
	}
	return m, nil
}

// generator draws a deterministic sequence of ops from a seed. Its view of the
// store (current and compacted revision) comes from the reference side's
// responses, so the sequence is a function of the seed and etcd's behaviour.
type generator struct {
	rnd       *rand.Rand
	rev       int64 // current revision
	compacted int64 // highest revision successfully compacted, 0 if none
	bigPut    bool  // the previous op put bigKey: delete it now

	// zeroEndDeletes is set while a txn is drawn whose deletes may use the
	// "\x00" range end (every key from key on); such a txn has no puts.
	// etcd's duplicate-key check takes that end literally, so it accepts a
	// txn that deletes a key and then puts it, and etcd 3.7.3 then breaks:
	// with ignore_value or ignore_lease the apply panics (index out of range
	// in txn.put) and the member dies; with a plain put, a later compaction
	// at that revision drops the new value but not its index entry, and the
	// next read of it is fatal ("range failed to find revision pair").
	zeroEndDeletes bool
}

// newGenerator returns the generator of seed. The sequence does not depend on
// its length, so a failure at op i replays with -ops=i+1.
func newGenerator(seed int64) *generator {
	return &generator{rnd: rand.New(rand.NewPCG(uint64(seed), 0x6b65656c)), rev: 1}
}

// observe updates the generator's view from the reference side's answer.
func (g *generator) observe(o op, resp proto.Message, err error) {
	if err != nil {
		return
	}
	if h := headerOf(resp); h != nil && h.Revision > g.rev {
		g.rev = h.Revision
	}
	if o.compact != nil && o.compact.Revision > g.compacted {
		g.compacted = o.compact.Revision
	}
}

func headerOf(m proto.Message) *pb.ResponseHeader {
	if h, ok := m.(interface{ GetHeader() *pb.ResponseHeader }); ok {
		return h.GetHeader()
	}
	return nil
}

func (g *generator) pct() int          { return g.rnd.IntN(100) }
func (g *generator) chance(p int) bool { return g.rnd.IntN(1000) < p } // p per mille

// next returns the op at index i.
func (g *generator) next(i int) op {
	if g.bigPut {
		g.bigPut = false
		return op{del: &pb.DeleteRangeRequest{Key: []byte(bigKey)}, note: "drop the big value"}
	}
	// A few special ops at fixed places of every 2,500, so that every run
	// of the default length covers each of them at least four times.
	switch i % 2500 {
	case 400:
		return g.bigPutOp(maxRequestBytes-4096, "just under max-request-bytes")
	case 800:
		return g.bigPutOp(maxRequestBytes+4096, "just over max-request-bytes")
	case 1200:
		return g.bigPutOp(grpcRecvLimit+4096, "over the gRPC receive limit")
	case 1600:
		return g.oversizedTxn()
	case 2000:
		return g.compactOp()
	}
	switch p := g.rnd.IntN(1000); {
	case p < 1:
		return g.bigPutOp(g.bigSize(), "big put")
	case p < 3:
		return g.oversizedTxn()
	case p < 300:
		return op{put: g.putReq(false)}
	case p < 400:
		return op{del: g.delReq()}
	case p < 680:
		return op{rng: g.rangeReq(false)}
	case p < 980:
		return op{txn: g.txnReq(1)}
	default:
		return g.compactOp()
	}
}

func (g *generator) bigSize() int {
	switch g.rnd.IntN(3) {
	case 0:
		return maxRequestBytes - 4096
	case 1:
		return maxRequestBytes + 4096
	default:
		return grpcRecvLimit + 4096
	}
}

func (g *generator) bigPutOp(size int, note string) op {
	if size < maxRequestBytes {
		g.bigPut = true // it will be stored; delete it next
	}
	v := bytes.Repeat([]byte{'x'}, size)
	return op{put: &pb.PutRequest{Key: []byte(bigKey), Value: v, PrevKv: g.chance(500)}, note: note}
}

// key returns a key of the key space, rarely the empty key.
func (g *generator) key(emptyPerMille int) []byte {
	if g.chance(emptyPerMille) {
		return []byte{}
	}
	return []byte(keySpace[g.rnd.IntN(len(keySpace))])
}

// rangeKey returns a start key for a range: mostly of the key space.
func (g *generator) rangeKey(emptyPerMille int) []byte {
	if g.pct() < 15 {
		return []byte(rangeKeys[g.rnd.IntN(len(rangeKeys))])
	}
	return g.key(emptyPerMille)
}

// rangeEnd returns a range end for key: none, the prefix end, "\x00", another
// key (possibly below key, an inverted range), or key itself.
func (g *generator) rangeEnd(key []byte) []byte {
	switch p := g.pct(); {
	case p < 35:
		return nil
	case p < 55:
		if len(key) == 0 {
			return []byte{0}
		}
		return []byte(clientv3.GetPrefixRangeEnd(string(key)))
	case p < 65:
		return []byte{0}
	case p < 90:
		return []byte(keySpace[g.rnd.IntN(len(keySpace))])
	case p < 95:
		return append(append([]byte{}, key...), 0)
	default:
		return append([]byte{}, key...)
	}
}

func (g *generator) value() []byte {
	switch p := g.pct(); {
	case p < 70:
		return []byte(valuePool[g.rnd.IntN(len(valuePool))])
	case p < 97:
		b := make([]byte, g.rnd.IntN(13))
		for i := range b {
			b[i] = byte(g.rnd.IntN(256))
		}
		return b
	default:
		return bytes.Repeat([]byte{'m'}, 100+g.rnd.IntN(2000))
	}
}

// putReq draws a put, including the invalid combinations etcd rejects.
func (g *generator) putReq(inTxn bool) *pb.PutRequest {
	bad := 15 // per mille, for each way of being invalid
	if inTxn {
		bad = 3
	}
	r := &pb.PutRequest{Key: g.key(bad), PrevKv: g.chance(500)}
	if g.chance(100) {
		r.IgnoreValue = true
		if g.chance(20 * bad) {
			r.Value = g.value()
		}
	} else {
		r.Value = g.value()
	}
	if g.chance(80) {
		r.IgnoreLease = true
	}
	if g.chance(3 * bad) {
		r.Lease = int64(1 + g.rnd.IntN(1000)) // never granted: lease not found
	}
	return r
}

func (g *generator) delReq() *pb.DeleteRangeRequest {
	key := g.rangeKey(15)
	return &pb.DeleteRangeRequest{Key: key, RangeEnd: g.rangeEnd(key), PrevKv: g.chance(500)}
}

// revision returns a read revision: 0, current, old, compacted, future or
// negative. Inside txns, where one failing range fails the whole txn, the
// failing choices are rarer.
func (g *generator) revision(inTxn bool) int64 {
	p := g.pct()
	if inTxn && p >= 82 && g.pct() < 75 {
		p = 0
	}
	switch {
	case p < 50:
		return 0
	case p < 60:
		return g.rev
	case p < 82:
		lo := max(g.compacted, 1)
		return lo + g.rnd.Int64N(g.rev-lo+1)
	case p < 90:
		if g.compacted > 1 {
			return 1 + g.rnd.Int64N(g.compacted-1) // below the compacted revision
		}
		return g.compacted
	case p < 97:
		return g.rev + 1 + g.rnd.Int64N(3)
	default:
		return -1 - g.rnd.Int64N(3)
	}
}

func (g *generator) rangeReq(inTxn bool) *pb.RangeRequest {
	bad := 20 // per mille, for each way of being invalid
	if inTxn {
		bad = 4
	}
	key := g.rangeKey(bad)
	r := &pb.RangeRequest{
		Key:          key,
		RangeEnd:     g.rangeEnd(key),
		Revision:     g.revision(inTxn),
		Serializable: g.chance(300),
		KeysOnly:     g.chance(150),
		CountOnly:    g.chance(100),
	}
	switch p := g.pct(); {
	case p < 50:
	case p < 65:
		r.Limit = 1
	case p < 80:
		r.Limit = int64(2 + g.rnd.IntN(4))
	case p < 95:
		r.Limit = int64(10 + g.rnd.IntN(100))
	default:
		r.Limit = -1 - g.rnd.Int64N(3)
	}
	if g.pct() < 40 {
		r.SortOrder = pb.RangeRequest_SortOrder(g.rnd.IntN(3))
		r.SortTarget = pb.RangeRequest_SortTarget(g.rnd.IntN(5))
	}
	if g.chance(bad) {
		r.SortOrder = []pb.RangeRequest_SortOrder{3, 7, -1}[g.rnd.IntN(3)]
	}
	if g.chance(bad) {
		r.SortTarget = []pb.RangeRequest_SortTarget{5, 9, -1}[g.rnd.IntN(3)]
	}
	filter := func() int64 {
		if g.chance(120) {
			return g.rnd.Int64N(g.rev + 3)
		}
		return 0
	}
	r.MinModRevision = filter()
	r.MaxModRevision = filter()
	r.MinCreateRevision = filter()
	r.MaxCreateRevision = filter()
	return r
}

// compare draws a txn compare over any target and result, on present and
// absent keys, sometimes with a range end, rarely malformed (a union that
// does not match the target, an unknown result or target).
func (g *generator) compare() *pb.Compare {
	key := g.rangeKey(3)
	c := &pb.Compare{
		Key:    key,
		Target: pb.Compare_CompareTarget(g.rnd.IntN(5)),
		Result: pb.Compare_CompareResult(g.rnd.IntN(4)),
	}
	if g.pct() < 20 {
		c.RangeEnd = g.rangeEnd(key)
	}
	revish := func() int64 {
		if g.pct() < 15 {
			return 0
		}
		return g.rnd.Int64N(g.rev + 2)
	}
	switch c.Target {
	case pb.Compare_VERSION:
		c.TargetUnion = &pb.Compare_Version{Version: g.rnd.Int64N(5)}
	case pb.Compare_CREATE:
		c.TargetUnion = &pb.Compare_CreateRevision{CreateRevision: revish()}
	case pb.Compare_MOD:
		c.TargetUnion = &pb.Compare_ModRevision{ModRevision: revish()}
	case pb.Compare_VALUE:
		c.TargetUnion = &pb.Compare_Value{Value: g.value()}
	case pb.Compare_LEASE:
		c.TargetUnion = &pb.Compare_Lease{Lease: int64(g.rnd.IntN(2))}
	}
	switch {
	case g.chance(10):
		c.TargetUnion = nil
	case g.chance(10):
		c.TargetUnion = &pb.Compare_Version{Version: g.rnd.Int64N(3)}
	case g.chance(5):
		c.Result = 4 + pb.Compare_CompareResult(g.rnd.IntN(3))
	case g.chance(5):
		c.Target = 5 + pb.Compare_CompareTarget(g.rnd.IntN(3))
	}
	return c
}

// txnReq draws a txn at nesting depth (1 is the top level, 3 the deepest).
func (g *generator) txnReq(depth int) *pb.TxnRequest {
	if depth == 1 {
		g.zeroEndDeletes = g.pct() < 25
	}
	r := &pb.TxnRequest{}
	for range g.rnd.IntN(4) {
		r.Compare = append(r.Compare, g.compare())
	}
	readOnly := g.pct() < 15
	serializable := readOnly && g.pct() < 50
	list := func() []*pb.RequestOp {
		var ops []*pb.RequestOp
		for range g.rnd.IntN(4) {
			ops = append(ops, g.requestOp(depth, readOnly, serializable))
		}
		return ops
	}
	r.Success = list()
	r.Failure = list()
	return r
}

func (g *generator) requestOp(depth int, readOnly, serializable bool) *pb.RequestOp {
	p := g.rnd.IntN(1000)
	if readOnly {
		p = 100 + p%250
	}
	switch {
	case p < 8:
		return &pb.RequestOp{} // empty entry: rejected as "key not found"
	case p < 350:
		rr := g.rangeReq(true)
		if readOnly {
			rr.Serializable = serializable
		}
		return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: rr}}
	case p < 650 && !g.zeroEndDeletes:
		return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: g.putReq(true)}}
	case p < 800:
		// Mostly single keys: ranges collide with the txn's puts too often.
		d := &pb.DeleteRangeRequest{Key: g.key(3), PrevKv: g.chance(500)}
		if g.pct() < 30 {
			d.RangeEnd = g.rangeEnd(d.Key)
			for i := 0; !g.zeroEndDeletes && bytes.Equal(d.RangeEnd, []byte{0}) && i < 10; i++ {
				d.RangeEnd = g.rangeEnd(d.Key)
			}
			if !g.zeroEndDeletes && bytes.Equal(d.RangeEnd, []byte{0}) {
				d.RangeEnd = nil
			}
		}
		return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: d}}
	default:
		if depth >= 3 {
			return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: g.rangeReq(true)}}
		}
		return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: g.txnReq(depth + 1)}}
	}
}

// oversizedTxn draws a txn at or around the max-txn-ops limit: too many
// compares, too many ops in one branch, exactly the limit, or a nested txn
// whose allowance (the limit minus the parent's size) is exceeded.
func (g *generator) oversizedTxn() op {
	ranges := func(n int) []*pb.RequestOp {
		ops := make([]*pb.RequestOp, n)
		for i := range ops {
			k := []byte(keySpace[i%len(keySpace)])
			ops[i] = &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: k}}}
		}
		return ops
	}
	compares := func(n int) []*pb.Compare {
		cs := make([]*pb.Compare, n)
		for i := range cs {
			cs[i] = &pb.Compare{Key: []byte(keySpace[i%len(keySpace)]), Target: pb.Compare_VERSION,
				Result: pb.Compare_GREATER, TargetUnion: &pb.Compare_Version{Version: -1}}
		}
		return cs
	}
	switch g.rnd.IntN(5) {
	case 0:
		return op{txn: &pb.TxnRequest{Compare: compares(maxTxnOps + 1)}, note: "too many compares"}
	case 1:
		return op{txn: &pb.TxnRequest{Success: ranges(maxTxnOps + 1)}, note: "too many success ops"}
	case 2:
		return op{txn: &pb.TxnRequest{Compare: compares(3), Failure: ranges(maxTxnOps + 1 + g.rnd.IntN(5))}, note: "too many failure ops"}
	case 3:
		return op{txn: &pb.TxnRequest{Compare: compares(maxTxnOps), Success: ranges(maxTxnOps)}, note: "exactly max-txn-ops"}
	default:
		outer := 60 + g.rnd.IntN(60)
		inner := maxTxnOps - outer + g.rnd.IntN(3) // allowance is maxTxnOps-outer
		ops := ranges(outer - 1)
		ops = append(ops, &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Success: ranges(inner)}}})
		return op{txn: &pb.TxnRequest{Success: ops}, note: "nested txn around its allowance"}
	}
}

// compactOp draws a compaction at an old, current, already compacted or
// future revision, physical or not.
func (g *generator) compactOp() op {
	r := &pb.CompactionRequest{Physical: g.pct() < 50}
	switch p := g.pct(); {
	case p < 60 && g.rev > g.compacted:
		// Not too far back: keep some history to read.
		lo := max(g.compacted+1, g.rev-200)
		r.Revision = lo + g.rnd.Int64N(g.rev-lo+1)
	case p < 75:
		r.Revision = g.rev
	case p < 88:
		r.Revision = g.rnd.Int64N(g.compacted + 1)
	case p < 90:
		r.Revision = -1
	default:
		r.Revision = g.rev + 1 + g.rnd.Int64N(3)
	}
	return op{compact: r}
}
