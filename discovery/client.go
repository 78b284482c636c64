package discovery

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
)

// ClientEndpoints returns the client endpoints that the DNS SRV records of
// domain name, as etcd's clients and grpc-proxy find them: https ones from
// _etcd-client-ssl[-suffix]._tcp.<domain>, then http ones from
// _etcd-client[-suffix]._tcp.<domain>. Targets keep their final dot. Either
// service may be missing; it fails only when both lookups fail.
func ClientEndpoints(ctx context.Context, r *net.Resolver, domain, suffix string) ([]string, error) {
	var eps []string
	var errs []error
	for _, scheme := range []string{"https", "http"} {
		_, records, err := r.LookupSRV(ctx, SRVService("etcd-client", suffix, scheme), "tcp", domain)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, rec := range records {
			eps = append(eps, (&url.URL{Scheme: scheme, Host: net.JoinHostPort(rec.Target, strconv.Itoa(int(rec.Port)))}).String())
		}
	}
	if len(errs) == 2 {
		return nil, fmt.Errorf("dns lookup errors: %w and %w", errs[0], errs[1])
	}
	return eps, nil
}
