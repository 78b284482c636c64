package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// This file reads --config-file: etcd's YAML configuration file, whose keys
// are those of etcd's embed.Config (mostly the flag names; TLS, discovery and
// socket options nested under client-transport-security,
// peer-transport-security, discovery-config and socket-options). As in
// etcd, a configuration file replaces the command line and the ETCD_*
// variables entirely: the settings come from the file and the defaults.
//
// Each key is turned into the flag it stands for and set through the same
// flag.Value, so a file is validated exactly like the equivalent flags.
// Types follow etcd's file: numbers and booleans are YAML scalars, lists
// (log-outputs, cipher-suites, allowed-cn, allowed-hostname, endpoints) are
// YAML sequences, URL lists are comma-separated strings, and durations are
// integers in nanoseconds (etcd decodes them as Go's time.Duration). A key
// set to nothing (`data-dir:`) keeps its default. Keys etcd does not read
// are ignored, as etcd ignores them, with a notice.

// MsgConfigFileLoaded is etcd's message, logged at info level with the
// file's path, once a configuration file is read.
const MsgConfigFileLoaded = "loaded server configuration, other configuration command line flags and environment variables will be ignored if provided"

const msgUnknownFileKey = "configuration file key is not read by etcd or keel; ignoring it"

// fileKeys maps every top-level key of etcd's configuration file to the
// flag it sets; "" marks keys etcd reads that have no flag (ignored).
var fileKeys = map[string]string{
	"name": "name", "data-dir": "data-dir", "wal-dir": "wal-dir",
	"snapshot-count": "snapshot-count", "snapshot-catchup-entries": "snapshot-catchup-entries",
	"max-snapshots": "max-snapshots", "max-wals": "max-wals",
	"heartbeat-interval": "heartbeat-interval", "election-timeout": "election-timeout",
	"initial-election-tick-advance": "initial-election-tick-advance",
	"backend-batch-interval":        "backend-batch-interval", "backend-batch-limit": "backend-batch-limit",
	"backend-bbolt-freelist-type": "backend-bbolt-freelist-type",
	"quota-backend-bytes":         "quota-backend-bytes", "max-txn-ops": "max-txn-ops",
	"max-request-bytes": "max-request-bytes", "max-concurrent-streams": "max-concurrent-streams",
	"self-signed-cert-validity": "self-signed-cert-validity", "cipher-suites": "cipher-suites",
	"tls-min-version": "tls-min-version", "tls-max-version": "tls-max-version",
	"initial-cluster-state": "initial-cluster-state",
	"discovery-srv":         "discovery-srv", "discovery-srv-name": "discovery-srv-name",
	"initial-cluster": "initial-cluster", "initial-cluster-token": "initial-cluster-token",
	"strict-reconfig-check": "strict-reconfig-check",
	"auto-compaction-mode":  "auto-compaction-mode", "auto-compaction-retention": "auto-compaction-retention",
	"grpc-keepalive-min-time": "grpc-keepalive-min-time", "grpc-keepalive-interval": "grpc-keepalive-interval",
	"grpc-keepalive-timeout": "grpc-keepalive-timeout",
	"auth-token":             "auth-token", "bcrypt-cost": "bcrypt-cost", "auth-token-ttl": "auth-token-ttl",
	"corrupt-check-time": "corrupt-check-time", "compact-hash-check-time": "compact-hash-check-time",
	"compaction-batch-limit": "compaction-batch-limit", "compaction-sleep-interval": "compaction-sleep-interval",
	"watch-progress-notify-interval":       "watch-progress-notify-interval",
	"warning-apply-duration":               "warning-apply-duration",
	"bootstrap-defrag-threshold-megabytes": "bootstrap-defrag-threshold-megabytes",
	"warning-unary-request-duration":       "warning-unary-request-duration",
	"max-learners":                         "max-learners", "force-new-cluster": "force-new-cluster",
	"enable-pprof": "enable-pprof", "metrics": "metrics", "listen-metrics-urls": "listen-metrics-urls",
	"enable-distributed-tracing":        "enable-distributed-tracing",
	"distributed-tracing-address":       "distributed-tracing-address",
	"distributed-tracing-service-name":  "distributed-tracing-service-name",
	"distributed-tracing-instance-id":   "distributed-tracing-instance-id",
	"distributed-tracing-sampling-rate": "distributed-tracing-sampling-rate",
	"logger":                            "logger", "log-level": "log-level", "log-format": "log-format",
	"log-outputs": "log-outputs", "enable-log-rotation": "enable-log-rotation",
	"log-rotation-config-json": "log-rotation-config-json", "enable-grpc-gateway": "enable-grpc-gateway",
	"unsafe-no-fsync": "unsafe-no-fsync", "downgrade-check-time": "downgrade-check-time",
	"memory-mlock":     "memory-mlock",
	"listen-peer-urls": "listen-peer-urls", "listen-client-urls": "listen-client-urls",
	"listen-client-http-urls":     "listen-client-http-urls",
	"initial-advertise-peer-urls": "initial-advertise-peer-urls",
	"advertise-client-urls":       "advertise-client-urls",
	"cors":                        "cors", "host-whitelist": "host-whitelist", "feature-gates": "feature-gates",
	// etcd reads them; keel always pre-votes and has no extra gRPC options.
	"pre-vote": "", "grpc-additional-server-options": "",
}

// fileSections maps the nested sections of etcd's file, key by key, to
// flags.
var fileSections = map[string]map[string]string{
	"client-transport-security": {
		"cert-file": "cert-file", "key-file": "key-file",
		"client-cert-file": "client-cert-file", "client-key-file": "client-key-file",
		"client-cert-auth": "client-cert-auth", "trusted-ca-file": "trusted-ca-file",
		"auto-tls": "auto-tls", "allowed-hostname": "client-cert-allowed-hostname",
		// etcd reads them for the client port, where no flag sets them.
		"allowed-cn": "", "skip-client-san-verification": "",
	},
	"peer-transport-security": {
		"cert-file": "peer-cert-file", "key-file": "peer-key-file",
		"client-cert-file": "peer-client-cert-file", "client-key-file": "peer-client-key-file",
		"client-cert-auth": "peer-client-cert-auth", "trusted-ca-file": "peer-trusted-ca-file",
		"auto-tls": "peer-auto-tls", "allowed-cn": "peer-cert-allowed-cn",
		"allowed-hostname":             "peer-cert-allowed-hostname",
		"skip-client-san-verification": "peer-skip-client-san-verification",
	},
	"discovery-config": {
		"token": "discovery-token", "endpoints": "discovery-endpoints",
		"dial-timeout": "discovery-dial-timeout", "request-timeout": "discovery-request-timeout",
		"keepalive-time": "discovery-keepalive-time", "keepalive-timeout": "discovery-keepalive-timeout",
		"max-request-bytes": "", "max-recv-bytes": "",
		"secure.cert": "discovery-cert", "secure.key": "discovery-key", "secure.cacert": "discovery-cacert",
		"secure.insecure-transport":       "discovery-insecure-transport",
		"secure.insecure-skip-tls-verify": "discovery-insecure-skip-tls-verify",
		"secure.server-name":              "",
		"auth.username":                   "discovery-user", "auth.password": "discovery-password", "auth.token": "",
	},
	"socket-options": {"reuse-port": "socket-reuse-port", "reuse-address": "socket-reuse-address"},
}

// fileListKeys are the keys whose value etcd decodes as a list of strings.
var fileListKeys = map[string]bool{
	"cipher-suites": true, "log-outputs": true, "allowed-cn": true, "allowed-hostname": true, "endpoints": true,
}

// configFilePath returns the configuration file named on the command line
// or, failing that, by ETCD_CONFIG_FILE.
func (p *parser) configFilePath(env map[string]string) string {
	if path := p.str("config-file"); path != "" {
		return path
	}
	return env[FlagToEnv("config-file")]
}

// runFile builds the Config from the configuration file at path alone.
func runFile(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--config-file: %w", err)
	}
	fp := newParser()
	if err := fp.applyFile(b); err != nil {
		return nil, fmt.Errorf("--config-file %s: %w", path, err)
	}
	cfg := fp.build()
	if err := fp.validate(cfg); err != nil {
		return nil, err
	}
	fp.flagNotices(cfg)
	cfg.Notices = append(fp.notices, cfg.Notices...)
	cfg.ConfigFile = path
	return cfg, nil
}

// applyFile sets the flags the YAML document b names.
func (p *parser) applyFile(b []byte) error {
	js, err := yaml.YAMLToJSON(b)
	if err != nil {
		return err
	}
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
			return nil // an empty file
		}
		return fmt.Errorf("the file is not a YAML mapping: %w", err)
	}
	for _, key := range sortedKeys(doc) {
		val := doc[key]
		if section, ok := fileSections[key]; ok {
			if val == nil {
				continue
			}
			m, ok := val.(map[string]any)
			if !ok {
				return fmt.Errorf("invalid %s", key)
			}
			if err := p.applySection(key, section, "", m); err != nil {
				return err
			}
			continue
		}
		name, ok := fileKeys[key]
		if !ok {
			p.notice(msgUnknownFileKey, key, "")
			continue
		}
		if name == "" {
			continue
		}
		if err := p.setFromFile(key, key, name, val); err != nil {
			return err
		}
	}
	return nil
}

// applySection sets the flags of one nested section; prefix is the path of
// a sub-section ("secure.").
func (p *parser) applySection(section string, keys map[string]string, prefix string, m map[string]any) error {
	for _, k := range sortedKeys(m) {
		val := m[k]
		path := prefix + k
		if sub, ok := val.(map[string]any); ok {
			if err := p.applySection(section, keys, path+".", sub); err != nil {
				return err
			}
			continue
		}
		name, ok := keys[path]
		if !ok {
			p.notice(msgUnknownFileKey, section+"."+path, "")
			continue
		}
		if name == "" {
			continue
		}
		if err := p.setFromFile(section+"."+path, k, name, val); err != nil {
			return err
		}
	}
	return nil
}

// setFromFile sets flag name from the file's value val at key (leaf is its
// last element), checking val's type as etcd's decoding does.
func (p *parser) setFromFile(key, leaf, name string, val any) error {
	if val == nil {
		return nil // "key:" with no value keeps the default, as in etcd
	}
	s := p.specs[name]
	var text string
	typeErr := func(want string) error {
		return fmt.Errorf("%s: cannot use %s as %s", key, jsonType(val), want)
	}
	switch {
	case fileListKeys[leaf]:
		list, ok := val.([]any)
		if !ok {
			return typeErr("a list of strings")
		}
		if len(list) == 0 {
			return nil
		}
		parts := make([]string, len(list))
		for i, e := range list {
			if parts[i], ok = e.(string); !ok {
				return typeErr("a list of strings")
			}
		}
		text = strings.Join(parts, ",")
	case s.kind == kindBool:
		b, ok := val.(bool)
		if !ok {
			return typeErr("a boolean")
		}
		text = fmt.Sprint(b)
	case s.kind == kindDuration:
		n, ok := val.(json.Number)
		if !ok {
			return typeErr("a duration in nanoseconds (an integer)")
		}
		d, err := n.Int64()
		if err != nil {
			return typeErr("a duration in nanoseconds (an integer)")
		}
		text = time.Duration(d).String()
	case s.kind == kindUint, s.kind == kindUint64, s.kind == kindInt, s.kind == kindInt64, s.kind == kindUint32:
		n, ok := val.(json.Number)
		if !ok {
			return typeErr("a number")
		}
		text = n.String()
		// etcd's file treats a validity of 0 as 1 year.
		if name == "self-signed-cert-validity" && text == "0" {
			return nil
		}
	default:
		str, ok := val.(string)
		if !ok {
			return typeErr("a string")
		}
		text = str
	}
	if err := p.fs.Set(name, text); err != nil {
		return fmt.Errorf("invalid value %q for %s: %w", text, key, err)
	}
	p.fromFile[name] = true
	return nil
}

func jsonType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprintf("%T", v)
}
