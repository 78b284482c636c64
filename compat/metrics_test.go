//go:build linux

package compat

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// metricsFamilies are the families the etcd mixin's dashboards and alerts
// read, and those keel fills besides: keel must expose each exactly as
// etcd 3.7.3 does (name, type, label names) whenever etcd does.
var metricsFamilies = []string{
	"etcd_server_has_leader", "etcd_server_is_leader", "etcd_server_leader_changes_seen_total",
	"etcd_server_proposals_committed_total", "etcd_server_proposals_applied_total",
	"etcd_server_proposals_pending", "etcd_server_proposals_failed_total",
	"etcd_server_id", "etcd_server_version", "etcd_server_go_version", "etcd_server_quota_backend_bytes",
	"etcd_disk_wal_fsync_duration_seconds", "etcd_disk_backend_commit_duration_seconds",
	"etcd_disk_backend_defrag_duration_seconds", "etcd_disk_defrag_inflight",
	"etcd_mvcc_db_total_size_in_bytes", "etcd_mvcc_db_total_size_in_use_in_bytes",
	"etcd_mvcc_put_total", "etcd_mvcc_delete_total", "etcd_mvcc_range_total", "etcd_mvcc_txn_total",
	"etcd_debugging_mvcc_watcher_total", "etcd_debugging_mvcc_watch_stream_total",
	"etcd_debugging_mvcc_slow_watcher_total", "etcd_debugging_mvcc_current_revision",
	"etcd_debugging_mvcc_compact_revision", "etcd_debugging_mvcc_total_put_size_in_bytes",
	"etcd_network_peer_round_trip_time_seconds", "etcd_network_peer_sent_bytes_total",
	"etcd_network_peer_received_bytes_total", "etcd_network_peer_sent_failures_total",
	"etcd_network_active_peers",
	"etcd_network_client_grpc_sent_bytes_total", "etcd_network_client_grpc_received_bytes_total",
	"grpc_server_started_total", "grpc_server_handled_total", "grpc_server_msg_received_total",
	"grpc_server_msg_sent_total", "grpc_server_handling_seconds",
	"process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds", "process_max_fds",
	"process_start_time_seconds", "process_virtual_memory_bytes",
	"go_goroutines", "go_threads", "go_memstats_alloc_bytes", "go_gc_duration_seconds", "go_info",
	"etcd_server_is_learner", "etcd_cluster_version", "etcd_server_apply_duration_seconds",
	"etcd_server_slow_apply_total", "etcd_server_snapshot_apply_in_progress_total",
	"etcd_server_heartbeat_send_failures_total", "etcd_server_read_indexes_failed_total",
	"etcd_server_slow_read_indexes_total", "etcd_disk_wal_write_duration_seconds", "etcd_disk_wal_write_bytes_total",
	"etcd_mvcc_hash_duration_seconds", "etcd_mvcc_hash_rev_duration_seconds",
	"etcd_debugging_lease_granted_total", "etcd_debugging_lease_revoked_total", "etcd_debugging_lease_renewed_total",
	"etcd_debugging_lease_ttl_total", "etcd_debugging_server_lease_expired_total",
	"etcd_network_known_peers", "etcd_network_disconnected_peers_total", "os_fd_used", "os_fd_limit",
	"etcd_server_client_requests_total", "etcd_server_request_duration_seconds",
	"etcd_server_range_duration_seconds", "etcd_server_health_success", "etcd_server_health_failures",
	"etcd_debugging_mvcc_events_total",
	// Not in the mixin; keel has them too.
	"etcd_server_feature_enabled", "etcd_server_learner_promote_successes", "etcd_debugging_auth_revision",
	"etcd_disk_backend_snapshot_duration_seconds", "etcd_snap_fsync_duration_seconds",
	"etcd_snap_db_save_total_duration_seconds", "etcd_snap_db_fsync_duration_seconds",
	"etcd_debugging_mvcc_db_compaction_total_duration_milliseconds",
	"etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds",
	"etcd_debugging_mvcc_db_compaction_keys_total", "etcd_debugging_mvcc_db_compaction_last",
	"etcd_debugging_mvcc_pending_events_total", "etcd_mvcc_db_open_read_transactions",
	"etcd_debugging_server_watch_send_loop_control_stream_duration_seconds",
	"etcd_debugging_server_watch_send_loop_progress_duration_seconds",
	"etcd_debugging_server_watch_send_loop_watch_stream_duration_seconds",
	"etcd_debugging_server_watch_send_loop_watch_stream_duration_per_event_seconds",
}

// lateInEtcd are the shapes, from etcd 3.7.3's source, of families etcd
// fills only after a while: it records the peer round trip time every 30
// seconds (its status monitoring interval), longer than the scenario runs.
var lateInEtcd = map[string]familyShape{
	"etcd_network_peer_round_trip_time_seconds": {dto.MetricType_HISTOGRAM, "To"},
}

// familyShape is a family's type and the sorted label names of its series
// (without a histogram's le), which is what a query depends on.
type familyShape struct {
	typ    dto.MetricType
	labels string
}

func (f familyShape) String() string { return fmt.Sprintf("%v{%s}", f.typ, f.labels) }

// scrapeShapes fetches url+"/metrics" and returns the shape of every family.
func scrapeShapes(t *testing.T, url string) map[string]familyShape {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse the metrics of %s: %v", url, err)
	}
	out := map[string]familyShape{}
	for name, f := range fams {
		seen := map[string]bool{}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				seen[l.GetName()] = true
			}
		}
		var labels []string
		for l := range seen {
			labels = append(labels, l)
		}
		sort.Strings(labels)
		out[name] = familyShape{f.GetType(), strings.Join(labels, ",")}
	}
	return out
}

// metricsScenario runs a three-member cluster of kind with --metrics
// extensive and --listen-metrics-urls on m1, puts a small load with
// etcdctl, and returns the union of the families the members' client
// ports expose, and the families m1's metrics port exposes.
func metricsScenario(t *testing.T, kind serverKind) (client, metricsPort map[string]familyShape) {
	var c *cluster
	var metricsURL string
	for attempt := 1; ; attempt++ {
		c = newCluster(t, kind, "")
		m1, m2, m3 := c.newMember("m1"), c.newMember("m2"), c.newMember("m3")
		metricsURL = localURLString(freePort(t))
		initial := fmt.Sprintf("m1=%s,m2=%s,m3=%s", m1.peer, m2.peer, m3.peer)
		for _, m := range []*member{m1, m2, m3} {
			m.args = []string{"--initial-cluster=" + initial, "--initial-cluster-token=metrics", "--metrics=extensive"}
		}
		m1.args = append(m1.args, "--listen-metrics-urls="+metricsURL)
		if startBootstrapCluster(c) {
			break
		}
		if attempt == startAttempts {
			t.Fatalf("%s: ports taken %d times in a row", kind, attempt)
		}
	}
	all := c.live()
	c.waitLeader(all)
	for i := range 20 {
		c.mustCtl(all, "put", fmt.Sprintf("k%d", i), "v")
	}
	c.mustCtl(all, "del", "k0")
	c.mustCtl(all, "get", "k", "--prefix")
	c.mustCtl(all[:1], "defrag")
	// A follower's sent failures need a peer to fail: stop m3 and give
	// the others a few heartbeats to notice.
	m3 := c.member("m3")
	m3.stop()
	deadline := time.Now().Add(convergeTimeout)
	client = map[string]familyShape{}
	for {
		for _, m := range all[:2] {
			for name, f := range scrapeShapes(t, m.client) {
				client[name] = f
			}
		}
		if _, ok := client["etcd_network_peer_sent_failures_total"]; ok || time.Now().After(deadline) {
			break
		}
		time.Sleep(pollEvery) // poll interval
	}
	return client, scrapeShapes(t, metricsURL)
}

// TestMetricsFamiliesMatchEtcd compares the names, types and label names
// of the families etcd 3.7.3 and keel expose under the same load (the
// values differ): dashboards and alerts written for etcd then work on keel.
func TestMetricsFamiliesMatchEtcd(t *testing.T) {
	etcd, etcdPort := metricsScenario(t, kindEtcd)
	keel, keelPort := metricsScenario(t, kindKeel)
	for _, name := range metricsFamilies {
		e, inEtcd := etcd[name]
		k, inKeel := keel[name]
		switch {
		case !inEtcd && !inKeel:
			t.Errorf("%s: neither etcd nor keel exposes it (the scenario does not exercise it)", name)
		case !inEtcd && lateInEtcd[name] != (familyShape{}):
			if k != lateInEtcd[name] {
				t.Errorf("%s: keel %v, etcd's source %v", name, k, lateInEtcd[name])
			}
		case !inEtcd:
			t.Errorf("%s: keel exposes %v, etcd does not", name, k)
		case !inKeel:
			t.Errorf("%s: etcd exposes %v, keel does not", name, e)
		case e != k:
			t.Errorf("%s: etcd %v, keel %v", name, e, k)
		}
	}
	for _, name := range []string{"etcd_server_has_leader", "etcd_disk_wal_fsync_duration_seconds", "grpc_server_handled_total"} {
		if etcdPort[name] != keelPort[name] || etcdPort[name] != etcd[name] {
			t.Errorf("%s on the metrics port: etcd %v, keel %v", name, etcdPort[name], keelPort[name])
		}
	}
	// What else etcd has, for the record (keel does not claim it).
	var missing []string
	for name := range etcd {
		if _, ok := keel[name]; !ok {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	t.Logf("etcd families keel does not expose (%d): %s", len(missing), strings.Join(missing, " "))
}
