package server

import (
	"errors"
	"net"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/keeldb/keel/storage"
	"github.com/keeldb/keel/transport"
)

// newTransport creates the peer transport of the member with identity
// ident. It carries nothing until servePeers hands it the member.
func (s *Server) newTransport(ident storage.Identity) *transport.Transport {
	return transport.New(transport.Config{
		ID:          ident.MemberID,
		ClusterID:   ident.ClusterID,
		SnapshotDir: filepath.Join(s.cfg.DataDir, "member", "snap-recv"),
		OnRemoved:   s.peerRemoved,
		ClientTLS:   s.peerClientTLS(),
		ExplainDialError: func(url string, err error) string {
			if s.peerTLS == nil {
				return ""
			}
			return s.peerTLS.ExplainDial(url, err)
		},
		Metrics: s.metrics,
		Logger:  s.lg,
	})
}

// peerClientTLS gives the TLS configuration for dialling https peers, nil
// without peer certificates.
func (s *Server) peerClientTLS() transport.TLSFor {
	if s.peerTLS == nil {
		return nil
	}
	return s.srvPeerTLS(s.peerTLS.ClientConfigFor)
}

// peerRemoved is called when a peer refuses this member because it was
// removed from the cluster while it could not hear about it.
func (s *Server) peerRemoved() {
	if s.member != nil {
		s.member.Removed()
	}
}

// servePeers connects the transport to the member and serves peer traffic
// on every peer listener. It runs as soon as the member starts, before it
// serves clients: the member needs its peers to elect a leader and publish
// itself.
func (s *Server) servePeers() {
	s.transport.SetHandler(s.member.PeerHandler())
	for _, l := range s.peerLs {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.lg.Info("serving peer traffic", zap.String("address", l.Addr().String()))
			if err := s.transport.Serve(l); err != nil && !errors.Is(err, net.ErrClosed) {
				s.lg.Warn("stopped serving peer traffic", zap.String("address", l.Addr().String()), zap.Error(err))
			}
		}()
	}
}

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
