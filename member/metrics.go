package member

import (
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/keeldb/keel/apply"
	"github.com/keeldb/keel/metrics"
)

// startMetrics points the member's scrape-time gauges at its state.
func (m *Member) startMetrics() {
	mt := m.cfg.Metrics
	if mt == nil {
		return
	}
	mt.SetMember(m.cfg.ID, m.quota.limit)
	mt.SetState(metrics.State{
		CommittedIndex: m.raft.CommittedIndex,
		AppliedIndex:   m.applied.Load,
		DBSize:         m.engine.Size,
		Rev:            m.kv.Rev,
		CompactRev:     m.kv.CompactRev,
		Watch:          m.watch.Counts,
		Storage:        m.engine.DB().Metrics,
		IsLearner: func() bool {
			self := m.cluster.Member(m.cfg.ID)
			return self != nil && self.IsLearner
		},
		AuthRevision:  m.auth.Revision,
		OpenReads:     m.kv.OpenReads,
		PendingEvents: m.watch.PendingEvents,
	})
	m.kv.ObserveCompactions(mt)
}

// requestMetrics records a request of kind typ started at start, failed
// when *err is set (etcd_server_request_duration_seconds).
func (m *Member) requestMetrics(typ string, start time.Time, err *error) {
	m.cfg.Metrics.Request(typ, *err == nil, time.Since(start))
}

// appliedMetrics records the application of r, which took d.
func (m *Member) appliedMetrics(r *pb.InternalRaftRequest, res *apply.Result, d time.Duration) {
	mt := m.cfg.Metrics
	if mt == nil {
		return
	}
	mt.Applied(opName(r), res.Err == nil, d)
	mt.StoreOps(appliedOps(r, res))
	if res.Err == nil {
		switch {
		case r.LeaseGrant != nil:
			mt.LeaseGranted(r.LeaseGrant.TTL)
		case r.LeaseRevoke != nil:
			mt.LeaseRevoked()
		}
	}
}

// opName names the kind of r as etcd's apply metrics do: its request
// field in CamelCase ("Put", "LeaseGrant", "AuthUserAdd", ...).
func opName(r *pb.InternalRaftRequest) string {
	switch { // the common ones without reflection
	case r.Put != nil:
		return "Put"
	case r.DeleteRange != nil:
		return "DeleteRange"
	case r.Txn != nil:
		return "Txn"
	case r.LeaseGrant != nil:
		return "LeaseGrant"
	case r.LeaseRevoke != nil:
		return "LeaseRevoke"
	}
	name := "unknown"
	r.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind || fd.Name() == "header" {
			return true
		}
		var b strings.Builder
		for _, part := range strings.Split(string(fd.Name()), "_") {
			if part != "" {
				b.WriteString(strings.ToUpper(part[:1]) + part[1:])
			}
		}
		name = b.String()
		return false
	})
	return name
}

// appliedOps counts the store operations an applied request performed.
func appliedOps(r *pb.InternalRaftRequest, res *apply.Result) metrics.Ops {
	var o metrics.Ops
	if res == nil || res.Err != nil {
		return o
	}
	switch {
	case r.Put != nil:
		o.Puts, o.PutBytes = 1, int64(len(r.Put.Key)+len(r.Put.Value))
	case r.DeleteRange != nil:
		o.Deletes = 1
	case r.Txn != nil:
		if resp, ok := res.Resp.(*pb.TxnResponse); ok {
			txnOps(&o, r.Txn, resp)
		}
	}
	return o
}

// txnOps adds the operations of the branch of r that ran, as resp shows.
func txnOps(o *metrics.Ops, r *pb.TxnRequest, resp *pb.TxnResponse) {
	ops := r.Failure
	if resp.Succeeded {
		ops = r.Success
	}
	for i, op := range ops {
		switch {
		case op.GetRequestRange() != nil:
			o.Ranges++
		case op.GetRequestPut() != nil:
			p := op.GetRequestPut()
			o.Puts++
			o.PutBytes += int64(len(p.Key) + len(p.Value))
		case op.GetRequestDeleteRange() != nil:
			o.Deletes++
		case op.GetRequestTxn() != nil:
			if i < len(resp.Responses) {
				if sub := resp.Responses[i].GetResponseTxn(); sub != nil {
					txnOps(o, op.GetRequestTxn(), sub)
				}
			}
		}
	}
}
