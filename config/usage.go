package config

import (
	"strings"
)

const usageIntro = `Usage:

  keel [flags]
    Start one member of a keel cluster.

  keel --version
    Print keel's version and exit.

  keel -h | --help
    Print this help and exit.

  keel --config-file <file>
    Read the whole configuration from a YAML file in etcd's layout: the keys
    of etcd's configuration file (etcd.conf.yml.sample), TLS settings under
    client-transport-security and peer-transport-security, lists as YAML
    sequences, durations as integer nanoseconds. Every other flag and ETCD_*
    variable is then ignored.

Keel takes etcd's server flags. Flags are written --flag value or --flag=value,
with one dash or two; boolean flags stand alone (--auto-tls) or take =true or
=false. When a flag is repeated, the last one counts.

Every flag can also come from the environment: ETCD_ followed by the flag's name
in upper case, dashes turned into underscores (--initial-cluster is
ETCD_INITIAL_CLUSTER). A variable is used only when it is not empty; setting a
flag both ways is an error.

Flags marked "not supported by keel yet" are accepted and checked as etcd
checks them, then ignored with a warning at start.
`

const helpWidth = 80

// Usage returns the text printed for --help: keel's usage lines, then every
// flag grouped by topic with its default.
func Usage() string {
	var b strings.Builder
	b.WriteString(usageIntro)
	for t := range numTopics {
		b.WriteString("\n" + topicTitles[t] + ":\n")
		if t == topicLegacy {
			var names []string
			for _, s := range flagTable {
				if s.topic == t {
					names = append(names, "--"+s.name)
				}
			}
			wrap(&b, strings.Join(names, ", "), "  ")
			continue
		}
		for _, s := range flagTable {
			if s.topic != t {
				continue
			}
			def := s.def
			if s.shownDefault != "" {
				def = s.shownDefault
			}
			b.WriteString("  --" + s.name + " '" + def + "'\n")
			help := s.help
			switch {
			case s.status == unsupported && s.keelDoes != "":
				help += " [keel always uses '" + s.keelDoes + "'; other values are ignored]"
			case s.status == unsupported:
				help += " [not supported by keel yet]"
			case s.status == refused:
				help += " [not supported by keel yet: an error when set]"
			}
			wrap(&b, help, "      ")
		}
	}
	return b.String()
}

// wrap writes text as lines of at most helpWidth columns, each starting with
// indent.
func wrap(b *strings.Builder, text, indent string) {
	line := indent
	for _, w := range strings.Fields(text) {
		if len(line) > len(indent) && len(line)+1+len(w) > helpWidth {
			b.WriteString(line + "\n")
			line = indent
		}
		if len(line) > len(indent) {
			line += " "
		}
		line += w
	}
	if len(line) > len(indent) {
		b.WriteString(line + "\n")
	}
}
