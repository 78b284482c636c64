package discovery

import (
	"context"
	"net"
	"os"
	"time"
)

// TestDNSServerEnv is the environment variable that points keel's and
// keelctl's DNS SRV discovery at the DNS server at host:port instead of the
// system's resolver. It exists for tests, which run a DNS server on
// loopback: never set it in production.
const TestDNSServerEnv = "KEEL_TEST_ONLY_DNS_SERVER"

// Resolver returns the resolver DNS discovery uses: the system's, or one
// that asks only the server named by TestDNSServerEnv when it is set.
func Resolver() *net.Resolver {
	if addr := os.Getenv(TestDNSServerEnv); addr != "" {
		return NewResolver(addr)
	}
	return net.DefaultResolver
}

// NewResolver returns a resolver that sends every DNS query to the server at
// addr (host:port), over the network the lookup asks for (UDP, or TCP for
// truncated answers). /etc/hosts is still read first, as by the system's
// resolver.
func NewResolver(addr string) *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			d := net.Dialer{Timeout: 5 * time.Second}
			return d.DialContext(ctx, network, addr)
		},
	}
}

// TestDialer returns, when TestDNSServerEnv is set, a dialer whose host
// names are resolved by that DNS server, so that a client can reach the
// endpoints that the test's SRV records name; nil otherwise.
func TestDialer() func(ctx context.Context, addr string) (net.Conn, error) {
	addr := os.Getenv(TestDNSServerEnv)
	if addr == "" {
		return nil
	}
	d := &net.Dialer{Resolver: NewResolver(addr)}
	return func(ctx context.Context, a string) (net.Conn, error) { return d.DialContext(ctx, "tcp", a) }
}
