package tlsutil

import (
	"context"
	"crypto/tls"
	"errors"
	"net"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// ServerCredentials returns gRPC server credentials for connections that
// come from listeners which already did the TLS handshake, if any (see
// NewListener): one gRPC server can then serve plaintext and TLS ports at
// once. For a TLS connection the RPCs' peer.FromContext carries a
// credentials.TLSInfo with the verified client certificate chains, as
// grpc's own TLS credentials would give.
func ServerCredentials() credentials.TransportCredentials { return serverCreds{} }

type serverCreds struct{}

func (serverCreds) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if tc, ok := c.(*tls.Conn); ok {
		return c, credentials.TLSInfo{
			State:          tc.ConnectionState(),
			CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
		}, nil
	}
	return c, plainInfo{credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}}, nil
}

func (serverCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("tlsutil: ServerCredentials cannot dial")
}

func (serverCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls"}
}

func (c serverCreds) Clone() credentials.TransportCredentials { return c }

func (serverCreds) OverrideServerName(string) error { return nil }

// plainInfo is the AuthInfo of a plaintext connection.
type plainInfo struct{ credentials.CommonAuthInfo }

func (plainInfo) AuthType() string { return "insecure" }

// CommonName returns the common name of the verified client certificate of
// the RPC whose context is ctx: the identity of the caller under
// --client-cert-auth. As in etcd, it is the leaf of the first verified
// chain, even when its common name is empty (a caller without a user
// name, not another chain's user). It reports false for a plaintext
// connection and a TLS connection without a verified client certificate.
func CommonName(ctx context.Context) (string, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", false
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return "", false
	}
	for _, chain := range ti.State.VerifiedChains {
		if len(chain) > 0 {
			return chain[0].Subject.CommonName, true
		}
	}
	return "", false
}
