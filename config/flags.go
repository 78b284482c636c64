package config

// The table below is the whole command-line surface of keel: every flag that
// etcd 3.7's server registers, with etcd's name, kind and default, plus keel's
// own help text and whether keel acts on it yet. Parse, the environment
// lookup and Usage are all driven from it, so a flag cannot be parsed without
// also being documented.

// kind is how a flag's value is parsed.
type kind int

const (
	kindBool          kind = iota // bare boolean (Go's flag.Bool)
	kindString                    // flag.String
	kindUint                      // flag.Uint
	kindUint64                    // flag.Uint64
	kindInt                       // flag.Int
	kindInt64                     // flag.Int64
	kindDuration                  // flag.Duration ("5s", "1m0s")
	kindUint32                    // etcd's uint32 value
	kindURLs                      // comma-separated unique URLs
	kindStrings                   // comma-separated list, kept as given
	kindUniqueStrings             // comma-separated set, sorted
	kindChoice                    // one of choices
	kindChoices                   // comma-separated subset of choices
	kindFeatureGates              // Name=bool,...
	kindIgnored                   // legacy flag, any value, bare allowed
)

// status says what keel does with a flag.
type status int

const (
	// implemented flags fill a Config field.
	implemented status = iota
	// unsupported flags are parsed and validated as etcd does, then ignored
	// with a notice when set.
	unsupported
	// refused flags are parsed and validated as etcd does, then refused
	// when set: ignoring them would start a member that does something
	// else than the operator asked for.
	refused
	// legacy flags are accepted and ignored, as etcd ignores them.
	legacy
	// handled flags are interpreted by Parse itself (--version,
	// --config-file, --v2-deprecation).
	handled
)

// topic groups flags in Usage, in etcd's order.
type topic int

const (
	topicMember topic = iota
	topicClustering
	topicSecurity
	topicAuth
	topicMonitoring
	topicLogging
	topicTracing
	topicFeatures
	topicUnsafe
	topicLegacy
	numTopics
)

var topicTitles = [numTopics]string{
	topicMember:     "Member",
	topicClustering: "Clustering",
	topicSecurity:   "Security",
	topicAuth:       "Auth",
	topicMonitoring: "Profiling and Monitoring",
	topicLogging:    "Logging",
	topicTracing:    "Distributed tracing",
	topicFeatures:   "Features",
	topicUnsafe:     "Unsafe feature",
	topicLegacy:     "Legacy (accepted for compatibility, no effect)",
}

type flagSpec struct {
	name   string
	kind   kind
	def    string // etcd's default, in the form flag.Value.String() prints it
	topic  topic
	status status
	help   string

	// shownDefault replaces def in Usage when keel derives the default.
	shownDefault string
	// choices are the accepted values of kindChoice and kindChoices.
	choices []string
	// keep and literals are kindURLs exceptions (see urlsValue).
	keep, literals []string
	// keelDoes is, for an unsupported flag, the value keel always behaves
	// as: setting the flag to it asks for nothing keel does not do, so it
	// gets no notice.
	keelDoes string
	// deprecated is etcd's warning for a deprecated flag, given when set.
	deprecated string
}

// Notice messages.
const (
	msgUnsupported     = "flag is not supported by keel yet; ignoring it"
	msgLegacy          = "flag is no longer supported - ignoring" // etcd's IgnoredFlag wording
	msgUnrecognizedEnv = "unrecognized environment variable"
	msgSpecialEnv      = "cannot set special environment variable"
	msgInvalidEnv      = "found invalid environment variable"
	msgEnvUsed         = "recognized and used environment variable"
	msgDefaultName     = "it isn't recommended to use default name, please set a value for --name. " +
		"Note that etcd might run into issue when multiple members have the same default name"
	msgSnapshotCount   = "updating snapshot-count to default"
	msgSnapshotCatchUp = "updating snapshot catch-up entries to default"
)

var (
	urlKeep      = []string{""}
	tlsVersions  = []string{"", "TLS1.2", "TLS1.3"}
	v2DeprStages = []string{"gone", "write-only", "write-only-drop-data", "write-only-skip-check"}
)

var flagTable = []flagSpec{
	// Member.
	{name: "name", kind: kindString, def: "default", topic: topicMember, status: implemented,
		help: "Name of this member, unique in the cluster. Used in --initial-cluster to find this member's entry."},
	{name: "data-dir", kind: kindString, def: "", topic: topicMember, status: implemented, shownDefault: "${name}.keel",
		help: "Directory that holds all of the member's state: Raft log, key space, leases, membership."},
	{name: "wal-dir", kind: kindString, def: "", topic: topicMember, status: unsupported,
		help: "Separate directory for the write-ahead log. Keel keeps its log inside --data-dir."},
	{name: "config-file", kind: kindString, def: "", topic: topicMember, status: handled,
		help: "Read the configuration from a YAML file in etcd's layout (the keys of etcd's configuration file, e.g. etcd.conf.yml.sample). When a file is given, every other command-line flag and ETCD_* variable is ignored."},
	{name: "snapshot-count", kind: kindUint64, def: "10000", topic: topicMember, status: implemented,
		help: "Applied entries between two Raft snapshots; the Raft log is compacted after each. 0 means the default."},
	{name: "snapshot-catchup-entries", kind: kindUint64, def: "5000", topic: topicFeatures, status: implemented,
		help: "Entries kept in the Raft log behind a snapshot so a slow follower can catch up without a full snapshot. 0 means the default."},
	{name: "heartbeat-interval", kind: kindUint, def: "100", topic: topicMember, status: implemented,
		help: "Milliseconds between leader heartbeats (one Raft tick)."},
	{name: "election-timeout", kind: kindUint, def: "1000", topic: topicMember, status: implemented,
		help: "Milliseconds a follower waits without hearing from a leader before it starts an election. At least 5 heartbeats, at most 50000."},
	{name: "initial-election-tick-advance", kind: kindBool, def: "true", topic: topicMember, status: unsupported,
		help: "Fast-forward the election ticks at boot so a fresh member elects a leader sooner."},
	{name: "listen-peer-urls", kind: kindURLs, def: "http://localhost:2380", topic: topicMember, status: implemented, keep: urlKeep,
		help: "Comma-separated URLs the peer port binds. Hosts must be IP addresses or localhost; port 0 binds a free port."},
	{name: "listen-client-urls", kind: kindURLs, def: "http://localhost:2379", topic: topicMember, status: implemented, keep: urlKeep,
		help: "Comma-separated URLs the client port (gRPC and HTTP) binds. Hosts must be IP addresses or localhost; port 0 binds a free port. Setting it requires --advertise-client-urls."},
	{name: "listen-client-http-urls", kind: kindURLs, def: "", topic: topicMember, status: unsupported, keep: urlKeep,
		help: "Comma-separated URLs that serve only the HTTP endpoints, taking them off --listen-client-urls."},
	{name: "max-snapshots", kind: kindUint, def: "5", topic: topicMember, status: unsupported,
		deprecated: "--max-snapshots is deprecated in 3.6 and will be decommissioned in 3.8.",
		help:       "Snapshot files to keep (0 keeps all). Deprecated by etcd; keel keeps no snapshot files."},
	{name: "max-wals", kind: kindUint, def: "5", topic: topicMember, status: unsupported,
		help: "WAL files to keep (0 keeps all). Keel has no WAL files."},
	{name: "memory-mlock", kind: kindBool, def: "false", topic: topicMember, status: unsupported,
		help: "Lock the member's memory so it is never swapped out."},
	{name: "quota-backend-bytes", kind: kindInt64, def: "0", topic: topicMember, status: implemented,
		help: "Size of the live state at which the member raises a NOSPACE alarm and refuses writes that add data (0 means 2 GiB, a negative value no quota)."},
	{name: "backend-bbolt-freelist-type", kind: kindString, def: "", topic: topicMember, status: unsupported,
		help: "bbolt freelist type (array or map). Keel does not use bbolt."},
	{name: "backend-batch-interval", kind: kindDuration, def: "0s", topic: topicMember, status: unsupported,
		help: "Longest time a backend write batch stays open before it is committed."},
	{name: "backend-batch-limit", kind: kindInt, def: "0", topic: topicMember, status: unsupported,
		help: "Most operations in a backend write batch before it is committed."},
	{name: "max-txn-ops", kind: kindUint, def: "128", topic: topicMember, status: implemented,
		help: "Most operations allowed in one transaction."},
	{name: "max-request-bytes", kind: kindUint, def: "1572864", topic: topicMember, status: implemented,
		help: "Largest client request, in bytes, the member accepts."},
	{name: "max-concurrent-streams", kind: kindUint32, def: "4294967295", topic: topicMember, status: unsupported,
		help: "Most concurrent gRPC streams one client connection may open."},
	{name: "grpc-keepalive-min-time", kind: kindDuration, def: "5s", topic: topicMember, status: unsupported,
		help: "Shortest interval at which a client may ping the server."},
	{name: "grpc-keepalive-interval", kind: kindDuration, def: "2h0m0s", topic: topicMember, status: unsupported,
		help: "How often the server pings an idle client connection (0 turns pings off)."},
	{name: "grpc-keepalive-timeout", kind: kindDuration, def: "20s", topic: topicMember, status: unsupported,
		help: "How long the server waits for a ping reply before closing the connection (0 turns this off)."},
	{name: "socket-reuse-port", kind: kindBool, def: "false", topic: topicMember, status: unsupported,
		help: "Set SO_REUSEPORT on listeners so another process can bind the same port."},
	{name: "socket-reuse-address", kind: kindBool, def: "false", topic: topicMember, status: unsupported,
		help: "Set SO_REUSEADDR on listeners so a port in TIME_WAIT can be bound again."},
	{name: "enable-grpc-gateway", kind: kindBool, def: "true", topic: topicMember, status: implemented,
		help: "Serve the JSON gateway under /v3/ on the client port."},
	{name: "raft-read-timeout", kind: kindDuration, def: "5s", topic: topicMember, status: unsupported,
		help: "Read timeout on peer connections."},
	{name: "raft-write-timeout", kind: kindDuration, def: "5s", topic: topicMember, status: unsupported,
		help: "Write timeout on peer connections."},
	{name: "feature-gates", kind: kindFeatureGates, def: "", topic: topicMember, status: implemented,
		help: "Comma-separated Name=true|false pairs switching etcd's feature gates (AllAlpha, AllBeta, CompactHashCheck, FastLeaseKeepAlive, InitialCorruptCheck, LeaseCheckpoint, LeaseCheckpointPersist, PriorityRequest, SetMemberLocalAddr, StopGRPCServiceOnDefrag, TxnModeWriteWithSharedBuffer). Keel acts on InitialCorruptCheck and CompactHashCheck and warns about the others."},

	// Clustering.
	{name: "initial-advertise-peer-urls", kind: kindURLs, def: "http://localhost:2380", topic: topicClustering, status: implemented, keep: urlKeep,
		help: "Comma-separated peer URLs of this member as announced to the cluster at bootstrap. Must match this member's entry in --initial-cluster."},
	{name: "initial-cluster", kind: kindString, def: "default=http://localhost:2380", topic: topicClustering, status: implemented,
		help: "Bootstrap membership as name=peer-url pairs separated by commas; a name may appear more than once. When --name is set and this flag keeps its default, it becomes <name>=<each --initial-advertise-peer-urls>. Ignored once the member is initialised."},
	{name: "initial-cluster-state", kind: kindChoice, def: "new", topic: topicClustering, status: implemented, choices: []string{"new", "existing"},
		help: "'new' to bootstrap a new cluster, 'existing' to join a cluster this member was already added to. Ignored once the member is initialised."},
	{name: "initial-cluster-token", kind: kindString, def: "etcd-cluster", topic: topicClustering, status: implemented,
		help: "Token that keeps clusters bootstrapped from the same configuration apart; give each cluster its own."},
	{name: "advertise-client-urls", kind: kindURLs, def: "http://localhost:2379", topic: topicClustering, status: implemented, keep: urlKeep,
		help: "Comma-separated client URLs of this member as published to clients. Port 0 is replaced by the port the client listener bound."},
	{name: "discovery-token", kind: kindString, def: "", topic: topicClustering, status: implemented,
		help: "V3 discovery: token of the cluster to bootstrap, registered under /_etcd/registry/<token> on the discovery service; it also becomes the initial cluster token. Needs --discovery-endpoints."},
	{name: "discovery-endpoints", kind: kindUniqueStrings, def: "", topic: topicClustering, status: implemented,
		help: "V3 discovery: comma-separated gRPC endpoints of the discovery service, an existing etcd or keel cluster holding /_etcd/registry/<token>/_config/size."},
	{name: "discovery-dial-timeout", kind: kindDuration, def: "2s", topic: topicClustering, status: implemented,
		help: "Discovery: dial timeout."},
	{name: "discovery-request-timeout", kind: kindDuration, def: "5s", topic: topicClustering, status: implemented,
		help: "Discovery: timeout of one request, dialling excluded."},
	{name: "discovery-keepalive-time", kind: kindDuration, def: "2s", topic: topicClustering, status: implemented,
		help: "Discovery: keepalive interval."},
	{name: "discovery-keepalive-timeout", kind: kindDuration, def: "6s", topic: topicClustering, status: implemented,
		help: "Discovery: keepalive timeout."},
	{name: "discovery-insecure-transport", kind: kindBool, def: "true", topic: topicClustering, status: implemented,
		help: "Discovery: talk to the discovery service without TLS."},
	{name: "discovery-insecure-skip-tls-verify", kind: kindBool, def: "false", topic: topicClustering, status: implemented,
		help: "Discovery: do not verify the discovery service's certificate (testing only)."},
	{name: "discovery-cert", kind: kindString, def: "", topic: topicClustering, status: implemented,
		help: "Discovery: client certificate file."},
	{name: "discovery-key", kind: kindString, def: "", topic: topicClustering, status: implemented,
		help: "Discovery: client key file."},
	{name: "discovery-cacert", kind: kindString, def: "", topic: topicClustering, status: implemented,
		help: "Discovery: CA bundle that verifies the discovery service."},
	{name: "discovery-user", kind: kindString, def: "", topic: topicClustering, status: implemented,
		help: "Discovery: user name, or user:password."},
	{name: "discovery-password", kind: kindString, def: "", topic: topicClustering, status: implemented,
		help: "Discovery: password, when --discovery-user has none."},
	{name: "discovery-fallback", kind: kindChoice, def: "exit", topic: topicClustering, status: implemented, choices: []string{"exit", "proxy"},
		help: "What to do when discovery fails: 'exit' stops the member ('proxy' is no longer allowed)."},
	{name: "discovery-srv", kind: kindString, def: "", topic: topicClustering, status: implemented,
		help: "DNS domain whose SRV records _etcd-server-ssl._tcp (https) and _etcd-server._tcp (http) list the initial cluster; this member finds itself by matching the records' addresses against --initial-advertise-peer-urls."},
	{name: "discovery-srv-name", kind: kindString, def: "", topic: topicClustering, status: implemented,
		help: "Suffix of the SRV service names queried with --discovery-srv: _etcd-server-ssl-<name>._tcp and _etcd-server-<name>._tcp."},
	{name: "strict-reconfig-check", kind: kindBool, def: "true", topic: topicClustering, status: implemented,
		help: "Refuse membership changes that would leave the cluster without a quorum of started, connected members."},
	{name: "pre-vote", kind: kindBool, def: "true", topic: topicClustering, status: unsupported, keelDoes: "true",
		help: "Use Raft pre-vote so a member rejoining after a partition does not disrupt the leader."},
	{name: "auto-compaction-retention", kind: kindString, def: "0", topic: topicClustering, status: implemented,
		help: "History kept by automatic compaction: hours or a duration ('5m') in periodic mode, revisions in revision mode. 0 turns it off."},
	{name: "auto-compaction-mode", kind: kindString, def: "periodic", topic: topicClustering, status: implemented,
		help: "How --auto-compaction-retention is read: 'periodic' or 'revision'."},
	{name: "v2-deprecation", kind: kindChoices, def: "", topic: topicClustering, status: handled, choices: v2DeprStages,
		deprecated: "--v2-deprecation is deprecated and scheduled for removal in v3.8. The default value is enforced, ignoring user input.",
		help:       "v2 store deprecation stage. Deprecated and ignored by etcd 3.7; keel has no v2 store."},

	// Security.
	{name: "cert-file", kind: kindString, def: "", topic: topicSecurity, status: implemented,
		help: "Certificate file of the client port's TLS server."},
	{name: "key-file", kind: kindString, def: "", topic: topicSecurity, status: implemented,
		help: "Key file of the client port's TLS server."},
	{name: "client-cert-auth", kind: kindBool, def: "false", topic: topicSecurity, status: implemented,
		help: "Require clients to present a certificate signed by --trusted-ca-file."},
	{name: "client-cert-file", kind: kindString, def: "", topic: topicSecurity, status: implemented,
		help: "Certificate the member presents when it acts as a client of itself (defaults to --cert-file)."},
	{name: "client-key-file", kind: kindString, def: "", topic: topicSecurity, status: implemented,
		help: "Key matching --client-cert-file (defaults to --key-file)."},
	{name: "client-crl-file", kind: kindString, def: "", topic: topicSecurity, status: implemented,
		help: "Certificate revocation list for client certificates."},
	{name: "client-cert-allowed-hostname", kind: kindStrings, def: "", topic: topicSecurity, status: implemented,
		help: "Comma-separated SAN host names a client certificate must carry."},
	{name: "trusted-ca-file", kind: kindString, def: "", topic: topicSecurity, status: implemented,
		help: "CA bundle that verifies client certificates."},
	{name: "auto-tls", kind: kindBool, def: "false", topic: topicSecurity, status: implemented,
		help: "Serve clients with a generated self-signed certificate."},
	{name: "peer-cert-file", kind: kindString, def: "", topic: topicSecurity, status: implemented,
		help: "Certificate file of the peer port's TLS server."},
	{name: "peer-key-file", kind: kindString, def: "", topic: topicSecurity, status: implemented,
		help: "Key file of the peer port's TLS server."},
	{name: "peer-client-cert-auth", kind: kindBool, def: "false", topic: topicSecurity, status: implemented,
		help: "Require peers to present a certificate signed by --peer-trusted-ca-file."},
	{name: "peer-client-cert-file", kind: kindString, def: "", topic: topicSecurity, status: implemented,
		help: "Certificate presented when dialling peers (defaults to --peer-cert-file)."},
	{name: "peer-client-key-file", kind: kindString, def: "", topic: topicSecurity, status: implemented,
		help: "Key matching --peer-client-cert-file (defaults to --peer-key-file)."},
	{name: "peer-trusted-ca-file", kind: kindString, def: "", topic: topicSecurity, status: implemented,
		help: "CA bundle that verifies peer certificates."},
	{name: "peer-cert-allowed-cn", kind: kindStrings, def: "", topic: topicSecurity, status: implemented,
		help: "Comma-separated common names a peer certificate may carry."},
	{name: "peer-cert-allowed-hostname", kind: kindStrings, def: "", topic: topicSecurity, status: implemented,
		help: "Comma-separated SAN host names a peer certificate may carry."},
	{name: "peer-auto-tls", kind: kindBool, def: "false", topic: topicSecurity, status: implemented,
		help: "Serve peers with a generated self-signed certificate."},
	{name: "peer-skip-client-san-verification", kind: kindBool, def: "false", topic: topicFeatures, status: implemented,
		help: "Do not check the SAN of certificates presented by peers."},
	{name: "self-signed-cert-validity", kind: kindUint, def: "1", topic: topicSecurity, status: implemented,
		help: "Years a generated certificate (--auto-tls, --peer-auto-tls) stays valid."},
	{name: "peer-crl-file", kind: kindString, def: "", topic: topicSecurity, status: implemented,
		help: "Certificate revocation list for peer certificates."},
	{name: "cipher-suites", kind: kindStrings, def: "", topic: topicSecurity, status: implemented,
		help: "Comma-separated TLS cipher suites for clients and peers (empty lets Go choose)."},
	{name: "cors", kind: kindURLs, def: "*", topic: topicSecurity, status: unsupported, literals: []string{"*"},
		help: "Comma-separated origins allowed for cross-origin HTTP requests; '*' allows all."},
	{name: "host-whitelist", kind: kindUniqueStrings, def: "*", topic: topicSecurity, status: unsupported,
		help: "Comma-separated host names accepted in HTTP requests on an insecure port; '*' accepts all."},
	{name: "tls-min-version", kind: kindString, def: "TLS1.2", topic: topicSecurity, status: implemented,
		help: "Lowest TLS version accepted: TLS1.2 or TLS1.3."},
	{name: "tls-max-version", kind: kindString, def: "", topic: topicSecurity, status: implemented,
		help: "Highest TLS version accepted: TLS1.2 or TLS1.3 (empty lets Go choose)."},

	// Auth.
	{name: "auth-token", kind: kindString, def: "simple", topic: topicAuth, status: implemented,
		help: "Kind of auth token and its options: 'simple' or 'jwt,pub-key=...,priv-key=...,sign-method=...'."},
	{name: "bcrypt-cost", kind: kindUint, def: "10", topic: topicAuth, status: implemented,
		help: "bcrypt cost used to hash user passwords."},
	{name: "auth-token-ttl", kind: kindUint, def: "300", topic: topicAuth, status: implemented,
		help: "Seconds a simple auth token stays valid."},

	// Profiling and monitoring.
	{name: "enable-pprof", kind: kindBool, def: "false", topic: topicMonitoring, status: implemented,
		help: "Serve Go runtime profiles under /debug/pprof/ on the client port."},
	{name: "metrics", kind: kindString, def: "basic", topic: topicMonitoring, status: implemented,
		help: "Detail of the exported metrics: 'basic', or 'extensive' to add gRPC latency histograms."},
	{name: "listen-metrics-urls", kind: kindURLs, def: "", topic: topicMonitoring, status: implemented, keep: urlKeep,
		help: "Comma-separated URLs of an extra port serving only /metrics and the health endpoints."},

	// Logging.
	{name: "logger", kind: kindString, def: "zap", topic: topicLogging, status: implemented,
		help: "Logging library; only 'zap' exists."},
	{name: "log-outputs", kind: kindUniqueStrings, def: "default", topic: topicLogging, status: implemented,
		help: "Comma-separated log destinations: 'default', 'stderr', 'stdout', 'systemd/journal' or file paths."},
	{name: "log-level", kind: kindString, def: "info", topic: topicLogging, status: implemented,
		help: "Lowest level logged: debug, info, warn, error, panic or fatal."},
	{name: "log-format", kind: kindString, def: "json", topic: topicLogging, status: implemented,
		help: "Log line format: json or console."},
	{name: "enable-log-rotation", kind: kindBool, def: "false", topic: topicLogging, status: implemented,
		help: "Rotate the log file; needs exactly one file path in --log-outputs."},
	{name: "log-rotation-config-json", kind: kindString, def: `{"maxsize": 100, "maxage": 0, "maxbackups": 0, "localtime": false, "compress": false}`, topic: topicLogging, status: implemented,
		help: "Rotation settings as JSON: maxsize (MB), maxage (days), maxbackups, localtime, compress."},
	{name: "warning-unary-request-duration", kind: kindDuration, def: "300ms", topic: topicLogging, status: unsupported,
		help: "Log a warning for any unary request slower than this."},

	// Distributed tracing.
	{name: "enable-distributed-tracing", kind: kindBool, def: "false", topic: topicTracing, status: unsupported,
		help: "Export OpenTelemetry traces."},
	{name: "distributed-tracing-address", kind: kindString, def: "localhost:4317", topic: topicTracing, status: unsupported,
		help: "Address of the OpenTelemetry collector."},
	{name: "distributed-tracing-service-name", kind: kindString, def: "etcd", topic: topicTracing, status: unsupported,
		help: "Service name in the exported traces; use the same on every member."},
	{name: "distributed-tracing-instance-id", kind: kindString, def: "", topic: topicTracing, status: unsupported,
		help: "Service instance ID in the exported traces; unique per member."},
	{name: "distributed-tracing-sampling-rate", kind: kindInt, def: "0", topic: topicTracing, status: unsupported,
		help: "Spans sampled per million."},

	// Features.
	{name: "corrupt-check-time", kind: kindDuration, def: "0s", topic: topicFeatures, status: implemented,
		help: "Interval at which the leader compares every member's key-space hash and raises the CORRUPT alarm for one that differs (0 turns it off)."},
	{name: "compact-hash-check-time", kind: kindDuration, def: "1m0s", topic: topicFeatures, status: implemented,
		help: "Interval at which the leader compares the members' hashes at the latest compaction revision (with --feature-gates=CompactHashCheck=true). Must be above 0."},
	{name: "compaction-batch-limit", kind: kindInt, def: "0", topic: topicFeatures, status: unsupported,
		help: "Most revisions removed by one compaction batch."},
	{name: "compaction-sleep-interval", kind: kindDuration, def: "0s", topic: topicFeatures, status: unsupported,
		help: "Pause between two compaction batches."},
	{name: "watch-progress-notify-interval", kind: kindDuration, def: "0s", topic: topicFeatures, status: implemented,
		help: "Interval of the progress notifications sent to watchers that asked for them (0 means 10 minutes)."},
	{name: "warning-apply-duration", kind: kindDuration, def: "100ms", topic: topicFeatures, status: unsupported,
		help: "Log a warning when applying one entry takes longer than this."},
	{name: "bootstrap-defrag-threshold-megabytes", kind: kindUint, def: "0", topic: topicFeatures, status: unsupported,
		help: "Defragment at start when that frees at least this many megabytes (0 turns it off)."},
	{name: "max-learners", kind: kindInt, def: "1", topic: topicFeatures, status: unsupported,
		help: "Most learners allowed in the cluster."},
	{name: "downgrade-check-time", kind: kindDuration, def: "5s", topic: topicFeatures, status: unsupported,
		help: "Interval between two checks of a cluster downgrade."},

	// Unsafe features.
	{name: "force-new-cluster", kind: kindBool, def: "false", topic: topicUnsafe, status: unsupported,
		help: "Restart this member as the only member of a new cluster, keeping its data (disaster recovery)."},
	{name: "unsafe-no-fsync", kind: kindBool, def: "false", topic: topicUnsafe, status: unsupported,
		help: "Never fsync; a crash loses acknowledged writes (testing only)."},

	// Legacy flags: etcd accepts them and does nothing.
	{name: "cluster-active-size", kind: kindIgnored, topic: topicLegacy, status: legacy},
	{name: "cluster-remove-delay", kind: kindIgnored, topic: topicLegacy, status: legacy},
	{name: "cluster-sync-interval", kind: kindIgnored, topic: topicLegacy, status: legacy},
	{name: "config", kind: kindIgnored, topic: topicLegacy, status: legacy},
	{name: "force", kind: kindIgnored, topic: topicLegacy, status: legacy},
	{name: "max-result-buffer", kind: kindIgnored, topic: topicLegacy, status: legacy},
	{name: "max-retry-attempts", kind: kindIgnored, topic: topicLegacy, status: legacy},
	{name: "peer-heartbeat-interval", kind: kindIgnored, topic: topicLegacy, status: legacy},
	{name: "peer-election-timeout", kind: kindIgnored, topic: topicLegacy, status: legacy},
	{name: "retry-interval", kind: kindIgnored, topic: topicLegacy, status: legacy},
	{name: "snapshot", kind: kindIgnored, topic: topicLegacy, status: legacy},
	{name: "v", kind: kindIgnored, topic: topicLegacy, status: legacy},
	{name: "vv", kind: kindIgnored, topic: topicLegacy, status: legacy},
	{name: "test.coverprofile", kind: kindIgnored, topic: topicLegacy, status: legacy},
	{name: "test.outputdir", kind: kindIgnored, topic: topicLegacy, status: legacy},

	// --version is shown in the usage lines, not in a topic.
	{name: "version", kind: kindBool, def: "false", topic: -1, status: handled,
		help: "Print the version and exit."},
}
