package compat

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"

	"github.com/keeldb/keel/config"
)

// TestConfigFileReadLikeEtcd reads the same YAML files with etcd's
// embed.ConfigFromFile and keel's config.Parse(--config-file) and requires
// the same settings: etcd's own sample file and one using every section
// keel acts on.
func TestConfigFileReadLikeEtcd(t *testing.T) {
	rich := filepath.Join(t.TempDir(), "rich.yml")
	if err := os.WriteFile(rich, []byte(`
name: m1
data-dir: /var/lib/keel/m1
listen-peer-urls: https://127.0.0.1:12380
initial-advertise-peer-urls: https://127.0.0.1:12380
listen-client-urls: https://127.0.0.1:12379,http://127.0.0.1:22379
advertise-client-urls: https://127.0.0.1:12379
initial-cluster: m1=https://127.0.0.1:12380,m2=https://127.0.0.1:22380
initial-cluster-token: tok
initial-cluster-state: existing
snapshot-count: 5000
snapshot-catchup-entries: 700
heartbeat-interval: 200
election-timeout: 2000
quota-backend-bytes: 8589934592
max-txn-ops: 256
max-request-bytes: 10485760
auto-compaction-mode: revision
auto-compaction-retention: "1000"
watch-progress-notify-interval: 5000000000
corrupt-check-time: 60000000000
compact-hash-check-time: 30000000000
auth-token: simple
bcrypt-cost: 12
auth-token-ttl: 600
log-level: warn
log-format: console
log-outputs: [stdout, stderr]
cipher-suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]
tls-min-version: TLS1.2
self-signed-cert-validity: 3
enable-pprof: true
client-transport-security:
  cert-file: /etc/keel/server.crt
  key-file: /etc/keel/server.key
  client-cert-file: /etc/keel/client.crt
  client-key-file: /etc/keel/client.key
  client-cert-auth: true
  trusted-ca-file: /etc/keel/ca.crt
  allowed-hostname: [client.example.com]
peer-transport-security:
  cert-file: /etc/keel/peer.crt
  key-file: /etc/keel/peer.key
  client-cert-auth: true
  trusted-ca-file: /etc/keel/ca.crt
  allowed-cn: [m1]
  skip-client-san-verification: true
  auto-tls: false
`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{filepath.Join("..", "config", "testdata", "etcd-sample-keys.yml"), rich} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			e, err := embed.ConfigFromFile(path)
			if err != nil {
				t.Fatalf("etcd: %v", err)
			}
			k, _, err := config.Parse([]string{"--config-file", path}, nil)
			if err != nil {
				t.Fatalf("keel: %v", err)
			}
			dir := e.Dir
			if dir == "" { // etcdmain's default, after the file is read
				dir = e.Name + ".etcd"
			}
			urls := func(us any) []string {
				v := reflect.ValueOf(us)
				out := []string{}
				for i := range v.Len() {
					u := v.Index(i).Addr().MethodByName("String").Call(nil)[0].String()
					out = append(out, u)
				}
				return out
			}
			checks := []struct {
				name      string
				etcd, kee any
			}{
				{"name", e.Name, k.Name},
				{"data-dir", dir[:len(dir)-len(".etcd")], k.DataDir[:len(k.DataDir)-len(".keel")]},
				{"listen-peer-urls", urls(e.ListenPeerUrls), urls(k.ListenPeerURLs)},
				{"listen-client-urls", urls(e.ListenClientUrls), urls(k.ListenClientURLs)},
				{"advertise-client-urls", urls(e.AdvertiseClientUrls), urls(k.AdvertiseClientURLs)},
				{"initial-advertise-peer-urls", urls(e.AdvertisePeerUrls), urls(k.InitialAdvertisePeerURLs)},
				{"initial-cluster", e.InitialCluster, k.InitialCluster},
				{"initial-cluster-state", e.ClusterState, k.InitialClusterState},
				{"initial-cluster-token", e.InitialClusterToken, k.InitialClusterToken},
				{"strict-reconfig-check", e.StrictReconfigCheck, k.StrictReconfigCheck},
				{"snapshot-count", e.SnapshotCount, k.SnapshotCount},
				{"snapshot-catchup-entries", e.SnapshotCatchUpEntries, k.SnapshotCatchUpEntries},
				{"heartbeat-interval", time.Duration(e.TickMs) * time.Millisecond, k.HeartbeatInterval},
				{"election-timeout", time.Duration(e.ElectionMs) * time.Millisecond, k.ElectionTimeout},
				{"quota-backend-bytes", e.QuotaBackendBytes, k.QuotaBackendBytes},
				{"max-txn-ops", e.MaxTxnOps, k.MaxTxnOps},
				{"max-request-bytes", e.MaxRequestBytes, k.MaxRequestBytes},
				{"auto-compaction-mode", e.AutoCompactionMode, k.AutoCompactionMode},
				{"auto-compaction-retention", e.AutoCompactionRetention, k.AutoCompactionRetention},
				{"watch-progress-notify-interval", e.WatchProgressNotifyInterval, k.WatchProgressNotifyInterval},
				{"corrupt-check-time", e.CorruptCheckTime, k.CorruptCheckTime},
				{"compact-hash-check-time", e.CompactHashCheckTime, k.CompactHashCheckTime},
				{"auth-token", e.AuthToken, k.AuthToken},
				{"bcrypt-cost", e.BcryptCost, k.BcryptCost},
				{"auth-token-ttl", time.Duration(e.AuthTokenTTL) * time.Second, k.AuthTokenTTL},
				{"log-level", e.LogLevel, k.LogLevel},
				{"log-format", e.LogFormat, k.LogFormat},
				{"log-outputs (keel keeps them sorted)", slices.Sorted(slices.Values(e.LogOutputs)), k.LogOutputs},
				{"cipher-suites", e.CipherSuites, k.CipherSuites},
				{"tls-min-version", e.TlsMinVersion, k.TLSMinVersion},
				{"tls-max-version", e.TlsMaxVersion, k.TLSMaxVersion},
				{"self-signed-cert-validity", e.SelfSignedCertValidity, k.SelfSignedCertValidity},
				{"enable-pprof", e.EnablePprof, k.EnablePprof},
				{"client cert", [4]string{e.ClientTLSInfo.CertFile, e.ClientTLSInfo.KeyFile, e.ClientTLSInfo.ClientCertFile, e.ClientTLSInfo.ClientKeyFile},
					[4]string{k.ClientTLS.CertFile, k.ClientTLS.KeyFile, k.ClientTLS.ClientCertFile, k.ClientTLS.ClientKeyFile}},
				{"client CA, auth, auto", [3]any{e.ClientTLSInfo.TrustedCAFile, e.ClientTLSInfo.ClientCertAuth, e.ClientAutoTLS},
					[3]any{k.ClientTLS.TrustedCAFile, k.ClientTLS.ClientCertAuth, k.ClientTLS.AutoTLS}},
				{"client allowed hostnames", len(e.ClientTLSInfo.AllowedHostnames), len(k.ClientTLS.AllowedHostnames)},
				{"peer cert", [2]string{e.PeerTLSInfo.CertFile, e.PeerTLSInfo.KeyFile}, [2]string{k.PeerTLS.CertFile, k.PeerTLS.KeyFile}},
				{"peer CA, auth, auto, skip-san", [4]any{e.PeerTLSInfo.TrustedCAFile, e.PeerTLSInfo.ClientCertAuth, e.PeerAutoTLS, e.PeerTLSInfo.SkipClientSANVerify},
					[4]any{k.PeerTLS.TrustedCAFile, k.PeerTLS.ClientCertAuth, k.PeerTLS.AutoTLS, k.PeerTLS.SkipClientSANVerify}},
				{"peer allowed CNs", len(e.PeerTLSInfo.AllowedCNs), len(k.PeerTLS.AllowedCNs)},
			}
			for _, c := range checks {
				if !reflect.DeepEqual(c.etcd, c.kee) {
					t.Errorf("%s: etcd %#v, keel %#v", c.name, c.etcd, c.kee)
				}
			}
		})
	}
}
