package apply

import (
	"context"
	"errors"

	"github.com/cockroachdb/pebble/v2"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/keeldb/keel/lease"
	"github.com/keeldb/keel/mvcc"
)

// Lessor is the lease state the applier changes (package lease). The
// methods taking a batch write into the apply batch and are called from
// the apply loop only, in log order.
type Lessor interface {
	LeaseChecker
	// Grant grants lease id and returns the TTL granted (raised to the
	// minimum).
	Grant(b *pebble.Batch, id, ttl int64) (int64, error)
	// Revoke removes lease id and returns its attached keys in key order,
	// for the caller to delete.
	Revoke(b *pebble.Batch, id int64) ([][]byte, error)
	// Checkpoint records the remaining TTL of lease id.
	Checkpoint(b *pebble.Batch, id, remaining int64) error
	// Attach and Detach record which keys are attached to which lease.
	Attach(b *pebble.Batch, id int64, key []byte) error
	Detach(b *pebble.Batch, id int64, key []byte) error
	// Keys returns the keys attached to lease id in r, in key order; none
	// for a lease not granted.
	Keys(r pebble.Reader, id int64) ([][]byte, error)
}

// leaseGrant grants a lease. The header carries the revision at apply time,
// as in etcd.
func (a *Applier) leaseGrant(w *mvcc.Writer, b *pebble.Batch, r *pb.LeaseGrantRequest) (*Result, error) {
	ttl, err := a.lessor.Grant(b, r.ID, r.TTL)
	if err != nil {
		return leaseResult(err)
	}
	return &Result{Resp: &pb.LeaseGrantResponse{Header: &pb.ResponseHeader{Revision: w.Rev()}, ID: r.ID, TTL: ttl}}, nil
}

// leaseRevoke revokes a lease and deletes every key attached to it in one
// write transaction, so in one revision (none if it has no keys). The
// header carries the revision after the deletes.
func (a *Applier) leaseRevoke(ctx context.Context, w *mvcc.Writer, b *pebble.Batch, r *pb.LeaseRevokeRequest) (*Result, error) {
	keys, err := a.lessor.Revoke(b, r.ID)
	if err != nil {
		return leaseResult(err)
	}
	tx := w.Txn()
	for _, k := range keys {
		if _, _, err := tx.DeleteRange(ctx, k, nil); err != nil {
			tx.End()
			return nil, err
		}
	}
	tx.End()
	return &Result{Resp: &pb.LeaseRevokeResponse{Header: &pb.ResponseHeader{Revision: w.Rev()}}}, nil
}

// leaseCheckpoint records the remaining TTLs the leader checkpointed.
func (a *Applier) leaseCheckpoint(w *mvcc.Writer, b *pebble.Batch, r *pb.LeaseCheckpointRequest) (*Result, error) {
	for _, c := range r.Checkpoints {
		if err := a.lessor.Checkpoint(b, c.ID, c.Remaining_TTL); err != nil {
			return nil, err
		}
	}
	return &Result{Resp: &pb.LeaseCheckpointResponse{Header: &pb.ResponseHeader{Revision: w.Rev()}}}, nil
}

// leaseResult turns a lessor error into the request error etcd answers
// with; any other error is a storage failure.
func leaseResult(err error) (*Result, error) {
	switch {
	case errors.Is(err, lease.ErrNotFound):
		return &Result{Err: rpctypes.ErrGRPCLeaseNotFound}, nil
	case errors.Is(err, lease.ErrExists):
		return &Result{Err: rpctypes.ErrGRPCLeaseExist}, nil
	case errors.Is(err, lease.ErrTTLTooLarge):
		return &Result{Err: rpctypes.ErrGRPCLeaseTTLTooLarge}, nil
	}
	return nil, err
}

// trackLeases keeps the lease attachments in step with the key changes one
// request made (evs, in order): a key deleted, or put with another lease,
// leaves its previous lease; a key put with a lease it did not have joins
// it. Running it per request, in the same batch, lets a later request of
// the batch (a revoke) see the keys attached by earlier ones.
func (a *Applier) trackLeases(b *pebble.Batch, evs []mvcc.Event) error {
	for _, ev := range evs {
		var id int64
		if ev.Type == mvccpb.PUT {
			id = ev.KV.Lease
		}
		if id == ev.PrevLease {
			continue
		}
		if ev.PrevLease != 0 {
			if err := a.lessor.Detach(b, ev.PrevLease, ev.KV.Key); err != nil {
				return err
			}
		}
		if id != 0 {
			if err := a.lessor.Attach(b, id, ev.KV.Key); err != nil {
				return err
			}
		}
	}
	return nil
}
