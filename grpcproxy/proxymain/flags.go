// Package proxymain is `keel grpc-proxy start`: etcd 3.7's grpc-proxy
// flags, and the listeners, upstream client and HTTP endpoints around a
// grpcproxy.Proxy.
package proxymain

import (
	"crypto/tls"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/keeldb/keel/tlsutil"
)

// Flags are the settings of `keel grpc-proxy start`, named and defaulted
// as etcd 3.7's.
type Flags struct {
	ListenAddr                string
	DiscoverySRV              string
	DiscoverySRVName          string
	MetricsAddr               string
	InsecureDiscovery         bool
	Endpoints                 []string
	EndpointsAutoSyncInterval time.Duration
	DialKeepAliveTime         time.Duration
	DialKeepAliveTimeout      time.Duration
	PermitWithoutStream       bool
	AdvertiseClientURL        string
	ResolverPrefix            string
	ResolverTTL               int
	Namespace                 string
	EnablePprof               bool
	DataDir                   string
	MaxSendBytes              int
	MaxRecvBytes              int
	GRPCKeepAliveMinTime      time.Duration
	GRPCKeepAliveInterval     time.Duration
	GRPCKeepAliveTimeout      time.Duration

	// Upstream TLS: how the proxy dials the cluster.
	Cert, Key, CACert     string
	InsecureSkipTLSVerify bool

	// Listener TLS: how clients reach the proxy.
	CertFile, KeyFile, TrustedCAFile string
	ListenCipherSuites               []string
	AutoTLS                          bool
	ClientCRLFile                    string
	SelfSignedCertValidity           uint
	TLSMinVersion, TLSMaxVersion     string

	SerializableOrdering bool
	LeasingPrefix        string
	EnableGRPCLogging    bool
	Debug                bool
	MaxConcurrentStreams uint32
}

// defaultMaxSendBytes is etcd's 1.5 MiB.
const defaultMaxSendBytes = 3 * 1024 * 1024 / 2

func newFlagSet(f *Flags) *pflag.FlagSet {
	fs := pflag.NewFlagSet("keel grpc-proxy start", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.StringVar(&f.ListenAddr, "listen-addr", "127.0.0.1:23790", "Address the proxy serves clients on (gRPC and HTTP on one port).")
	fs.StringVar(&f.DiscoverySRV, "discovery-srv", "", "Domain whose DNS SRV records (_etcd-client-ssl._tcp, _etcd-client._tcp) list the cluster's client endpoints; they replace --endpoints.")
	fs.StringVar(&f.DiscoverySRVName, "discovery-srv-name", "", "Suffix of the SRV service names: _etcd-client-ssl-<name>._tcp and _etcd-client-<name>._tcp.")
	fs.StringVar(&f.MetricsAddr, "metrics-addr", "", "Extra URL (http://host:port) that serves /metrics and /health only.")
	fs.BoolVar(&f.InsecureDiscovery, "insecure-discovery", false, "Keep plain-text (http) endpoints found by --discovery-srv; without it only https endpoints that accept a connection are used.")
	fs.StringSliceVar(&f.Endpoints, "endpoints", []string{"127.0.0.1:2379"}, "Comma-separated client endpoints of the cluster.")
	fs.DurationVar(&f.EndpointsAutoSyncInterval, "endpoints-auto-sync-interval", 0, "How often to refresh the endpoints from the cluster's member list (0 never).")
	fs.DurationVar(&f.DialKeepAliveTime, "dial-keepalive-time", 0, "Interval of keepalive pings on the connections to the cluster (0 off).")
	fs.DurationVar(&f.DialKeepAliveTimeout, "dial-keepalive-timeout", 20*time.Second, "How long a keepalive ping to the cluster may go unanswered.")
	fs.BoolVar(&f.PermitWithoutStream, "permit-without-stream", false, "Ping the cluster even when no call is open.")
	fs.StringVar(&f.AdvertiseClientURL, "advertise-client-url", "127.0.0.1:23790", "Address clients reach the proxy on: MemberList answers it, and the resolver registers it.")
	fs.StringVar(&f.ResolverPrefix, "resolver-prefix", "", "Key prefix under which proxies register themselves (shared by all proxies of a cluster).")
	fs.IntVar(&f.ResolverTTL, "resolver-ttl", 0, "TTL in seconds of the registration under --resolver-prefix.")
	fs.StringVar(&f.Namespace, "namespace", "", "Prefix added to every key the proxy's clients use.")
	fs.BoolVar(&f.EnablePprof, "enable-pprof", false, "Serve runtime profiles under /debug/pprof/ on the listen address.")
	fs.StringVar(&f.DataDir, "data-dir", "default.proxy", "Directory of the proxy's own files (the --auto-tls certificate).")
	fs.IntVar(&f.MaxSendBytes, "max-send-bytes", defaultMaxSendBytes, "Largest request the proxy sends to the cluster, in bytes.")
	fs.IntVar(&f.MaxRecvBytes, "max-recv-bytes", math.MaxInt32, "Largest response the proxy accepts from the cluster, in bytes.")
	fs.DurationVar(&f.GRPCKeepAliveMinTime, "grpc-keepalive-min-time", 5*time.Second, "Shortest interval a client may ping the proxy at.")
	fs.DurationVar(&f.GRPCKeepAliveInterval, "grpc-keepalive-interval", 2*time.Hour, "How often the proxy pings an idle client connection (0 off).")
	fs.DurationVar(&f.GRPCKeepAliveTimeout, "grpc-keepalive-timeout", 20*time.Second, "How long a ping to a client may go unanswered before the connection closes (0 off).")

	fs.StringVar(&f.Cert, "cert", "", "Client certificate the proxy presents to the cluster.")
	fs.StringVar(&f.Key, "key", "", "Key of --cert.")
	fs.StringVar(&f.CACert, "cacert", "", "CA bundle that verifies the cluster's certificates.")
	fs.BoolVar(&f.InsecureSkipTLSVerify, "insecure-skip-tls-verify", false, "Do not verify the cluster's certificates (for tests only).")

	fs.StringVar(&f.CertFile, "cert-file", "", "Certificate the proxy serves clients with.")
	fs.StringVar(&f.KeyFile, "key-file", "", "Key of --cert-file.")
	fs.StringVar(&f.TrustedCAFile, "trusted-ca-file", "", "CA bundle that verifies client certificates (makes them mandatory).")
	fs.StringSliceVar(&f.ListenCipherSuites, "listen-cipher-suites", nil, "Comma-separated TLS cipher suites offered to clients (empty: Go's).")
	fs.BoolVar(&f.AutoTLS, "auto-tls", false, "Serve clients over TLS with a self-signed certificate kept in <data-dir>/fixtures/proxy.")
	fs.StringVar(&f.ClientCRLFile, "client-crl-file", "", "Revoked client certificates.")
	fs.UintVar(&f.SelfSignedCertValidity, "self-signed-cert-validity", 1, "Validity of the --auto-tls certificate, in years.")
	fs.StringVar(&f.TLSMinVersion, "tls-min-version", "TLS1.2", "Lowest TLS version offered to clients: TLS1.2 or TLS1.3.")
	fs.StringVar(&f.TLSMaxVersion, "tls-max-version", "", "Highest TLS version offered to clients: TLS1.2 or TLS1.3 (empty: Go's).")

	fs.BoolVar(&f.SerializableOrdering, "experimental-serializable-ordering", false, "Never answer a serializable read with a revision older than one already answered.")
	fs.StringVar(&f.LeasingPrefix, "experimental-leasing-prefix", "", "Key prefix of the leasing layer's metadata: reads of leased keys are served locally.")
	fs.BoolVar(&f.EnableGRPCLogging, "experimental-enable-grpc-logging", false, "Log every gRPC call the proxy serves.")
	fs.BoolVar(&f.Debug, "debug", false, "Log at debug level.")
	fs.Uint32Var(&f.MaxConcurrentStreams, "max-concurrent-streams", math.MaxUint32, "Most streams one client connection may have open.")
	return fs
}

// usage is the help of `keel grpc-proxy start`.
func usage(fs *pflag.FlagSet) string {
	var b strings.Builder
	b.WriteString("Usage:\n  keel grpc-proxy start [flags]\n\n")
	b.WriteString("Starts a gRPC proxy in front of a keel (or etcd) cluster: it serves the etcd v3\n")
	b.WriteString("API, answers serializable reads from a cache, and shares upstream watches and\n")
	b.WriteString("lease keep-alives among its clients.\n\nFlags:\n")
	b.WriteString(fs.FlagUsages())
	return b.String()
}

// validate applies etcd's checks on the flag combination.
func (f *Flags) validate() error {
	if f.ResolverPrefix != "" && f.ResolverTTL < 1 {
		return fmt.Errorf("invalid resolver-ttl %d", f.ResolverTTL)
	}
	if f.ResolverPrefix == "" && f.ResolverTTL > 0 {
		return fmt.Errorf("invalid resolver-prefix %q", f.ResolverPrefix)
	}
	if f.ResolverPrefix != "" && f.ResolverTTL > 0 && f.AdvertiseClientURL == "" {
		return fmt.Errorf("invalid advertise-client-url %q", f.AdvertiseClientURL)
	}
	if f.AutoTLS && f.SelfSignedCertValidity == 0 {
		return fmt.Errorf("selfSignedCertValidity is invalid,it should be greater than 0")
	}
	minV, err := tlsutil.Version(f.TLSMinVersion)
	if err != nil {
		return fmt.Errorf("tls-min-version is invalid: %w", err)
	}
	maxV, err := tlsutil.Version(f.TLSMaxVersion)
	if err != nil {
		return fmt.Errorf("tls-max-version is invalid: %w", err)
	}
	if maxV != 0 && minV > maxV {
		return fmt.Errorf("min version (%s) is greater than max version (%s)", f.TLSMinVersion, f.TLSMaxVersion)
	}
	if minV == tls.VersionTLS13 && len(f.ListenCipherSuites) > 0 {
		return fmt.Errorf("cipher suites cannot be configured when only TLS1.3 is enabled")
	}
	return nil
}
