package proxymain

import (
	"context"
	"net"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/keeldb/keel/discovery"
)

// srvResolver is the resolver of --discovery-srv: the system's, or the test
// DNS server discovery.TestDNSServerEnv names; a variable for tests.
var srvResolver = discovery.Resolver

// discoverEndpoints replaces --endpoints with the client endpoints the SRV
// records of --discovery-srv name, as etcd's grpc-proxy does: https ones
// first, then http ones. Without --insecure-discovery only https endpoints
// that accept a connection are kept, each other one logged; when none is
// left, --endpoints stays. A failure of both lookups fails the start.
func (s *Server) discoverEndpoints() error {
	f := &s.f
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	eps, err := discovery.ClientEndpoints(ctx, srvResolver(), f.DiscoverySRV, f.DiscoverySRVName)
	if err != nil {
		return err
	}
	s.lg.Info("discovered cluster from SRV", zap.String("srv-server", f.DiscoverySRV), zap.Strings("endpoints", eps))
	if !f.InsecureDiscovery {
		s.lg.Info("validating discovered SRV endpoints", zap.String("srv-server", f.DiscoverySRV), zap.Strings("endpoints", eps))
		var kept, refused []string
		for _, ep := range eps {
			host, ok := strings.CutPrefix(ep, "https://")
			if !ok {
				refused = append(refused, ep+" is insecure")
				continue
			}
			d := net.Dialer{Timeout: 5 * time.Second, Resolver: srvResolver()}
			conn, err := d.DialContext(ctx, "tcp", host)
			if err != nil {
				refused = append(refused, ep+" failed to dial ("+err.Error()+")")
				continue
			}
			conn.Close()
			kept = append(kept, ep)
		}
		if len(refused) > 0 {
			s.lg.Warn("failed to validate discovered endpoints", zap.String("srv-server", f.DiscoverySRV), zap.Strings("refused", refused))
		}
		eps = kept
	}
	if len(eps) > 0 {
		f.Endpoints = eps
	}
	return nil
}
