package auth

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	"go.etcd.io/etcd/api/v3/authpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/zap"
)

// Key ranges follow etcd's conventions. A permission is a single key (empty
// RangeEnd), a range [Key, RangeEnd), or everything from Key on (RangeEnd
// "\x00"). Internally every permission is a half-open interval [begin, end)
// where an empty end stands for "past every key": a single key K is
// [K, K+"\x00"), the smallest interval holding only K.

type interval struct {
	begin, end []byte // end empty: unbounded
}

// cmpEnd compares two bounds where the empty bound is the largest.
func cmpEnd(a, b []byte) int {
	switch {
	case len(a) == 0 && len(b) == 0:
		return 0
	case len(a) == 0:
		return 1
	case len(b) == 0:
		return -1
	}
	return bytes.Compare(a, b)
}

func isOpenEnded(rangeEnd []byte) bool { return len(rangeEnd) == 1 && rangeEnd[0] == 0 }

// permInterval is the interval a granted permission covers.
func permInterval(key, rangeEnd []byte) interval {
	switch {
	case len(rangeEnd) == 0:
		return interval{begin: key, end: append(append([]byte{}, key...), 0)}
	case isOpenEnded(rangeEnd):
		return interval{begin: key}
	}
	return interval{begin: key, end: rangeEnd}
}

// validPermRange reports whether a permission may be granted on
// [key, rangeEnd): a non-empty key and either a single key, an end past the
// key, or an open end.
func validPermRange(key, rangeEnd []byte) bool {
	if len(key) == 0 {
		return false
	}
	return len(rangeEnd) == 0 || cmpEnd(key, rangeEnd) < 0 || isOpenEnded(rangeEnd)
}

// intervalSet is a sorted union of intervals: disjoint, not touching,
// sorted by begin, so that a check is a binary search.
type intervalSet []interval

// unionOf returns the union of ivs (which it reorders): intervals that
// overlap or touch are joined, as etcd's interval tree joins them when it
// decides whether grants cover a range.
func unionOf(ivs []interval) intervalSet {
	sort.Slice(ivs, func(i, j int) bool { return cmpEnd(ivs[i].begin, ivs[j].begin) < 0 })
	var out intervalSet
	for _, iv := range ivs {
		if n := len(out); n > 0 && cmpEnd(out[n-1].end, iv.begin) >= 0 {
			if cmpEnd(iv.end, out[n-1].end) > 0 {
				out[n-1].end = iv.end
			}
			continue
		}
		out = append(out, iv)
	}
	return out
}

// at returns the interval that begins last at or before key, or false.
func (s intervalSet) at(key []byte) (interval, bool) {
	i := sort.Search(len(s), func(i int) bool { return cmpEnd(s[i].begin, key) > 0 })
	if i == 0 {
		return interval{}, false
	}
	return s[i-1], true
}

// holds reports whether some interval holds key.
func (s intervalSet) holds(key []byte) bool {
	iv, ok := s.at(key)
	return ok && cmpEnd(key, iv.end) < 0
}

// covers reports whether one interval of the union spans q, a range that
// is not empty.
func (s intervalSet) covers(q interval) bool {
	iv, ok := s.at(q.begin)
	return ok && cmpEnd(q.begin, iv.end) < 0 && cmpEnd(q.end, iv.end) <= 0
}

// grantSet is one kind (read or write) of a user's grants over all their
// roles.
type grantSet struct {
	union intervalSet
	// grants are the intervals as granted, for the rare empty or inverted
	// range (see covers), which the union cannot answer.
	grants []interval
}

func newGrantSet(grants []interval) grantSet {
	return grantSet{union: unionOf(append([]interval(nil), grants...)), grants: grants}
}

// covers reports whether the grants cover the range q as etcd decides it:
// the grants overlapping q must join (touching counts) into one interval
// that spans q, so several grants, from one role or several, may together
// cover it. For an empty or inverted q that means one grant overlapping
// it, by etcd's overlap test (beginning before q.end, ending after
// q.begin).
func (g grantSet) covers(q interval) bool {
	if cmpEnd(q.begin, q.end) < 0 {
		return g.union.covers(q)
	}
	for _, iv := range g.grants {
		if cmpEnd(iv.begin, q.end) < 0 && cmpEnd(q.begin, iv.end) < 0 {
			return true
		}
	}
	return false
}

// userPerms are a user's permissions merged over all their roles.
type userPerms struct {
	read, write grantSet
}

// refreshPermsLocked rebuilds every user's merged permissions. s.mu held.
func (s *Store) refreshPermsLocked() {
	s.perms = make(map[string]*userPerms, len(s.users))
	for name, u := range s.users {
		var read, write []interval
		for _, rn := range u.Roles {
			role := s.roles[rn]
			if role == nil {
				continue
			}
			for _, p := range role.KeyPermission {
				iv := permInterval(p.Key, p.RangeEnd)
				if p.PermType == authpb.Permission_READ || p.PermType == authpb.Permission_READWRITE {
					read = append(read, iv)
				}
				if p.PermType == authpb.Permission_WRITE || p.PermType == authpb.Permission_READWRITE {
					write = append(write, iv)
				}
			}
		}
		s.perms[name] = &userPerms{read: newGrantSet(read), write: newGrantSet(write)}
	}
}

// IsRangePermitted checks that ai may read key (rangeEnd "") or the range
// [key, rangeEnd) ("\x00": every key from key on). It returns nil when
// permitted or when auth is disabled; otherwise etcd's gRPC errors:
// rpctypes.ErrGRPCUserEmpty for a request without a user (nil ai or
// revision 0), rpctypes.ErrGRPCAuthOldRevision when ai was checked at an
// older auth revision, rpctypes.ErrGRPCPermissionDenied otherwise.
func (s *Store) IsRangePermitted(ai *AuthInfo, key, rangeEnd []byte) error {
	return s.isOpPermitted(ai, key, rangeEnd, false)
}

// IsPutPermitted checks that ai may write key; errors as IsRangePermitted.
func (s *Store) IsPutPermitted(ai *AuthInfo, key []byte) error {
	return s.isOpPermitted(ai, key, nil, true)
}

// IsDeleteRangePermitted checks that ai may write key or the range
// [key, rangeEnd); errors as IsRangePermitted.
func (s *Store) IsDeleteRangePermitted(ai *AuthInfo, key, rangeEnd []byte) error {
	return s.isOpPermitted(ai, key, rangeEnd, true)
}

// IsAdminPermitted checks that ai holds the root role, which every
// management request needs when auth is enabled. Errors:
// rpctypes.ErrGRPCUserEmpty without a user, rpctypes.ErrGRPCUserNotFound
// for an unknown user, rpctypes.ErrGRPCPermissionDenied without root. Like
// etcd, it does not compare auth revisions.
func (s *Store) IsAdminPermitted(ai *AuthInfo) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.enabled.Load() {
		return nil
	}
	if ai == nil || ai.Username == "" {
		return rpctypes.ErrGRPCUserEmpty
	}
	u := s.users[ai.Username]
	if u == nil {
		return rpctypes.ErrGRPCUserNotFound
	}
	if !hasRole(u, rootRole) {
		return rpctypes.ErrGRPCPermissionDenied
	}
	return nil
}

func (s *Store) isOpPermitted(ai *AuthInfo, key, rangeEnd []byte, write bool) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.enabled.Load() {
		return nil
	}
	if ai == nil || ai.Revision == 0 {
		return rpctypes.ErrGRPCUserEmpty
	}
	if ai.Revision < s.revision {
		s.lg.Warn("request auth revision is less than current node auth revision",
			zap.Uint64("current node auth revision", s.revision),
			zap.Uint64("request auth revision", ai.Revision),
			zap.ByteString("request key", key))
		return rpctypes.ErrGRPCAuthOldRevision
	}
	u := s.users[ai.Username]
	if u == nil {
		s.lg.Error("cannot find a user for permission check", zap.String("user-name", ai.Username))
		return rpctypes.ErrGRPCPermissionDenied
	}
	if hasRole(u, rootRole) {
		return nil
	}
	up := s.perms[ai.Username]
	set := up.read
	if write {
		set = up.write
	}
	if len(rangeEnd) == 0 {
		if set.union.holds(key) {
			return nil
		}
		return rpctypes.ErrGRPCPermissionDenied
	}
	q := interval{begin: key, end: rangeEnd}
	if isOpenEnded(rangeEnd) {
		q.end = nil
	}
	if set.covers(q) {
		return nil
	}
	return rpctypes.ErrGRPCPermissionDenied
}

// String shows s as "[begin,end) ...", an open end as "[begin,)".
func (s intervalSet) String() string {
	var b strings.Builder
	for i, iv := range s {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "[%s,%s)", iv.begin, iv.end)
	}
	return b.String()
}
