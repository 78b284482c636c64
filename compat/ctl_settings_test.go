package compat

import "testing"

// twoEndpoints names the side's endpoint twice, through ETCDCTL_ENDPOINTS
// (the only place the harness substitutes it), so that the per-endpoint
// commands make two clients.
var twoEndpoints = []string{"ETCDCTL_ENDPOINTS={endpoint},{endpoint}"}

// TestCtlEndpointSettings covers how the per-endpoint commands (endpoint
// health/status/hashkv, defrag, move-leader) build their connection
// settings: once per command (one password prompt for two endpoints, two
// with --cluster, as etcdctl), in etcdctl's order (-w checked after the TLS
// flags, before the TLS files are read), and the exit codes of their
// errors with and without --cluster.
func TestCtlEndpointSettings(t *testing.T) {
	tw := newCtlTwins(t)
	const cert = "--cert=/nonexistent/c.pem"
	var steps []twinStep
	for _, cmd := range [][]string{
		{"endpoint", "health"}, {"endpoint", "status"}, {"endpoint", "hashkv"}, {"defrag"},
	} {
		cluster := append(append([]string{}, cmd...), "--cluster")
		steps = append(steps,
			line(append([]string{cert}, cmd...)...),
			line(append([]string{cert}, cluster...)...),
			line(append([]string{"--cert="}, cluster...)...),
			line(append([]string{"--cert=", "-w", "yaml"}, cmd...)...),
			line(append([]string{cert, "-w", "yaml"}, cmd...)...),
			twinStep{Args: append([]string{"--user=u"}, cmd...), Env: twoEndpoints, NoEndpoints: true, Stdin: "secret\n"},
			twinStep{Args: append([]string{"--user=u"}, cluster...), Env: twoEndpoints, NoEndpoints: true, Stdin: "one\ntwo\n"},
			// Only one answer for the two prompts of --cluster.
			twinStep{Args: append([]string{"--user=u"}, cluster...), Stdin: "one\n"},
		)
	}
	steps = append(steps,
		line(cert, "move-leader", "12"),
		line(cert, "-w", "yaml", "move-leader", "12"),
		line("--cert=", "-w", "yaml", "move-leader", "12"),
		twinStep{Args: []string{"--user=u", "move-leader", "12"}, Env: twoEndpoints, NoEndpoints: true, Stdin: "secret\n"},
		line("-w", "yaml", "defrag"),
		// --cluster reads the member list without the message size limits.
		line("--max-recv-bytes=10", "endpoint", "hashkv", "--cluster"),
		line("--max-recv-bytes=10", "endpoint", "health", "--cluster"),
	)
	tw.run(dbSizeMasked(tookMasked(steps))...)
}

// TestCtlGlobalSettings covers the order in which the connection settings
// are checked for a one-client command, against the command's own checks,
// and DNS discovery failing (example.invalid has no records): discovery
// wins over --endpoints, so its error ends the command.
func TestCtlGlobalSettings(t *testing.T) {
	tw := newCtlTwins(t)
	tw.run(
		line("put", "a", "1"),
		line("--cert=", "-w", "yaml", "get", "a"),
		line("--cert=/nonexistent/c.pem", "-w", "yaml", "get", "a"),
		line("-w", "json", "get", "a", "--print-value-only"),
		line("-w", "json", "get", "a", "--count-only"),
		line("--cert=/nonexistent/c.pem", "get", "a", "--count-only"),
		twinStep{Args: []string{"--user=u", "-w", "yaml", "get", "a"}, Stdin: "secret\n"},
		line("--discovery-srv=example.invalid", "get", "a"),
		line("--discovery-srv=example.invalid", "-w", "yaml", "get", "a"),
		line("--discovery-srv=example.invalid", "get"),
		line("--discovery-srv=example.invalid", "--discovery-srv-name=x", "--insecure-discovery=false", "endpoint", "status"),
		line("-d", "example.invalid", "endpoint", "health", "--cluster"),
		line("-d", "example.invalid", "move-leader", "12"),
	)
}
