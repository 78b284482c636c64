package config

import (
	"bufio"
	"flag"
	"os"
	"strconv"
	"strings"
	"testing"
)

// testdata/etcd-3.7-flags.tsv lists every flag etcd 3.7.3's embed.Config
// registers: name, whether it is a bare boolean, its Go value type and its
// default as flag.Flag.DefValue prints it (Go-quoted).

// etcdmainFlags are the flags etcdmain registers on top of embed.Config.
var etcdmainFlags = map[string]kind{
	"config-file":             kindString,
	"discovery-fallback":      kindChoice,
	"initial-cluster-state":   kindChoice,
	"v2-deprecation":          kindChoices,
	"version":                 kindBool,
	"cluster-active-size":     kindIgnored,
	"cluster-remove-delay":    kindIgnored,
	"cluster-sync-interval":   kindIgnored,
	"config":                  kindIgnored,
	"force":                   kindIgnored,
	"max-result-buffer":       kindIgnored,
	"max-retry-attempts":      kindIgnored,
	"peer-heartbeat-interval": kindIgnored,
	"peer-election-timeout":   kindIgnored,
	"retry-interval":          kindIgnored,
	"snapshot":                kindIgnored,
	"v":                       kindIgnored,
	"vv":                      kindIgnored,
	"test.coverprofile":       kindIgnored,
	"test.outputdir":          kindIgnored,
}

var etcdValueTypes = map[string]kind{
	"*flag.boolValue":           kindBool,
	"*flag.stringValue":         kindString,
	"*flag.uintValue":           kindUint,
	"*flag.uint64Value":         kindUint64,
	"*flag.intValue":            kindInt,
	"*flag.int64Value":          kindInt64,
	"*flag.durationValue":       kindDuration,
	"*flags.uint32Value":        kindUint32,
	"*flags.UniqueURLs":         kindURLs,
	"*flags.StringsValue":       kindStrings,
	"*flags.UniqueStringsValue": kindUniqueStrings,
	"*featuregate.featureGate":  kindFeatureGates,
}

type etcdFlag struct {
	isBool bool
	kind   kind
	def    string
}

func readEtcdFlags(t *testing.T) map[string]etcdFlag {
	t.Helper()
	f, err := os.Open("testdata/etcd-3.7-flags.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := make(map[string]etcdFlag)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) != 4 {
			t.Fatalf("bad line %q", sc.Text())
		}
		k, ok := etcdValueTypes[cols[2]]
		if !ok {
			t.Fatalf("flag %s: unknown value type %s", cols[0], cols[2])
		}
		def, err := strconv.Unquote(cols[3])
		if err != nil {
			t.Fatalf("flag %s: default %s: %v", cols[0], cols[3], err)
		}
		out[cols[0]] = etcdFlag{isBool: cols[1] == "true", kind: k, def: def}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) < 100 {
		t.Fatalf("only %d flags read", len(out))
	}
	return out
}

func TestEveryEtcdFlagIsRecognised(t *testing.T) {
	etcd := readEtcdFlags(t)
	fs := newParser().fs
	for name, want := range etcd {
		f := fs.Lookup(name)
		if f == nil {
			t.Errorf("etcd flag --%s is not registered", name)
			continue
		}
		if got := isBoolFlag(f); got != want.isBool {
			t.Errorf("--%s: bare boolean %v, etcd %v", name, got, want.isBool)
		}
		if got := specOf(name).kind; got != want.kind {
			t.Errorf("--%s: kind %d, etcd's value type means %d", name, got, want.kind)
		}
		if f.DefValue != want.def {
			t.Errorf("--%s: default %q, etcd %q", name, f.DefValue, want.def)
		}
	}
	for name, k := range etcdmainFlags {
		f := fs.Lookup(name)
		if f == nil {
			t.Errorf("etcdmain flag --%s is not registered", name)
			continue
		}
		if got := specOf(name).kind; got != k {
			t.Errorf("--%s: kind %d, want %d", name, got, k)
		}
		if wantBool := k == kindBool || k == kindIgnored; isBoolFlag(f) != wantBool {
			t.Errorf("--%s: bare boolean %v, want %v", name, isBoolFlag(f), wantBool)
		}
	}
	// And nothing else: a flag etcd does not know is an error in keel too.
	fs.VisitAll(func(f *flag.Flag) {
		if _, ok := etcd[f.Name]; !ok {
			if _, ok := etcdmainFlags[f.Name]; !ok {
				t.Errorf("--%s is not an etcd 3.7 flag", f.Name)
			}
		}
	})
}

func TestEtcdmainDefaults(t *testing.T) {
	fs := newParser().fs
	for name, want := range map[string]string{
		"config-file": "", "discovery-fallback": "exit", "initial-cluster-state": "new", "v2-deprecation": "", "version": "false",
	} {
		if got := fs.Lookup(name).DefValue; got != want {
			t.Errorf("--%s: default %q, want %q", name, got, want)
		}
	}
}

func TestFlagTableIsConsistent(t *testing.T) {
	seen := make(map[string]bool)
	for _, s := range flagTable {
		if seen[s.name] {
			t.Errorf("--%s listed twice", s.name)
		}
		seen[s.name] = true
		if s.status != legacy && s.help == "" {
			t.Errorf("--%s has no help text", s.name)
		}
		if (s.status == legacy) != (s.kind == kindIgnored) {
			t.Errorf("--%s: legacy flags and only they are kindIgnored", s.name)
		}
		if s.keelDoes != "" && s.status != unsupported {
			t.Errorf("--%s: keelDoes only makes sense for unsupported flags", s.name)
		}
	}
	for _, name := range []string{"name", "data-dir", "listen-client-urls", "advertise-client-urls", "listen-peer-urls",
		"initial-advertise-peer-urls", "initial-cluster", "initial-cluster-state", "initial-cluster-token", "strict-reconfig-check", "snapshot-count",
		"snapshot-catchup-entries", "max-txn-ops", "max-request-bytes", "heartbeat-interval", "election-timeout",
		"log-level", "log-outputs", "log-format"} {
		if specOf(name).status != implemented {
			t.Errorf("--%s should be implemented", name)
		}
	}
}

func TestUsageListsEveryFlag(t *testing.T) {
	u := Usage()
	for _, s := range flagTable {
		var want string
		switch {
		case s.name == "version":
			want = "keel --version"
		case s.status == legacy:
			want = "--" + s.name
		case s.shownDefault != "":
			want = "  --" + s.name + " '" + s.shownDefault + "'\n"
		default:
			want = "  --" + s.name + " '" + s.def + "'\n"
		}
		if !strings.Contains(u, want) {
			t.Errorf("Usage does not contain %q", want)
		}
	}
	for _, title := range topicTitles {
		if !strings.Contains(u, "\n"+title+":\n") {
			t.Errorf("Usage has no section %q", title)
		}
	}
	for _, want := range []string{"'${name}.keel'", "ETCD_INITIAL_CLUSTER", "-h | --help"} {
		if !strings.Contains(u, want) {
			t.Errorf("Usage does not mention %q", want)
		}
	}
	for i, line := range strings.Split(u, "\n") {
		// A flag's own line holds its default, however long.
		if len(line) > helpWidth && !strings.HasPrefix(line, "  --") {
			t.Errorf("line %d is %d columns: %q", i+1, len(line), line)
		}
	}
	if strings.Contains(strings.ToLower(u), "etcd.etcd") || strings.Contains(u, "${name}.etcd") {
		t.Errorf("Usage shows etcd's data dir")
	}
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

func specOf(name string) *flagSpec {
	for i := range flagTable {
		if flagTable[i].name == name {
			return &flagTable[i]
		}
	}
	return &flagSpec{kind: -1, status: -1}
}
