package mvcc

import (
	"context"
	"errors"
	"hash/crc32"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

// KVHash is the hash of the key space as of one revision, for comparing
// members (etcd's HashKV).
type KVHash struct {
	Hash uint32
	// Revision is the revision hashed; CompactRevision the compaction
	// revision it was hashed from.
	Revision, CompactRevision int64
}

// hashPageSize is how many keys one range of the hash reads at a time.
const hashPageSize = 1000

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// HashKV hashes the key space as it is logically at rev (0: the current
// revision): every key alive at the compaction revision, then every change
// after it up to rev, in revision order. It depends only on the revisions
// applied, not on how far physical compaction has got, so members that
// applied the same entries agree. A rev beyond the current one is
// ErrFutureRev, one below the compaction ErrCompacted; a compaction that
// runs meanwhile makes it start again.
func (s *Store) HashKV(ctx context.Context, rev int64) (KVHash, error) {
	for attempt := 0; ; attempt++ {
		compact := s.compactRev.Load()
		h, err := s.hashKV(ctx, rev)
		if errors.Is(err, ErrCompacted) && s.compactRev.Load() != compact && attempt < hashAttempts {
			continue // a compaction moved the base while hashing: again
		}
		return h, err
	}
}

// hashAttempts bounds how often HashKV starts again because compactions
// kept moving its base.
const hashAttempts = 10

func (s *Store) hashKV(ctx context.Context, rev int64) (KVHash, error) {
	cur := s.rev.Load()
	if rev > cur {
		return KVHash{}, ErrFutureRev
	}
	if rev <= 0 {
		rev = cur
	}
	compact := s.compactRev.Load()
	if rev < compact {
		return KVHash{}, ErrCompacted
	}
	d := crc32.New(castagnoli)
	var buf []byte
	add := func(typ mvccpb.Event_EventType, kv *mvccpb.KeyValue) error {
		var err error
		buf = append(buf[:0], byte(typ))
		buf, err = proto.MarshalOptions{Deterministic: true}.MarshalAppend(buf, kv)
		if err != nil {
			return err
		}
		d.Write(buf)
		return nil
	}
	v := &ReadView{s: s, rev: cur, firstRev: compact}
	if compact > 0 {
		key := []byte{0}
		for {
			res, err := v.Range(ctx, key, []byte{}, RangeOptions{Rev: compact, Limit: hashPageSize})
			if err != nil {
				return KVHash{}, err
			}
			for _, kv := range res.KVs {
				if err := add(mvccpb.PUT, kv); err != nil {
					return KVHash{}, err
				}
			}
			if len(res.KVs) < hashPageSize {
				break
			}
			key = append(append([]byte(nil), res.KVs[len(res.KVs)-1].Key...), 0)
		}
	}
	for from := compact + 1; from <= rev; {
		evs, last, err := s.History(ctx, from, rev, hashPageSize)
		if err != nil {
			return KVHash{}, err
		}
		for _, ev := range evs {
			if err := add(ev.Type, ev.KV); err != nil {
				return KVHash{}, err
			}
		}
		from = last + 1
	}
	if s.compactRev.Load() != compact {
		return KVHash{}, ErrCompacted
	}
	return KVHash{Hash: d.Sum32(), Revision: rev, CompactRevision: compact}, nil
}
