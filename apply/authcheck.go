package apply

import (
	"github.com/cockroachdb/pebble/v2"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/keeldb/keel/auth"
)

// This file holds etcd's permission rules for KV and lease requests. Writes
// are checked here, when their entry is applied, against the requester the
// proposer recorded in the entry's header (user name and the auth revision
// the token was checked at): a permission revoked between propose and apply
// is honoured, and a request proposed before any auth change applied since
// fails with rpctypes.ErrGRPCAuthOldRevision, as in etcd. Reads are checked
// with the same functions by the serving member, once a linearizable read's
// ReadIndex wait is over and before it reads (see member.ReadCheck).

// LeaseKeys returns the keys attached to a lease; none when the lease is not
// granted.
type LeaseKeys func(id int64) ([][]byte, error)

// authorize checks the writes of r against its requester, while auth is
// enabled: puts, deletes, txns (all their parts, as CheckTxn) and lease
// revocations. Other requests are checked by the serving member (Compact,
// lease grants) or by the auth apply (auth management). Lease keys are read
// through b, so that the attachments of earlier entries of the batch count.
func (a *Applier) authorize(b *pebble.Batch, r *pb.InternalRaftRequest) error {
	if a.auth == nil || !a.auth.Enabled() {
		return nil
	}
	ai := requester(r)
	keys := func(id int64) ([][]byte, error) { return a.lessor.Keys(b, id) }
	switch {
	case r.Put != nil:
		return CheckPut(a.auth, ai, keys, r.Put)
	case r.DeleteRange != nil:
		return CheckDeleteRange(a.auth, ai, r.DeleteRange)
	case r.Txn != nil:
		return CheckTxn(a.auth, ai, keys, r.Txn)
	case r.LeaseRevoke != nil:
		return CheckLeaseWrites(a.auth, ai, keys, r.LeaseRevoke.ID)
	}
	return nil
}

// requester is who proposed r, as recorded in its header.
func requester(r *pb.InternalRaftRequest) *auth.AuthInfo {
	return &auth.AuthInfo{Username: r.Header.GetUsername(), Revision: r.Header.GetAuthRevision()}
}

// CheckPut checks that ai may make p: write its key; read it too when the
// previous value is asked for; and, when p attaches a lease, write every key
// already attached to that lease (else ai could revoke them by proxy).
func CheckPut(s *auth.Store, ai *auth.AuthInfo, keys LeaseKeys, p *pb.PutRequest) error {
	if err := s.IsPutPermitted(ai, p.Key); err != nil {
		return err
	}
	if err := CheckLeaseWrites(s, ai, keys, p.Lease); err != nil {
		return err
	}
	if p.PrevKv {
		return s.IsRangePermitted(ai, p.Key, nil)
	}
	return nil
}

// CheckDeleteRange checks that ai may write the keys d deletes, and read
// them when the previous values are asked for.
func CheckDeleteRange(s *auth.Store, ai *auth.AuthInfo, d *pb.DeleteRangeRequest) error {
	if err := s.IsDeleteRangePermitted(ai, d.Key, d.RangeEnd); err != nil {
		return err
	}
	if d.PrevKv {
		return s.IsRangePermitted(ai, d.Key, d.RangeEnd)
	}
	return nil
}

// CheckTxn checks that ai may make every part of r as etcd does: read the
// keys of every compare, then each operation of the success and then the
// failure branch whichever runs, nested txns included; the first refusal
// is the answer. keys is used only for puts with a lease.
func CheckTxn(s *auth.Store, ai *auth.AuthInfo, keys LeaseKeys, r *pb.TxnRequest) error {
	for _, c := range r.Compare {
		if err := s.IsRangePermitted(ai, c.Key, c.RangeEnd); err != nil {
			return err
		}
	}
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range ops {
			if err := checkOp(s, ai, keys, op); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkOp(s *auth.Store, ai *auth.AuthInfo, keys LeaseKeys, op *pb.RequestOp) error {
	switch {
	case op.GetRequestRange() != nil:
		rr := op.GetRequestRange()
		return s.IsRangePermitted(ai, rr.Key, rr.RangeEnd)
	case op.GetRequestPut() != nil:
		return CheckPut(s, ai, keys, op.GetRequestPut())
	case op.GetRequestDeleteRange() != nil:
		d := op.GetRequestDeleteRange()
		// etcd checks the read permission of prev_kv first inside a txn.
		if d.PrevKv {
			if err := s.IsRangePermitted(ai, d.Key, d.RangeEnd); err != nil {
				return err
			}
		}
		return s.IsDeleteRangePermitted(ai, d.Key, d.RangeEnd)
	case op.GetRequestTxn() != nil:
		return CheckTxn(s, ai, keys, op.GetRequestTxn())
	}
	return nil
}

// CheckLeaseWrites checks that ai may write every key attached to lease id,
// which revoking the lease (or attaching more keys to it) amounts to. Root
// may always; a lease that is not granted has no keys.
func CheckLeaseWrites(s *auth.Store, ai *auth.AuthInfo, keys LeaseKeys, id int64) error {
	if id == 0 {
		return nil
	}
	return checkLeaseKeys(s, ai, keys, id, s.IsPutPermitted)
}

// CheckLeaseReads checks that ai may read every key attached to lease id,
// which listing the lease's keys shows; root may always.
func CheckLeaseReads(s *auth.Store, ai *auth.AuthInfo, keys LeaseKeys, id int64) error {
	return checkLeaseKeys(s, ai, keys, id, func(ai *auth.AuthInfo, key []byte) error {
		return s.IsRangePermitted(ai, key, nil)
	})
}

// checkLeaseKeys checks permitted for ai on every key of lease id, unless
// ai holds the root role.
func checkLeaseKeys(s *auth.Store, ai *auth.AuthInfo, keys LeaseKeys, id int64, permitted func(*auth.AuthInfo, []byte) error) error {
	if s.IsAdminPermitted(ai) == nil {
		return nil
	}
	ks, err := keys(id)
	if err != nil {
		return err
	}
	for _, k := range ks {
		if err := permitted(ai, k); err != nil {
			return err
		}
	}
	return nil
}
