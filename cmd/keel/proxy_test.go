package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestGRPCProxyIsASubcommand: `keel grpc-proxy start` takes the proxy's
// flags, not the server's.
func TestGRPCProxyIsASubcommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if status := run([]string{"grpc-proxy", "start", "--help"}, nil, &stdout, &stderr); status != 0 {
		t.Fatalf("status %d, stderr %q", status, stderr.String())
	}
	for _, flag := range []string{"--listen-addr", "--endpoints", "--advertise-client-url", "--experimental-leasing-prefix"} {
		if !strings.Contains(stdout.String(), flag) {
			t.Errorf("grpc-proxy start --help does not list %s", flag)
		}
	}
	stdout.Reset()
	stderr.Reset()
	// A server flag is not a proxy flag.
	if status := run([]string{"grpc-proxy", "start", "--initial-cluster", "x=http://127.0.0.1:1"}, nil, &stdout, &stderr); status != 2 {
		t.Fatalf("status %d with a server flag, want 2; stderr %q", status, stderr.String())
	}
}
