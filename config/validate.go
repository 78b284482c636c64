package config

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// validate checks the whole configuration, in the order etcd checks it and
// with etcd's messages, so that a command line etcd refuses is refused by
// keel with the same words: first etcd's flag validation, then the checks
// etcd makes while starting (cipher suites, the initial cluster, compaction
// retention), then keel's own refusals. Flags keel ignores are validated too:
// a value etcd would reject is a mistake worth reporting either way.
func (p *parser) validate(c *Config) error {
	if p.str("discovery-fallback") == "proxy" {
		return errors.New(`v2 proxy is deprecated, and --discovery-fallback can't be configured as "proxy"`)
	}
	if err := p.validateLogging(c); err != nil {
		return err
	}

	for _, name := range []string{"listen-peer-urls", "listen-client-urls", "listen-client-http-urls", "listen-metrics-urls"} {
		if err := checkBindURLs(p.urls(name)); err != nil {
			return err
		}
	}
	if err := checkHostURLs(c.InitialAdvertisePeerURLs); err != nil {
		return fmt.Errorf(`--initial-advertise-peer-urls %q must be "host:port" (%w)`,
			strings.Join(urlStrings(c.InitialAdvertisePeerURLs), ","), err)
	}
	if err := checkHostURLs(c.AdvertiseClientURLs); err != nil {
		return fmt.Errorf(`--advertise-client-urls %q must be in the format "host:port", "unix:/path/to/socket" or "unixs:/path/to/socket" (%w)`,
			strings.Join(urlStrings(c.AdvertiseClientURLs), ","), err)
	}

	endpoints := p.value("discovery-endpoints").([]string)
	srv := p.str("discovery-srv")
	bootstrapWays := 0
	for _, set := range []bool{c.InitialCluster != "", srv != "", len(endpoints) > 0} {
		if set {
			bootstrapWays++
		}
	}
	if bootstrapWays > 1 {
		return ErrConflictBootstrapFlags
	}
	if (p.str("discovery-token") != "") != (len(endpoints) > 0) {
		return errors.New("both --discovery-token and --discovery-endpoints must be set")
	}
	for _, ep := range endpoints {
		if strings.TrimSpace(ep) == "" {
			return errors.New("--discovery-endpoints must not contain empty endpoints")
		}
	}

	if err := checkTicks(p.value("heartbeat-interval").(uint), p.value("election-timeout").(uint)); err != nil {
		return err
	}
	if c.AdvertiseClientURLs == nil {
		return ErrUnsetAdvertiseClientURLs
	}

	mode := p.str("auto-compaction-mode")
	switch mode {
	case "periodic", "revision":
	case "":
		return errors.New("undefined auto-compaction-mode")
	default:
		return fmt.Errorf("unknown auto-compaction-mode %q", mode)
	}

	if p.value("enable-distributed-tracing").(bool) {
		switch rate := p.value("distributed-tracing-sampling-rate").(int); {
		case rate < 0:
			return errors.New("distributed tracing configurition is not valid: (tracing sampling rate must be positive)")
		case rate > 1000000:
			return errors.New("distributed tracing configurition is not valid: (tracing sampling rate must be less than 1000000)")
		}
	}

	gates := p.fs.Lookup("feature-gates").Value.(*recorded).Value.(*featureGatesValue)
	if gates.enabled("LeaseCheckpointPersist") && !gates.enabled("LeaseCheckpoint") {
		return errors.New("enabling feature gate LeaseCheckpointPersist requires enabling feature gate LeaseCheckpoint")
	}

	if d := p.value("compact-hash-check-time").(time.Duration); d <= 0 {
		return fmt.Errorf("--compact-hash-check-time must be >0 (set to %v)", d)
	}

	if err := p.validateTLS(); err != nil {
		return err
	}

	// etcd checks the following while starting, before it touches the
	// data dir.
	for _, cs := range p.value("cipher-suites").([]string) {
		if !knownCipherSuite(cs) {
			return fmt.Errorf("unexpected TLS cipher suite %q", cs)
		}
	}
	if bootstrapWays == 0 || c.InitialCluster != "" {
		if _, err := parseInitialCluster(c.InitialCluster); err != nil {
			return fmt.Errorf("error setting up initial cluster: %w", err)
		}
	}
	if err := checkCompactionRetention(p.str("auto-compaction-retention")); err != nil {
		return err
	}

	if err := checkTLSURLs(c); err != nil {
		return err
	}

	// Keel's own refusals: discovery decides the membership of a new
	// cluster, so ignoring it would bootstrap a cluster of one.
	for _, s := range flagTable {
		if s.status == refused && p.str(s.name) != "" {
			return fmt.Errorf("--%s is not supported by keel yet; list the members with --initial-cluster instead", s.name)
		}
	}
	return nil
}

// validateLogging mirrors etcd's logger set-up checks and canonicalises
// LogLevel and LogFormat.
func (p *parser) validateLogging(c *Config) error {
	switch lg := p.str("logger"); lg {
	case "zap":
	case "capnslog":
		return errors.New("--logger=capnslog is removed in v3.5")
	default:
		return fmt.Errorf("unknown logger option %q", lg)
	}
	if len(c.LogOutputs) > 1 && slices.Contains(c.LogOutputs, "default") {
		return fmt.Errorf("multi logoutput for %q is not supported yet", "default")
	}
	if p.value("enable-log-rotation").(bool) {
		rot, err := checkLogRotation(c.LogOutputs, p.str("log-rotation-config-json"))
		if err != nil {
			return err
		}
		c.LogRotation = rot
	}
	if len(c.LogOutputs) > 1 && slices.Contains(c.LogOutputs, "systemd/journal") {
		return fmt.Errorf("running with systemd/journal but other '--log-outputs' values (%q) are configured with 'default'; override 'default' value with something else", c.LogOutputs)
	}

	level, err := canonicalLevel(c.LogLevel)
	if err != nil {
		return err
	}
	c.LogLevel = level
	switch c.LogFormat {
	case "json", "console":
	case "":
		c.LogFormat = "json"
	default:
		return fmt.Errorf("unknown log format: %s, supported values json, console", c.LogFormat)
	}
	return nil
}

// canonicalLevel accepts the level names zap accepts (any case; "" is info,
// "warning" is warn) and returns zap's lower-case name. etcd panics on a bad
// level; keel reports zap's message as an error instead.
func canonicalLevel(s string) (string, error) {
	switch l := strings.ToLower(s); l {
	case "":
		return "info", nil
	case "warning":
		return "warn", nil
	case "debug", "info", "warn", "error", "dpanic", "panic", "fatal":
		return l, nil
	}
	return "", fmt.Errorf("unrecognized level: %q", s)
}

// checkLogRotation mirrors etcd: rotation needs exactly one file among the
// outputs, and a rotation config that is valid JSON of the right shape.
func checkLogRotation(outputs []string, configJSON string) (*LogRotation, error) {
	files := 0
	for _, o := range outputs {
		switch o {
		case "default", "stderr", "stdout":
		default:
			files++
		}
	}
	errOutputs := errors.New("--log-outputs requires a single file path when --log-rotate-config-json is defined")
	if (len(outputs) == 1 && files == 0) || files > 1 {
		return nil, errOutputs
	}
	// etcd reads the JSON into lumberjack's Logger, whose filename it then
	// replaces by the output's path: a filename is accepted and ignored.
	var rot struct {
		LogRotation
		Filename string `json:"filename"`
	}
	if err := json.Unmarshal([]byte(configJSON), &rot); err != nil {
		var syntaxErr *json.SyntaxError
		var typeErr *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syntaxErr):
			return nil, fmt.Errorf("improperly formatted log rotation config: %w", err)
		case errors.As(err, &typeErr):
			return nil, fmt.Errorf("invalid log rotation config: %w", err)
		default:
			return nil, fmt.Errorf("fail to unmarshal log rotation config: %w", err)
		}
	}
	return &rot.LogRotation, nil
}

func (p *parser) validateTLS() error {
	minV, maxV := p.str("tls-min-version"), p.str("tls-max-version")
	for _, v := range []string{minV, maxV} {
		if !slices.Contains(tlsVersions, v) {
			return fmt.Errorf("unexpected TLS version %q (must be one of: TLS1.2, TLS1.3)", v)
		}
	}
	// "" lets Go choose the highest version; "TLS1.2" < "TLS1.3".
	if maxV != "" && minV > maxV {
		return fmt.Errorf("min version (%s) is greater than max version (%s)", minV, maxV)
	}
	if minV == "TLS1.3" && len(p.value("cipher-suites").([]string)) > 0 {
		return errors.New("cipher suites cannot be configured when only TLS1.3 is enabled")
	}
	return nil
}

// checkTLSURLs refuses https:// URLs that no certificate can serve, with
// etcd's messages.
func checkTLSURLs(c *Config) error {
	for _, u := range c.ListenClientURLs {
		if (u.Scheme == "https" || u.Scheme == "unixs") && c.ClientTLS.Empty() && !c.ClientTLS.AutoTLS {
			return fmt.Errorf("TLS key/cert (--cert-file, --key-file) must be provided for client url %s with HTTPS scheme", u.String())
		}
	}
	for _, u := range c.ListenPeerURLs {
		if (u.Scheme == "https" || u.Scheme == "unixs") && c.PeerTLS.Empty() && !c.PeerTLS.AutoTLS {
			return fmt.Errorf("cannot listen on TLS for %s: KeyFile and CertFile are not presented", u.Host)
		}
	}
	return nil
}

// knownCipherSuite reports whether name is a cipher suite Go knows, secure
// or not, or one of the two short ChaCha20 names etcd also accepts.
func knownCipherSuite(name string) bool {
	for _, list := range [][]*tls.CipherSuite{tls.CipherSuites(), tls.InsecureCipherSuites()} {
		for _, cs := range list {
			if cs.Name == name {
				return true
			}
		}
	}
	return name == "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" || name == "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"
}

// checkCompactionRetention mirrors etcd: a non-negative integer (hours or
// revisions), or else a Go duration.
func checkCompactionRetention(s string) error {
	if n, err := strconv.Atoi(s); err == nil && n >= 0 {
		return nil
	}
	if _, err := time.ParseDuration(s); err != nil {
		return fmt.Errorf("error parsing CompactionRetention: %w", err)
	}
	return nil
}

// checkBindURLs requires every TCP URL to name an IP address or localhost:
// a listener binds an address, not a name.
func checkBindURLs(urls []url.URL) error {
	for _, u := range urls {
		if u.Scheme == "unix" || u.Scheme == "unixs" {
			continue
		}
		host, _, err := net.SplitHostPort(u.Host)
		if err != nil {
			return err
		}
		if host != "localhost" && net.ParseIP(host) == nil {
			return fmt.Errorf("expected IP in URL for binding (%s)", u.String())
		}
	}
	return nil
}

// checkHostURLs requires every TCP URL to have a host.
func checkHostURLs(urls []url.URL) error {
	for _, u := range urls {
		if u.Scheme == "unix" || u.Scheme == "unixs" {
			continue
		}
		host, _, err := net.SplitHostPort(u.Host)
		if err != nil {
			return err
		}
		if host == "" {
			return fmt.Errorf("unexpected empty host (%s)", u.String())
		}
	}
	return nil
}
