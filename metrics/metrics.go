// Package metrics defines the Prometheus metrics of one keel member, with
// etcd 3.7's names, types and labels so that dashboards and alerts written
// for etcd (the etcd mixin) work unchanged. Metrics of keel's own use the
// prefix keel_.
//
// Every member owns a Metrics with a registry of its own, so several
// members in one process (tests) do not share or collide. The hooks are
// nil-safe: a component started without metrics (a unit test) passes nil.
package metrics

import (
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/keeldb/keel/config"
	"github.com/keeldb/keel/version"
)

// Options configure a member's metrics.
type Options struct {
	// Extensive adds the grpc_server_handling_seconds histograms
	// (--metrics extensive).
	Extensive bool
	// Features are the member's feature gates
	// (etcd_server_feature_enabled).
	Features []config.FeatureGate
}

// State reads what the scrape-time gauges report from a running member.
// Each function is called on every scrape, from the scraping goroutine, and
// must be cheap and safe for concurrent use.
type State struct {
	CommittedIndex func() uint64
	AppliedIndex   func() uint64
	// DBSize returns the database's size on disk and the part of it live
	// data takes.
	DBSize     func() (total, inUse int64)
	Rev        func() int64
	CompactRev func() int64
	// Watch returns the number of open watch streams, of watchers and of
	// watchers that lag behind the store (unsynced).
	Watch func() (streams, watchers, slow int)
	// IsLearner reports whether the member is a learner.
	IsLearner func() bool
	// Storage returns the storage engine's metrics (keel_storage_*).
	Storage func() *pebble.Metrics
	// AuthRevision returns the revision of the auth state.
	AuthRevision func() uint64
	// OpenReads returns the number of reads of the store in progress.
	OpenReads func() int64
	// PendingEvents returns the number of watch events queued and not yet
	// sent.
	PendingEvents func() int64
}

// Metrics are one member's metrics. Create with New; register the member's
// state with SetState once it runs.
type Metrics struct {
	reg   *prometheus.Registry
	state atomic.Pointer[State]

	hasLeader     prometheus.Gauge
	isLeader      prometheus.Gauge
	leaderChanges prometheus.Counter

	proposalsPending prometheus.Gauge
	proposalsFailed  prometheus.Counter

	walFsync      prometheus.Histogram
	backendCommit prometheus.Histogram
	defrag        prometheus.Histogram
	defragActive  prometheus.Gauge

	quotaBytes prometheus.Gauge
	serverID   *prometheus.GaugeVec

	applyDuration     *prometheus.HistogramVec
	slowApplies       prometheus.Counter
	snapshotApplying  prometheus.Gauge
	heartbeatFailures prometheus.Counter
	readIndexFailed   prometheus.Counter
	slowReadIndex     prometheus.Counter
	walWrite          prometheus.Histogram
	walWriteBytes     prometheus.Gauge
	hashDuration      prometheus.Histogram
	hashRevDuration   prometheus.Histogram

	leaseGranted prometheus.Counter
	leaseRevoked prometheus.Counter
	leaseRenewed prometheus.Counter
	leaseExpired prometheus.Counter
	leaseTTL     prometheus.Histogram

	requestDuration *prometheus.HistogramVec
	rangeDuration   *prometheus.HistogramVec
	clientRequests  *prometheus.CounterVec
	healthSuccess   prometheus.Counter
	healthFailed    prometheus.Counter

	knownPeers       *prometheus.GaugeVec
	disconnectedPeer *prometheus.CounterVec

	putTotal    prometheus.Counter
	deleteTotal prometheus.Counter
	txnTotal    prometheus.Counter
	rangeTotal  prometheus.Counter
	putSize     prometheus.Gauge
	events      prometheus.Counter

	peerSent      *prometheus.CounterVec
	peerReceived  *prometheus.CounterVec
	peerSendFails *prometheus.CounterVec
	peerRecvFails *prometheus.CounterVec
	peerRTT       *prometheus.HistogramVec
	activePeers   *prometheus.GaugeVec

	clientSent     prometheus.Counter
	clientReceived prometheus.Counter

	learnerPromotes prometheus.Counter
	backendSnapshot prometheus.Histogram
	snapSave        prometheus.Histogram
	snapDBSave      prometheus.Histogram
	snapDBFsync     prometheus.Histogram

	compactionTotal prometheus.Histogram
	compactionPause prometheus.Histogram
	compactionKeys  prometheus.Counter
	compactionLast  prometheus.Gauge

	watchSendControl  prometheus.Histogram
	watchSendProgress prometheus.Histogram
	watchSendEvents   prometheus.Histogram
	watchSendPerEvent prometheus.Histogram

	grpc *grpcprom.ServerMetrics
}

// etcd's latency buckets: 1ms doubling to about 8s.
var diskBuckets = prometheus.ExponentialBuckets(0.001, 2, 14)

// New creates a member's metrics in a registry of their own, with the Go
// runtime and process collectors.
func New(opts Options) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	gauge := func(ns, sub, name, help string) prometheus.Gauge {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
		m.reg.MustRegister(g)
		return g
	}
	counter := func(ns, sub, name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
		m.reg.MustRegister(c)
		return c
	}
	gaugeFunc := func(ns, sub, name, help string, f func(*State) float64) {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help},
			func() float64 {
				if s := m.state.Load(); s != nil {
					return f(s)
				}
				return 0
			}))
	}
	histogram := func(ns, sub, name, help string, buckets []float64) prometheus.Histogram {
		h := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help, Buckets: buckets})
		m.reg.MustRegister(h)
		return h
	}
	counterVec := func(name, help, label string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "etcd", Subsystem: "network", Name: name, Help: help}, []string{label})
		m.reg.MustRegister(c)
		return c
	}

	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// Server and Raft.
	m.hasLeader = gauge("etcd", "server", "has_leader", "1 while this member knows a leader, else 0.")
	m.isLeader = gauge("etcd", "server", "is_leader", "1 while this member is the leader, else 0.")
	m.leaderChanges = counter("etcd", "server", "leader_changes_seen_total", "Leader changes this member has seen.")
	gaugeFunc("etcd", "server", "proposals_committed_total", "Index of the last Raft entry known to be committed.",
		func(s *State) float64 { return float64(s.CommittedIndex()) })
	gaugeFunc("etcd", "server", "proposals_applied_total", "Index of the last Raft entry applied.",
		func(s *State) float64 { return float64(s.AppliedIndex()) })
	m.proposalsPending = gauge("etcd", "server", "proposals_pending", "Proposals of this member waiting to be applied.")
	m.proposalsFailed = counter("etcd", "server", "proposals_failed_total", "Proposals of this member that failed or timed out.")
	m.quotaBytes = gauge("etcd", "server", "quota_backend_bytes", "The space quota of the member's state, in bytes.")
	m.serverID = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "etcd", Subsystem: "server", Name: "id",
		Help: "1, labelled with this member's ID in hexadecimal."}, []string{"server_id"})
	ver := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "etcd", Subsystem: "server", Name: "version",
		Help: "1, labelled with the etcd version this member speaks."}, []string{"server_version"})
	ver.WithLabelValues(version.Etcd).Set(1)
	gover := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "etcd", Subsystem: "server", Name: "go_version",
		Help: "1, labelled with the Go version the member was built with."}, []string{"server_go_version"})
	gover.WithLabelValues(runtime.Version()).Set(1)
	keelVer := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "keel", Subsystem: "server", Name: "version",
		Help: "1, labelled with keel's own version."}, []string{"keel_version"})
	keelVer.WithLabelValues(version.Version).Set(1)
	clusterVer := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "etcd", Subsystem: "cluster", Name: "version",
		Help: "1, labelled with the cluster version."}, []string{"cluster_version"})
	clusterVer.WithLabelValues(version.Cluster).Set(1)
	m.reg.MustRegister(m.serverID, ver, gover, keelVer, clusterVer)
	gaugeFunc("etcd", "server", "is_learner", "1 while this member is a learner, else 0.",
		func(s *State) float64 { return b2f(s.IsLearner()) })
	m.applyDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "etcd", Subsystem: "server",
		Name: "apply_duration_seconds", Help: "Time to apply one committed request, by request kind and outcome.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 20)}, []string{"version", "op", "success"})
	m.reg.MustRegister(m.applyDuration)
	m.slowApplies = counter("etcd", "server", "slow_apply_total", "Committed requests that took longer than 100ms to apply.")
	m.snapshotApplying = gauge("etcd", "server", "snapshot_apply_in_progress_total", "1 while a snapshot from the leader is being installed.")
	m.heartbeatFailures = counter("etcd", "server", "heartbeat_send_failures_total", "Leader heartbeats that could not be queued for a peer.")
	m.readIndexFailed = counter("etcd", "server", "read_indexes_failed_total", "ReadIndex rounds for linearizable reads that failed.")
	m.slowReadIndex = counter("etcd", "server", "slow_read_indexes_total", "ReadIndex rounds that had to be asked again.")
	m.leaseGranted = counter("etcd_debugging", "lease", "granted_total", "Leases granted.")
	m.leaseRevoked = counter("etcd_debugging", "lease", "revoked_total", "Leases revoked.")
	m.leaseRenewed = counter("etcd_debugging", "lease", "renewed_total", "Lease renewals served by this member as leader.")
	m.leaseExpired = counter("etcd_debugging", "server", "lease_expired_total", "Expired leases this member proposed to revoke.")
	m.leaseTTL = histogram("etcd_debugging", "lease", "ttl_total", "TTLs of granted leases, in seconds.", prometheus.ExponentialBuckets(1, 2, 24))
	m.reg.MustRegister(newFDCollector(), newStorageCollector(m))
	m.requestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "etcd", Subsystem: "server",
		Name: "request_duration_seconds", Help: "Time from receiving a request to answering it, by request kind and outcome.",
		Buckets: diskBuckets}, []string{"type", "success"})
	m.rangeDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "etcd", Subsystem: "server",
		Name: "range_duration_seconds", Help: "Time to read the store for one range, by outcome.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 20)}, []string{"success"})
	m.clientRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "etcd", Subsystem: "server",
		Name: "client_requests_total", Help: "Client gRPC calls, by call type and the client's API version."},
		[]string{"type", "client_api_version"})
	m.reg.MustRegister(m.requestDuration, m.rangeDuration, m.clientRequests)
	m.healthSuccess = counter("etcd", "server", "health_success", "/health checks that found the member healthy.")
	m.healthFailed = counter("etcd", "server", "health_failures", "/health checks that found the member unhealthy.")
	features := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "etcd", Subsystem: "server", Name: "feature_enabled",
		Help: "1 for each feature gate that is on, 0 for each that is off, labelled with its name and maturity."}, []string{"name", "stage"})
	for _, f := range opts.Features {
		features.WithLabelValues(f.Name, f.Stage).Set(b2f(f.Enabled))
	}
	m.reg.MustRegister(features)
	m.learnerPromotes = counter("etcd", "server", "learner_promote_successes", "Learners promoted by this member as leader.")
	gaugeFunc("etcd_debugging", "auth", "revision", "The revision of the auth state.",
		func(s *State) float64 { return float64(s.AuthRevision()) })

	// Disk.
	m.walFsync = histogram("etcd", "disk", "wal_fsync_duration_seconds",
		"Time to write and sync Raft log entries and state to disk.", diskBuckets)
	m.backendCommit = histogram("etcd", "disk", "backend_commit_duration_seconds",
		"Time to commit one batch of applied entries to the database.", diskBuckets)
	m.defrag = histogram("etcd", "disk", "backend_defrag_duration_seconds",
		"Time a defragmentation of the database took.", prometheus.ExponentialBuckets(.1, 2, 13))
	m.defragActive = gauge("etcd", "disk", "defrag_inflight", "1 while the database is being defragmented, else 0.")
	m.walWrite = histogram("etcd", "disk", "wal_write_duration_seconds",
		"Time to write Raft log entries and state, synced or not.", diskBuckets)
	m.walWriteBytes = gauge("etcd", "disk", "wal_write_bytes_total", "Bytes of Raft log entries written since start.")
	m.hashDuration = histogram("etcd", "mvcc", "hash_duration_seconds", "Time to hash the whole store.", prometheus.ExponentialBuckets(.01, 2, 15))
	m.hashRevDuration = histogram("etcd", "mvcc", "hash_rev_duration_seconds", "Time to hash the key space at a revision.", prometheus.ExponentialBuckets(.01, 2, 15))
	m.backendSnapshot = histogram("etcd", "disk", "backend_snapshot_duration_seconds",
		"Time to write a whole snapshot of the state to a client (Maintenance.Snapshot).", prometheus.ExponentialBuckets(.01, 2, 17))
	m.snapSave = histogram("etcd", "snap", "fsync_duration_seconds",
		"Time to record a Raft snapshot and drop the log before it, synced.", diskBuckets)
	m.snapDBSave = histogram("etcd", "snap", "db_save_total_duration_seconds",
		"Time to receive and save the state sent by the leader in a Raft snapshot.", prometheus.ExponentialBuckets(.1, 2, 10))
	m.snapDBFsync = histogram("etcd", "snap", "db_fsync_duration_seconds",
		"Time to sync the state received from the leader to disk.", diskBuckets)

	// MVCC.
	gaugeFunc("etcd", "mvcc", "db_total_size_in_bytes", "Size of the database on disk, in bytes.",
		func(s *State) float64 { t, _ := s.DBSize(); return float64(t) })
	gaugeFunc("etcd", "mvcc", "db_total_size_in_use_in_bytes", "Bytes of the database on disk that hold live data.",
		func(s *State) float64 { _, u := s.DBSize(); return float64(u) })
	gaugeFunc("etcd_debugging", "mvcc", "current_revision", "The store's current revision.",
		func(s *State) float64 { return float64(s.Rev()) })
	gaugeFunc("etcd_debugging", "mvcc", "compact_revision", "The revision of the last compaction.",
		func(s *State) float64 { return float64(s.CompactRev()) })
	gaugeFunc("etcd_debugging", "mvcc", "watch_stream_total", "Open watch streams.",
		func(s *State) float64 { n, _, _ := s.Watch(); return float64(n) })
	gaugeFunc("etcd_debugging", "mvcc", "watcher_total", "Watchers on all streams.",
		func(s *State) float64 { _, n, _ := s.Watch(); return float64(n) })
	gaugeFunc("etcd_debugging", "mvcc", "slow_watcher_total", "Watchers that are behind the store's revision.",
		func(s *State) float64 { _, _, n := s.Watch(); return float64(n) })
	m.putTotal = counter("etcd", "mvcc", "put_total", "Put operations applied to the store.")
	m.deleteTotal = counter("etcd", "mvcc", "delete_total", "Delete-range operations applied to the store.")
	m.txnTotal = counter("etcd", "mvcc", "txn_total", "Transactions of more than one operation applied or read.")
	m.rangeTotal = counter("etcd", "mvcc", "range_total", "Range operations served.")
	m.putSize = gauge("etcd_debugging", "mvcc", "total_put_size_in_bytes", "Bytes of keys and values put since start.")
	m.events = counter("etcd_debugging", "mvcc", "events_total", "Events sent to watchers.")
	gaugeFunc("etcd_debugging", "mvcc", "pending_events_total", "Watch events queued and not yet sent.",
		func(s *State) float64 { return float64(s.PendingEvents()) })
	gaugeFunc("etcd", "mvcc", "db_open_read_transactions", "Reads of the store in progress.",
		func(s *State) float64 { return float64(s.OpenReads()) })
	m.compactionTotal = histogram("etcd_debugging", "mvcc", "db_compaction_total_duration_milliseconds",
		"Time a compaction took from start to end, in milliseconds.", prometheus.ExponentialBuckets(100, 2, 14))
	m.compactionPause = histogram("etcd_debugging", "mvcc", "db_compaction_pause_duration_milliseconds",
		"Time to commit one batch of a compaction's deletions, in milliseconds; writes commit after it.", prometheus.ExponentialBuckets(1, 2, 13))
	m.compactionKeys = counter("etcd_debugging", "mvcc", "db_compaction_keys_total", "Versions of keys removed by compactions.")
	m.compactionLast = gauge("etcd_debugging", "mvcc", "db_compaction_last", "Unix time the last compaction finished; 0 until one does after start.")

	// Watch streams.
	sendLoop := func(name, help string) prometheus.Histogram {
		return histogram("etcd_debugging", "server", "watch_send_loop_"+name, help, prometheus.ExponentialBuckets(0.0001, 2, 20))
	}
	m.watchSendControl = sendLoop("control_stream_duration_seconds", "Time to send a watch stream's response that creates or cancels a watcher.")
	m.watchSendProgress = sendLoop("progress_duration_seconds", "Time to send a watch stream's progress notification.")
	m.watchSendEvents = sendLoop("watch_stream_duration_seconds", "Time to send a watch stream's response with events.")
	m.watchSendPerEvent = sendLoop("watch_stream_duration_per_event_seconds", "Time to send a watch stream's response with events, divided by its events.")

	// Peers.
	m.peerSent = counterVec("peer_sent_bytes_total", "Bytes sent to each peer.", "To")
	m.peerReceived = counterVec("peer_received_bytes_total", "Bytes received from each peer.", "From")
	m.peerSendFails = counterVec("peer_sent_failures_total", "Messages to each peer that could not be sent.", "To")
	m.peerRecvFails = counterVec("peer_received_failures_total", "Streams from each peer that failed.", "From")
	m.peerRTT = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "etcd", Subsystem: "network",
		Name: "peer_round_trip_time_seconds", Help: "Time from sending a frame to a peer to its acknowledgement.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}, []string{"To"})
	m.activePeers = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "etcd", Subsystem: "network",
		Name: "active_peers", Help: "1 while the stream to a peer is up."}, []string{"Local", "Remote"})
	m.knownPeers = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "etcd", Subsystem: "network",
		Name: "known_peers", Help: "1 for each peer this member knows."}, []string{"Local", "Remote"})
	m.disconnectedPeer = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "etcd", Subsystem: "network",
		Name: "disconnected_peers_total", Help: "Times the stream to a peer went down."}, []string{"Local", "Remote"})
	m.reg.MustRegister(m.peerRTT, m.activePeers, m.knownPeers, m.disconnectedPeer)

	// Clients.
	m.clientSent = counter("etcd", "network", "client_grpc_sent_bytes_total", "Bytes of gRPC messages sent to clients.")
	m.clientReceived = counter("etcd", "network", "client_grpc_received_bytes_total", "Bytes of gRPC messages received from clients.")
	var gopts []grpcprom.ServerMetricsOption
	if opts.Extensive {
		gopts = append(gopts, grpcprom.WithServerHandlingTimeHistogram())
	}
	m.grpc = grpcprom.NewServerMetrics(gopts...)
	m.reg.MustRegister(m.grpc)
	return m
}

// Registry returns the member's registry, for /metrics.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// SetState sets what the scrape-time gauges read; until it is called they
// read 0.
func (m *Metrics) SetState(s State) {
	if m != nil {
		m.state.Store(&s)
	}
}

// SetMember records this member's ID and space quota (etcd_server_id,
// etcd_server_quota_backend_bytes).
func (m *Metrics) SetMember(id uint64, quotaBytes int64) {
	if m == nil {
		return
	}
	m.serverID.Reset()
	m.serverID.WithLabelValues(HexID(id)).Set(1)
	m.quotaBytes.Set(float64(quotaBytes))
}

// HexID formats a member ID as etcd's metric labels do.
func HexID(id uint64) string { return strconv.FormatUint(id, 16) }

// LeaderChanged records the leader the Raft loop now knows (0: none), and
// whether this member leads. changed says the leader differs from the one
// known before.
func (m *Metrics) LeaderChanged(lead uint64, isLeader, changed bool) {
	if m == nil {
		return
	}
	if changed && lead != 0 {
		m.leaderChanges.Inc()
	}
	m.hasLeader.Set(b2f(lead != 0))
	m.isLeader.Set(b2f(isLeader))
}

// WALSaved records how long persisting a Raft Ready took, whether it was
// synced (then it also counts as an fsync), and the bytes of its entries.
func (m *Metrics) WALSaved(d time.Duration, synced bool, bytes int) {
	if m == nil {
		return
	}
	m.walWrite.Observe(d.Seconds())
	if synced {
		m.walFsync.Observe(d.Seconds())
	}
	m.walWriteBytes.Add(float64(bytes))
}

// Request records a client request of kind typ ("Range", "ReadonlyTxn",
// "Put", ...) answered after d.
func (m *Metrics) Request(typ string, success bool, d time.Duration) {
	if m != nil {
		m.requestDuration.WithLabelValues(typ, strconv.FormatBool(success)).Observe(d.Seconds())
	}
}

// RangeRead records how long reading the store for a range took.
func (m *Metrics) RangeRead(success bool, d time.Duration) {
	if m != nil {
		m.rangeDuration.WithLabelValues(strconv.FormatBool(success)).Observe(d.Seconds())
	}
}

// Health counts a /health check and its outcome.
func (m *Metrics) Health(healthy bool) {
	if m == nil {
		return
	}
	if healthy {
		m.healthSuccess.Inc()
	} else {
		m.healthFailed.Inc()
	}
}

// slowApply is etcd's threshold of a slow apply.
const slowApply = 100 * time.Millisecond

// Applied records the application of one committed request of kind op
// (etcd's names: "Put", "LeaseGrant", ...).
func (m *Metrics) Applied(op string, success bool, d time.Duration) {
	if m == nil {
		return
	}
	m.applyDuration.WithLabelValues("v3", op, strconv.FormatBool(success)).Observe(d.Seconds())
	if d > slowApply {
		m.slowApplies.Inc()
	}
}

// SnapshotApplying marks a snapshot install running; call the result when
// it ends.
func (m *Metrics) SnapshotApplying() (done func()) {
	if m == nil {
		return func() {}
	}
	m.snapshotApplying.Set(1)
	return func() { m.snapshotApplying.Set(0) }
}

// HeartbeatSendFailed counts a leader heartbeat that was dropped.
func (m *Metrics) HeartbeatSendFailed() {
	if m != nil {
		m.heartbeatFailures.Inc()
	}
}

// ReadIndexFailed counts a failed ReadIndex round; ReadIndexSlow one that
// had to be asked again.
func (m *Metrics) ReadIndexFailed() {
	if m != nil {
		m.readIndexFailed.Inc()
	}
}

// ReadIndexSlow: see ReadIndexFailed.
func (m *Metrics) ReadIndexSlow() {
	if m != nil {
		m.slowReadIndex.Inc()
	}
}

// Hashed records how long a hash of the store took; atRev says it was a
// HashKV at a revision (etcd_mvcc_hash_rev_duration_seconds) rather than
// a hash of everything.
func (m *Metrics) Hashed(atRev bool, d time.Duration) {
	if m == nil {
		return
	}
	if atRev {
		m.hashRevDuration.Observe(d.Seconds())
	} else {
		m.hashDuration.Observe(d.Seconds())
	}
}

// LeaseGranted counts an applied lease grant of ttl seconds.
func (m *Metrics) LeaseGranted(ttl int64) {
	if m != nil {
		m.leaseGranted.Inc()
		m.leaseTTL.Observe(float64(ttl))
	}
}

// LeaseRevoked counts an applied lease revocation.
func (m *Metrics) LeaseRevoked() {
	if m != nil {
		m.leaseRevoked.Inc()
	}
}

// LeaseRenewed counts a renewal served as leader.
func (m *Metrics) LeaseRenewed() {
	if m != nil {
		m.leaseRenewed.Inc()
	}
}

// LeaseExpired counts an expired lease whose revocation was proposed.
func (m *Metrics) LeaseExpired() {
	if m != nil {
		m.leaseExpired.Inc()
	}
}

// PeerKnown records that local knows peer remote (or no longer does).
func (m *Metrics) PeerKnown(local, remote uint64, known bool) {
	if m == nil {
		return
	}
	if known {
		m.knownPeers.WithLabelValues(HexID(local), HexID(remote)).Set(1)
	} else {
		m.knownPeers.DeleteLabelValues(HexID(local), HexID(remote))
	}
}

// BackendCommit records how long committing an apply batch took.
func (m *Metrics) BackendCommit(d time.Duration) {
	if m != nil {
		m.backendCommit.Observe(d.Seconds())
	}
}

// DefragStarted marks a defragmentation running; the returned function
// records its end and duration.
func (m *Metrics) DefragStarted() (done func()) {
	if m == nil {
		return func() {}
	}
	start := time.Now()
	m.defragActive.Set(1)
	return func() {
		m.defragActive.Set(0)
		m.defrag.Observe(time.Since(start).Seconds())
	}
}

// ProposalStarted counts a proposal pending; the returned function ends it,
// counting a failure when failed.
func (m *Metrics) ProposalStarted() (done func(failed bool)) {
	if m == nil {
		return func(bool) {}
	}
	m.proposalsPending.Inc()
	return func(failed bool) {
		m.proposalsPending.Dec()
		if failed {
			m.proposalsFailed.Inc()
		}
	}
}

// Ops counts store operations: one apply batch's or one read's ranges,
// puts (with the bytes of their keys and values) and deletes. A request of
// more than one operation counts as a txn, as in etcd.
type Ops struct {
	Ranges, Puts, Deletes int
	PutBytes              int64
}

// StoreOps records ops.
func (m *Metrics) StoreOps(o Ops) {
	if m == nil {
		return
	}
	if o.Ranges+o.Puts+o.Deletes > 1 {
		m.txnTotal.Inc()
	}
	m.rangeTotal.Add(float64(o.Ranges))
	m.putTotal.Add(float64(o.Puts))
	m.deleteTotal.Add(float64(o.Deletes))
	m.putSize.Add(float64(o.PutBytes))
}

// WatchEvents counts n events sent to a watcher.
func (m *Metrics) WatchEvents(n int) {
	if m != nil {
		m.events.Add(float64(n))
	}
}

// PeerSent counts bytes sent to peer to.
func (m *Metrics) PeerSent(to uint64, n int) {
	if m != nil {
		m.peerSent.WithLabelValues(HexID(to)).Add(float64(n))
	}
}

// PeerReceived counts bytes received from peer from.
func (m *Metrics) PeerReceived(from uint64, n int) {
	if m != nil {
		m.peerReceived.WithLabelValues(HexID(from)).Add(float64(n))
	}
}

// PeerSendFailed counts n messages to peer to that were dropped.
func (m *Metrics) PeerSendFailed(to uint64, n int) {
	if m != nil {
		m.peerSendFails.WithLabelValues(HexID(to)).Add(float64(n))
	}
}

// PeerReceiveFailed counts a failed stream from peer from.
func (m *Metrics) PeerReceiveFailed(from uint64) {
	if m != nil {
		m.peerRecvFails.WithLabelValues(HexID(from)).Inc()
	}
}

// PeerRTT records a round trip to peer to.
func (m *Metrics) PeerRTT(to uint64, d time.Duration) {
	if m != nil {
		m.peerRTT.WithLabelValues(HexID(to)).Observe(d.Seconds())
	}
}

// PeerActive records whether the stream from local to remote is up; a
// stream that goes down counts as a disconnection.
func (m *Metrics) PeerActive(local, remote uint64, up bool) {
	if m == nil {
		return
	}
	m.activePeers.WithLabelValues(HexID(local), HexID(remote)).Set(b2f(up))
	if !up {
		m.disconnectedPeer.WithLabelValues(HexID(local), HexID(remote)).Inc()
	}
}

// LearnerPromoted counts a learner this member promoted as leader.
func (m *Metrics) LearnerPromoted() {
	if m != nil {
		m.learnerPromotes.Inc()
	}
}

// BackendSnapshot records how long writing a snapshot for a client took.
func (m *Metrics) BackendSnapshot(d time.Duration) {
	if m != nil {
		m.backendSnapshot.Observe(d.Seconds())
	}
}

// SnapshotSaved records how long recording a Raft snapshot took.
func (m *Metrics) SnapshotSaved(d time.Duration) {
	if m != nil {
		m.snapSave.Observe(d.Seconds())
	}
}

// SnapshotReceived records how long receiving and saving the state of a
// Raft snapshot from the leader took, and how long its sync took.
func (m *Metrics) SnapshotReceived(total, sync time.Duration) {
	if m != nil {
		m.snapDBSave.Observe(total.Seconds())
		m.snapDBFsync.Observe(sync.Seconds())
	}
}

// CompactionBatch records the commit of one batch of a compaction.
func (m *Metrics) CompactionBatch(commit time.Duration) {
	if m != nil {
		m.compactionPause.Observe(float64(commit) / float64(time.Millisecond))
	}
}

// Compacted records a finished compaction that removed versions and took
// took.
func (m *Metrics) Compacted(versions int, took time.Duration) {
	if m == nil {
		return
	}
	m.compactionTotal.Observe(float64(took) / float64(time.Millisecond))
	m.compactionKeys.Add(float64(versions))
	m.compactionLast.Set(float64(time.Now().Unix()))
}

// WatchResponse is the kind of a watch stream's response.
type WatchResponse int

// The kinds of watch responses.
const (
	WatchControl  WatchResponse = iota // a watcher created or cancelled
	WatchProgress                      // a progress notification
	WatchEvents                        // events
)

// WatchSent records how long sending a watch response of kind k with
// events events took.
func (m *Metrics) WatchSent(k WatchResponse, events int, d time.Duration) {
	if m == nil {
		return
	}
	switch k {
	case WatchControl:
		m.watchSendControl.Observe(d.Seconds())
	case WatchProgress:
		m.watchSendProgress.Observe(d.Seconds())
	case WatchEvents:
		m.watchSendEvents.Observe(d.Seconds())
		if events > 0 {
			m.watchSendPerEvent.Observe(d.Seconds() / float64(events))
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
