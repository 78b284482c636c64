package server

import "time"

// PeerActiveSince returns since when this member's peer transport has been
// connected to member id, or the zero time if it is not connected now. The
// strict reconfiguration checks count a peer as healthy once it has been
// connected for five seconds; tests use this to know when a stopped peer
// no longer counts.
func (s *Server) PeerActiveSince(id uint64) time.Time {
	if s.transport == nil {
		return time.Time{}
	}
	return s.transport.ActiveSince(id)
}
