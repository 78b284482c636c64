//go:build linux

package compat

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// S2 bounds. They stop a hung test; no assertion depends on them.
const (
	// s2Progress is how many more writes must be acknowledged after a
	// member is back before the next one is restarted.
	s2Progress = 20
	// s2MaxWrites bounds the background writer.
	s2MaxWrites = 200000
	// s2WriteTimeout bounds one write of the background writer.
	s2WriteTimeout = 3 * time.Second
)

// TestScenarioS2 is SCENARIOS.md's S2 as an operator runs it: keelctl pki
// create makes the certificates of three members; a cluster with client
// and peer TLS and client certificate auth serves the official client;
// then a cluster on http peer URLs moves to https while a client writes
// without pause, and every acknowledged write is read back. It runs
// against etcd too, which proves the procedure is etcd's.
func TestScenarioS2(t *testing.T) {
	for _, kind := range []serverKind{kindEtcd, kindKeel} {
		t.Run(string(kind), func(t *testing.T) {
			s := newS2(t, kind)
			t.Run("tls-cluster", s.tlsCluster)
			t.Run("http-to-https-peers", s.peerMigration)
		})
	}
}

// s2 is one run of the scenario: the certificates of keelctl pki create
// and the clients that use them.
type s2 struct {
	kind serverKind
	dir  string // keelctl pki create --dir
	http *http.Client
	tls  *tls.Config
}

func newS2(t *testing.T, kind serverKind) *s2 {
	keelctl := buildKeelctl(t)
	s := &s2{kind: kind, dir: filepath.Join(t.TempDir(), "pki")}
	ctx, cancel := context.WithTimeout(context.Background(), etcdctlTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, keelctl, "pki", "create", "--dir", s.dir,
		"--members", "m1=127.0.0.1,m2=127.0.0.1,m3=127.0.0.1", "--clients", "root").CombinedOutput()
	if err != nil {
		t.Fatalf("keelctl pki create: %v\n%s", err, out)
	}
	t.Logf("keelctl pki create:\n%s", out)
	cert, err := tls.LoadX509KeyPair(s.file("clients/root.crt"), s.file("clients/root.key"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(s.file("ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.crt holds no certificate")
	}
	s.tls = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool}
	s.http = &http.Client{Transport: &http.Transport{TLSClientConfig: s.tls}, Timeout: 2 * time.Second}
	return s
}

func (s *s2) file(name string) string { return filepath.Join(s.dir, filepath.FromSlash(name)) }

// ctlTLS are etcdctl's flags for the client certificate of root.
func (s *s2) ctlTLS() []string {
	return []string{"--cacert=" + s.file("ca.crt"), "--cert=" + s.file("clients/root.crt"), "--key=" + s.file("clients/root.key")}
}

// clientTLSArgs are a member's client TLS flags, as keelctl pki create
// prints them.
func (s *s2) clientTLSArgs(m *member) []string {
	return []string{"--cert-file=" + s.file(m.name+"/server.crt"), "--key-file=" + s.file(m.name+"/server.key"),
		"--trusted-ca-file=" + s.file("ca.crt"), "--client-cert-auth"}
}

// peerTLSArgs are a member's peer TLS flags.
func (s *s2) peerTLSArgs(m *member) []string {
	return []string{"--peer-cert-file=" + s.file(m.name+"/peer.crt"), "--peer-key-file=" + s.file(m.name+"/peer.key"),
		"--peer-trusted-ca-file=" + s.file("ca.crt"), "--peer-client-cert-auth"}
}

// waitReady waits until the member's /health, over TLS with root's
// certificate, says it serves.
func (s *s2) waitReady(m *member) error {
	deadline := time.Now().Add(procReadyTimeout)
	for {
		resp, err := s.http.Get(m.client + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("/health: %s", resp.Status)
		}
		if !m.running() {
			return fmt.Errorf("%s %s: %w (%v)", m.kind, m.name, errExited, m.err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s %s not ready after %v: %v", m.kind, m.name, procReadyTimeout, err)
		}
		time.Sleep(pollEvery) // poll interval
	}
}

// start starts a three-member cluster with https client URLs and peer URLs
// of peerScheme, each member with the flags args gives it, retrying with
// other ports when one was taken.
func (s *s2) start(t *testing.T, peerScheme string, args func(m *member) []string) *cluster {
	t.Helper()
	for attempt := 1; ; attempt++ {
		c := newCluster(t, s.kind, "")
		var ms []*member
		var initial []string
		for _, name := range []string{"m1", "m2", "m3"} {
			m := c.newMember(name)
			m.client = strings.Replace(m.client, "http://", "https://", 1)
			m.peer = strings.Replace(m.peer, "http://", peerScheme+"://", 1)
			initial = append(initial, name+"="+m.peer)
			ms = append(ms, m)
		}
		for _, m := range ms {
			m.args = append([]string{"--initial-cluster=" + strings.Join(initial, ","),
				"--initial-cluster-token=s2-" + peerScheme, "--initial-cluster-state=new"}, args(m)...)
			m.start()
		}
		ok := true
		for _, m := range ms {
			if err := s.waitReady(m); err != nil {
				for _, m := range ms {
					if !m.running() && m.bindClash() {
						ok = false
					}
				}
				if ok {
					c.fatalf("start: %v", err)
				}
			}
		}
		if ok {
			return c
		}
		for _, m := range ms {
			m.kill()
		}
		if attempt == startAttempts {
			t.Fatalf("%s: ports taken %d times in a row", s.kind, attempt)
		}
	}
}

// client is an official client with root's certificate for the members.
func (s *s2) client(t *testing.T, ms ...*member) *clientv3.Client {
	t.Helper()
	var eps []string
	for _, m := range ms {
		eps = append(eps, m.client)
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: eps, TLS: s.tls, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// tlsCluster: client and peer TLS with client certificate auth; the
// official client writes and reads through every member with root's
// certificate, and one without a certificate is refused.
func (s *s2) tlsCluster(t *testing.T) {
	c := s.start(t, "https", func(m *member) []string { return append(s.clientTLSArgs(m), s.peerTLSArgs(m)...) })
	for i, m := range c.members {
		cli := s.client(t, m)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		key := "s2/tls/" + m.name
		if _, err := cli.Put(ctx, key, strconv.Itoa(i)); err != nil {
			cancel()
			c.fatalf("put through %s: %v", m.name, err)
		}
		cancel()
		for _, other := range c.members {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			resp, err := s.client(t, other).Get(ctx, key)
			cancel()
			if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != strconv.Itoa(i) {
				c.fatalf("get %s through %s: %v %v", key, other.name, resp, err)
			}
		}
	}
	// No client certificate: refused.
	noCert := &tls.Config{RootCAs: s.tls.RootCAs}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{c.members[0].client}, TLS: noCert, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := cli.Get(ctx, "s2/tls/m1"); err == nil {
		c.fatalf("a client without a certificate was served")
	}
	// etcdctl with the flags keelctl pki create printed.
	o := c.mustCtl(c.members, append(s.ctlTLS(), "endpoint", "health")...)
	if strings.Count(o.stdout+o.stderr, "is healthy") != 3 {
		c.fatalf("endpoint health: %s", o)
	}
	// keelctl with the same flags, and without a client certificate: it
	// keeps etcdctl's message and names the cause.
	keelctl := newCluster(t, s.kind, buildKeelctl(t))
	keelctl.members = c.members
	o = keelctl.mustCtl(c.members[:1], append(s.ctlTLS(), "get", "s2/tls/m1", "--print-value-only")...)
	if o.stdout != "0\n" {
		c.fatalf("keelctl get: %s", o)
	}
	o = keelctl.ctl(c.members[:1], "--cacert="+s.file("ca.crt"), "--dial-timeout=1s", "--command-timeout=2s", "get", "s2/tls/m1")
	if o.code != 1 || !strings.Contains(o.stderr, "Error: context deadline exceeded: ") || !strings.Contains(o.stderr, "requires a client certificate") {
		c.fatalf("keelctl without a client certificate: %s", o)
	}
	for _, m := range c.members {
		m.stop()
	}
}

// peerMigration moves a cluster with client TLS from http to https peer
// URLs under a steady write load:
//
//  1. a rolling restart gives every member its peer certificate, still on
//     http peer URLs, so that each can dial (and present a certificate to)
//     the https peers to come;
//  2. for each member, member update --peer-urls=https://... then a restart
//     listening on https with peer TLS flags, and enough acknowledged
//     writes before the next member;
//  3. every acknowledged write is read back, the members list https peer
//     URLs, and every endpoint is healthy.
//
// One member at a time is unreachable by its peers, so quorum holds.
func (s *s2) peerMigration(t *testing.T) {
	c := s.start(t, "http", s.clientTLSArgs)
	ms := c.members
	w := startWriter(s.client(t, ms...))
	defer w.stop()
	ctlOn := func(args ...string) ctlOut { return c.mustCtl(ms, append(s.ctlTLS(), args...)...) }
	restart := func(m *member) {
		t.Helper()
		m.stop()
		m.start()
		if err := s.waitReady(m); err != nil {
			c.fatalf("restart %s: %v", m.name, err)
		}
		if err := w.waitProgress(s2Progress, convergeTimeout); err != nil {
			c.fatalf("after restarting %s: %v", m.name, err)
		}
	}
	if err := w.waitProgress(s2Progress, convergeTimeout); err != nil {
		c.fatalf("writer: %v", err)
	}

	for _, m := range ms {
		m.args = append(m.args, s.peerTLSArgs(m)...)
		restart(m)
	}
	list := s.memberList(c)
	for _, m := range ms {
		var id uint64
		for _, lm := range list.Members {
			if lm.Name == m.name {
				id = lm.ID
			}
		}
		if id == 0 {
			c.fatalf("member list has no %s: %+v", m.name, list.Members)
		}
		https := strings.Replace(m.peer, "http://", "https://", 1)
		ctlOn("member", "update", strconv.FormatUint(id, 16), "--peer-urls="+https)
		m.peer = https
		restart(m)
	}

	acked, failed := w.stop()
	t.Logf("%s: %d writes acknowledged, %d failed during the migration", s.kind, len(acked), failed)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := s.client(t, ms...).Get(ctx, "s2/w/", clientv3.WithPrefix())
	if err != nil {
		c.fatalf("read back: %v", err)
	}
	got := map[string]bool{}
	for _, kv := range resp.Kvs {
		got[string(kv.Key)] = true
	}
	for _, k := range acked {
		if !got[k] {
			c.fatalf("acknowledged write %s lost (%d acknowledged, %d read back)", k, len(acked), len(resp.Kvs))
		}
	}
	for _, lm := range s.memberList(c).Members {
		if len(lm.PeerURLs) != 1 || !strings.HasPrefix(lm.PeerURLs[0], "https://") {
			c.fatalf("member %s peer URLs %v", lm.Name, lm.PeerURLs)
		}
	}
	o := ctlOn("endpoint", "health", "--cluster")
	if strings.Count(o.stdout+o.stderr, "is healthy") != 3 {
		c.fatalf("endpoint health --cluster: %s", o)
	}
}

// memberList reads member list -w json over TLS.
func (s *s2) memberList(c *cluster) memberListJSON {
	c.t.Helper()
	o := c.mustCtl(c.members, append(s.ctlTLS(), "member", "list", "-w", "json")...)
	var l memberListJSON
	if err := json.Unmarshal([]byte(o.stdout), &l); err != nil {
		c.fatalf("member list -w json: %v\n%s", err, o.stdout)
	}
	return l
}

// writer puts s2/w/NNNNNN keys one after the other until stopped,
// remembering the ones acknowledged.
type writer struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	acked  []string
	failed int
}

func startWriter(cli *clientv3.Client) *writer {
	ctx, cancel := context.WithCancel(context.Background())
	w := &writer{cancel: cancel}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		for i := 0; i < s2MaxWrites && ctx.Err() == nil; i++ {
			key := fmt.Sprintf("s2/w/%06d", i)
			wctx, wcancel := context.WithTimeout(ctx, s2WriteTimeout)
			_, err := cli.Put(wctx, key, key)
			wcancel()
			w.mu.Lock()
			if err == nil {
				w.acked = append(w.acked, key)
			} else {
				w.failed++
			}
			w.mu.Unlock()
		}
	}()
	return w
}

// waitProgress waits until n more writes than now are acknowledged.
func (w *writer) waitProgress(n int, timeout time.Duration) error {
	w.mu.Lock()
	target := len(w.acked) + n
	w.mu.Unlock()
	deadline := time.Now().Add(timeout)
	for {
		w.mu.Lock()
		got, failed := len(w.acked), w.failed
		w.mu.Unlock()
		if got >= target {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d writes acknowledged, want %d within %v (%d failed)", got, target, timeout, failed)
		}
		time.Sleep(pollEvery) // poll interval
	}
}

// stop ends the writer and returns the acknowledged keys and the number
// of failed writes. It may be called again.
func (w *writer) stop() (acked []string, failed int) {
	w.cancel()
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acked, w.failed
}
