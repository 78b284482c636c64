package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Action says what the command line asks for.
type Action int

const (
	// ActionRun: start the member with the returned Config.
	ActionRun Action = iota
	// ActionHelp: print Usage() to stdout and exit 0 (-h, -help, --help).
	ActionHelp
	// ActionVersion: print the version and exit 0 (--version).
	ActionVersion
)

func (a Action) String() string {
	switch a {
	case ActionRun:
		return "run"
	case ActionHelp:
		return "help"
	case ActionVersion:
		return "version"
	}
	return "Action(" + strconv.Itoa(int(a)) + ")"
}

const (
	envPrefix = "ETCD"

	defaultName           = "default"
	defaultInitialCluster = "default=http://localhost:2380"
	defaultSnapshotCount  = 10000
	defaultCatchUpEntries = 5000
	maxElectionMs         = 50000
)

// ErrUnsetAdvertiseClientURLs is returned when --listen-client-urls is set
// explicitly but --advertise-client-urls is not (etcd's wording).
var ErrUnsetAdvertiseClientURLs = errors.New("--advertise-client-urls is required when --listen-client-urls is set explicitly")

// ErrConflictBootstrapFlags is returned when more than one way of finding
// the initial cluster is given (etcd's wording).
var ErrConflictBootstrapFlags = errors.New("multiple discovery or bootstrap flags are set. " +
	"Choose one of \"initial-cluster\", \"discovery-endpoints\" or \"discovery-srv\"")

// FlagToEnv returns the environment variable that sets the flag name:
// ETCD_ followed by the name in upper case with '-' turned into '_'
// ("initial-cluster" -> "ETCD_INITIAL_CLUSTER").
func FlagToEnv(name string) string {
	return envPrefix + "_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Parse parses args (without the program name) and environ (os.Environ()
// form, "KEY=value") into a validated Config. It reads no file but the
// --config-file, writes nothing and never prints.
//
// The order is etcd's: command-line flags first (an unknown flag, a bad value
// or a positional argument is an error); then -h/--help and --version, which
// return ActionHelp or ActionVersion with a nil Config before the environment
// is read; then --config-file or ETCD_CONFIG_FILE, whose file, when one is
// named, replaces the flags and variables (see file.go); else the ETCD_*
// variables, each filling a flag not given on the
// command line; then validation. The returned Config's Notices list the
// warnings the server must log at start. Errors are written for the operator
// and use etcd's wording where etcd has a message; a *SyntaxError marks the
// ones etcd treats as usage errors.
//
// Parse does not check --initial-cluster against --name and
// --initial-advertise-peer-urls: etcd checks them only when it bootstraps an
// empty data dir, so the server must call VerifyBootstrap at that point.
func Parse(args []string, environ []string) (*Config, Action, error) {
	p := newParser()
	if err := p.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, ActionHelp, nil
		}
		return nil, ActionRun, &SyntaxError{Err: err}
	}
	if p.fs.NArg() > 0 {
		return nil, ActionRun, fmt.Errorf("%q is not a valid flag", p.fs.Arg(0))
	}
	if p.value("version").(bool) {
		return nil, ActionVersion, nil
	}
	cfg, err := p.run(environ)
	if err != nil {
		return nil, ActionRun, err
	}
	return cfg, ActionRun, nil
}

// SyntaxError is a command line the flag package could not read: an
// unknown flag, a flag without its value, or a value of the wrong type. etcd
// prints such an error with a pointer to --help and exits with status 2; it
// exits with status 1 on every other error Parse reports.
type SyntaxError struct{ Err error }

func (e *SyntaxError) Error() string { return e.Err.Error() }
func (e *SyntaxError) Unwrap() error { return e.Err }

// Default returns the configuration keel uses with no flags at all.
func Default() *Config {
	cfg, _, err := Parse(nil, nil)
	if err != nil {
		panic("config: defaults do not validate: " + err.Error())
	}
	cfg.Notices = nil
	return cfg
}

// parser is the state of one Parse call.
type parser struct {
	fs    *flag.FlagSet
	specs map[string]*flagSpec
	// cmdline and fromEnv are the flags set on the command line and by
	// ETCD_* variables.
	cmdline map[string]bool
	fromEnv map[string]bool
	// fromFile are the flags set by --config-file.
	fromFile map[string]bool
	notices  []Notice
	envUsed  []Notice
}

func newParser() *parser {
	p := &parser{
		fs:       flag.NewFlagSet("keel", flag.ContinueOnError),
		specs:    make(map[string]*flagSpec, len(flagTable)),
		cmdline:  make(map[string]bool),
		fromEnv:  make(map[string]bool),
		fromFile: make(map[string]bool),
	}
	p.fs.SetOutput(io.Discard)
	p.fs.Usage = func() {}
	for i := range flagTable {
		s := &flagTable[i]
		p.specs[s.name] = s
		p.fs.Var(newValue(s), s.name, s.help)
	}
	return p
}

// newValue returns the flag.Value for s, holding s's default. Plain kinds
// borrow the standard library's values so that their parsing and their
// error texts are exactly Go's, as in etcd.
func newValue(s *flagSpec) flag.Value {
	std := flag.NewFlagSet("", flag.ContinueOnError)
	var v flag.Value
	switch s.kind {
	case kindBool:
		std.Bool(s.name, mustParse(strconv.ParseBool(s.def)), "")
	case kindString:
		std.String(s.name, s.def, "")
	case kindUint:
		std.Uint(s.name, uint(mustParse(strconv.ParseUint(s.def, 10, 0))), "")
	case kindUint64:
		std.Uint64(s.name, mustParse(strconv.ParseUint(s.def, 10, 64)), "")
	case kindInt:
		std.Int(s.name, int(mustParse(strconv.ParseInt(s.def, 10, 0))), "")
	case kindInt64:
		std.Int64(s.name, mustParse(strconv.ParseInt(s.def, 10, 64)), "")
	case kindDuration:
		std.Duration(s.name, mustParse(time.ParseDuration(s.def)), "")
	case kindUint32:
		u := uint32Value(mustParse(strconv.ParseUint(s.def, 10, 32)))
		v = &u
	case kindURLs:
		v = newURLsValue(s.def, s.keep, s.literals)
	case kindStrings:
		v = new(stringsValue)
		if s.def != "" {
			_ = v.Set(s.def)
		}
	case kindUniqueStrings:
		v = newUniqueStringsValue(s.def)
	case kindChoice:
		v = &choiceValue{v: s.def, valids: s.choices}
	case kindChoices:
		v = &choicesValue{valids: s.choices}
	case kindFeatureGates:
		v = new(featureGatesValue)
	case kindIgnored:
		return &recordedBool{recorded{Value: ignoredValue{}}}
	default:
		panic(fmt.Sprintf("config: flag %s has unknown kind %d", s.name, s.kind))
	}
	if v == nil {
		v = std.Lookup(s.name).Value
	}
	if s.kind == kindBool {
		return &recordedBool{recorded{Value: v}}
	}
	return &recorded{Value: v}
}

func mustParse[T any](v T, err error) T {
	if err != nil {
		panic("config: bad default in flag table: " + err.Error())
	}
	return v
}

// value returns the typed value of flag name (bool, string, uint, uint64,
// int, int64, time.Duration, uint32, []url.URL, []string or map[string]bool).
func (p *parser) value(name string) any {
	return p.fs.Lookup(name).Value.(flag.Getter).Get()
}

func (p *parser) str(name string) string { return p.fs.Lookup(name).Value.String() }

func (p *parser) urls(name string) []url.URL { return p.value(name).([]url.URL) }

// raw returns the text last given to flag name.
func (p *parser) raw(name string) string {
	switch v := p.fs.Lookup(name).Value.(type) {
	case *recordedBool:
		return v.raw
	case *recorded:
		return v.raw
	}
	return ""
}

// isSet reports whether flag name was given on the command line, by an
// ETCD_* variable or by the configuration file.
func (p *parser) isSet(name string) bool {
	return p.cmdline[name] || p.fromEnv[name] || p.fromFile[name]
}

func (p *parser) notice(msg, key, value string) {
	p.notices = append(p.notices, Notice{Msg: msg, Key: key, Value: value})
}

// run does everything after the command line is parsed.
func (p *parser) run(environ []string) (*Config, error) {
	p.fs.Visit(func(f *flag.Flag) { p.cmdline[f.Name] = true })
	env := envLookup(environ)

	// etcd reads a configuration file instead of flags and variables when
	// one is named (see file.go).
	if path := p.configFilePath(env); path != "" {
		return runFile(path)
	}

	if err := p.applyEnv(environ, env); err != nil {
		return nil, err
	}

	cfg := p.build()
	if err := p.validate(cfg); err != nil {
		return nil, err
	}
	p.flagNotices(cfg)
	cfg.Notices = append(p.notices, cfg.Notices...)
	cfg.EnvUsed = p.envUsed
	return cfg, nil
}

// envLookup indexes environ; the first entry of a repeated name wins, as
// in os.Getenv.
func envLookup(environ []string) map[string]string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		if _, dup := m[k]; !dup {
			m[k] = v
		}
	}
	return m
}

// applyEnv sets every flag not given on the command line from its non-empty
// ETCD_* variable, then checks the variables left over, with etcd's rules:
// a variable whose flag was also given on the command line is an error
// (even when empty), any other ETCD_* variable is a notice. When several
// variables hold bad values, the error names the last one in flag order,
// as etcd's does.
func (p *parser) applyEnv(environ []string, env map[string]string) error {
	// ETCD_VERSION would turn the server into a version printer: etcd
	// drops it with a warning before anything else looks at it.
	verKey := FlagToEnv("version")
	dropped := env[verKey] != ""
	if dropped {
		p.notice(msgSpecialEnv, verKey, env[verKey])
		delete(env, verKey)
	}

	var setErr error
	used := make(map[string]bool)
	cmdlineKeys := make(map[string]bool)
	p.fs.VisitAll(func(f *flag.Flag) {
		key := FlagToEnv(f.Name)
		if p.cmdline[f.Name] {
			cmdlineKeys[key] = true
			return
		}
		val := env[key]
		if val == "" {
			return
		}
		used[key] = true
		if err := p.fs.Set(f.Name, val); err != nil {
			setErr = fmt.Errorf("invalid value %q for %s: %w", val, key, err)
			return
		}
		p.fromEnv[f.Name] = true
		p.envUsed = append(p.envUsed, Notice{Msg: msgEnvUsed, Key: key, Value: val})
	})

	var unknown []Notice
	for _, kv := range environ {
		key, val, ok := strings.Cut(kv, "=")
		if !ok {
			unknown = append(unknown, Notice{Msg: msgInvalidEnv, Key: kv})
		}
		if used[key] || (dropped && key == verKey) {
			continue
		}
		if cmdlineKeys[key] {
			return fmt.Errorf("conflicting environment variable is shadowed by corresponding command-line flag (either unset environment variable or disable flag)): %s", key)
		}
		if strings.HasPrefix(key, envPrefix+"_") {
			unknown = append(unknown, Notice{Msg: msgUnrecognizedEnv, Key: key, Value: val})
		}
	}
	if setErr != nil {
		return setErr
	}
	p.notices = append(p.notices, unknown...)
	return nil
}

// build turns the parsed flags into a Config, deriving the defaults etcd
// derives after parsing.
func (p *parser) build() *Config {
	c := &Config{
		Name:                     p.str("name"),
		DataDir:                  p.str("data-dir"),
		ListenClientURLs:         p.urls("listen-client-urls"),
		AdvertiseClientURLs:      p.urls("advertise-client-urls"),
		ListenPeerURLs:           p.urls("listen-peer-urls"),
		InitialAdvertisePeerURLs: p.urls("initial-advertise-peer-urls"),
		InitialCluster:           p.str("initial-cluster"),
		InitialClusterState:      p.str("initial-cluster-state"),
		InitialClusterToken:      p.str("initial-cluster-token"),
		StrictReconfigCheck:      p.value("strict-reconfig-check").(bool),
		DiscoverySRV:             p.str("discovery-srv"),
		DiscoverySRVName:         p.str("discovery-srv-name"),
		Discovery: Discovery{
			Token:              p.str("discovery-token"),
			Endpoints:          p.value("discovery-endpoints").([]string),
			DialTimeout:        p.value("discovery-dial-timeout").(time.Duration),
			RequestTimeout:     p.value("discovery-request-timeout").(time.Duration),
			KeepAliveTime:      p.value("discovery-keepalive-time").(time.Duration),
			KeepAliveTimeout:   p.value("discovery-keepalive-timeout").(time.Duration),
			InsecureTransport:  p.value("discovery-insecure-transport").(bool),
			InsecureSkipVerify: p.value("discovery-insecure-skip-tls-verify").(bool),
			CertFile:           p.str("discovery-cert"),
			KeyFile:            p.str("discovery-key"),
			CAFile:             p.str("discovery-cacert"),
			User:               p.str("discovery-user"),
			Password:           p.str("discovery-password"),
		},
		SnapshotCount:          p.value("snapshot-count").(uint64),
		EnablePprof:            p.value("enable-pprof").(bool),
		Metrics:                p.str("metrics"),
		ListenMetricsURLs:      p.urls("listen-metrics-urls"),
		SnapshotCatchUpEntries: p.value("snapshot-catchup-entries").(uint64),
		MaxTxnOps:              p.value("max-txn-ops").(uint),
		MaxRequestBytes:        p.value("max-request-bytes").(uint),
		QuotaBackendBytes:      p.value("quota-backend-bytes").(int64),
		LogLevel:               p.str("log-level"),
		LogOutputs:             p.value("log-outputs").([]string),
		LogFormat:              p.str("log-format"),
		ClientTLS: TLS{
			CertFile:         p.str("cert-file"),
			KeyFile:          p.str("key-file"),
			ClientCertFile:   p.str("client-cert-file"),
			ClientKeyFile:    p.str("client-key-file"),
			TrustedCAFile:    p.str("trusted-ca-file"),
			ClientCertAuth:   p.value("client-cert-auth").(bool),
			CRLFile:          p.str("client-crl-file"),
			AllowedHostnames: p.value("client-cert-allowed-hostname").([]string),
			AutoTLS:          p.value("auto-tls").(bool),
		},
		PeerTLS: TLS{
			CertFile:            p.str("peer-cert-file"),
			KeyFile:             p.str("peer-key-file"),
			ClientCertFile:      p.str("peer-client-cert-file"),
			ClientKeyFile:       p.str("peer-client-key-file"),
			TrustedCAFile:       p.str("peer-trusted-ca-file"),
			ClientCertAuth:      p.value("peer-client-cert-auth").(bool),
			CRLFile:             p.str("peer-crl-file"),
			AllowedCNs:          p.value("peer-cert-allowed-cn").([]string),
			AllowedHostnames:    p.value("peer-cert-allowed-hostname").([]string),
			SkipClientSANVerify: p.value("peer-skip-client-san-verification").(bool),
			AutoTLS:             p.value("peer-auto-tls").(bool),
		},
		SelfSignedCertValidity: p.value("self-signed-cert-validity").(uint),
		CipherSuites:           p.value("cipher-suites").([]string),
		TLSMinVersion:          p.str("tls-min-version"),
		TLSMaxVersion:          p.str("tls-max-version"),
		EnableGRPCGateway:      p.value("enable-grpc-gateway").(bool),
	}
	if c.DataDir == "" {
		c.DataDir = c.Name + ".keel"
	}

	// Listening on explicit client URLs while advertising the default
	// localhost URL is almost always a mistake; etcd refuses it.
	// etcd applies this rule to flags and variables, not to its file.
	flagSet := func(name string) bool { return p.cmdline[name] || p.fromEnv[name] }
	if flagSet("listen-client-urls") && !flagSet("advertise-client-urls") {
		c.AdvertiseClientURLs = nil
	}

	// With discovery, the initial cluster comes from the discovery service.
	discovery := p.str("discovery-srv") != "" || p.str("discovery-srv-name") != "" ||
		len(p.value("discovery-endpoints").([]string)) > 0
	if discovery && !p.isSet("initial-cluster") {
		c.InitialCluster = ""
	}
	// "keel --name x" alone bootstraps a one-member cluster named x: a
	// default --initial-cluster follows the name and the advertised peer
	// URLs. With the default name it stays as it is, so that a member
	// started with peer URLs but neither a name nor a cluster fails to
	// bootstrap instead of founding a cluster of its own.
	if c.Name != defaultName && c.InitialCluster == defaultInitialCluster {
		c.InitialCluster = initialClusterFromName(c.Name, c.InitialAdvertisePeerURLs)
	}

	// Checked against overflow in validate, before the Config is returned.
	c.HeartbeatInterval = time.Duration(p.value("heartbeat-interval").(uint)) * time.Millisecond
	c.ElectionTimeout = time.Duration(p.value("election-timeout").(uint)) * time.Millisecond
	c.WatchProgressNotifyInterval = p.value("watch-progress-notify-interval").(time.Duration)
	c.AutoCompactionMode = p.str("auto-compaction-mode")
	c.AutoCompactionRetention = p.str("auto-compaction-retention")
	gates := p.fs.Lookup("feature-gates").Value.(*recorded).Value.(*featureGatesValue)
	c.InitialCorruptCheck = gates.enabled("InitialCorruptCheck")
	c.CompactHashCheck = gates.enabled("CompactHashCheck")
	if len(gates.set) > 0 {
		c.FeatureGates = gates.Get().(map[string]bool)
	}
	c.CorruptCheckTime = p.value("corrupt-check-time").(time.Duration)
	c.CompactHashCheckTime = p.value("compact-hash-check-time").(time.Duration)
	c.AuthToken = p.str("auth-token")
	c.BcryptCost = p.value("bcrypt-cost").(uint)
	c.AuthTokenTTL = time.Duration(p.value("auth-token-ttl").(uint)) * time.Second

	if c.SnapshotCount == 0 {
		c.Notices = append(c.Notices, Notice{Msg: msgSnapshotCount, Key: "--snapshot-count", Value: "0"})
		c.SnapshotCount = defaultSnapshotCount
	}
	if c.SnapshotCatchUpEntries == 0 {
		c.Notices = append(c.Notices, Notice{Msg: msgSnapshotCatchUp, Key: "--snapshot-catchup-entries", Value: "0"})
		c.SnapshotCatchUpEntries = defaultCatchUpEntries
	}
	return c
}

// initialClusterFromName is "name=url,name=url" over the advertised peer
// URLs; an empty name counts as the default name, as in etcd.
func initialClusterFromName(name string, peerURLs []url.URL) string {
	if name == "" {
		name = defaultName
	}
	parts := make([]string, len(peerURLs))
	for i, u := range peerURLs {
		parts[i] = name + "=" + u.String()
	}
	return strings.Join(parts, ",")
}

// checkTicks validates the Raft timing flags (milliseconds) with etcd's
// checks and messages. The 5x comparison is written so it cannot overflow.
func checkTicks(tick, election uint) error {
	switch {
	case tick == 0:
		return fmt.Errorf("--heartbeat-interval must be >0 (set to %dms)", tick)
	case election == 0:
		return fmt.Errorf("--election-timeout must be >0 (set to %dms)", election)
	case tick > election/5:
		return fmt.Errorf("--election-timeout[%vms] should be at least as 5 times as --heartbeat-interval[%vms]", election, tick)
	case election > maxElectionMs:
		return fmt.Errorf("--election-timeout[%vms] is too long, and should be set less than %vms", election, maxElectionMs)
	}
	return nil
}

// flagNotices adds a notice for every flag that was set but that keel does
// not act on, in flag order.
func (p *parser) flagNotices(cfg *Config) {
	if cfg.Name == defaultName {
		p.notice(msgDefaultName, "--name", cfg.Name)
	}
	p.fs.VisitAll(func(f *flag.Flag) {
		if !p.isSet(f.Name) {
			return
		}
		s := p.specs[f.Name]
		key, raw := "--"+f.Name, p.raw(f.Name)
		if s.deprecated != "" {
			p.notice(s.deprecated, key, raw)
		}
		switch s.status {
		case implemented:
			if f.Name == "feature-gates" {
				gates := f.Value.(*recorded).Value.(*featureGatesValue)
				// One notice per gate set that keel does not act on.
				for _, kv := range strings.Split(gates.String(), ",") {
					name, _, _ := strings.Cut(kv, "=")
					if !keelFeatureGates[name] {
						p.notice(msgUnsupported, key, kv)
					}
				}
			}
		case legacy:
			p.notice(msgLegacy, key, raw)
		case unsupported:
			if s.keelDoes == "" || f.Value.String() != s.keelDoes {
				p.notice(msgUnsupported, key, raw)
			}
		}
	})
}
