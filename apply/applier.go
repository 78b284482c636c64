// Package apply is keel's deterministic applier: it turns a committed Raft
// entry into changes of the MVCC store and the membership, and computes the
// response the proposer gets. Given the same state and the same entry it
// always does the same thing; it reads no clock and does no I/O beyond the
// batch it is handed.
//
// It also holds etcd's request semantics shared by the read path (Range,
// ReadTxn), so reads served without Raft answer exactly like applied ones.
package apply

import (
	"context"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/keeldb/keel/alarm"
	"github.com/keeldb/keel/auth"
	"github.com/keeldb/keel/membership"
	"github.com/keeldb/keel/mvcc"
)

// Result is the outcome of applying one request.
type Result struct {
	// Resp is the response for the proposer; nil when Err is set.
	Resp proto.Message
	// Err is a request error for the proposer (an etcd rpctypes error or an
	// mvcc error); the entry was still applied (it changed nothing).
	Err error
	// Compaction is set for compaction requests: the proposer of a physical
	// compaction waits for the store's compactions after the batch commits.
	Compaction bool
}

// Applier applies committed entries. It is used by the apply loop only.
type Applier struct {
	kv      *mvcc.Store
	cluster *membership.Cluster
	alarms  *alarm.Store
	lessor  Lessor
	auth    *auth.Store
}

// New returns an applier over the given state.
func New(kv *mvcc.Store, cluster *membership.Cluster, alarms *alarm.Store, lessor Lessor, auth *auth.Store) *Applier {
	return &Applier{kv: kv, cluster: cluster, alarms: alarms, lessor: lessor, auth: auth}
}

// Apply applies one request through w (and b for non-KV state). A returned
// error means the batch can no longer be trusted (storage failure): the
// member must stop. Request errors are in Result.Err.
//
// Every key change the request makes is also reflected in the lease
// attachments before Apply returns.
//
// While auth is enabled, a write is applied only if the requester recorded
// in r.Header may make it at this point of the log (see authcheck.go).
func (a *Applier) Apply(ctx context.Context, w *mvcc.Writer, b *pebble.Batch, r *pb.InternalRaftRequest) (*Result, error) {
	if err := a.refusedByAlarm(r); err != nil {
		return &Result{Err: err, Compaction: r.Compaction != nil}, nil
	}
	if err := a.authorize(b, r); err != nil {
		if !isRequestError(err) {
			return nil, err
		}
		return &Result{Err: err}, nil
	}
	n := len(w.Events())
	res, err := a.apply(ctx, w, b, r)
	if err != nil {
		return nil, err
	}
	if evs := w.Events(); len(evs) > n {
		if err := a.trackLeases(b, evs[n:]); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func (a *Applier) apply(ctx context.Context, w *mvcc.Writer, b *pebble.Batch, r *pb.InternalRaftRequest) (*Result, error) {
	switch {
	case r.Put != nil:
		return a.put(ctx, w, r.Put)
	case r.DeleteRange != nil:
		tx := w.Txn()
		defer tx.End()
		resp, err := deleteRange(ctx, tx, r.DeleteRange)
		if err != nil {
			return nil, err
		}
		return &Result{Resp: resp}, nil
	case r.Txn != nil:
		tx := w.Txn()
		defer tx.End()
		resp, err := runTxn(ctx, tx, r.Txn, a.lessor)
		if err != nil {
			if tx.Changed() {
				return nil, fmt.Errorf("txn failed after writing: %w", err)
			}
			if isRequestError(err) {
				return &Result{Err: err}, nil
			}
			return nil, err
		}
		return &Result{Resp: resp}, nil
	case r.Compaction != nil:
		res := &Result{Compaction: true}
		if err := w.Compact(r.Compaction.Revision); err != nil {
			if !isRequestError(err) {
				return nil, err
			}
			res.Err = err
			return res, nil
		}
		res.Resp = &pb.CompactionResponse{Header: &pb.ResponseHeader{Revision: w.Rev()}}
		return res, nil
	case r.Alarm != nil:
		resp, err := a.alarm(b, r.Alarm)
		if err != nil {
			return nil, err
		}
		return &Result{Resp: resp}, nil
	case r.ClusterMemberAttrSet != nil:
		attr := r.ClusterMemberAttrSet.MemberAttributes
		if err := a.cluster.SetAttributes(b, r.ClusterMemberAttrSet.Member_ID, attr.GetName(), attr.GetClientUrls()); err != nil {
			return &Result{Err: err}, nil
		}
		return &Result{}, nil
	case r.ClusterVersionSet != nil:
		return &Result{}, nil
	case r.LeaseGrant != nil:
		return a.leaseGrant(w, b, r.LeaseGrant)
	case r.LeaseRevoke != nil:
		return a.leaseRevoke(ctx, w, b, r.LeaseRevoke)
	case r.LeaseCheckpoint != nil:
		return a.leaseCheckpoint(w, b, r.LeaseCheckpoint)
	case isAuthRequest(r):
		return a.applyAuth(ctx, w, b, r)
	}
	return &Result{Err: fmt.Errorf("unsupported request %v", r)}, nil
}

func (a *Applier) put(ctx context.Context, w *mvcc.Writer, p *pb.PutRequest) (*Result, error) {
	tx := w.Txn()
	defer tx.End()
	prev, err := checkPut(ctx, tx, a.lessor, p)
	if err != nil {
		if isRequestError(err) {
			return &Result{Err: err}, nil
		}
		return nil, err
	}
	resp, err := put(tx, p, prev)
	if err != nil {
		return nil, err
	}
	return &Result{Resp: resp}, nil
}

// refusedByAlarm applies etcd's alarm rules: with CORRUPT raised no KV
// request, lease grant or lease revoke is applied; with NOSPACE no request
// that adds data is (puts and lease grants).
func (a *Applier) refusedByAlarm(r *pb.InternalRaftRequest) error {
	if a.alarms.Active(pb.AlarmType_CORRUPT) && (r.Put != nil || r.DeleteRange != nil || r.Txn != nil || r.Compaction != nil ||
		r.LeaseGrant != nil || r.LeaseRevoke != nil) {
		return rpctypes.ErrGRPCCorrupt
	}
	if a.alarms.Active(pb.AlarmType_NOSPACE) && (r.Put != nil || (r.Txn != nil && TxnPuts(r.Txn)) || r.LeaseGrant != nil) {
		return rpctypes.ErrGRPCNoSpace
	}
	return nil
}

// TxnPuts reports whether any branch of r, nested txns included, puts.
func TxnPuts(r *pb.TxnRequest) bool {
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range ops {
			if op.GetRequestPut() != nil {
				return true
			}
			if t := op.GetRequestTxn(); t != nil && TxnPuts(t) {
				return true
			}
		}
	}
	return false
}

// alarm gets, raises or clears alarms.
func (a *Applier) alarm(b *pebble.Batch, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	resp := &pb.AlarmResponse{}
	switch r.Action {
	case pb.AlarmRequest_GET:
		resp.Alarms = a.alarms.Get(r.Alarm)
	case pb.AlarmRequest_ACTIVATE:
		if r.Alarm == pb.AlarmType_NONE {
			break
		}
		m, err := a.alarms.Activate(b, r.MemberID, r.Alarm)
		if err != nil {
			return nil, err
		}
		resp.Alarms = []*pb.AlarmMember{m}
	case pb.AlarmRequest_DEACTIVATE:
		m, err := a.alarms.Deactivate(b, r.MemberID, r.Alarm)
		if err != nil {
			return nil, err
		}
		if m != nil {
			resp.Alarms = []*pb.AlarmMember{m}
		}
	}
	return resp, nil
}

// ApplyConfChange validates a committed conf change against the membership
// and records its effect in b: AddNode and AddLearnerNode add the member
// carried in the context (or, with IsPromote, promote the learner),
// RemoveNode removes the member and records its ID as removed for good,
// UpdateNode replaces the member's peer URLs.
//
// A change that fails validation changes nothing: ApplyConfChange sets
// cc.NodeId to raft.None so that the caller's Raft ApplyConfChange, which
// must follow with the same cc, ignores it, and returns the reason in
// Result.Err for the proposer (an rpctypes error; every member reaches the
// same verdict). Otherwise Result.Resp is a MemberListResponse, without
// header, holding the members after the change. A returned error means the
// batch can no longer be trusted.
func (a *Applier) ApplyConfChange(b *pebble.Batch, cc *raftpb.ConfChange) (*Result, error) {
	if err := a.cluster.ValidateConfChange(cc); err != nil {
		cc.NodeId = proto.Uint64(raft.None)
		return &Result{Err: confChangeError(err)}, nil
	}
	id := cc.GetNodeId()
	var err error
	switch cc.GetType() {
	case raftpb.ConfChangeType_ConfChangeAddNode, raftpb.ConfChangeType_ConfChangeAddLearnerNode:
		ctx, derr := membership.DecodeConfChangeContext(cc)
		if derr != nil {
			return nil, derr // validated above
		}
		if ctx.IsPromote {
			err = a.cluster.Promote(b, id)
		} else {
			m := ctx.Member
			m.IsLearner = cc.GetType() == raftpb.ConfChangeType_ConfChangeAddLearnerNode
			err = a.cluster.Add(b, &m)
		}
	case raftpb.ConfChangeType_ConfChangeRemoveNode:
		err = a.cluster.Remove(b, id)
	case raftpb.ConfChangeType_ConfChangeUpdateNode:
		ctx, derr := membership.DecodeConfChangeContext(cc)
		if derr != nil {
			return nil, derr
		}
		err = a.cluster.UpdatePeerURLs(b, id, ctx.PeerURLs)
	}
	if err != nil {
		return nil, err
	}
	return &Result{Resp: &pb.MemberListResponse{Members: ProtoMembers(a.cluster.Members())}}, nil
}

// confChangeError is the error etcd returns to the proposer of a conf
// change that failed validation.
func confChangeError(err error) error {
	switch {
	case errors.Is(err, membership.ErrIDRemoved), errors.Is(err, membership.ErrIDNotFound):
		return rpctypes.ErrGRPCMemberNotFound
	case errors.Is(err, membership.ErrIDExists):
		return rpctypes.ErrGRPCMemberExist
	case errors.Is(err, membership.ErrPeerURLExists):
		return rpctypes.ErrGRPCPeerURLExist
	case errors.Is(err, membership.ErrMemberNotLearner):
		return rpctypes.ErrGRPCMemberNotLearner
	case errors.Is(err, membership.ErrTooManyLearners):
		return rpctypes.ErrGRPCTooManyLearners
	}
	return status.Error(codes.InvalidArgument, err.Error())
}

// ProtoMembers converts members to the Cluster API's form.
func ProtoMembers(ms []*membership.Member) []*pb.Member {
	out := make([]*pb.Member, len(ms))
	for i, m := range ms {
		out[i] = &pb.Member{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, IsLearner: m.IsLearner}
	}
	return out
}

// isRequestError tells request errors (reported to the client, nothing
// changed) from storage failures.
func isRequestError(err error) bool {
	if errors.Is(err, mvcc.ErrCompacted) || errors.Is(err, mvcc.ErrFutureRev) {
		return true
	}
	_, ok := status.FromError(err)
	return ok
}
