// Package integration drives a keel member only through the official etcd
// client (go.etcd.io/etcd/client/v3 and its raw gRPC stubs) and plain HTTP,
// and requires etcd 3.7's answers: values, revisions, headers and errors.
//
// Every expectation here was checked against a real etcd 3.7.3. To check
// them again, point KEEL_INTEGRATION_ETCD at an etcd binary: the same tests
// then run against child etcd processes instead of keel, and must pass.
//
//	KEEL_INTEGRATION_ETCD=/tmp/etcd go test ./integration
package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keeldb/keel/config"
	"github.com/keeldb/keel/internal/keeltest"
)

// etcdEnv names the variable that switches the tests to a real etcd binary.
const etcdEnv = "KEEL_INTEGRATION_ETCD"

// opTimeout bounds every request a test makes, so a hung server fails the
// test instead of the whole run.
const opTimeout = 30 * time.Second

// options of a member under test, mapped to keeltest options or etcd flags.
type memberOpts struct {
	snapshotCount uint64
	// snapshotCatchUp is --snapshot-catchup-entries.
	snapshotCatchUp uint64
	maxTxnOps       uint
	maxRequestBytes uint
	// watchProgressNotifyInterval is --watch-progress-notify-interval.
	watchProgressNotifyInterval time.Duration
	// enablePprof is --enable-pprof.
	enablePprof bool
	// quotaBackendBytes is --quota-backend-bytes.
	quotaBackendBytes int64
}

type memberOpt func(*memberOpts)

func withSnapshotCount(n uint64) memberOpt { return func(o *memberOpts) { o.snapshotCount = n } }
func withSnapshotCatchUp(n uint64) memberOpt {
	return func(o *memberOpts) { o.snapshotCatchUp = n }
}
func withMaxTxnOps(n uint) memberOpt       { return func(o *memberOpts) { o.maxTxnOps = n } }
func withMaxRequestBytes(n uint) memberOpt { return func(o *memberOpts) { o.maxRequestBytes = n } }
func withPprof() memberOpt                 { return func(o *memberOpts) { o.enablePprof = true } }
func withQuotaBackendBytes(n int64) memberOpt {
	return func(o *memberOpts) { o.quotaBackendBytes = n }
}
func withWatchProgressNotifyInterval(d time.Duration) memberOpt {
	return func(o *memberOpts) { o.watchProgressNotifyInterval = d }
}

func (o memberOpts) keelOptions() []keeltest.Option {
	var out []keeltest.Option
	if o.snapshotCount != 0 {
		out = append(out, keeltest.WithSnapshotCount(o.snapshotCount))
	}
	if n := o.snapshotCatchUp; n != 0 {
		out = append(out, keeltest.WithConfig(func(c *config.Config) { c.SnapshotCatchUpEntries = n }))
	}
	if o.maxTxnOps != 0 {
		out = append(out, keeltest.WithMaxTxnOps(o.maxTxnOps))
	}
	if o.maxRequestBytes != 0 {
		out = append(out, keeltest.WithMaxRequestBytes(o.maxRequestBytes))
	}
	if d := o.watchProgressNotifyInterval; d != 0 {
		out = append(out, keeltest.WithConfig(func(c *config.Config) { c.WatchProgressNotifyInterval = d }))
	}
	if o.enablePprof {
		out = append(out, keeltest.WithConfig(func(c *config.Config) { c.EnablePprof = true }))
	}
	if n := o.quotaBackendBytes; n != 0 {
		out = append(out, keeltest.WithConfig(func(c *config.Config) { c.QuotaBackendBytes = n }))
	}
	return out
}

// member is the server under test: a keel member, or an etcd process when
// KEEL_INTEGRATION_ETCD is set.
type member struct {
	keel *keeltest.Member
	etcd *etcdProcess
}

// startMember starts a fresh one-member cluster for t.
func startMember(t *testing.T, opts ...memberOpt) *member {
	t.Helper()
	var o memberOpts
	for _, f := range opts {
		f(&o)
	}
	if bin := os.Getenv(etcdEnv); bin != "" {
		return &member{etcd: startEtcd(t, bin, o)}
	}
	return &member{keel: keeltest.Start(t, o.keelOptions()...)}
}

// cli is the member's client; it changes on restart.
func (m *member) cli() *clientv3.Client {
	if m.keel != nil {
		return m.keel.Client
	}
	return m.etcd.client
}

// kv is the raw KV stub on the member's client connection, for the fields
// the high-level client hides.
func (m *member) kv() pb.KVClient { return pb.NewKVClient(m.cli().ActiveConnection()) }

// endpoint is the client URL, e.g. http://127.0.0.1:41234.
func (m *member) endpoint() string {
	if m.keel != nil {
		return m.keel.Endpoint
	}
	return m.etcd.endpoint
}

// peerURL is the member's advertised peer URL.
func (m *member) peerURL() string {
	if m.keel != nil {
		return m.keel.Config.InitialAdvertisePeerURLs[0].String()
	}
	return m.etcd.peer
}

// newClient connects one more client, closed by t's cleanup.
func (m *member) newClient(t *testing.T, edit ...func(*clientv3.Config)) *clientv3.Client {
	t.Helper()
	if m.keel != nil {
		return m.keel.NewClient(t, edit...)
	}
	return m.etcd.newClient(t, edit...)
}

// restart stops the member cleanly and starts it again on its data dir.
func (m *member) restart(t *testing.T) {
	t.Helper()
	if m.keel != nil {
		m.keel.Restart(t)
		return
	}
	m.etcd.restart(t)
}

// etcdProcess is a real etcd started as a child process, used to check the
// tests' expectations.
type etcdProcess struct {
	t        *testing.T
	bin      string
	args     []string
	endpoint string
	peer     string
	cmd      *exec.Cmd
	waitErr  chan error
	client   *clientv3.Client
}

// etcdStartAttempts bounds the retries when the free ports picked for etcd
// were taken by someone else before etcd bound them.
const etcdStartAttempts = 5

func startEtcd(t *testing.T, bin string, o memberOpts) *etcdProcess {
	t.Helper()
	var lastErr error
	for range etcdStartAttempts {
		ports := make([]int, 2)
		for i := range ports {
			p, err := keeltest.FreePort()
			if err != nil {
				t.Fatal(err)
			}
			ports[i] = p
		}
		client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
		peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
		args := []string{
			"--name", "default", "--data-dir", t.TempDir(),
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", "default=" + peer, "--log-level", "error",
		}
		if o.snapshotCount != 0 {
			args = append(args, "--snapshot-count", strconv.FormatUint(o.snapshotCount, 10))
		}
		if o.snapshotCatchUp != 0 {
			args = append(args, "--snapshot-catchup-entries", strconv.FormatUint(o.snapshotCatchUp, 10))
		}
		if o.maxTxnOps != 0 {
			args = append(args, "--max-txn-ops", strconv.FormatUint(uint64(o.maxTxnOps), 10))
		}
		if o.maxRequestBytes != 0 {
			args = append(args, "--max-request-bytes", strconv.FormatUint(uint64(o.maxRequestBytes), 10))
		}
		if o.enablePprof {
			args = append(args, "--enable-pprof")
		}
		if o.quotaBackendBytes != 0 {
			args = append(args, "--quota-backend-bytes", strconv.FormatInt(o.quotaBackendBytes, 10))
		}
		if o.watchProgressNotifyInterval != 0 {
			args = append(args, "--watch-progress-notify-interval", o.watchProgressNotifyInterval.String())
		}
		e := &etcdProcess{t: t, bin: bin, args: args, endpoint: client, peer: peer}
		t.Cleanup(e.stop)
		if lastErr = e.start(t); lastErr == nil {
			return e
		}
		e.stop()
	}
	t.Fatalf("start etcd: %v", lastErr)
	return nil
}

// start runs etcd and waits until it serves: until the member list read
// through the client port names this process's peer URL (so a port that
// another test's etcd holds is not mistaken for ours).
func (e *etcdProcess) start(t *testing.T) error {
	t.Helper()
	e.cmd = exec.Command(e.bin, e.args...)
	// etcd logs errors while it shuts down; keep its output out of the way.
	e.cmd.Stdout, e.cmd.Stderr = io.Discard, io.Discard
	if err := e.cmd.Start(); err != nil {
		e.cmd = nil
		return err
	}
	e.waitErr = make(chan error, 1)
	go func(c *exec.Cmd, ch chan error) { ch <- c.Wait() }(e.cmd, e.waitErr)
	deadline := time.Now().Add(opTimeout)
	var cli *clientv3.Client
	for {
		// Poll over HTTP first: a gRPC client backs off for a second or more
		// after a refused connection.
		err := e.healthy()
		if err == nil {
			if cli == nil {
				cli = e.newClient(t)
			}
			c, cancel := context.WithTimeout(context.Background(), time.Second)
			resp, lerr := cli.MemberList(c)
			cancel()
			if lerr == nil && len(resp.Members) == 1 && len(resp.Members[0].PeerURLs) == 1 && resp.Members[0].PeerURLs[0] == e.peer {
				break
			}
			err = fmt.Errorf("member list %v (%v) does not name this etcd", resp, lerr)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd at %s not serving after %v: %w", e.endpoint, opTimeout, err)
		}
		select {
		case err := <-e.waitErr:
			e.waitErr <- err
			return fmt.Errorf("etcd exited: %v", err)
		case <-time.After(20 * time.Millisecond): // poll interval
		}
	}
	e.client = cli
	return nil
}

// healthy asks etcd's /health once.
func (e *etcdProcess) healthy() error {
	resp, err := http.Get(e.endpoint + "/health?exclude=NOSPACE&exclude=CORRUPT")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/health: %s", resp.Status)
	}
	return nil
}

func (e *etcdProcess) newClient(t *testing.T, edit ...func(*clientv3.Config)) *clientv3.Client {
	t.Helper()
	cc := clientv3.Config{Endpoints: []string{e.endpoint}, DialTimeout: keeltest.DialTimeout, Logger: zap.NewNop()}
	for _, f := range edit {
		f(&cc)
	}
	cli, err := clientv3.New(cc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func (e *etcdProcess) stop() {
	if e.client != nil {
		e.client.Close()
		e.client = nil
	}
	if e.cmd == nil {
		return
	}
	e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.waitErr:
	case <-time.After(opTimeout):
		e.cmd.Process.Kill()
		<-e.waitErr
	}
	e.cmd = nil
}

func (e *etcdProcess) restart(t *testing.T) {
	t.Helper()
	e.stop()
	if err := e.start(t); err != nil {
		t.Fatalf("restart etcd: %v", err)
	}
}

// ctx returns a context bounded by opTimeout and cancelled when t ends.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), opTimeout)
	t.Cleanup(cancel)
	return c
}

// put writes key=val and returns the revision of the write.
func put(t *testing.T, cli *clientv3.Client, key, val string, opts ...clientv3.OpOption) int64 {
	t.Helper()
	resp, err := cli.Put(ctx(t), key, val, opts...)
	if err != nil {
		t.Fatalf("put %q: %v", key, err)
	}
	return resp.Header.Revision
}

// get reads key with opts and fails the test on error.
func get(t *testing.T, cli *clientv3.Client, key string, opts ...clientv3.OpOption) *clientv3.GetResponse {
	t.Helper()
	resp, err := cli.Get(ctx(t), key, opts...)
	if err != nil {
		t.Fatalf("get %q: %v", key, err)
	}
	return resp
}

// rev returns the member's current revision.
func rev(t *testing.T, cli *clientv3.Client) int64 {
	t.Helper()
	return get(t, cli, "rev-probe").Header.Revision
}

// wantErr fails the test unless err is want: same gRPC code, same message.
// It accepts both raw gRPC errors and the client's rpctypes.EtcdError.
func wantErr(t *testing.T, err, want error) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", want)
	}
	wantS := status.Convert(want)
	if code, msg := errCode(err), rpctypes.ErrorDesc(err); code != wantS.Code() || msg != wantS.Message() {
		t.Fatalf("got error %v (code %v, message %q), want code %v, message %q", err, code, msg, wantS.Code(), wantS.Message())
	}
}

// errCode returns the gRPC code of err, also for rpctypes.EtcdError.
func errCode(err error) codes.Code {
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Code()
	}
	return status.Code(err)
}

// kvString renders a key-value pair with every field, for comparisons.
func kvString(kv *mvccpb.KeyValue) string {
	return fmt.Sprintf("%q=%q c%d m%d v%d l%d", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease)
}

// kvsString renders a list of key-value pairs.
func kvsString(kvs []*mvccpb.KeyValue) string {
	parts := make([]string, len(kvs))
	for i, kv := range kvs {
		parts[i] = kvString(kv)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// keys returns the keys of kvs.
func keys(kvs []*mvccpb.KeyValue) []string {
	out := make([]string, len(kvs))
	for i, kv := range kvs {
		out[i] = string(kv.Key)
	}
	return out
}

// kv builds the expected key-value pair.
func kv(key, val string, create, mod, version int64) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{Key: []byte(key), Value: []byte(val), CreateRevision: create, ModRevision: mod, Version: version}
}

// wantKVs fails the test unless got holds exactly want, field by field.
func wantKVs(t *testing.T, got []*mvccpb.KeyValue, want ...*mvccpb.KeyValue) {
	t.Helper()
	if g, w := kvsString(got), kvsString(want); g != w {
		t.Fatalf("got kvs\n  %s\nwant\n  %s", g, w)
	}
}

// httpDo sends a request without a body to path on the member's client port over HTTP/1.
func httpDo(t *testing.T, m *member, method, path string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx(t), method, m.endpoint()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{}).DialContext}}
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header, string(body)
}
