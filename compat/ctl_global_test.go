package compat

import (
	"strings"
	"testing"
)

func envLine(env []string, a ...string) twinStep {
	return twinStep{Args: a, Env: env, NoEndpoints: true}
}

// TestCtlGlobalEnv covers the ETCDCTL_* variables: used, ignored when their
// value is bad, unknown (warned about, ETCDCTL_API included), empty, and
// shadowed by a flag given on the command line (fatal).
func TestCtlGlobalEnv(t *testing.T) {
	tw := newCtlTwins(t)
	ep := "ETCDCTL_ENDPOINTS={endpoint}"
	tw.run([]twinStep{
		line("put", "a", "b"),
		envLine([]string{ep}, "get", "a"),
		envLine([]string{ep, "ETCDCTL_WRITE_OUT=json"}, "get", "a"),
		envLine([]string{ep, "ETCDCTL_WRITE_OUT=fields", "ETCDCTL_HEX=true"}, "get", "a"),
		envLine([]string{ep, "ETCDCTL_WRITE_OUT=yaml"}, "get", "a"),
		envLine([]string{ep, "ETCDCTL_DIAL_TIMEOUT=zz", "ETCDCTL_COMMAND_TIMEOUT=-"}, "get", "a"),
		envLine([]string{ep, "ETCDCTL_API=3"}, "get", "a"),
		envLine([]string{"ETCDCTL_API=2", ep, "ETCDCTL_FOO=bar"}, "get", "a"),
		envLine([]string{ep, "ETCDCTL_HEX="}, "get", "a"),
		{Args: []string{"version"}, Env: []string{"ETCDCTL_API=3"}, NoEndpoints: true, Mask: maskCtlVersion},
		envLine([]string{ep, "ETCDCTL_API=3"}, "get"),
		{Args: []string{"get", "a"}, Env: []string{ep}},
		{Args: []string{"get", "a"}, Env: []string{"ETCDCTL_A=1", "ETCDCTL_ENDPOINTS=", "ETCDCTL_Z=1"}},
		{Args: []string{"get", "a", "--hex"}, Env: []string{"ETCDCTL_HEX=false"}},
	}...)
}

// TestCtlGlobalFlags covers the global flags' error paths and the ones that
// change how a request is made.
func TestCtlGlobalFlags(t *testing.T) {
	tw := newCtlTwins(t)
	big := strings.Repeat("x", 4096)
	tw.run(seq(
		[]twinStep{
			line("put", "a", "b"),
			line("put", "q", "a\"b\nc张"),
			{Args: []string{"--endpoints=" + deadEndpoint + ",{endpoint}", "get", "a"}, NoEndpoints: true},
		},
		withFormats("--hex", "get", "q"),
		[]twinStep{
			line("-w", "yaml", "get", "a"),
			line("--write-out=table", "put", "a", "b"),
			// timeouts against a dead endpoint and a live one
			{Args: []string{"--endpoints=" + deadEndpoint, "--dial-timeout=200ms", "--command-timeout=500ms", "get", "a"}, NoEndpoints: true},
			{Args: []string{"--endpoints=" + deadEndpoint, "--command-timeout=300ms", "put", "a", "b"}, NoEndpoints: true},
			line("--command-timeout=1ns", "get", "a"),
			line("--dial-timeout=x", "get", "a"),
			// credentials: the servers have no authentication
			line("--user=u:p", "get", "a"),
			line("--user=u:p", "--password=x", "get", "a"),
			line("--password=x", "get", "a"),
			line("--user=u", "--auth-jwt-token=t", "get", "a"),
			{Args: []string{"--user=u", "get", "a"}, Stdin: "secret\n"},
			{Args: []string{"--user=u", "get", "a"}},
			// TLS against a plain server, and bad TLS files
			// keelctl adds the cause to etcdctl's error line (issue 7)
			{Args: []string{"--insecure-transport=false", "--command-timeout=500ms", "get", "a"},
				Explains: []string{"keelctl:", "does not speak TLS"}},
			{Args: []string{"--insecure-skip-tls-verify", "--command-timeout=500ms", "get", "a"},
				Explains: []string{"keelctl:", "does not speak TLS"}},
			line("--cacert=/nonexistent/ca.pem", "get", "a"),
			line("--cacert=", "get", "a"),
			line("--cert=", "get", "a"),
			line("--key=", "get", "a"),
			line("--cert=/nonexistent/c.pem", "get", "a"),
			line("--cert=/nonexistent/c.pem", "--key=/nonexistent/k.pem", "get", "a"),
			// request size limits
			{Args: []string{"--max-request-bytes=1024", "put", "big"}, Stdin: big},
			{Args: []string{"--max-request-bytes=8192", "put", "big"}, Stdin: big},
			line("--max-recv-bytes=10", "get", "big"),
			line("get", "big", "--keys-only"),
		},
	)...)
}
