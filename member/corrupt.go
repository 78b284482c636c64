package member

import (
	"fmt"

	"github.com/keeldb/keel/mvcc"
)

// PeerHash is a peer's answer to HashKV at the revision the checking member
// asked for: its own current revision, and the hash of its key space at
// that revision with the compaction revision it was taken over.
type PeerHash struct {
	ID       uint64
	Revision int64 // the peer's current revision (its response header's)
	Hash     mvcc.KVHash
}

// initialCheckVerdict is etcd's initial corruption check, run before a
// member serves: local is its own HashKV at its current revision, peers the
// peers' HashKVs at that revision. Only a peer whose hash differs over the
// same compaction revision counts as a mismatch (a different compaction
// revision makes the hashes incomparable); any mismatch makes the member
// refuse to start, with etcd's error.
func initialCheckVerdict(self uint64, local mvcc.KVHash, peers []PeerHash) error {
	for _, p := range peers {
		if p.Hash.Hash != local.Hash && p.Hash.CompactRevision == local.CompactRevision {
			return fmt.Errorf("%s found data inconsistency with peers", idString(self))
		}
	}
	return nil
}

// periodicCheckVerdict is the leader's periodic check, etcd's rules: before
// and after are the leader's own HashKV at its current revision taken
// before and after asking the peers (with a linearizable read between), rev
// its revision at the second; peers answered for before.Revision. It
// returns the member to raise CORRUPT for, and whether there is one: the
// leader itself if its hash of the same revision changed, else the first
// peer that is ahead of the leader, compacted further, or hashes
// differently over the same compaction revision. Like etcd it raises at
// most one alarm per check.
func periodicCheckVerdict(self uint64, before, after mvcc.KVHash, rev int64, peers []PeerHash) (uint64, bool) {
	if after.Hash != before.Hash && after.Revision == before.Revision && after.CompactRevision == before.CompactRevision {
		return self, true
	}
	for _, p := range peers {
		switch {
		case p.Revision > rev,
			p.Hash.CompactRevision > after.CompactRevision,
			p.Hash.CompactRevision == before.CompactRevision && p.Hash.Hash != before.Hash:
			return p.ID, true
		}
	}
	return 0, false
}
