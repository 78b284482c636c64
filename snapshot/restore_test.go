package snapshot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/keeldb/keel/membership"
	"github.com/keeldb/keel/mvcc"
	"github.com/keeldb/keel/storage"
)

const (
	testCluster = "m1=http://127.0.0.1:12380,m2=http://127.0.0.1:22380,m3=http://127.0.0.1:32380"
	testToken   = "tok"
)

func restoreCfg(name, dir string) RestoreConfig {
	port := map[string]string{"m1": "12380", "m2": "22380", "m3": "32380"}[name]
	return RestoreConfig{
		Name:                name,
		DataDir:             dir,
		InitialCluster:      testCluster,
		InitialClusterToken: testToken,
		PeerURLs:            []string{"http://127.0.0.1:" + port},
	}
}

// addForeignRecords writes records of every namespace a restore keeps or
// drops besides the key space: a lease, auth, a member, an alarm and the
// member's identity.
func addForeignRecords(t testing.TB, e *storage.Engine) {
	t.Helper()
	b := e.DB().NewBatch()
	defer b.Close()
	for _, kv := range [][2]string{
		{string(storage.PrefixLease) + "lease-1", "lease record"},
		{string(storage.PrefixAuth) + "enabled", "auth record"},
		{string(storage.PrefixMembers) + "m\x00\x00\x00\x00\x00\x00\x00\x07", `{"id":7,"peerURLs":["http://old:2380"],"name":"old"}`},
		{string(storage.PrefixAlarms) + "nospace", "alarm"},
	} {
		if err := b.Set([]byte(kv[0]), []byte(kv[1]), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := storage.SetIdentity(b, storage.Identity{MemberID: 7, ClusterID: 9}); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

// keptRecords returns every record of the namespaces a restore keeps.
func keptRecords(t testing.TB, e *storage.Engine) [][2]string {
	t.Helper()
	var out [][2]string
	err := e.EachState(func(k, v []byte) error {
		switch k[0] {
		case storage.PrefixKV, storage.PrefixRevLog, storage.PrefixMVCCMeta, storage.PrefixLease, storage.PrefixAuth:
			out = append(out, [2]string{string(k), string(v)})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func writeFile(t testing.TB, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "snap.db")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func restoreFrom(t testing.TB, path string, skip bool, cfg RestoreConfig) (RestoreResult, error) {
	t.Helper()
	src, err := Open(path, skip)
	if err != nil {
		return RestoreResult{}, err
	}
	defer src.Close()
	return Restore(context.Background(), src, cfg, zaptest.NewLogger(t))
}

func openRestored(t testing.TB, dir string) *storage.Engine {
	t.Helper()
	e, err := storage.Open(storage.DBDir(dir), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func TestRestoreKeepsTheStateAndGivesTheNewClusterItsIdentity(t *testing.T) {
	f := newFixture(t)
	f.populate(t, 60)
	addForeignRecords(t, f.e)
	data, info := f.save(t)
	path := writeFile(t, data)
	want := keptRecords(t, f.e)

	dir := t.TempDir()
	var restored []*storage.Engine
	for _, name := range []string{"m1", "m2", "m3"} {
		res, err := restoreFrom(t, path, false, restoreCfg(name, filepath.Join(dir, name)))
		if err != nil {
			t.Fatal(err)
		}
		if res.Revision != info.Revision || res.CompactRevision != info.CompactRevision {
			t.Fatalf("%s: restored revision %d compacted %d, the file has %d and %d", name, res.Revision, res.CompactRevision, info.Revision, info.CompactRevision)
		}
		restored = append(restored, openRestored(t, filepath.Join(dir, name)))
	}

	// The identity and membership are those a bootstrap with the same
	// flags derives.
	var members []*membership.Member
	for _, p := range []struct{ name, url string }{{"m1", "http://127.0.0.1:12380"}, {"m2", "http://127.0.0.1:22380"}, {"m3", "http://127.0.0.1:32380"}} {
		members = append(members, membership.NewMember(p.name, []string{p.url}, testToken, nil))
	}
	cid := membership.ClusterID(members)
	var voters []uint64
	for _, m := range members {
		voters = append(voters, m.ID)
	}
	slices.Sort(voters)

	var firstState [][2]string
	for i, e := range restored {
		if got := keptRecords(t, e); !slices.Equal(got, want) {
			t.Fatalf("member %d: %d kept records, the source has %d (or they differ)", i, len(got), len(want))
		}
		id, ok, err := e.Identity()
		if err != nil || !ok || id.MemberID != members[i].ID || id.ClusterID != cid {
			t.Fatalf("member %d: identity %+v %v %v, want member %x cluster %x", i, id, ok, err, members[i].ID, cid)
		}
		cl, err := membership.Load(e.DB(), cid)
		if err != nil {
			t.Fatal(err)
		}
		got := cl.Members()
		if len(got) != 3 {
			t.Fatalf("member %d: %d members, want the 3 of --initial-cluster (the old one dropped)", i, len(got))
		}
		for _, m := range got {
			want := members[slices.IndexFunc(members, func(o *membership.Member) bool { return o.ID == m.ID })]
			if m.Name != want.Name || !slices.Equal(m.PeerURLs, want.PeerURLs) || m.IsLearner {
				t.Fatalf("member %d: member %+v, want %+v", i, m, want)
			}
		}
		applied, err := e.Applied()
		if err != nil || applied != 3 {
			t.Fatalf("member %d: applied %d %v, want 3", i, applied, err)
		}
		log, err := storage.OpenRaftLog(e)
		if err != nil {
			t.Fatal(err)
		}
		hs, cs, err := log.InitialState()
		if err != nil {
			t.Fatal(err)
		}
		if hs.GetTerm() != 1 || hs.GetCommit() != 3 || hs.GetVote() != 0 {
			t.Fatalf("member %d: hard state %v, want term 1 commit 3", i, hs)
		}
		if got := slices.Sorted(slices.Values(cs.GetVoters())); !slices.Equal(got, voters) {
			t.Fatalf("member %d: voters %x, want %x", i, got, voters)
		}
		snap, _ := log.Snapshot()
		if snap.GetMetadata().GetIndex() != 3 || snap.GetMetadata().GetTerm() != 1 {
			t.Fatalf("member %d: raft snapshot %v, want index 3 term 1", i, snap.GetMetadata())
		}
		first, _ := log.FirstIndex()
		last, _ := log.LastIndex()
		if first != 4 || last != 3 {
			t.Fatalf("member %d: log [%d, %d], want empty after 3", i, first, last)
		}
		// Nothing of the old cluster survives: no alarm, no old member.
		var state [][2]string
		if err := e.EachState(func(k, v []byte) error {
			if k[0] == storage.PrefixAlarms {
				t.Errorf("member %d: alarm record %q kept", i, k)
			}
			state = append(state, [2]string{string(k), string(v)})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			firstState = state
		} else if !slices.Equal(state, firstState) {
			t.Fatalf("member %d: the state differs from member 0's", i)
		}
	}

	// The restored key space is the source's, as the store reads it.
	s, err := mvcc.Open(restored[0].DB(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	wantHash, err := f.store.HashKV(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	gotHash, err := s.HashKV(context.Background(), 0)
	if err != nil || gotHash != wantHash {
		t.Fatalf("restored HashKV %+v %v, source %+v", gotHash, err, wantHash)
	}
}

func TestRestoreRefusesANonEmptyDataDir(t *testing.T) {
	f := newFixture(t)
	f.populate(t, 5)
	data, _ := f.save(t)
	path := writeFile(t, data)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "keep"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := restoreFrom(t, path, false, restoreCfg("m1", dir))
	if err == nil || err.Error() != fmt.Sprintf("data-dir %q not empty or could not be read", dir) {
		t.Fatalf("restore into a non-empty dir: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "keep")); err != nil || string(b) != "mine" {
		t.Fatalf("the existing data dir was touched: %q %v", b, err)
	}
	// An existing empty directory is fine, as in etcd; restoring into it
	// a second time is refused.
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.Mkdir(empty, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := restoreFrom(t, path, false, restoreCfg("m1", empty)); err != nil {
		t.Fatal(err)
	}
	if _, err := restoreFrom(t, path, false, restoreCfg("m1", empty)); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("second restore into %s: %v", empty, err)
	}
	assertNoLeftovers(t, filepath.Dir(empty), "empty")
}

// assertNoLeftovers fails if parent holds anything but the names given.
func assertNoLeftovers(t *testing.T, parent string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !slices.Contains(names, e.Name()) {
			t.Fatalf("%s holds %s after the restore", parent, e.Name())
		}
	}
}

func TestRestoreOfADamagedFileLeavesNoDataDir(t *testing.T) {
	f := newFixture(t)
	f.populate(t, 200)
	data, _ := f.save(t)
	damage := map[string][]byte{
		"flipped byte mid-file": func() []byte {
			d := bytes.Clone(data)
			d[len(d)/2] ^= 0x40
			return d
		}(),
		"flipped byte in the trailer": func() []byte {
			d := bytes.Clone(data)
			d[len(d)-1] ^= 1
			return d
		}(),
		"cut in half":          data[:len(data)/2],
		"trailer cut":          data[:len(data)-32],
		"one byte short":       data[:len(data)-1],
		"one byte appended":    append(bytes.Clone(data), 0),
		"header only":          data[:40],
		"garbage":              bytes.Repeat([]byte("x"), 4096),
		"empty":                nil,
		"padding made nonzero": nil,
	}
	// A non-zero byte in the padding keeps the structure readable: only the
	// trailer can tell.
	d := bytes.Clone(data)
	d[len(d)-33] = 1
	damage["padding made nonzero"] = d
	for name, d := range damage {
		t.Run(name, func(t *testing.T) {
			path := writeFile(t, d)
			parent := t.TempDir()
			dir := filepath.Join(parent, "d1")
			_, err := restoreFrom(t, path, true, restoreCfg("m1", dir))
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("restore of a damaged file: %v, want an error wrapping ErrCorrupt", err)
			}
			assertNoLeftovers(t, parent)
		})
	}
}

// diskFixture is a fixture on the real filesystem, as a member's data dir.
func diskFixture(t *testing.T, dataDir string) *fixture {
	t.Helper()
	e, err := storage.Open(storage.DBDir(dataDir), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := mvcc.Open(e.DB(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{e: e, store: s}
}

// treeSum hashes every file of dir with its path.
func treeSum(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %d\n", p, len(b))
		h.Write(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

func TestRestoreFromACopyOfAStoppedMembersDataDir(t *testing.T) {
	src := filepath.Join(t.TempDir(), "m1.keel")
	f := diskFixture(t, src)
	f.populate(t, 50)
	addForeignRecords(t, f.e)
	want := keptRecords(t, f.e)
	wantHash, err := f.store.HashKV(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	f.store.Close()
	if err := f.e.Close(); err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), "copy")
	if out, err := exec.Command("cp", "-r", src, cp).CombinedOutput(); err != nil {
		t.Fatalf("cp -r: %v\n%s", err, out)
	}
	before := treeSum(t, cp)

	for _, path := range []string{cp, storage.DBDir(cp)} {
		if _, err := Open(path, false); !errors.Is(err, ErrMissingHash) || err.Error() != "snapshot missing hash but --skip-hash-check=false" {
			t.Fatalf("open %s without --skip-hash-check: %v", path, err)
		}
		dir := filepath.Join(t.TempDir(), "restored")
		if _, err := restoreFrom(t, path, true, restoreCfg("m2", dir)); err != nil {
			t.Fatalf("restore from %s: %v", path, err)
		}
		e := openRestored(t, dir)
		if got := keptRecords(t, e); !slices.Equal(got, want) {
			t.Fatalf("restored from %s: %d kept records, the source has %d (or they differ)", path, len(got), len(want))
		}
		s, err := mvcc.Open(e.DB(), zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.HashKV(context.Background(), 0)
		s.Close()
		if err != nil || got != wantHash {
			t.Fatalf("restored HashKV %+v %v, source %+v", got, err, wantHash)
		}
	}
	if after := treeSum(t, cp); after != before {
		t.Fatal("reading the copy changed it")
	}
	// A directory that is no data dir is refused, whatever the flag.
	if _, err := Open(t.TempDir(), true); err == nil || !strings.Contains(err.Error(), "neither a keel data dir") {
		t.Fatalf("open an unrelated dir: %v", err)
	}
}

func TestRestoreBumpsTheRevisionAndMarksItCompacted(t *testing.T) {
	f := newFixture(t)
	f.populate(t, 30)
	data, info := f.save(t)
	path := writeFile(t, data)

	for _, c := range []struct {
		bump uint64
		mark bool
	}{{1000, false}, {0, true}} {
		cfg := restoreCfg("m1", filepath.Join(t.TempDir(), "d"))
		cfg.BumpRevision, cfg.MarkCompacted = c.bump, c.mark
		if _, err := restoreFrom(t, path, false, cfg); !errors.Is(err, ErrBumpNeedsMarkCompacted) {
			t.Fatalf("bump %d mark %v: %v", c.bump, c.mark, err)
		}
	}

	dir := filepath.Join(t.TempDir(), "d")
	cfg := restoreCfg("m1", dir)
	cfg.BumpRevision, cfg.MarkCompacted = 1000, true
	res, err := restoreFrom(t, path, false, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Revision != info.Revision+1000 || res.CompactRevision != info.Revision+1000 {
		t.Fatalf("restored revision %d compacted %d, want both %d", res.Revision, res.CompactRevision, info.Revision+1000)
	}
	e := openRestored(t, dir)
	s, err := mvcc.Open(e.DB(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	<-s.WaitCompactions()
	if s.Rev() != info.Revision+1000 || s.CompactRev() != info.Revision+1000 {
		t.Fatalf("store at revision %d compacted %d", s.Rev(), s.CompactRev())
	}
	if _, err := s.HashKV(context.Background(), info.Revision); !errors.Is(err, mvcc.ErrCompacted) {
		t.Fatalf("HashKV at the old revision %d: %v, want ErrCompacted", info.Revision, err)
	}
	// Every live key is still there, unchanged.
	wantKV, err := f.store.Read().Range(context.Background(), []byte("key/"), []byte("key0"), mvcc.RangeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gotKV, err := s.Read().Range(context.Background(), []byte("key/"), []byte("key0"), mvcc.RangeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(gotKV.KVs) != len(wantKV.KVs) || len(gotKV.KVs) == 0 {
		t.Fatalf("%d keys after the bump, %d before", len(gotKV.KVs), len(wantKV.KVs))
	}
	for i := range wantKV.KVs {
		if !bytes.Equal(gotKV.KVs[i].Key, wantKV.KVs[i].Key) || !bytes.Equal(gotKV.KVs[i].Value, wantKV.KVs[i].Value) ||
			gotKV.KVs[i].ModRevision != wantKV.KVs[i].ModRevision {
			t.Fatalf("key %d: %v, want %v", i, gotKV.KVs[i], wantKV.KVs[i])
		}
	}
}

func TestRestoreChecksTheMembershipFlags(t *testing.T) {
	f := newFixture(t)
	data, _ := f.save(t)
	path := writeFile(t, data)
	for name, c := range map[string]struct {
		mod  func(*RestoreConfig)
		want string
	}{
		"name not in the cluster": {func(c *RestoreConfig) { c.Name = "m9" }, `couldn't find local name "m9" in the initial cluster configuration`},
		"other peer URL": {func(c *RestoreConfig) { c.PeerURLs = []string{"http://127.0.0.1:9999"} },
			"--initial-cluster has m1=http://127.0.0.1:12380 but missing from --initial-advertise-peer-urls=http://127.0.0.1:9999"},
		"bad peer URL": {func(c *RestoreConfig) { c.PeerURLs = []string{"ftp://x:1"} }, "URL scheme must be http, https, unix, or unixs"},
	} {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			cfg := restoreCfg("m1", filepath.Join(parent, "d"))
			c.mod(&cfg)
			_, err := restoreFrom(t, path, false, cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
			assertNoLeftovers(t, parent)
		})
	}
}

func TestOpenRefusesWhatIsNoSnapshot(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "missing"), true); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("open a missing file: %v", err)
	}
	p := writeFile(t, []byte("hello, this is not a snapshot at all"))
	if _, err := Open(p, true); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open a text file: %v", err)
	}
}
