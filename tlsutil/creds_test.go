package tlsutil

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// TestCommonNameIsTheFirstVerifiedChains: as etcd's AuthInfoFromTLS, the
// caller is the CN of the leaf of the first verified chain that is not
// empty, even an empty CN (a caller without a user name, refused reads
// rather than taken for another chain's user); no verified chain names
// nobody.
func TestCommonNameIsTheFirstVerifiedChains(t *testing.T) {
	cert := func(cn string) *x509.Certificate { return &x509.Certificate{Subject: pkix.Name{CommonName: cn}} }
	for _, tc := range []struct {
		name   string
		chains [][]*x509.Certificate
		want   string
		wantOK bool
	}{
		{"one chain", [][]*x509.Certificate{{cert("alice")}}, "alice", true},
		{"first chain wins", [][]*x509.Certificate{{cert("alice")}, {cert("bob")}}, "alice", true},
		{"empty chain skipped", [][]*x509.Certificate{{}, {cert("bob")}}, "bob", true},
		{"empty CN of the first chain", [][]*x509.Certificate{{cert("")}, {cert("root")}}, "", true},
		{"no verified chain", nil, "", false},
	} {
		ti := credentials.TLSInfo{State: tls.ConnectionState{VerifiedChains: tc.chains}}
		ctx := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: ti})
		cn, ok := CommonName(ctx)
		if cn != tc.want || ok != tc.wantOK {
			t.Errorf("%s: %q, %v; want %q, %v", tc.name, cn, ok, tc.want, tc.wantOK)
		}
	}
}
