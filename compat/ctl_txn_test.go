package compat

import "testing"

// stdinFormats is a step with stdin once per output format.
func stdinFormats(stdin string, args ...string) []twinStep {
	steps := withFormats(args...)
	for i := range steps {
		steps[i].Stdin = stdin
	}
	return steps
}

func stdinLine(stdin string, args ...string) twinStep {
	return twinStep{Args: args, Stdin: stdin}
}

func TestCtlTxn(t *testing.T) {
	tw := newCtlTwins(t)
	const (
		success = "mod(\"a\") > \"0\"\nvalue(\"b\") = \"2\"\n\nput a 10 --prev-kv\nget a\nget b --prefix --keys-only\ndel c --prev-kv\n\nput failed yes\n\n"
		failure = "ver(\"a\") = \"100\"\n\nput never x\n\nget a --rev 2\nput c 'quoted value'\nput d \"esc\\taped \\\"v\\\"\"\ndel nothing\n\n"
	)
	tw.run(seq(
		[]twinStep{
			line("put", "a", "1"),
			line("put", "b", "2"),
			line("put", "c", "3"),
		},
		stdinFormats(success, "txn"),
		stdinFormats(failure, "txn"),
		stdinFormats(success, "txn", "-i"),
		stdinFormats(failure, "txn", "--interactive"),
		[]twinStep{
			stdinLine("\n\n\n", "txn"),
			stdinLine("\n\n\n", "txn", "-w", "json"),
			stdinLine("\n\n\n", "txn", "-i"),
			stdinLine("c(\"a\") < \"100\"\ncreate(\"b\") != \"0\"\nversion(\"a\") > \"0\"\nm(\"b\") = \"2\"\nval(\"a\") != \"x\"\n\nget a\n\n\n", "txn"),
			stdinLine("  mod(\"a\") > \"0\"  \n\n  get a  \n\n\n", "txn", "--hex"),
			stdinLine("\n\nget \"\" --from-key --limit 2 --order DESCEND --sort-by KEY\nget a z --consistency s\nget a --rev 3\nput e v --ignore-value\n\n\n", "txn", "-w", "json"),
			stdinLine("\n\nput e v --lease 0\nput e --ignore-value --prev-kv\n\n\n", "txn", "-w", "fields"),
			stdinLine("\n\ndel a c --prev-kv\n\n\n", "txn"),
			stdinLine("\n\ndel a c --range --prev-kv\n\n\n", "txn"),
			stdinLine("\n\ndel \"\" --from-key\n\n\n", "txn", "-w", "fields"),
			// mistakes
			line("txn", "extra"),
			stdinLine("\n\n\n", "txn", "extra"),
			stdinLine("", "txn"),
			stdinLine("mod(\"a\") > \"0\"\n", "txn"),
			stdinLine("\n\nput a 2\n", "txn"),
			stdinLine("\n\nput a 2\n\nput b 3\n", "txn", "-i"),
			stdinLine("foo\n\n\n\n", "txn"),
			stdinLine("mod(a) > \"0\"\n\n\n\n", "txn"),
			stdinLine("mod(\"a\") > 0\n\n\n\n", "txn"),
			stdinLine("mod(\"a\")\n\n\n\n", "txn"),
			stdinLine("bogus(\"a\") = \"0\"\n\n\n\n", "txn"),
			stdinLine("mod(\"a\") = \"x\"\n\n\n\n", "txn"),
			stdinLine("version(\"a\") = \"1.5\"\n\n\n\n", "txn"),
			stdinLine("\n\nput\n\n\n", "txn"),
			stdinLine("\n\nget\n\n\n", "txn"),
			stdinLine("\n\nbogus k\n\n\n", "txn"),
			stdinLine("\n\nput k v --bogus\n\n\n", "txn"),
			stdinLine("\n\nget k --limit x\n\n\n", "txn"),
			stdinLine("\n\nput k\n\n\n", "txn"),
			stdinLine("\n\nput k v --lease zz\n\n\n", "txn"),
			stdinLine("\n\nput k v --ignore-value\n\n\n", "txn"),
			stdinLine("\n\nget k --prefix --from-key\n\n\n", "txn"),
			stdinLine("\n\nget k z --prefix\n\n\n", "txn"),
			stdinLine("\n\nget k --consistency x\n\n\n", "txn"),
			stdinLine("\n\nget k --order x\n\n\n", "txn"),
			stdinLine("\n\nget k --sort-by x\n\n\n", "txn"),
			stdinLine("\n\ndel\n\n\n", "txn"),
			stdinLine("\n\ndel k --prefix --from-key\n\n\n", "txn"),
			stdinLine("\n\nput \"\\z\" v\n\n\n", "txn"),
			stdinLine("\n\nput k v\n\n\n", "txn", "-w", "yaml"),
			stdinLine("\n\nput k v\n\n\n", "txn", "-w", "table"),
			line("get", "", "--prefix", "-w", "json"),
		},
	)...)
}

func TestCtlCompaction(t *testing.T) {
	tw := newCtlTwins(t)
	var puts []twinStep
	for i := 0; i < 6; i++ {
		puts = append(puts, line("put", "k", "v"))
	}
	tw.run(seq(
		puts,
		withFormats("compaction", "2"),
		withFormats("compaction", "2"),
		withFormats("compaction", "1"),
		withFormats("compaction", "100"),
		withFormats("compaction", "3", "--physical"),
		withFormats("compaction", "--physical=true", "5"),
		[]twinStep{
			line("get", "k", "--rev", "4"),
			line("get", "k", "--rev", "5", "-w", "json"),
			line("compaction"),
			line("compaction", "1", "2"),
			line("compaction", "x"),
			line("compaction", "-1"),
			line("compaction", "0"),
			line("compaction", "99999999999999999999"),
			line("compaction", "6", "-w", "yaml"),
			line("compaction", "6", "--physical=maybe"),
			line("compaction", "6", "--bogus"),
		},
	)...)
}
