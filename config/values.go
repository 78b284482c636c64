package config

import (
	"errors"
	"flag"
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// This file holds the flag.Value types whose parsing rules are etcd's own
// (lists of URLs, comma-separated lists, choices, feature gates). Plain bools,
// numbers, strings and durations use the standard library's values, exactly
// as etcd does, so that their error texts are the same.

// recorded wraps a flag.Value and remembers the last text given to Set, so that
// a notice can quote the value as the operator wrote it.
type recorded struct {
	flag.Value
	raw string
}

func (r *recorded) Set(s string) error {
	if err := r.Value.Set(s); err != nil {
		return err
	}
	r.raw = s
	return nil
}

// Get returns the typed value of the wrapped flag.
func (r *recorded) Get() any {
	if g, ok := r.Value.(flag.Getter); ok {
		return g.Get()
	}
	return r.Value.String()
}

// recordedBool is a recorded value that the flag package treats as a bare
// boolean: "--flag" alone means true and the next argument is never consumed.
type recordedBool struct{ recorded }

func (*recordedBool) IsBoolFlag() bool { return true }

// parseURLs is ParseURLList over a comma-separated list.
func parseURLs(s string) ([]url.URL, error) {
	return ParseURLList(strings.Split(s, ","))
}

// ParseURLList parses URLs with etcd's rules (the rules of types.NewURLs):
// each element is trimmed; the scheme is http, https, unix or unixs; an
// http(s) URL has a host:port and no path. The result is sorted by the
// URLs' string form, as etcd sorts it. The flags' URL lists and the peer
// URLs of a member to add (membership.ParsePeerURLs) are checked with it.
func ParseURLList(parts []string) ([]url.URL, error) {
	out := make([]url.URL, 0, len(parts))
	for _, in := range parts {
		in = strings.TrimSpace(in)
		u, err := url.Parse(in)
		if err != nil {
			return nil, err
		}
		switch u.Scheme {
		case "http", "https":
			if _, _, err := net.SplitHostPort(u.Host); err != nil {
				return nil, fmt.Errorf(`URL address does not have the form "host:port": %s`, in)
			}
			if u.Path != "" {
				return nil, fmt.Errorf("URL must not contain a path: %s", in)
			}
		case "unix", "unixs":
		default:
			return nil, fmt.Errorf("URL scheme must be http, https, unix, or unixs: %s", in)
		}
		out = append(out, *u)
	}
	sortURLs(out)
	return out, nil
}

func sortURLs(us []url.URL) {
	sort.SliceStable(us, func(i, j int) bool { return us[i].String() < us[j].String() })
}

func urlStrings(us []url.URL) []string {
	out := make([]string, len(us))
	for i := range us {
		out[i] = us[i].String()
	}
	return out
}

// urlsValue is a list of unique URLs (etcd's UniqueURLs). Values listed in
// keep are accepted and leave the current list unchanged (etcd accepts an
// empty --listen-client-urls that way); a value listed in literal replaces the
// list by that literal ("*" for --cors).
type urlsValue struct {
	urls    []url.URL
	literal string
	keep    []string
	lits    []string
}

func newURLsValue(def string, keep, literals []string) *urlsValue {
	v := &urlsValue{keep: keep, lits: literals}
	if def != "" {
		if err := v.Set(def); err != nil {
			panic(fmt.Sprintf("config: bad default %q: %v", def, err))
		}
	}
	return v
}

func (v *urlsValue) Set(s string) error {
	if slices.Contains(v.keep, s) {
		return nil
	}
	if slices.Contains(v.lits, s) {
		v.urls, v.literal = nil, s
		return nil
	}
	us, err := parseURLs(s)
	if err != nil {
		return err
	}
	seen := make(map[string]bool, len(us))
	uniq := us[:0]
	for _, u := range us {
		if k := u.String(); !seen[k] {
			seen[k] = true
			uniq = append(uniq, u)
		}
	}
	v.urls, v.literal = uniq, ""
	return nil
}

func (v *urlsValue) String() string {
	if v.literal != "" {
		return v.literal
	}
	return strings.Join(urlStrings(v.urls), ",")
}

// Get returns a copy of the URLs as []url.URL.
func (v *urlsValue) Get() any { return slices.Clone(v.urls) }

// stringsValue is a comma-separated list kept as given (etcd's StringsValue):
// order and duplicates are preserved, and "" is a list of one empty string.
type stringsValue []string

func (v *stringsValue) Set(s string) error { *v = strings.Split(s, ","); return nil }
func (v *stringsValue) String() string     { return strings.Join(*v, ",") }
func (v *stringsValue) Get() any           { return []string(slices.Clone(*v)) }

// uniqueStringsValue is a comma-separated set (etcd's UniqueStringsValue):
// duplicates are dropped and the result is sorted.
type uniqueStringsValue []string

func newUniqueStringsValue(def string) *uniqueStringsValue {
	v := new(uniqueStringsValue)
	if def != "" {
		_ = v.Set(def)
	}
	return v
}

func (v *uniqueStringsValue) Set(s string) error {
	ss := strings.Split(s, ",")
	sort.Strings(ss)
	*v = slices.Compact(ss)
	return nil
}
func (v *uniqueStringsValue) String() string { return strings.Join(*v, ",") }
func (v *uniqueStringsValue) Get() any       { return []string(slices.Clone(*v)) }

// uint32Value is an unsigned 32-bit number; its errors are strconv's own, as
// in etcd.
type uint32Value uint32

func (v *uint32Value) Set(s string) error {
	n, err := strconv.ParseUint(s, 0, 32)
	if err != nil {
		return err
	}
	*v = uint32Value(n)
	return nil
}
func (v *uint32Value) String() string { return strconv.FormatUint(uint64(*v), 10) }
func (v *uint32Value) Get() any       { return uint32(*v) }

// choiceValue accepts one of a fixed set of strings (etcd's
// SelectiveStringValue).
type choiceValue struct {
	v      string
	valids []string
}

func (v *choiceValue) Set(s string) error {
	if !slices.Contains(v.valids, s) {
		return errors.New("invalid value")
	}
	v.v = s
	return nil
}
func (v *choiceValue) String() string { return v.v }
func (v *choiceValue) Get() any       { return v.v }

// choicesValue accepts a comma-separated list drawn from a fixed set;
// repeated flags accumulate (etcd's SelectiveStringsValue).
type choicesValue struct {
	vs     []string
	valids []string
}

func (v *choicesValue) Set(s string) error {
	for e := range strings.SplitSeq(s, ",") {
		if !slices.Contains(v.valids, e) {
			return fmt.Errorf("invalid value %q", e)
		}
		v.vs = append(v.vs, e)
	}
	sort.Strings(v.vs)
	return nil
}
func (v *choicesValue) String() string { return strings.Join(v.vs, ",") }
func (v *choicesValue) Get() any       { return slices.Clone(v.vs) }

// ignoredValue is a legacy flag that etcd still accepts and ignores. Like
// etcd's, it is a boolean-style flag: "--snapshot" alone is accepted.
type ignoredValue struct{}

func (ignoredValue) Set(string) error { return nil }
func (ignoredValue) String() string   { return "" }
func (ignoredValue) IsBoolFlag() bool { return true }

// Feature gates known to etcd 3.7, with their default state and maturity.
// AllAlpha and AllBeta switch every gate of that maturity that is not named
// explicitly.
type gateSpec struct {
	def   bool
	stage string // "ALPHA" or "BETA", as etcd labels its metric
}

var etcdFeatureGates = map[string]gateSpec{
	"AllAlpha":                     {false, "ALPHA"},
	"AllBeta":                      {false, "BETA"},
	"CompactHashCheck":             {false, "ALPHA"},
	"FastLeaseKeepAlive":           {true, "BETA"},
	"InitialCorruptCheck":          {false, "ALPHA"},
	"LeaseCheckpoint":              {false, "ALPHA"},
	"LeaseCheckpointPersist":       {false, "ALPHA"},
	"PriorityRequest":              {false, "ALPHA"},
	"SetMemberLocalAddr":           {false, "ALPHA"},
	"StopGRPCServiceOnDefrag":      {false, "ALPHA"},
	"TxnModeWriteWithSharedBuffer": {true, "BETA"},
}

// keelFeatureGates are the gates keel acts on; setting any other is
// accepted with a notice.
var keelFeatureGates = map[string]bool{"CompactHashCheck": true, "InitialCorruptCheck": true}

// featureGatesValue is "Name=bool,Name=bool,..." over etcdFeatureGates.
// Repeated flags accumulate.
type featureGatesValue struct {
	set map[string]bool
}

func (v *featureGatesValue) Set(s string) error {
	next := make(map[string]bool)
	for kv := range strings.SplitSeq(s, ",") {
		if kv == "" {
			continue
		}
		k, val, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok {
			return fmt.Errorf("missing bool value for %s", k)
		}
		val = strings.TrimSpace(val)
		b, err := strconv.ParseBool(val)
		if err != nil {
			return fmt.Errorf("invalid value of %s=%s, err: %w", k, val, err)
		}
		next[k] = b
	}
	for _, k := range slices.Sorted(maps.Keys(next)) {
		if _, ok := etcdFeatureGates[k]; !ok {
			return fmt.Errorf("unrecognized feature gate: %s", k)
		}
	}
	if v.set == nil {
		v.set = make(map[string]bool)
	}
	for k, b := range next {
		v.set[k] = b
	}
	return nil
}

func (v *featureGatesValue) String() string {
	pairs := make([]string, 0, len(v.set))
	for k, b := range v.set {
		pairs = append(pairs, fmt.Sprintf("%s=%t", k, b))
	}
	sort.Strings(pairs)
	return strings.Join(pairs, ",")
}

// Get returns a copy of the gates set explicitly.
func (v *featureGatesValue) Get() any {
	out := make(map[string]bool, len(v.set))
	for k, b := range v.set {
		out[k] = b
	}
	return out
}

// FeatureGate is one feature gate of etcd's as a member has it.
type FeatureGate struct {
	Name    string
	Stage   string // "ALPHA" or "BETA"
	Enabled bool
}

// Features returns every feature gate etcd 3.7 knows, sorted by name, on or
// off as --feature-gates (c.FeatureGates) and the gates' defaults make it.
func (c *Config) Features() []FeatureGate {
	v := &featureGatesValue{set: c.FeatureGates}
	gates := make([]FeatureGate, 0, len(etcdFeatureGates))
	for _, name := range slices.Sorted(maps.Keys(etcdFeatureGates)) {
		gates = append(gates, FeatureGate{Name: name, Stage: etcdFeatureGates[name].stage, Enabled: v.enabled(name)})
	}
	return gates
}

// enabled reports whether gate name is on: an explicit setting wins, then
// AllAlpha or AllBeta for its maturity, then the gate's default.
func (v *featureGatesValue) enabled(name string) bool {
	if b, ok := v.set[name]; ok {
		return b
	}
	spec := etcdFeatureGates[name]
	all := map[string]string{"ALPHA": "AllAlpha", "BETA": "AllBeta"}[spec.stage]
	if b, ok := v.set[all]; ok {
		return b
	}
	return spec.def
}
