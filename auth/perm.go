package auth

import (
	"bytes"
	"sort"

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

// intervalSet is a set of intervals sorted by begin.
type intervalSet []interval

func (s intervalSet) sort() {
	sort.SliceStable(s, func(i, j int) bool { return cmpEnd(s[i].begin, s[j].begin) < 0 })
}

// holds reports whether some interval holds key.
func (s intervalSet) holds(key []byte) bool {
	for _, iv := range s {
		if cmpEnd(iv.begin, key) <= 0 && cmpEnd(key, iv.end) < 0 {
			return true
		}
	}
	return false
}

// covers reports whether the intervals overlapping q join without a gap
// into one that spans q, which is how etcd decides a range permission
// (several grants, from one role or several, may together cover it).
func (s intervalSet) covers(q interval) bool {
	var minBegin, maxEnd []byte
	found := false
	for _, iv := range s {
		if cmpEnd(iv.begin, q.end) >= 0 || cmpEnd(q.begin, iv.end) >= 0 {
			continue // no overlap
		}
		if !found {
			minBegin, maxEnd, found = iv.begin, iv.end, true
			continue
		}
		if cmpEnd(maxEnd, iv.begin) < 0 {
			return false
		}
		if cmpEnd(iv.end, maxEnd) > 0 {
			maxEnd = iv.end
		}
	}
	return found && cmpEnd(maxEnd, q.end) >= 0 && cmpEnd(minBegin, q.begin) <= 0
}

// userPerms are a user's permissions merged over all their roles.
type userPerms struct {
	read, write intervalSet
}

// refreshPermsLocked rebuilds every user's merged permissions. s.mu held.
func (s *Store) refreshPermsLocked() {
	s.perms = make(map[string]*userPerms, len(s.users))
	for name, u := range s.users {
		up := &userPerms{}
		for _, rn := range u.Roles {
			role := s.roles[rn]
			if role == nil {
				continue
			}
			for _, p := range role.KeyPermission {
				iv := permInterval(p.Key, p.RangeEnd)
				if p.PermType == authpb.Permission_READ || p.PermType == authpb.Permission_READWRITE {
					up.read = append(up.read, iv)
				}
				if p.PermType == authpb.Permission_WRITE || p.PermType == authpb.Permission_READWRITE {
					up.write = append(up.write, iv)
				}
			}
		}
		up.read.sort()
		up.write.sort()
		s.perms[name] = up
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
	if !s.enabled {
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
	if !s.enabled {
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
		if set.holds(key) {
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
