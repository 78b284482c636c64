package discovery

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keeldb/keel/internal/dnstest"
)

func TestClientEndpointsHTTPSFirstWithSuffix(t *testing.T) {
	dns := dnstest.Start(t)
	dns.AddSRV("_etcd-client-ssl-east._tcp.keel.test.", "a.keel.test.", 2379)
	dns.AddSRV("_etcd-client-east._tcp.keel.test.", "b.keel.test.", 12379)
	dns.AddSRV("_etcd-client._tcp.keel.test.", "c.keel.test.", 22379) // another suffix
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	eps, err := ClientEndpoints(ctx, NewResolver(dns.Addr), "keel.test", "east")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"https://a.keel.test.:2379", "http://b.keel.test.:12379"}; !slices.Equal(eps, want) {
		t.Fatalf("endpoints %q, want %q", eps, want)
	}
	if _, err := ClientEndpoints(ctx, NewResolver(dns.Addr), "nothing.test", ""); err == nil || !strings.HasPrefix(err.Error(), "dns lookup errors: ") {
		t.Fatalf("no records: %v", err)
	}
}
