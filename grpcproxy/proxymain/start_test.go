package proxymain

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/keeldb/keel/internal/keeltest"
)

// defaults are the flag defaults, as parsing no flags gives them.
func defaults(t *testing.T) Flags {
	var f Flags
	if err := newFlagSet(&f).Parse(nil); err != nil {
		t.Fatal(err)
	}
	return f
}

// startFor starts `grpc-proxy start` in front of m on a free loopback port
// (advertised, so that /proxy/health can reach it).
func startFor(t *testing.T, m *keeltest.Member, edit func(*Flags)) *Server {
	t.Helper()
	port, err := keeltest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	f := defaults(t)
	f.Endpoints = []string{m.HostPort()}
	f.ListenAddr = fmt.Sprintf("127.0.0.1:%d", port)
	f.AdvertiseClientURL = f.ListenAddr
	f.DataDir = t.TempDir()
	if edit != nil {
		edit(&f)
	}
	s, err := Start(f, zap.NewNop())
	if err != nil {
		t.Fatalf("start proxy: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

func proxyClient(t *testing.T, s *Server, tc *tls.Config) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.Addr()}, DialTimeout: keeltest.DialTimeout, Logger: zap.NewNop(), TLS: tc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func get(t *testing.T, hc *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := hc.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestStartServesGRPCAndHTTPOnTheListenAddress(t *testing.T) {
	m := keeltest.Start(t)
	s := startFor(t, m, func(f *Flags) { f.MetricsAddr = "http://127.0.0.1:0"; f.EnablePprof = true })
	ctx := ctxFor(t)
	cli := proxyClient(t, s, nil)
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	r, err := m.Client.Get(ctx, "k")
	if err != nil || len(r.Kvs) != 1 {
		t.Fatalf("the member does not have the proxy's write: %v %v", r, err)
	}
	// MemberList names the proxy, as etcd's does.
	ml, err := cli.MemberList(ctx)
	if err != nil || len(ml.Members) != 1 || ml.Members[0].ClientURLs[0] != s.Addr() {
		t.Fatalf("member list through the proxy: %v %v", ml, err)
	}

	hc := &http.Client{Timeout: 10 * time.Second}
	for _, base := range []string{"http://" + s.Addr(), "http://" + s.MetricsAddr()} {
		for _, path := range []string{"/health", "/proxy/health"} {
			code, body := get(t, hc, base+path)
			var h health
			if err := json.Unmarshal([]byte(body), &h); err != nil || code != 200 || h.Health != "true" {
				t.Errorf("GET %s%s: %d %q", base, path, code, body)
			}
		}
		if code, body := get(t, hc, base+"/proxy/metrics"); code != 200 || !strings.Contains(body, "etcd_grpc_proxy_cache_hits_total") ||
			!strings.Contains(body, "etcd_grpc_proxy_watchers_coalescing_total") ||
			!strings.Contains(body, `grpc_server_handled_total{grpc_code="OK",grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"} 1`) {
			t.Errorf("GET %s/proxy/metrics: %d, no proxy metrics or no count of the put:\n%s", base, code, body)
		}
		// /metrics is the cluster's, passed on.
		want, _ := get(t, hc, m.Endpoint+"/metrics")
		if code, _ := get(t, hc, base+"/metrics"); code != want {
			t.Errorf("GET %s/metrics: %d, the member answers %d", base, code, want)
		}
	}
	if code, _ := get(t, hc, "http://"+s.Addr()+"/debug/pprof/"); code != 200 {
		t.Errorf("pprof with --enable-pprof: %d", code)
	}
	if code, _ := get(t, hc, "http://"+s.MetricsAddr()+"/debug/pprof/"); code != 404 {
		t.Errorf("pprof on --metrics-addr: %d, want 404", code)
	}
}

func TestHealthReportsAnUnreachableCluster(t *testing.T) {
	m := keeltest.Start(t)
	s := startFor(t, m, nil)
	m.Stop()
	code, body := get(t, &http.Client{Timeout: 10 * time.Second}, "http://"+s.Addr()+"/health")
	var h health
	if err := json.Unmarshal([]byte(body), &h); err != nil || code != http.StatusServiceUnavailable || h.Health != "false" ||
		!strings.HasPrefix(h.Reason, "GET ERROR:") {
		t.Fatalf("/health with the cluster down: %d %q", code, body)
	}
}

func TestNamespacePrefixesEveryKey(t *testing.T) {
	m := keeltest.Start(t)
	s := startFor(t, m, func(f *Flags) { f.Namespace = "tenant/" })
	ctx := ctxFor(t)
	cli := proxyClient(t, s, nil)
	if _, err := cli.Put(ctx, "a", "1"); err != nil {
		t.Fatal(err)
	}
	w := cli.Watch(ctx, "a", clientv3.WithCreatedNotify())
	<-w
	if _, err := m.Client.Put(ctx, "tenant/a", "2"); err != nil {
		t.Fatal(err)
	}
	if wr := <-w; len(wr.Events) != 1 || string(wr.Events[0].Kv.Key) != "a" {
		t.Fatalf("watch through the namespace: %+v", wr)
	}
	r, err := m.Client.Get(ctx, "", clientv3.WithPrefix())
	if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Key) != "tenant/a" {
		t.Fatalf("keys on the member: %v %v", r, err)
	}
	r, err = cli.Get(ctx, "", clientv3.WithPrefix())
	if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Key) != "a" || string(r.Kvs[0].Value) != "2" {
		t.Fatalf("keys through the proxy: %v %v", r, err)
	}
	g, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "leased", "x", clientv3.WithLease(g.ID)); err != nil {
		t.Fatal(err)
	}
	ttl, err := cli.TimeToLive(ctx, g.ID, clientv3.WithAttachedKeys())
	if err != nil || len(ttl.Keys) != 1 || string(ttl.Keys[0]) != "leased" {
		t.Fatalf("lease keys through the namespace: %v %v", ttl, err)
	}
}

func TestAutoTLSServesClientsOverTLSOnly(t *testing.T) {
	m := keeltest.Start(t)
	s := startFor(t, m, func(f *Flags) { f.AutoTLS = true })
	ctx := ctxFor(t)
	cli := proxyClient(t, s, &tls.Config{InsecureSkipVerify: true})
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("put over TLS: %v", err)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if code, body := get(t, hc, "https://"+s.Addr()+"/proxy/health"); code != 200 {
		t.Fatalf("/proxy/health over TLS: %d %s", code, body)
	}
	plain := proxyClient(t, s, nil)
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := plain.Get(short, "k"); err == nil {
		t.Fatal("a plain-text client was served by a TLS proxy")
	}
}

func TestResolverPrefixRegistersTheProxy(t *testing.T) {
	m := keeltest.Start(t)
	s := startFor(t, m, func(f *Flags) { f.ResolverPrefix = "proxies"; f.ResolverTTL = 10 })
	ctx := ctxFor(t)
	key := "proxies/" + s.Addr()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := m.Client.Get(ctx, key)
		if err == nil && len(r.Kvs) == 1 && r.Kvs[0].Lease != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not registered with a lease: %v %v", key, r, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ml, err := proxyClient(t, s, nil).MemberList(ctx)
	if err != nil || len(ml.Members) != 1 || ml.Members[0].ClientURLs[0] != s.Addr() {
		t.Fatalf("member list: %v %v", ml, err)
	}
}

func TestMainChecksTheFlags(t *testing.T) {
	cases := []struct {
		args   []string
		status int
		out    string
	}{
		{[]string{}, 0, "start the grpc proxy"},
		{[]string{"stop"}, 1, `unknown command "stop"`},
		{[]string{"start", "--help"}, 0, "--experimental-serializable-ordering"},
		{[]string{"start", "--no-such-flag"}, 2, "unknown flag: --no-such-flag"},
		{[]string{"start", "--resolver-prefix", "p"}, 1, "invalid resolver-ttl 0"},
		{[]string{"start", "--resolver-ttl", "3"}, 1, `invalid resolver-prefix ""`},
		{[]string{"start", "--auto-tls", "--self-signed-cert-validity", "0"}, 1, "selfSignedCertValidity is invalid"},
		{[]string{"start", "--listen-addr", "127.0.0.1:0", "--auto-tls", "--data-dir", t.TempDir(), "--tls-min-version", "TLS1.3", "--tls-max-version", "TLS1.2"}, 1,
			"min version (TLS1.3) is greater than max version (TLS1.2)"},
	}
	for _, tc := range cases {
		var stdout, stderr bytes.Buffer
		status := Main(tc.args, &stdout, &stderr)
		out := stdout.String() + stderr.String()
		if status != tc.status || !strings.Contains(out, tc.out) {
			t.Errorf("keel grpc-proxy %q: status %d, output %q; want %d and %q", tc.args, status, out, tc.status, tc.out)
		}
	}
}

// TestExperimentalLayersServe: with the client module's ordering and
// leasing layers (--experimental-serializable-ordering,
// --experimental-leasing-prefix), reads and writes still pass.
func TestExperimentalLayersServe(t *testing.T) {
	m := keeltest.Start(t)
	s := startFor(t, m, func(f *Flags) { f.SerializableOrdering = true; f.LeasingPrefix = "leasing/" })
	ctx := ctxFor(t)
	cli := proxyClient(t, s, nil)
	if _, err := cli.Put(ctx, "k", "1"); err != nil {
		t.Fatal(err)
	}
	for _, opts := range [][]clientv3.OpOption{nil, {clientv3.WithSerializable()}} {
		r, err := cli.Get(ctx, "k", opts...)
		if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "1" {
			t.Fatalf("get k: %v %v", r, err)
		}
	}
	// The leasing layer keeps leases on the keys it read under its prefix.
	r, err := m.Client.Get(ctx, "leasing/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || r.Count == 0 {
		t.Fatalf("no leasing keys: %v %v", r, err)
	}
}
