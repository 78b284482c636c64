package lease

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/keeldb/keel/storage"
)

// readLeases reads the lease records stored in db. TTLs below minTTL are
// raised to it: the minimum may have grown since the grant (a longer
// election timeout), and etcd raises the TTL in memory, as here.
func readLeases(db pebble.Reader, minTTL int64) (map[int64]*lease, error) {
	leases := make(map[int64]*lease)
	it, err := db.NewIter(&pebble.IterOptions{
		LowerBound: []byte{storage.PrefixLease, kindLease},
		UpperBound: []byte{storage.PrefixLease, kindLease + 1},
	})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		id, err := decodeLeaseKey(it.Key())
		if err != nil {
			return nil, err
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, err
		}
		ttl, remaining, err := decodeRecord(v)
		if err != nil {
			return nil, fmt.Errorf("lease %x: %w", id, err)
		}
		leases[id] = newLease(id, max(ttl, minTTL), remaining)
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	return leases, nil
}

// Reload replaces the leases with those stored in db, after the member's
// state was replaced by a Raft snapshot. Attached keys live only in db, so
// they follow by themselves.
//
// A lease granted both before and after keeps its in-memory record (and so
// its expiry, on a primary): Renew calls waiting on it are not disturbed. On
// a primary (a member installing a snapshot is normally not one), a lease
// that is new gets its expiry as at a promotion, without extension. Leases
// that are gone wake the Renew calls that wait on a revocation.
//
// Apply loop only.
func (l *Lessor) Reload(db pebble.Reader) error {
	fresh, err := readLeases(db, l.cfg.MinTTL)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	removed := false
	for id, le := range l.leases {
		if _, ok := fresh[id]; ok {
			continue
		}
		l.expiries.remove(le)
		l.checkpoints.remove(le)
		removed = true
	}
	now := l.clock.Now()
	for id, nle := range fresh {
		if le, ok := l.leases[id]; ok {
			le.ttl, le.remaining = nle.ttl, nle.remaining
			fresh[id] = le
			continue
		}
		if l.primary {
			l.refresh(nle, 0, now)
			l.scheduleCheckpoint(nle, now)
		}
	}
	l.leases = fresh
	if removed {
		close(l.revokedc)
		l.revokedc = make(chan struct{})
	}
	if l.primary {
		l.kick()
	}
	return nil
}
