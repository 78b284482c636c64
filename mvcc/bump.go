package mvcc

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Revisions reads the current and compacted revision (-1: never compacted)
// of the store kept in r, without opening it.
func Revisions(r pebble.Reader) (rev, compactRev int64, err error) {
	st, err := loadState(r)
	if err != nil {
		return 0, 0, err
	}
	return st.rev, st.compactRev, nil
}

// BumpRevision raises, in b, the current revision of the store kept in r by
// amount, and with markCompacted schedules a compaction at the new
// revision, as `etcdutl snapshot restore --bump-revision --mark-compacted`
// does to a restored store: revisions handed out before the restore are
// never handed out again for other changes, and watchers and readers of an
// old revision get ErrCompacted instead of a history that no longer
// matches. The store compacts when it next opens (the scheduled compaction
// is resumed). It returns the new current revision. The store must not be
// open.
func BumpRevision(r pebble.Reader, b *pebble.Batch, amount int64, markCompacted bool) (int64, error) {
	if amount < 0 {
		return 0, fmt.Errorf("bump the revision by %d: must not be negative", amount)
	}
	st, err := loadState(r)
	if err != nil {
		return 0, err
	}
	rev := st.rev + amount
	if rev < st.rev {
		return 0, fmt.Errorf("bump the revision %d by %d: overflows", st.rev, amount)
	}
	if err := putInt(b, keyCurrentRev, rev); err != nil {
		return 0, err
	}
	if markCompacted && rev > st.compactRev {
		if err := putInt(b, keyScheduledCompact, rev); err != nil {
			return 0, err
		}
	}
	return rev, nil
}
