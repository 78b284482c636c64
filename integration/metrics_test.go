package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keeldb/keel/config"
	"github.com/keeldb/keel/internal/keeltest"
	"github.com/keeldb/keel/metrics"
)

// metricFamily is what a family must look like: its type and the names of
// its labels (without a histogram's le), as etcd 3.7 exposes them.
type metricFamily struct {
	typ    dto.MetricType
	labels []string
}

var (
	gauge     = dto.MetricType_GAUGE
	counter   = dto.MetricType_COUNTER
	histogram = dto.MetricType_HISTOGRAM
	grpcLbls  = []string{"grpc_method", "grpc_service", "grpc_type"}
)

// etcdFamilies are the families operators' dashboards and alerts (the etcd
// mixin) read, with etcd 3.7.3's types and labels.
var etcdFamilies = map[string]metricFamily{
	"etcd_server_has_leader":                        {gauge, nil},
	"etcd_server_is_leader":                         {gauge, nil},
	"etcd_server_leader_changes_seen_total":         {counter, nil},
	"etcd_server_proposals_committed_total":         {gauge, nil},
	"etcd_server_proposals_applied_total":           {gauge, nil},
	"etcd_server_proposals_pending":                 {gauge, nil},
	"etcd_server_proposals_failed_total":            {counter, nil},
	"etcd_server_id":                                {gauge, []string{"server_id"}},
	"etcd_server_version":                           {gauge, []string{"server_version"}},
	"etcd_server_go_version":                        {gauge, []string{"server_go_version"}},
	"etcd_server_quota_backend_bytes":               {gauge, nil},
	"etcd_disk_wal_fsync_duration_seconds":          {histogram, nil},
	"etcd_disk_backend_commit_duration_seconds":     {histogram, nil},
	"etcd_disk_backend_defrag_duration_seconds":     {histogram, nil},
	"etcd_disk_defrag_inflight":                     {gauge, nil},
	"etcd_mvcc_db_total_size_in_bytes":              {gauge, nil},
	"etcd_mvcc_db_total_size_in_use_in_bytes":       {gauge, nil},
	"etcd_mvcc_put_total":                           {counter, nil},
	"etcd_mvcc_delete_total":                        {counter, nil},
	"etcd_mvcc_range_total":                         {counter, nil},
	"etcd_mvcc_txn_total":                           {counter, nil},
	"etcd_debugging_mvcc_watcher_total":             {gauge, nil},
	"etcd_debugging_mvcc_watch_stream_total":        {gauge, nil},
	"etcd_debugging_mvcc_slow_watcher_total":        {gauge, nil},
	"etcd_debugging_mvcc_current_revision":          {gauge, nil},
	"etcd_debugging_mvcc_compact_revision":          {gauge, nil},
	"etcd_debugging_mvcc_total_put_size_in_bytes":   {gauge, nil},
	"etcd_network_peer_round_trip_time_seconds":     {histogram, []string{"To"}},
	"etcd_network_peer_sent_bytes_total":            {counter, []string{"To"}},
	"etcd_network_peer_received_bytes_total":        {counter, []string{"From"}},
	"etcd_network_active_peers":                     {gauge, []string{"Local", "Remote"}},
	"etcd_network_client_grpc_sent_bytes_total":     {counter, nil},
	"etcd_network_client_grpc_received_bytes_total": {counter, nil},
	"grpc_server_started_total":                     {counter, grpcLbls},
	"grpc_server_handled_total":                     {counter, append([]string{"grpc_code"}, grpcLbls...)},
	"grpc_server_msg_received_total":                {counter, grpcLbls},
	"grpc_server_msg_sent_total":                    {counter, grpcLbls},
	"process_resident_memory_bytes":                 {gauge, nil},
	"process_cpu_seconds_total":                     {counter, nil},
	"process_open_fds":                              {gauge, nil},
	"go_goroutines":                                 {gauge, nil},
	"go_memstats_alloc_bytes":                       {gauge, nil},
	"etcd_server_is_learner":                        {gauge, nil},
	"etcd_cluster_version":                          {gauge, []string{"cluster_version"}},
	"etcd_server_apply_duration_seconds":            {histogram, []string{"op", "success", "version"}},
	"etcd_server_slow_apply_total":                  {counter, nil},
	"etcd_server_snapshot_apply_in_progress_total":  {gauge, nil},
	"etcd_server_heartbeat_send_failures_total":     {counter, nil},
	"etcd_server_read_indexes_failed_total":         {counter, nil},
	"etcd_server_slow_read_indexes_total":           {counter, nil},
	"etcd_disk_wal_write_duration_seconds":          {histogram, nil},
	"etcd_disk_wal_write_bytes_total":               {gauge, nil},
	"etcd_mvcc_hash_duration_seconds":               {histogram, nil},
	"etcd_mvcc_hash_rev_duration_seconds":           {histogram, nil},
	"etcd_debugging_lease_granted_total":            {counter, nil},
	"etcd_debugging_lease_revoked_total":            {counter, nil},
	"etcd_debugging_lease_renewed_total":            {counter, nil},
	"etcd_debugging_lease_ttl_total":                {histogram, nil},
	"etcd_debugging_server_lease_expired_total":     {counter, nil},
	"etcd_network_known_peers":                      {gauge, []string{"Local", "Remote"}},
	"os_fd_used":                                    {gauge, nil},
	"os_fd_limit":                                   {gauge, nil},
	"etcd_server_client_requests_total":             {counter, []string{"client_api_version", "type"}},
	"etcd_server_request_duration_seconds":          {histogram, []string{"success", "type"}},
	"etcd_server_range_duration_seconds":            {histogram, []string{"success"}},
	"etcd_server_health_success":                    {counter, nil},
	"etcd_server_health_failures":                   {counter, nil},
	"etcd_debugging_mvcc_events_total":              {counter, nil},
}

// keelFamilies are keel's own families (keel_*).
var keelFamilies = map[string]metricFamily{
	"keel_server_version":                   {gauge, []string{"keel_version"}},
	"keel_storage_read_amplification":       {gauge, nil},
	"keel_storage_compaction_debt_bytes":    {gauge, nil},
	"keel_storage_compactions_in_progress":  {gauge, nil},
	"keel_storage_compactions_total":        {counter, nil},
	"keel_storage_flushes_total":            {counter, nil},
	"keel_storage_memtable_bytes":           {gauge, nil},
	"keel_storage_tables_bytes":             {gauge, nil},
	"keel_storage_wal_bytes":                {gauge, nil},
	"keel_storage_block_cache_bytes":        {gauge, nil},
	"keel_storage_block_cache_hits_total":   {counter, nil},
	"keel_storage_block_cache_misses_total": {counter, nil},
}

// scrape fetches and parses the metrics at base+"/metrics".
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape %s: %s: %s", base, resp.Status, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse the metrics of %s: %v", base, err)
	}
	return fams
}

// checkFamily checks that fams holds name with the type and label names
// want says.
func checkFamily(t *testing.T, who string, fams map[string]*dto.MetricFamily, name string, want metricFamily) {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Errorf("%s: family %s missing", who, name)
		return
	}
	if f.GetType() != want.typ {
		t.Errorf("%s: %s has type %v, want %v", who, name, f.GetType(), want.typ)
	}
	wantLabels := slices.Clone(want.labels)
	sort.Strings(wantLabels)
	for _, m := range f.GetMetric() {
		var got []string
		for _, l := range m.GetLabel() {
			got = append(got, l.GetName())
		}
		sort.Strings(got)
		if !slices.Equal(got, wantLabels) {
			t.Errorf("%s: %s has labels %v, want %v", who, name, got, wantLabels)
			return
		}
	}
}

// value sums the samples of family name whose labels include match (a
// histogram's sample count).
func value(fams map[string]*dto.MetricFamily, name string, match map[string]string) float64 {
	var sum float64
	for _, m := range fams[name].GetMetric() {
		ok := true
		for k, v := range match {
			if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == k && l.GetValue() == v }) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		switch {
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

// put writes n keys through the official client.
func putLoad(t *testing.T, cli *clientv3.Client, prefix string, n int) {
	t.Helper()
	for i := range n {
		if _, err := cli.Put(ctx(t), fmt.Sprintf("%s/%d", prefix, i), strings.Repeat("v", 100)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cli.Delete(ctx(t), prefix+"/0"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Get(ctx(t), prefix, clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
}

// TestMetricsDuringLoad scrapes every member of a three-member cluster
// before and after a write load, on the client port and on
// --listen-metrics-urls, and checks etcd's families and that they move.
func TestMetricsDuringLoad(t *testing.T) {
	c := keeltest.StartCluster(t, 3, keeltest.WithConfig(func(cfg *config.Config) {
		cfg.Metrics = "extensive"
		cfg.ListenMetricsURLs = []url.URL{{Scheme: "http", Host: "127.0.0.1:0"}}
	}))
	c.Leader(t)
	cli := c.NewClient(t)
	putLoad(t, cli, "warmup", 5)
	// A watcher, so that the watch gauges count one.
	wctx, cancel := clientv3.WithRequireLeader(ctx(t)), func() {}
	defer cancel()
	wch := cli.Watch(wctx, "watched")
	if _, err := cli.Put(ctx(t), "watched", "x"); err != nil {
		t.Fatal(err)
	}
	<-wch

	members := c.Running()
	before := make([]map[string]*dto.MetricFamily, len(members))
	for i, m := range members {
		before[i] = scrape(t, m.Endpoint)
	}
	putLoad(t, cli, "load", 50)
	// Followers apply what the leader committed a moment later: wait for
	// every member to have applied the last write before the second scrape.
	waitServes(t, members[0], "load/49")
	waitServes(t, members[1], "load/49")
	waitServes(t, members[2], "load/49")

	families := etcdFamilies
	families["grpc_server_handling_seconds"] = metricFamily{histogram, grpcLbls} // --metrics extensive
	leaders := 0.0
	for i, m := range members {
		who := m.Config.Name
		after := scrape(t, m.Endpoint)
		for name, want := range families {
			checkFamily(t, who, after, name, want)
		}
		for name, want := range keelFamilies {
			checkFamily(t, who, after, name, want)
		}
		if v := value(after, "keel_storage_memtable_bytes", nil); v <= 0 {
			t.Errorf("%s: keel_storage_memtable_bytes = %v", who, v)
		}
		if v := value(after, "etcd_server_has_leader", nil); v != 1 {
			t.Errorf("%s: etcd_server_has_leader = %v, want 1", who, v)
		}
		leaders += value(after, "etcd_server_is_leader", nil)
		if v := value(after, "etcd_server_id", map[string]string{"server_id": metrics.HexID(m.Server.MemberID())}); v != 1 {
			t.Errorf("%s: etcd_server_id for its own ID = %v, want 1", who, v)
		}
		for _, name := range []string{
			"etcd_server_proposals_committed_total", "etcd_server_proposals_applied_total",
			"etcd_disk_wal_fsync_duration_seconds", "etcd_disk_backend_commit_duration_seconds",
			"etcd_network_peer_sent_bytes_total", "etcd_network_peer_received_bytes_total",
			"etcd_mvcc_put_total", "etcd_debugging_mvcc_current_revision",
			"etcd_disk_wal_write_duration_seconds", "etcd_disk_wal_write_bytes_total", "etcd_server_apply_duration_seconds",
		} {
			if b, a := value(before[i], name, nil), value(after, name, nil); a <= b {
				t.Errorf("%s: %s did not grow under load: %v then %v", who, name, b, a)
			}
		}
		if v := value(after, "etcd_mvcc_db_total_size_in_bytes", nil); v <= 0 {
			t.Errorf("%s: etcd_mvcc_db_total_size_in_bytes = %v", who, v)
		}
		if v := value(after, "etcd_mvcc_delete_total", nil); v < 2 {
			t.Errorf("%s: etcd_mvcc_delete_total = %v, want at least 2", who, v)
		}
		if v := value(after, "etcd_server_apply_duration_seconds", map[string]string{"op": "Put", "success": "true", "version": "v3"}); v < 50 {
			t.Errorf("%s: etcd_server_apply_duration_seconds{op=Put} counted %v puts, want at least 50", who, v)
		}
		if v := value(after, "etcd_network_known_peers", nil); v != 2 {
			t.Errorf("%s: etcd_network_known_peers = %v, want 2", who, v)
		}
		if v := value(after, "etcd_network_peer_round_trip_time_seconds", nil); v == 0 {
			t.Errorf("%s: no peer round trip observed", who)
		}
		if v := value(after, "etcd_server_quota_backend_bytes", nil); v != 2<<30 {
			t.Errorf("%s: etcd_server_quota_backend_bytes = %v, want the 2 GiB default", who, v)
		}
		if v := value(after, "etcd_server_proposals_pending", nil); v != 0 {
			t.Errorf("%s: etcd_server_proposals_pending = %v with no request in flight", who, v)
		}
		// The checks below count client requests: only the members the
		// client talked to see them.
		if value(after, "grpc_server_started_total", nil) == 0 {
			continue
		}
		put := map[string]string{"grpc_method": "Put", "grpc_service": "etcdserverpb.KV", "grpc_type": "unary", "grpc_code": "OK"}
		if b, a := value(before[i], "grpc_server_handled_total", put), value(after, "grpc_server_handled_total", put); a <= b {
			t.Errorf("%s: grpc_server_handled_total{Put,OK} did not grow: %v then %v", who, b, a)
		}
		putReq := map[string]string{"type": "Put", "success": "true"}
		if b, a := value(before[i], "etcd_server_request_duration_seconds", putReq), value(after, "etcd_server_request_duration_seconds", putReq); a <= b {
			t.Errorf("%s: etcd_server_request_duration_seconds{type=Put} did not grow: %v then %v", who, b, a)
		}
		for _, name := range []string{"etcd_network_client_grpc_received_bytes_total", "etcd_network_client_grpc_sent_bytes_total",
			"etcd_server_client_requests_total"} {
			if b, a := value(before[i], name, nil), value(after, name, nil); a <= b {
				t.Errorf("%s: %s did not grow: %v then %v", who, name, b, a)
			}
		}
	}
	events, watchers := 0.0, 0.0
	for _, m := range members {
		fams := scrape(t, m.Endpoint)
		events += value(fams, "etcd_debugging_mvcc_events_total", nil)
		watchers += value(fams, "etcd_debugging_mvcc_watcher_total", nil)
	}
	if events < 1 || watchers != 1 {
		t.Errorf("with one watcher that got one event: events_total %v, watcher_total %v over the members", events, watchers)
	}
	if leaders != 1 {
		t.Errorf("etcd_server_is_leader sums to %v over the members, want 1", leaders)
	}
	// Every method is listed before it is called, as etcd initialises them.
	unknown := map[string]string{"grpc_method": "MoveLeader", "grpc_code": "OK"}
	if _, ok := findSample(scrape(t, members[0].Endpoint), "grpc_server_handled_total", unknown); !ok {
		t.Error("grpc_server_handled_total has no zero series for an uncalled method (Maintenance.MoveLeader)")
	}

	// The metrics port serves the same registry, and /health.
	for _, m := range members {
		urls := m.Server.MetricsURLs()
		if len(urls) != 1 {
			t.Fatalf("%s: metrics URLs %v", m.Config.Name, urls)
		}
		fams := scrape(t, urls[0])
		checkFamily(t, m.Config.Name+" metrics port", fams, "etcd_server_has_leader", etcdFamilies["etcd_server_has_leader"])
		resp, err := http.Get(urls[0] + "/health")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"health":"true"`) {
			t.Errorf("%s: /health on the metrics port: %s %s", m.Config.Name, resp.Status, body)
		}
		if v := value(scrape(t, urls[0]), "etcd_server_health_success", nil); v < 1 {
			t.Errorf("%s: etcd_server_health_success = %v after a healthy /health", m.Config.Name, v)
		}
		// The probes too: a static pod points kubelet at this port.
		for _, path := range []string{"/livez", "/readyz", "/readyz/linearizable_read"} {
			resp, err := http.Get(urls[0] + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
				t.Errorf("%s: %s on the metrics port: %s %q", m.Config.Name, path, resp.Status, body)
			}
		}
		resp, err = http.Get(urls[0] + "/v3/kv/range")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: the metrics port serves /v3/kv/range: %s", m.Config.Name, resp.Status)
		}
	}

	// A stopped follower: the leader counts its failures to reach it.
	lead := c.Leader(t)
	stopped := followers(t, c)[0]
	stopped.Server.Stop()
	to := map[string]string{"To": metrics.HexID(stopped.Server.MemberID())}
	deadline := time.Now().Add(catchUpTimeout)
	for _, m := range []*keeltest.Member{lead} {
		for {
			fams := scrape(t, m.Endpoint)
			if value(fams, "etcd_network_peer_sent_failures_total", to) > 0 {
				checkFamily(t, m.Config.Name, fams, "etcd_network_peer_sent_failures_total", metricFamily{counter, []string{"To"}})
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no etcd_network_peer_sent_failures_total to the stopped member", m.Config.Name)
			}
			time.Sleep(100 * time.Millisecond) // poll interval, bounded by the deadline
		}
	}
}

func findSample(fams map[string]*dto.MetricFamily, name string, match map[string]string) (*dto.Metric, bool) {
	for _, m := range fams[name].GetMetric() {
		ok := true
		for k, v := range match {
			if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == k && l.GetValue() == v }) {
				ok = false
			}
		}
		if ok {
			return m, true
		}
	}
	return nil, false
}

// TestMetricsPortServesTLSWithTheClientCertificates starts a member whose
// client port is plain http and whose --listen-metrics-urls is https: the
// metrics port does TLS with --cert-file/--key-file, as etcd's does.
func TestMetricsPortServesTLSWithTheClientCertificates(t *testing.T) {
	p := newTestPKI(t)
	srv := p.server("server")
	m := keeltest.Start(t, keeltest.WithConfig(func(cfg *config.Config) {
		cfg.ClientTLS.CertFile, cfg.ClientTLS.KeyFile = srv.CertFile, srv.KeyFile
		cfg.ListenMetricsURLs = []url.URL{{Scheme: "https", Host: "127.0.0.1:0"}}
	}))
	urls := m.Server.MetricsURLs()
	if len(urls) != 1 || !strings.HasPrefix(urls[0], "https://") {
		t.Fatalf("metrics URLs %v", urls)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: p.clientTLS(nil)}, Timeout: 10 * time.Second}
	resp, err := hc.Get(urls[0] + "/metrics")
	if err != nil {
		t.Fatalf("scrape over TLS: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "etcd_server_has_leader 1") {
		t.Errorf("scrape over TLS: %s\n%.300s", resp.Status, body)
	}
	plain := &http.Client{Timeout: 10 * time.Second}
	if resp, err := plain.Get("http://" + strings.TrimPrefix(urls[0], "https://") + "/metrics"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("the https metrics port answered plain http")
		}
	}
	// The client port stays plain and serves /metrics too.
	if fams := scrape(t, m.Endpoint); value(fams, "etcd_server_has_leader", nil) != 1 {
		t.Error("etcd_server_has_leader is not 1 on the client port")
	}
}

// TestMaintenanceMetricsMove checks the families of compaction, snapshots,
// auth, watch streams and feature gates on one member: a compaction counts
// the versions it removed, a client snapshot is timed, a user bumps the
// auth revision and a watch event is timed in the send loop.
func TestMaintenanceMetricsMove(t *testing.T) {
	m := startMember(t)
	cli := m.cli()
	before := scrape(t, m.endpoint())
	if v := value(before, "etcd_debugging_mvcc_db_compaction_last", nil); v != 0 {
		t.Errorf("etcd_debugging_mvcc_db_compaction_last = %v before any compaction, want 0", v)
	}
	if v := value(before, "etcd_server_feature_enabled", map[string]string{"name": "InitialCorruptCheck", "stage": "ALPHA"}); v != 0 {
		t.Errorf("etcd_server_feature_enabled{InitialCorruptCheck} = %v, want 0 (off by default)", v)
	}
	if v := value(before, "etcd_server_feature_enabled", map[string]string{"name": "FastLeaseKeepAlive", "stage": "BETA"}); v != 1 {
		t.Errorf("etcd_server_feature_enabled{FastLeaseKeepAlive} = %v, want 1 (on by default)", v)
	}

	// Three versions of k and its tombstone: a compaction past the
	// tombstone removes all four. (At the tombstone's own revision etcd
	// would keep the tombstone until the next compaction.)
	for _, v := range []string{"1", "2", "3"} {
		put(t, cli, "k", v)
	}
	if _, err := cli.Delete(ctx(t), "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx(t), put(t, cli, "z", "1"), clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	start := time.Now().Unix()
	rc, err := cli.Snapshot(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if _, err := cli.UserAdd(ctx(t), "metrics-user", "pw"); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx(t))
	defer cancel()
	wch := cli.Watch(wctx, "w")
	put(t, cli, "w", "x")
	if wr := <-wch; len(wr.Events) != 1 {
		t.Fatalf("watch: %+v", wr)
	}

	// The compaction's last batch may be counted a moment after the
	// compact call returns; poll for it.
	var after map[string]*dto.MetricFamily
	deadline := time.Now().Add(opTimeout)
	for {
		after = scrape(t, m.endpoint())
		if value(after, "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds", nil) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // poll interval, bounded by the deadline
	}
	for name, want := range map[string]float64{
		"etcd_debugging_mvcc_db_compaction_keys_total":                                  4,
		"etcd_debugging_mvcc_db_compaction_total_duration_milliseconds":                 1,
		"etcd_disk_backend_snapshot_duration_seconds":                                   1,
		"etcd_debugging_auth_revision":                                                  2,
		"etcd_debugging_server_watch_send_loop_watch_stream_duration_seconds":           1,
		"etcd_debugging_server_watch_send_loop_watch_stream_duration_per_event_seconds": 1,
	} {
		if got := value(after, name, nil); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	for _, name := range []string{
		"etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds",
		"etcd_debugging_server_watch_send_loop_control_stream_duration_seconds",
	} {
		if got := value(after, name, nil); got < 1 {
			t.Errorf("%s counted %v, want at least 1", name, got)
		}
	}
	if got := value(after, "etcd_debugging_mvcc_db_compaction_last", nil); got < float64(start-60) {
		t.Errorf("etcd_debugging_mvcc_db_compaction_last = %v, want about %d", got, start)
	}
	for _, name := range []string{"etcd_mvcc_db_open_read_transactions", "etcd_debugging_mvcc_pending_events_total"} {
		checkFamily(t, "member", after, name, metricFamily{gauge, nil})
	}
	if got := value(after, "etcd_debugging_mvcc_pending_events_total", nil); got != 0 {
		t.Errorf("etcd_debugging_mvcc_pending_events_total = %v once the only event was received", got)
	}
}
