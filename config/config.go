// Package config turns a keel command line and its ETCD_* environment, or an
// etcd configuration file (--config-file), into a validated Config, exactly
// as etcd parses its own, so that systemd units, static-pod manifests and
// scripts written for etcd start keel unchanged.
//
// Parsing reads nothing but the configuration file and writes nothing: a bad
// flag or value is reported before anything is created or written.
package config

import (
	"net/url"
	"time"
)

// Config is the whole configuration of one keel member. The zero value is not
// usable; start from Default() or Parse().
type Config struct {
	// Name is the human-readable name of this member (--name).
	Name string
	// DataDir is the directory holding all of the member's state
	// (--data-dir, default "<name>.keel").
	DataDir string

	// ListenClientURLs are the addresses the client port binds
	// (--listen-client-urls). A port of 0 binds a free port.
	ListenClientURLs []url.URL
	// AdvertiseClientURLs are the client URLs published to the cluster
	// (--advertise-client-urls). A port of 0 is replaced by the port the
	// matching listener bound.
	AdvertiseClientURLs []url.URL
	// ListenPeerURLs are the addresses the peer port binds (--listen-peer-urls).
	ListenPeerURLs []url.URL
	// InitialAdvertisePeerURLs are this member's peer URLs as published to the
	// cluster at bootstrap (--initial-advertise-peer-urls).
	InitialAdvertisePeerURLs []url.URL

	// InitialCluster is the bootstrap membership, "name=url,name=url,..."
	// (--initial-cluster). Ignored once the data dir is initialised.
	InitialCluster string
	// InitialClusterState is "new" or "existing" (--initial-cluster-state).
	InitialClusterState string
	// InitialClusterToken distinguishes clusters bootstrapped from the same
	// configuration (--initial-cluster-token).
	InitialClusterToken string
	// DiscoverySRV is the DNS domain whose SRV records give the initial
	// cluster (--discovery-srv); DiscoverySRVName is the suffix of the
	// service names looked up (--discovery-srv-name). See package discovery.
	DiscoverySRV, DiscoverySRVName string
	// Discovery is the v3 discovery set-up (--discovery-token,
	// --discovery-endpoints and the other --discovery-* flags); it is in use
	// when Discovery.Endpoints is not empty.
	Discovery Discovery
	// StrictReconfigCheck refuses membership changes that would leave the
	// cluster without a quorum of started, connected members
	// (--strict-reconfig-check).
	StrictReconfigCheck bool

	// SnapshotCount is the number of applied entries between two Raft
	// snapshots, after which the Raft log is compacted (--snapshot-count).
	SnapshotCount uint64
	// SnapshotCatchUpEntries is the number of entries kept behind a snapshot
	// for slow followers (--snapshot-catchup-entries).
	SnapshotCatchUpEntries uint64

	// ClientTLS and PeerTLS secure the client and peer ports: https://
	// URLs are served (and peer URLs dialled) with them.
	ClientTLS, PeerTLS TLS
	// SelfSignedCertValidity is how many years the certificates generated
	// by --auto-tls and --peer-auto-tls are valid
	// (--self-signed-cert-validity).
	SelfSignedCertValidity uint
	// CipherSuites restricts the TLS cipher suites of both ports
	// (--cipher-suites); empty lets Go choose.
	CipherSuites []string
	// TLSMinVersion and TLSMaxVersion bound the TLS version of both ports:
	// "TLS1.2", "TLS1.3" or "" (--tls-min-version, --tls-max-version).
	TLSMinVersion, TLSMaxVersion string

	// EnablePprof serves Go runtime profiles under /debug/pprof/ on the
	// client port (--enable-pprof).
	EnablePprof bool
	// EnableGRPCGateway serves etcd's JSON gateway under /v3/ on the client
	// port (--enable-grpc-gateway, default true).
	EnableGRPCGateway bool
	// Metrics is the detail of the exported metrics (--metrics): "basic",
	// or "extensive" to add the gRPC latency histograms.
	Metrics string
	// ListenMetricsURLs are extra addresses serving only /metrics and the
	// health endpoints (--listen-metrics-urls); https ones use the client
	// certificates. A port of 0 binds a free port.
	ListenMetricsURLs []url.URL

	// MaxTxnOps is the maximum number of operations in one txn (--max-txn-ops).
	MaxTxnOps uint
	// MaxRequestBytes is the maximum size of a client request as proposed to
	// Raft (--max-request-bytes).
	MaxRequestBytes uint
	// QuotaBackendBytes is the space quota of the member's state
	// (--quota-backend-bytes; 0 means 2 GiB, a negative value no quota).
	QuotaBackendBytes int64

	// HeartbeatInterval and ElectionTimeout drive the Raft ticks
	// (--heartbeat-interval and --election-timeout, in milliseconds).
	HeartbeatInterval time.Duration
	ElectionTimeout   time.Duration

	// AutoCompactionMode (periodic or revision) and AutoCompactionRetention
	// are --auto-compaction-mode and --auto-compaction-retention as given;
	// package compactor reads the retention (0: no automatic compaction).
	AutoCompactionMode      string
	AutoCompactionRetention string
	// WatchProgressNotifyInterval is how often watchers that asked for
	// progress notifications get one (--watch-progress-notify-interval);
	// 0 means etcd's default of 10 minutes.
	WatchProgressNotifyInterval time.Duration

	// InitialCorruptCheck compares a restarting member's key-space hash
	// with its peers' before it serves, and refuses to start on a mismatch
	// (--feature-gates=InitialCorruptCheck=true).
	InitialCorruptCheck bool
	// CorruptCheckTime is the interval of the leader's periodic corruption
	// check, which raises the CORRUPT alarm (--corrupt-check-time; 0: off).
	CorruptCheckTime time.Duration
	// CompactHashCheck turns on the leader's comparison of the members'
	// hashes at the latest compaction revision, every CompactHashCheckTime
	// (--feature-gates=CompactHashCheck=true, --compact-hash-check-time).
	CompactHashCheck     bool
	CompactHashCheckTime time.Duration
	// FeatureGates are the gates --feature-gates sets explicitly; Features
	// resolves every gate etcd 3.7 knows.
	FeatureGates map[string]bool

	// AuthToken is the kind of auth token and its options (--auth-token):
	// "simple" or "jwt,pub-key=...,priv-key=...,sign-method=...,ttl=...".
	// It is checked when the member starts, as etcd does.
	AuthToken string
	// BcryptCost is the cost of password hashes (--bcrypt-cost).
	BcryptCost uint
	// AuthTokenTTL is how long a simple token lives without use
	// (--auth-token-ttl, in seconds).
	AuthTokenTTL time.Duration

	// LogLevel is debug, info, warn, error, dpanic, panic or fatal
	// (--log-level, any case; "warning" is warn and "" is info).
	LogLevel string
	// LogOutputs are "default", "stderr", "stdout", "systemd/journal" or file
	// paths (--log-outputs), sorted and without duplicates. Parse does not
	// open the files: etcd fails flag verification when one cannot be
	// opened, so the logger must be built right after Parse.
	LogOutputs []string
	// LogFormat is "json" or "console" (--log-format).
	LogFormat string
	// LogRotation, when not nil, rotates the one file among LogOutputs
	// (--enable-log-rotation, settings from --log-rotation-config-json).
	LogRotation *LogRotation

	// ConfigFile is the --config-file the configuration was read from, ""
	// when it came from flags and variables.
	ConfigFile string

	// Notices are things parsing found worth a warning but not an error:
	// accepted flags whose feature keel does not have yet, ETCD_* variables
	// that name no flag, deprecated flags. The server logs each at start.
	Notices []Notice
	// EnvUsed lists the ETCD_* variables that set a flag, in flag order, Key
	// being the variable. etcd logs each at info level with Msg
	// ("recognized and used environment variable").
	EnvUsed []Notice
}

// LogRotation is --log-rotation-config-json: lumberjack's settings, under
// lumberjack's JSON names as etcd reads them.
type LogRotation struct {
	// MaxSize is the size in megabytes at which the file is rotated
	// (0 means 100).
	MaxSize int `json:"maxsize"`
	// MaxAge is how many days rotated files are kept (0: no limit).
	MaxAge int `json:"maxage"`
	// MaxBackups is how many rotated files are kept (0: no limit).
	MaxBackups int `json:"maxbackups"`
	// LocalTime names rotated files in local time instead of UTC.
	LocalTime bool `json:"localtime"`
	// Compress gzips rotated files.
	Compress bool `json:"compress"`
}

// TLS is the TLS set-up of one port, as etcd's security flags give it. The
// flag names are the client port's; the peer port's start with "peer-".
type TLS struct {
	// CertFile and KeyFile are the port's certificate (--cert-file,
	// --key-file).
	CertFile, KeyFile string
	// ClientCertFile and ClientKeyFile are presented when the member
	// dials (--client-cert-file, --client-key-file); empty means CertFile
	// and KeyFile.
	ClientCertFile, ClientKeyFile string
	// TrustedCAFile verifies the other side's certificates
	// (--trusted-ca-file); it also makes client certificates mandatory.
	TrustedCAFile string
	// ClientCertAuth requires client certificates (--client-cert-auth).
	ClientCertAuth bool
	// CRLFile lists revoked certificates (--client-crl-file).
	CRLFile string
	// AllowedCNs and AllowedHostnames restrict the certificates accepted
	// (--peer-cert-allowed-cn, --client-cert-allowed-hostname).
	AllowedCNs, AllowedHostnames []string
	// SkipClientSANVerify turns off the check that a peer's certificate
	// covers the address it connects from
	// (--peer-skip-client-san-verification).
	SkipClientSANVerify bool
	// AutoTLS generates a self-signed certificate into
	// <data-dir>/fixtures/client (or peer) when no certificate is given
	// (--auto-tls).
	AutoTLS bool
}

// Empty reports whether no certificate is given.
func (t TLS) Empty() bool { return t.CertFile == "" && t.KeyFile == "" }

// Notice is one start-up warning produced while parsing.
type Notice struct {
	// Msg is the log message, in etcd's wording where etcd has one.
	Msg string
	// Key and Value name the flag or variable the notice is about.
	Key   string
	Value string
}

// Discovery is how a new member finds the rest of its cluster through a
// discovery service (v3 discovery): an existing cluster where every member
// registers under the token until the cluster size is reached.
type Discovery struct {
	// Token names the cluster being bootstrapped (--discovery-token).
	Token string
	// Endpoints are the discovery service's gRPC endpoints
	// (--discovery-endpoints).
	Endpoints []string
	// DialTimeout, RequestTimeout, KeepAliveTime and KeepAliveTimeout tune
	// the client (--discovery-dial-timeout, --discovery-request-timeout,
	// --discovery-keepalive-time, --discovery-keepalive-timeout).
	DialTimeout, RequestTimeout, KeepAliveTime, KeepAliveTimeout time.Duration
	// InsecureTransport talks plain gRPC when no certificate is given
	// (--discovery-insecure-transport); InsecureSkipVerify does not check
	// the service's certificate (--discovery-insecure-skip-tls-verify).
	InsecureTransport, InsecureSkipVerify bool
	// CertFile, KeyFile and CAFile are the client certificate and the CA
	// bundle (--discovery-cert, --discovery-key, --discovery-cacert).
	CertFile, KeyFile, CAFile string
	// User is "name" or "name:password" (--discovery-user); Password is the
	// password when User has none (--discovery-password).
	User, Password string
}
