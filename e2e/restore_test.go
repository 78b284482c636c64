package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/keeldb/keel/internal/keelbin"
)

func newClient(t *testing.T, endpoints ...string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func endpoints(specs []memberSpec) []string {
	var eps []string
	for _, s := range specs {
		eps = append(eps, s.clientURL())
	}
	return eps
}

// restoreArgs are the `snapshot restore` arguments of member s.
func restoreArgs(src string, s memberSpec, extra ...string) []string {
	return append([]string{"snapshot", "restore", src, "--name", s.name, "--data-dir", s.dataDir,
		"--initial-cluster", s.initialCluster, "--initial-cluster-token", s.token,
		"--initial-advertise-peer-urls", s.peerURL()}, extra...)
}

// TestBackupAndDisasterRecoveryWithProcesses is SCENARIOS.md's S3 and S4
// with member processes: a snapshot saved from a live three-member cluster
// under write load restores every member of a new cluster, which then holds
// the key deleted after the save and every write acknowledged before it,
// identically on every member; restore refuses an existing data dir; a
// copy of a stopped member's data dir restores with --skip-hash-check only.
func TestBackupAndDisasterRecoveryWithProcesses(t *testing.T) {
	dir := t.TempDir()
	keelbinWarm(t)
	old := clusterSpecs(t, filepath.Join(dir, "old"), "tok-old", "m1", "m2", "m3")
	ps := startAll(t, old)
	cli := newClient(t, endpoints(old)...)
	if _, err := cli.Put(ctx(t), "name", "张三"); err != nil {
		t.Fatal(err)
	}

	// A write load through all members while the snapshot is saved.
	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
		stop  = make(chan struct{})
		errs  = make(chan error, 2)
	)
	for w := range 2 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := fmt.Sprintf("load/%d/%06d", w, i)
				if _, err := cli.Put(ctx(t), k, strings.Repeat("v", 100)); err != nil {
					errs <- fmt.Errorf("put %s: %w", k, err)
					return
				}
				mu.Lock()
				acked = append(acked, k)
				mu.Unlock()
			}
		})
	}
	// Let the load run a little first.
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 200 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	beforeSave := append([]string(nil), acked...)
	mu.Unlock()
	snap := filepath.Join(dir, "snap.db")
	code, out, errOut := keelctl("--endpoints", old[0].clientURL(), "snapshot", "save", snap)
	if code != 0 || !strings.Contains(out, "Snapshot saved at "+snap) {
		t.Fatalf("snapshot save: exit %d\n%s\n%s", code, out, errOut)
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("write load during the save: %v", err)
	default:
	}
	if len(beforeSave) == 0 {
		t.Fatal("no write acknowledged before the save")
	}
	t.Logf("%d writes acknowledged before the save, %d in all", len(beforeSave), len(acked))
	if _, err := cli.Delete(ctx(t), "name"); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = keelctl("snapshot", "status", snap, "-w", "json")
	if code != 0 {
		t.Fatalf("snapshot status: exit %d\n%s\n%s", code, out, errOut)
	}
	cli.Close()
	stopAll(t, ps)

	// Restore every member of a new cluster, on new ports.
	nw := clusterSpecs(t, filepath.Join(dir, "new"), "tok-new", "n1", "n2", "n3")
	for _, s := range nw {
		if code, out, errOut := keelctl(restoreArgs(snap, s)...); code != 0 {
			t.Fatalf("restore %s: exit %d\n%s\n%s", s.name, code, out, errOut)
		}
	}
	// A second restore into a data dir now in use is refused.
	code, _, errOut = keelctl(restoreArgs(snap, nw[0])...)
	if want := fmt.Sprintf("Error: data-dir %q not empty or could not be read", nw[0].dataDir); code != 1 || !strings.Contains(errOut, want) {
		t.Fatalf("restore into an existing data dir: exit %d, stderr %q, want 1 and %q", code, errOut, want)
	}

	ps = startAll(t, nw)
	cli = newClient(t, endpoints(nw)...)
	checkRestored(t, nw, beforeSave)

	// The restored cluster takes writes, and a restarted member keeps the data.
	if _, err := cli.Put(ctx(t), "after", "restore"); err != nil {
		t.Fatalf("write to the restored cluster: %v", err)
	}
	ps[1].stop(t)
	ps[1] = start(t, nw[1])
	ps[1].waitReady(t)
	one := newClient(t, nw[1].clientURL())
	for _, k := range []string{"name", "after"} {
		resp, err := one.Get(ctx(t), k)
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("get %s from the restarted %s: %v %v", k, nw[1].name, resp, err)
		}
	}
	cli.Close()
	one.Close()
	stopAll(t, ps)

	// A copy of a stopped member's data dir restores a one-member cluster,
	// with --skip-hash-check only.
	cp := filepath.Join(dir, "copy.keel")
	if out, err := exec.Command("cp", "-r", nw[0].dataDir, cp).CombinedOutput(); err != nil {
		t.Fatalf("cp -r: %v\n%s", err, out)
	}
	single := clusterSpecs(t, filepath.Join(dir, "single"), "tok-single", "s1")
	code, _, errOut = keelctl(restoreArgs(cp, single[0])...)
	if code != 1 || !strings.Contains(errOut, "Error: snapshot missing hash but --skip-hash-check=false") {
		t.Fatalf("restore of a data dir copy without --skip-hash-check: exit %d, stderr %q", code, errOut)
	}
	if code, out, errOut := keelctl(restoreArgs(cp, single[0], "--skip-hash-check")...); code != 0 {
		t.Fatalf("restore of a data dir copy: exit %d\n%s\n%s", code, out, errOut)
	}
	p := start(t, single[0])
	p.waitReady(t)
	scli := newClient(t, single[0].clientURL())
	for k, want := range map[string]string{"name": "张三", "after": "restore", beforeSave[len(beforeSave)-1]: strings.Repeat("v", 100)} {
		resp, err := scli.Get(ctx(t), k)
		if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != want {
			t.Fatalf("get %s from the cluster restored from a copy: %v %v", k, resp, err)
		}
	}
	members, err := scli.MemberList(ctx(t))
	if err != nil || len(members.Members) != 1 || members.Members[0].Name != "s1" {
		t.Fatalf("members of the cluster restored from a copy: %v %v", members, err)
	}
	scli.Close()
	p.stop(t)
}

// checkRestored checks the restored cluster: name is back on every member
// (serializable reads) and through a linearizable read, every key in acked
// is there, and the members' HashKV agree at the head and at a fixed
// revision.
func checkRestored(t *testing.T, specs []memberSpec, acked []string) {
	t.Helper()
	var revs []int64
	var hashes []uint32
	var fixed int64
	for i, s := range specs {
		c := newClient(t, s.clientURL())
		resp, err := c.Get(ctx(t), "name", clientv3.WithSerializable())
		if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "张三" {
			t.Fatalf("%s: serializable get name: %v %v", s.name, resp, err)
		}
		resp, err = c.Get(ctx(t), "name")
		if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "张三" {
			t.Fatalf("%s: linearizable get name: %v %v", s.name, resp, err)
		}
		if i == 0 {
			fixed = resp.Header.Revision
			all, err := c.Get(ctx(t), "load/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
			if err != nil {
				t.Fatal(err)
			}
			have := make(map[string]bool, len(all.Kvs))
			for _, kv := range all.Kvs {
				have[string(kv.Key)] = true
			}
			for _, k := range acked {
				if !have[k] {
					t.Fatalf("%s acknowledged before the save is missing after the restore", k)
				}
			}
		}
		h0, err := c.HashKV(ctx(t), s.clientURL(), 0)
		if err != nil {
			t.Fatalf("%s: HashKV: %v", s.name, err)
		}
		hf, err := c.HashKV(ctx(t), s.clientURL(), fixed)
		if err != nil {
			t.Fatalf("%s: HashKV at %d: %v", s.name, fixed, err)
		}
		revs = append(revs, h0.Header.Revision)
		hashes = append(hashes, h0.Hash, hf.Hash)
		c.Close()
	}
	for i := 1; i < len(specs); i++ {
		if revs[i] != revs[0] || hashes[2*i] != hashes[0] || hashes[2*i+1] != hashes[1] {
			t.Fatalf("members disagree: revisions %v, HashKV (head, at %d) %x", revs, fixed, hashes)
		}
	}
}

// keelbinWarm builds the keel binary before anything is timed.
func keelbinWarm(t *testing.T) {
	t.Helper()
	start := time.Now()
	keelbin.Path(t)
	t.Logf("keel binary ready in %v", time.Since(start).Round(time.Millisecond))
}
