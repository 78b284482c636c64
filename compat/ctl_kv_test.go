package compat

import "testing"

// formats are the output formats every command is tried with.
var formats = []string{"simple", "json", "fields", "protobuf", "table"}

// withFormats is step once per output format.
func withFormats(args ...string) []twinStep {
	var out []twinStep
	for _, f := range formats {
		out = append(out, twinStep{Args: append(append([]string{}, args...), "-w", f)})
	}
	return out
}

func seq(parts ...[]twinStep) []twinStep {
	var all []twinStep
	for _, p := range parts {
		all = append(all, p...)
	}
	return all
}

func line(a ...string) twinStep { return twinStep{Args: a} }

func TestCtlGetPutDel(t *testing.T) {
	tw := newCtlTwins(t)
	tw.run(seq(
		[]twinStep{
			line("put", "foo", "bar"),
			line("put", "foo2", "a b"),
			line("put", "q", "a\"b\nc张"),
			{Args: []string{"put", "bin"}, Stdin: "\x00\x01\xff"},
			{Args: []string{"put", "fromstdin"}, Stdin: "value from stdin"},
		},
		withFormats("get", "foo"),
		withFormats("get", "nokey"),
		withFormats("get", "foo", "--prefix"),
		withFormats("get", "", "--from-key"),
		withFormats("get", "", "--prefix", "--keys-only"),
		withFormats("get", "foo", "--prefix", "--count-only"),
		withFormats("get", "q", "--hex"),
		withFormats("get", "bin"),
		withFormats("put", "foo", "bar2", "--prev-kv"),
		withFormats("del", "nothing"),
		withFormats("del", "foo2", "--prev-kv"),
		[]twinStep{
			line("get", "foo", "--print-value-only"),
			line("get", "a", "z", "--limit", "2", "--order", "DESCEND", "--sort-by", "MODIFY"),
			line("get", "a", "z", "--sort-by", "value", "-w", "json"),
			line("get", "foo", "--rev", "2", "-w", "json"),
			line("get", "foo", "--rev", "100"),
			line("get", "", "--from-key", "--min-mod-rev", "3", "--max-mod-rev", "5", "--keys-only"),
			line("get", "", "--from-key", "--min-create-rev", "2", "--max-create-rev", "3", "--consistency", "s"),
			line("get", "foo", "--stream", "-w", "json"),
			// mistakes
			line("get"),
			line("get", "a", "z", "--prefix"),
			line("get", "a", "--prefix", "--from-key"),
			line("get", "a", "--consistency", "x"),
			line("get", "a", "--order", "x"),
			line("get", "a", "--sort-by", "x"),
			line("get", "a", "-w", "yaml"),
			line("get", "a", "--bogus"),
			line("bogus"),
			line("put"),
			line("put", "k"),
			line("put", "k", "v", "--lease", "zz"),
			line("put", "k", "v", "--lease", "1234"),
			line("put", "k", "--ignore-value"),
			line("put", "foo", "--ignore-value", "-w", "json"),
			line("put", "k", "v", "--ignore-value"),
			line("del"),
			line("del", "a", "--prefix", "--from-key"),
			line("del", "a", "z", "--prefix"),
			line("del", "a", "c", "--range"),
			line("del", "", "--from-key", "--prev-kv", "-w", "json"),
			line("get", "", "--prefix"),
		},
	)...)
}
