package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/keeldb/keel/config"
	"github.com/keeldb/keel/discovery"
	"github.com/keeldb/keel/membership"
	"github.com/keeldb/keel/transport"
)

// srvLookupTimeout bounds the DNS lookups of SRV discovery.
const srvLookupTimeout = 30 * time.Second

// WithResolver makes DNS SRV discovery (--discovery-srv) resolve with r
// instead of the system's resolver (or the one discovery.TestDNSServerEnv
// names); tests pass one that asks their own DNS server.
func WithResolver(r *net.Resolver) Option { return func(o *options) { o.resolver = r } }

// discoverInitialCluster sets the initial cluster of a new member that
// bootstraps by discovery, as etcd does before it bootstraps:
//
//   - with --discovery-srv, from the DNS SRV records, in which this member
//     must be found; https peers found with no --peer-trusted-ca-file are
//     verified against the domain name;
//   - with --discovery-endpoints, the member alone, under the discovery
//     token as initial cluster token; joinDiscovery gets the rest.
//
// It replaces s.cfg by a copy so the caller's configuration is left alone.
func (s *Server) discoverInitialCluster() error {
	switch {
	case len(s.cfg.Discovery.Endpoints) > 0:
		c := *s.cfg
		var parts []string
		for _, u := range c.InitialAdvertisePeerURLs {
			parts = append(parts, c.Name+"="+u.String())
		}
		slices.Sort(parts)
		c.InitialCluster = strings.Join(parts, ",")
		c.InitialClusterToken = c.Discovery.Token
		s.cfg = &c
	case s.cfg.DiscoverySRV != "":
		c := *s.cfg
		ctx, cancel := context.WithTimeout(context.Background(), srvLookupTimeout)
		defer cancel()
		found, err := discovery.SRVCluster(ctx, s.resolver, s.lg, c.Name, c.DiscoverySRV, c.DiscoverySRVName, c.InitialAdvertisePeerURLs)
		if err != nil {
			s.lg.Warn("failed to resolve during SRV discovery", zap.Error(err))
		}
		if len(found) == 0 {
			if err == nil {
				err = fmt.Errorf("cannot find local etcd member %q in SRV records", c.Name)
			}
			return fmt.Errorf("error setting up initial cluster: %w", err)
		}
		for _, f := range found {
			s.lg.Info("got bootstrap from DNS for etcd-server", zap.String("node", f))
		}
		c.InitialCluster = strings.Join(found, ",")
		if strings.Contains(c.InitialCluster, "https://") && c.PeerTLS.TrustedCAFile == "" {
			s.peerServerName = c.DiscoverySRV
		}
		m, err := c.InitialClusterMap()
		if err != nil {
			return fmt.Errorf("error setting up initial cluster: %w", err)
		}
		if _, ok := m[c.Name]; !ok {
			return fmt.Errorf("error setting up initial cluster: cannot find local etcd member %q in SRV records", c.Name)
		}
		s.cfg = &c
	}
	return nil
}

// joinDiscovery registers self with the v3 discovery service, waits until
// the cluster is complete, and returns its members. Errors say, as etcd's
// do, that the token cannot be used again.
func (s *Server) joinDiscovery(self *membership.Member) ([]*membership.Member, error) {
	cfg := s.cfg
	s.lg.Info("Bootstrapping cluster using v3 discovery.")
	fail := func(err error) ([]*membership.Member, error) {
		err = fmt.Errorf("failed to join discovery cluster (%w)", err)
		s.lg.Warn("failed to bootstrap; discovery token was already used", zap.String("discovery-token", cfg.Discovery.Token),
			zap.Strings("discovery-endpoints", cfg.Discovery.Endpoints), zap.Error(err))
		s.lg.Warn("do not reuse discovery token; generate a new one to bootstrap a cluster")
		return nil, err
	}
	found, err := discovery.JoinCluster(context.Background(), s.lg, cfg.Discovery, self.ID, cfg.InitialCluster)
	if err != nil {
		return fail(err)
	}
	c := *cfg
	c.InitialCluster = found
	initial, err := c.InitialClusterMap()
	if err != nil {
		return nil, err
	}
	if config.HasDuplicateURL(initial) {
		return nil, fmt.Errorf("discovery cluster %s has duplicate url", found)
	}
	members, me, err := bootstrapMembers(initial, c.InitialClusterToken, c.Name)
	if err != nil {
		return nil, err
	}
	if me == nil || me.ID != self.ID {
		// Registered under our ID, so the service must list us.
		return nil, fmt.Errorf("discovery cluster %s does not hold this member (%s)", found, cfg.InitialCluster)
	}
	s.cfg = &c
	return members, nil
}

// srvPeerTLS verifies https peers found by DNS SRV discovery against the
// domain name (see discoverInitialCluster) instead of each peer's host.
func (s *Server) srvPeerTLS(base transport.TLSFor) transport.TLSFor {
	if base == nil || s.peerServerName == "" {
		return base
	}
	name := s.peerServerName
	return func(host string) *tls.Config {
		c := base(host)
		c.ServerName = name
		return c
	}
}
