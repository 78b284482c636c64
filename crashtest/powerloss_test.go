package crashtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/keeldb/keel/config"
	"github.com/keeldb/keel/membership"
	"github.com/keeldb/keel/server"
	"github.com/keeldb/keel/storage"
)

// TestPowerLossLosesNoAcknowledgedWrite runs the keel server in-process on
// Pebble's crashable in-memory filesystem and, under concurrent load from
// the official client, takes a crash clone of the filesystem at a random
// moment: the clone holds what was synced (and, in some rounds, a random part
// of what was not), as a disk would after a power loss, which a kill -9
// cannot show. The server restarts on the clone and must hold every write
// acknowledged before the clone was taken, at its revision, and nothing
// half-applied.
//
// The filesystem starts empty: the server must make its new data dir durable
// itself.
func TestPowerLossLosesNoAcknowledgedWrite(t *testing.T) {
	tgt := newPowerTarget(t, vfs.NewCrashableMem())
	runCrashRounds(t, tgt)
}

// TestPowerLossRightAfterBootstrapKeepsWrites bootstraps a member on an
// empty filesystem, writes one key and loses power: the acknowledged write,
// and with it the data dir, must survive. A member that comes back empty
// bootstraps a new cluster over the old one's acknowledged writes.
func TestPowerLossRightAfterBootstrapKeepsWrites(t *testing.T) {
	tgt := newPowerTarget(t, vfs.NewCrashableMem())
	plan := roundPlan{snapshotCount: 10000, catchUp: 5000}
	st := tgt.start(t, plan)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	const key, value = overlapPrefix + "bootstrap", "acknowledged"
	rev, err := st.Put(ctx, key, value)
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	tgt.crash(t, plan)
	survived := tgt.next.String()
	st = tgt.start(t, plan)
	kvs, cur, err := st.Range(ctx, key, "", 0, 0)
	if err != nil {
		t.Fatalf("read after restart: %v", err)
	}
	if cur < rev || len(kvs) != 1 || kvs[0].value != value || kvs[0].mod != rev {
		t.Errorf("after power loss right after bootstrap the member is at revision %d with %s = %v; want the put acknowledged at revision %d", cur, key, kvs, rev)
		t.Logf("what survived the power loss:\n%s", survived)
	}
	tgt.stop(t)
}

// TestPowerLossDuringBootstrapLeavesStartableMember loses power right after
// bootstrap made the member's identity durable and before Raft saved its
// first state (the bootstrap conf change), the window the server's bootstrap
// leaves between the two. Nothing was acknowledged yet, so the server must
// come up on what survived, serve, and accept a write as the member its
// configuration describes.
func TestPowerLossDuringBootstrapLeavesStartableMember(t *testing.T) {
	fs := vfs.NewCrashableMem()
	tgt := newPowerTarget(t, fs)
	tgt.startTimeout = bootstrapServeTimeout
	ident := tgt.writeIdentityOnly(t)

	// Check on a second, identical clone (opening a database changes it) that
	// the crash falls in the window: the identity survived, Raft state not.
	check := fs.CrashClone(vfs.CrashCloneCfg{})
	tgt.next = fs.CrashClone(vfs.CrashCloneCfg{})
	eng, err := storage.Open(storage.DBDir(powerDataDir), storage.Options{FS: check, Logger: tgt.lg})
	if err != nil {
		t.Fatalf("open the database that survived: %v", err)
	}
	got, haveIdent, err := eng.Identity()
	if err != nil {
		eng.Close()
		t.Fatal(err)
	}
	haveRaft, err := eng.HasRaftState()
	eng.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !haveIdent || got != ident || haveRaft {
		t.Fatalf("the crash does not fall between the identity and Raft's first save: identity %+v (stored %v, want %+v), Raft state stored %v",
			got, haveIdent, ident, haveRaft)
	}

	tgt.start(t, roundPlan{snapshotCount: 10000, catchUp: 5000})
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	resp, err := tgt.cli.Put(ctx, overlapPrefix+"after-bootstrap", "v")
	if err != nil {
		t.Fatalf("put after restart: %v", err)
	}
	if h := resp.Header; h.MemberId != ident.MemberID || h.ClusterId != ident.ClusterID {
		t.Errorf("after restart the server answers as member %x of cluster %x; its configuration makes it member %x of cluster %x",
			h.MemberId, h.ClusterId, ident.MemberID, ident.ClusterID)
	}
	tgt.stop(t)
}

// Raft timing of the in-process server: keel's defaults, spelled out because
// bootstrapServeTimeout depends on them.
const (
	powerHeartbeat       = 100 * time.Millisecond
	powerElectionTimeout = 1000 * time.Millisecond
)

// bootstrapServeTimeout bounds how long a restarted one-member cluster may
// take to serve: ten times its election timeout (a single member campaigns
// at once), so that a member that can never elect itself fails the test
// without holding up the package for startTimeout.
const bootstrapServeTimeout = 10 * powerElectionTimeout

// The in-process member: its name and its data dir on the in-memory FS.
const (
	powerName    = "crash"
	powerDataDir = "/keel"
)

// Messages the power-loss target watches for in the server's log, besides
// those stats counts.
const msgCloseDBFailed = "failed to close the database"

// powerTarget runs the keel server in-process on a crashable in-memory
// filesystem; a crash is a crash clone of that filesystem.
type powerTarget struct {
	lg  *zap.Logger
	obs *observer.ObservedLogs
	// peerURL is the member's peer URL, the same on every start: it is part
	// of the member's identity.
	peerURL string
	// fs holds the running server's files; next, once set by a crash, is
	// what survived, for the next start.
	fs, next *vfs.MemFS
	srv      *server.Server
	cli      *clientv3.Client
	// startTimeout bounds each start; 0 means the package's startTimeout.
	startTimeout time.Duration
}

// newPowerTarget returns a target whose first start runs on fs; everything
// it starts is stopped by t's cleanup.
func newPowerTarget(t *testing.T, fs *vfs.MemFS) *powerTarget {
	t.Helper()
	p := &powerTarget{fs: fs, peerURL: freePeerURL(t)}
	p.lg, p.obs = testLogger(t)
	t.Cleanup(p.shutdown)
	return p
}

// freePeerURL returns a loopback URL on a port that was free when asked.
func freePeerURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free peer port: %v", err)
	}
	defer l.Close()
	return "http://" + l.Addr().String()
}

// config is the server's configuration for a start under plan: one member
// bootstrapping a new cluster of itself, clients on a free port.
func (p *powerTarget) config(t *testing.T, plan roundPlan) *config.Config {
	t.Helper()
	peer, err := url.Parse(p.peerURL)
	if err != nil {
		t.Fatal(err)
	}
	client := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg := config.Default()
	cfg.Name = powerName
	cfg.DataDir = powerDataDir
	cfg.ListenClientURLs = []url.URL{client}
	cfg.AdvertiseClientURLs = []url.URL{client}
	cfg.ListenPeerURLs = []url.URL{*peer}
	cfg.InitialAdvertisePeerURLs = []url.URL{*peer}
	cfg.InitialCluster = powerName + "=" + peer.String()
	cfg.SnapshotCount = plan.snapshotCount
	cfg.SnapshotCatchUpEntries = plan.catchUp
	cfg.HeartbeatInterval = powerHeartbeat
	cfg.ElectionTimeout = powerElectionTimeout
	return cfg
}

// writeIdentityOnly does on p.fs what the server's bootstrap does before
// Raft's first save: it records, durably, the identity the server derives
// from its configuration, and returns it. The database is left open, as a
// bootstrap that loses power would leave it, until the test ends.
func (p *powerTarget) writeIdentityOnly(t *testing.T) storage.Identity {
	t.Helper()
	cfg := p.config(t, roundPlan{})
	self := membership.NewMember(cfg.Name, []string{p.peerURL}, cfg.InitialClusterToken, nil)
	ident := storage.Identity{MemberID: self.ID, ClusterID: membership.ClusterID([]*membership.Member{self})}
	eng, err := storage.Open(storage.DBDir(cfg.DataDir), storage.Options{FS: p.fs, Logger: p.lg})
	if err != nil {
		t.Fatalf("open the database: %v", err)
	}
	t.Cleanup(func() { eng.Close() })
	b := eng.DB().NewBatch()
	defer b.Close()
	if err := storage.SetIdentity(b, ident); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatalf("record the identity: %v", err)
	}
	return ident
}

// testLogger logs warnings and errors to the test and keeps the messages
// that stats counts and stop checks.
func testLogger(t *testing.T) (*zap.Logger, *observer.ObservedLogs) {
	core, obs := observer.New(zapcore.InfoLevel)
	keep := map[string]bool{msgRaftSnapshot: true, msgCompactionDone: true, msgCloseDBFailed: true}
	lg := zaptest.NewLogger(t, zaptest.Level(zapcore.WarnLevel), zaptest.WrapOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return zapcore.NewTee(c, &messageFilter{Core: core, keep: keep})
	})))
	return lg, obs
}

// messageFilter passes on only the entries whose message it keeps.
type messageFilter struct {
	zapcore.Core
	keep map[string]bool
}

func (f *messageFilter) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if !f.keep[e.Message] {
		return ce
	}
	return f.Core.Check(e, ce)
}

func (f *messageFilter) With(fields []zapcore.Field) zapcore.Core {
	return &messageFilter{Core: f.Core.With(fields), keep: f.keep}
}

func (p *powerTarget) lateAcks() bool { return true }

func (p *powerTarget) stats() string {
	return fmt.Sprintf("%d Raft snapshots, %d compactions finished",
		p.obs.FilterMessage(msgRaftSnapshot).Len(), p.obs.FilterMessage(msgCompactionDone).Len())
}

// start stops the running server, if any, and starts the server on what
// survived the last crash (or on p.fs before the first one). It waits for
// the server itself, rather than calling server.Start, to bound the wait.
func (p *powerTarget) start(t *testing.T, plan roundPlan) kvStore {
	t.Helper()
	p.shutdown()
	if p.next != nil {
		p.fs, p.next = p.next, nil
	}
	p.obs.TakeAll()
	srv, err := server.New(p.config(t, plan), p.lg, server.WithFS(p.fs))
	if err != nil {
		t.Fatalf("start the server: %v", err)
	}
	p.srv = srv
	timeout := p.startTimeout
	if timeout == 0 {
		timeout = startTimeout
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-srv.ReadyNotify():
	case <-srv.Done():
		t.Fatalf("the server stopped before serving: %v", srv.Err())
	case <-timer.C:
		t.Fatalf("the server did not serve within %v", timeout)
	}
	urls := srv.ClientURLs()
	if len(urls) == 0 {
		t.Fatal("the server bound no client URL")
	}
	p.cli = dialClient(t, urls[0])
	return clientStore{p.cli}
}

func (p *powerTarget) checkAlive(t *testing.T) {
	t.Helper()
	select {
	case <-p.srv.Done():
		t.Fatalf("the server stopped on its own under load: %v", p.srv.Err())
	default:
	}
}

// crash keeps a crash clone of the filesystem as of now; the server keeps
// running on the original until the next start stops it.
func (p *powerTarget) crash(t *testing.T, plan roundPlan) {
	t.Helper()
	p.checkAlive(t)
	p.next = p.fs.CrashClone(vfs.CrashCloneCfg{
		UnsyncedDataPercent: plan.unsyncedPct,
		RNG:                 rand.New(rand.NewPCG(plan.cloneSeed, uint64(plan.round))),
	})
}

func (p *powerTarget) stop(t *testing.T) {
	t.Helper()
	p.checkAlive(t)
	p.shutdown()
	for _, e := range p.obs.FilterMessage(msgCloseDBFailed).All() {
		t.Errorf("the server stopped, but %s: %v", e.Message, e.ContextMap()["error"])
	}
}

// shutdown closes the client and stops the server, for a restart or at the
// end of the test.
func (p *powerTarget) shutdown() {
	if p.cli != nil {
		p.cli.Close()
		p.cli = nil
	}
	if p.srv != nil {
		p.srv.Stop()
		p.srv = nil
	}
}
