package member

import (
	"testing"

	"github.com/keeldb/keel/mvcc"
)

func TestInitialCheckRefusesOnlyComparableMismatch(t *testing.T) {
	local := mvcc.KVHash{Hash: 7, Revision: 10, CompactRevision: 4}
	for _, c := range []struct {
		name  string
		peers []PeerHash
		want  string
	}{
		{"equal", []PeerHash{{ID: 2, Revision: 10, Hash: local}}, ""},
		{"other compaction", []PeerHash{{ID: 2, Revision: 10, Hash: mvcc.KVHash{Hash: 8, Revision: 10, CompactRevision: 5}}}, ""},
		{"mismatch", []PeerHash{
			{ID: 2, Revision: 10, Hash: local},
			{ID: 3, Revision: 10, Hash: mvcc.KVHash{Hash: 8, Revision: 10, CompactRevision: 4}},
		}, "1a found data inconsistency with peers"},
		{"no peers answered", nil, ""},
	} {
		err := initialCheckVerdict(0x1a, local, c.peers)
		if got := ""; err != nil {
			got = err.Error()
			if got != c.want {
				t.Errorf("%s: %q, want %q", c.name, got, c.want)
			}
		} else if c.want != "" {
			t.Errorf("%s: no error, want %q", c.name, c.want)
		}
	}
}

func TestPeriodicCheckBlamesTheMemberThatDiffers(t *testing.T) {
	h := mvcc.KVHash{Hash: 7, Revision: 10, CompactRevision: 4}
	same := func(id uint64) PeerHash { return PeerHash{ID: id, Revision: 10, Hash: h} }
	for _, c := range []struct {
		name          string
		before, after mvcc.KVHash
		rev           int64
		peers         []PeerHash
		want          uint64
		corrupt       bool
	}{
		{"all equal", h, h, 10, []PeerHash{same(2), same(3)}, 0, false},
		{"peer hash differs", h, h, 10, []PeerHash{same(2), {ID: 3, Revision: 10, Hash: mvcc.KVHash{Hash: 9, Revision: 10, CompactRevision: 4}}}, 3, true},
		{"peer behind, other compaction", h, h, 12, []PeerHash{{ID: 2, Revision: 9, Hash: mvcc.KVHash{Hash: 9, Revision: 10, CompactRevision: 3}}}, 0, false},
		{"peer ahead of leader", h, h, 10, []PeerHash{{ID: 2, Revision: 11, Hash: h}}, 2, true},
		{"peer compacted further", h, h, 10, []PeerHash{{ID: 2, Revision: 10, Hash: mvcc.KVHash{Hash: 9, Revision: 10, CompactRevision: 6}}}, 2, true},
		{"leader's own hash changed", h, mvcc.KVHash{Hash: 8, Revision: 10, CompactRevision: 4}, 10, []PeerHash{same(2)}, 1, true},
	} {
		id, corrupt := periodicCheckVerdict(1, c.before, c.after, c.rev, c.peers)
		if id != c.want || corrupt != c.corrupt {
			t.Errorf("%s: (%d, %v), want (%d, %v)", c.name, id, corrupt, c.want, c.corrupt)
		}
	}
}
