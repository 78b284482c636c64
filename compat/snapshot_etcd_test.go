package compat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
)

// history writes the same history to any member: puts, overwrites,
// deletes, a txn, keys with leases, a compaction, writes after it, users
// and roles. It returns the compaction revision.
func history(t *testing.T, c *clientv3.Client) int64 {
	t.Helper()
	ctx := context.Background()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		must(c.Put(ctx, fmt.Sprintf("k/%02d", i), fmt.Sprintf("v%d", i)))
	}
	for i := 0; i < 20; i += 2 {
		must(c.Put(ctx, fmt.Sprintf("k/%02d", i), "again"))
	}
	must(c.Delete(ctx, "k/05"))
	must(c.Delete(ctx, "k/1", clientv3.WithPrefix()))
	must(c.Txn(ctx).If(clientv3.Compare(clientv3.Version("k/00"), "=", 2)).
		Then(clientv3.OpPut("t/a", "1"), clientv3.OpPut("t/b", "2"), clientv3.OpDelete("k/02")).Commit())
	l1, err := c.Grant(ctx, 600)
	if err != nil {
		t.Fatal(err)
	}
	l2, err := c.Grant(ctx, 3600)
	if err != nil {
		t.Fatal(err)
	}
	must(c.Put(ctx, "leased/1", "x", clientv3.WithLease(l1.ID)))
	must(c.Put(ctx, "leased/2", "y", clientv3.WithLease(l2.ID)))
	must(c.Put(ctx, "leased/3", "z", clientv3.WithLease(l2.ID)))
	must(c.Put(ctx, "leased/3", "z2")) // detached again
	r, err := c.Get(ctx, "k/00")
	if err != nil {
		t.Fatal(err)
	}
	compactAt := r.Header.Revision - 5
	must(c.Compact(ctx, compactAt, clientv3.WithCompactPhysical()))
	for i := range 5 {
		must(c.Put(ctx, "after", fmt.Sprint(i)))
	}
	must(c.Delete(ctx, "t/a"))
	must(c.UserAdd(ctx, "root", "rootpw"))
	must(c.RoleAdd(ctx, "root"))
	must(c.UserGrantRole(ctx, "root", "root"))
	must(c.RoleAdd(ctx, "reader"))
	must(c.RoleGrantPermission(ctx, "reader", "k/", "k0", clientv3.PermissionType(clientv3.PermRead)))
	must(c.UserAdd(ctx, "app", "apppw"))
	must(c.UserGrantRole(ctx, "app", "reader"))
	return compactAt
}

// sameData compares what two members serve: every key at the head, a range
// at every revision since the compaction, the compacted revision refused
// alike, leases with their keys, users and roles.
func sameData(t *testing.T, want, got *clientv3.Client, compactAt int64) {
	t.Helper()
	ctx := context.Background()
	wh, err := want.Get(ctx, "", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	gh, err := got.Get(ctx, "", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if wh.Header.Revision != gh.Header.Revision {
		t.Fatalf("revision %d, want %d", gh.Header.Revision, wh.Header.Revision)
	}
	for rev := compactAt; rev <= wh.Header.Revision; rev++ {
		w, err := want.Get(ctx, "", clientv3.WithPrefix(), clientv3.WithRev(rev))
		if err != nil {
			t.Fatal(err)
		}
		g, err := got.Get(ctx, "", clientv3.WithPrefix(), clientv3.WithRev(rev))
		if err != nil {
			t.Fatalf("get at %d: %v", rev, err)
		}
		if len(w.Kvs) != len(g.Kvs) {
			t.Fatalf("at %d: %d keys, want %d", rev, len(g.Kvs), len(w.Kvs))
		}
		for i := range w.Kvs {
			if !proto.Equal(w.Kvs[i], g.Kvs[i]) {
				t.Fatalf("at %d: %v, want %v", rev, g.Kvs[i], w.Kvs[i])
			}
		}
	}
	_, werr := want.Get(ctx, "k/00", clientv3.WithRev(compactAt-1))
	_, gerr := got.Get(ctx, "k/00", clientv3.WithRev(compactAt-1))
	if !errors.Is(werr, rpctypes.ErrCompacted) || !errors.Is(gerr, rpctypes.ErrCompacted) {
		t.Fatalf("get below the compaction: %v and %v, want ErrCompacted from both", gerr, werr)
	}
	wl, err := want.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	gl, err := got.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(wl.Leases) != len(gl.Leases) {
		t.Fatalf("leases %v, want %v", gl.Leases, wl.Leases)
	}
	for _, l := range wl.Leases {
		w, err := want.TimeToLive(ctx, l.ID, clientv3.WithAttachedKeys())
		if err != nil {
			t.Fatal(err)
		}
		g, err := got.TimeToLive(ctx, l.ID, clientv3.WithAttachedKeys())
		if err != nil {
			t.Fatal(err)
		}
		if g.GrantedTTL != w.GrantedTTL || g.TTL <= 0 || fmt.Sprint(g.Keys) != fmt.Sprint(w.Keys) {
			t.Fatalf("lease %x: granted %d ttl %d keys %q, want granted %d keys %q", l.ID, g.GrantedTTL, g.TTL, g.Keys, w.GrantedTTL, w.Keys)
		}
	}
	wu, _ := want.UserList(ctx)
	gu, _ := got.UserList(ctx)
	if fmt.Sprint(wu.Users) != fmt.Sprint(gu.Users) {
		t.Fatalf("users %v, want %v", gu.Users, wu.Users)
	}
	for _, u := range wu.Users {
		w, _ := want.UserGet(ctx, u)
		g, _ := got.UserGet(ctx, u)
		if fmt.Sprint(w.Roles) != fmt.Sprint(g.Roles) {
			t.Fatalf("user %s roles %v, want %v", u, g.Roles, w.Roles)
		}
	}
	wr, _ := want.RoleList(ctx)
	gr, _ := got.RoleList(ctx)
	if fmt.Sprint(wr.Roles) != fmt.Sprint(gr.Roles) {
		t.Fatalf("roles %v, want %v", gr.Roles, wr.Roles)
	}
	for _, r := range wr.Roles {
		w, _ := want.RoleGet(ctx, r)
		g, _ := got.RoleGet(ctx, r)
		if fmt.Sprint(w.Perm) != fmt.Sprint(g.Perm) {
			t.Fatalf("role %s perms %v, want %v", r, g.Perm, w.Perm)
		}
	}
	// The password hashes came along: with auth enabled, the users
	// authenticate with their passwords.
	if _, err := got.AuthEnable(ctx); err != nil {
		t.Fatalf("auth enable on the restored member: %v", err)
	}
	for user, pw := range map[string]string{"root": "rootpw", "app": "apppw"} {
		if _, err := got.Authenticate(ctx, user, pw); err != nil {
			t.Fatalf("authenticate %s on the restored member: %v", user, err)
		}
	}
}

// saveSnapshot streams a member's snapshot into a file, as etcdctl
// snapshot save does.
func saveSnapshot(t *testing.T, c *clientv3.Client, path string) {
	t.Helper()
	rc, err := c.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, rc); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// restoreIntoKeel restores a keel member from file with `keelctl snapshot
// restore`, as an operator migrating from etcd does, and starts it.
func restoreIntoKeel(t *testing.T, keelctl, file string) *target {
	t.Helper()
	cfg := keelConfig(t)
	cfg.InitialClusterToken = "restored"
	code, out, errOut := runBin(t, keelctl, "snapshot", "restore", file, "--name", cfg.Name,
		"--data-dir", cfg.DataDir, "--initial-cluster", cfg.InitialCluster,
		"--initial-cluster-token", cfg.InitialClusterToken, "--initial-advertise-peer-urls", cfg.InitialAdvertisePeerURLs[0].String())
	if code != 0 {
		t.Fatalf("keelctl snapshot restore: exit %d\n%s%s", code, out, errOut)
	}
	return startKeelConfig(t, "keel", cfg)
}

func mustHost(t *testing.T, u string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return p.Host
}

// TestSnapshotFromEtcdImportsIntoKeel: a snapshot of real etcd 3.7, saved
// as etcdctl saves it, imported into keel serves the same keys at every
// revision since the compaction, the same leases and the same auth.
func TestSnapshotFromEtcdImportsIntoKeel(t *testing.T) {
	etcd := startEtcd(t, "etcd")
	compactAt := history(t, etcd.client)
	file := filepath.Join(t.TempDir(), "etcd.db")
	saveSnapshot(t, etcd.client, file)

	etcdutl, keelctl := buildEtcdutl(t), buildKeelctl(t)
	keel := restoreIntoKeel(t, keelctl, file)
	sameData(t, etcd.client, keel.client, compactAt)

	// keelctl snapshot status describes the etcd file as etcdutl does.
	code, want, errOut := runBin(t, etcdutl, "snapshot", "status", file, "-w", "json")
	if code != 0 {
		t.Fatalf("etcdutl snapshot status: %d %s", code, errOut)
	}
	code, got, errOut := runBin(t, keelctl, "snapshot", "status", file, "-w", "json")
	if code != 0 || got != want {
		t.Fatalf("keelctl snapshot status of an etcd file (exit %d, %s):\n got %s\nwant %s", code, errOut, got, want)
	}
}

// TestSnapshotFromKeelExportsToEtcd: a keel snapshot exported to etcd's
// format, restored with the official etcdutl and served by real etcd 3.7,
// serves what keel served.
func TestSnapshotFromKeelExportsToEtcd(t *testing.T) {
	keel := startKeel(t, "keel")
	compactAt := history(t, keel.client)
	dir := t.TempDir()
	keelFile := filepath.Join(dir, "keel.snap")
	saveSnapshot(t, keel.client, keelFile)
	etcdFile := filepath.Join(dir, "etcd.db")
	keelctl := buildKeelctl(t)
	if code, out, errOut := runBin(t, keelctl, "snapshot", "export", keelFile, etcdFile); code != 0 {
		t.Fatalf("keelctl snapshot export: exit %d\n%s%s", code, out, errOut)
	}
	if code, _, _ := runBin(t, keelctl, "snapshot", "export", keelFile, etcdFile); code == 0 {
		t.Fatal("export overwrote its output")
	}

	etcdutl := buildEtcdutl(t)
	cfg := etcdConfig(t, "etcd")
	cfg.InitialClusterToken = "restored"
	code, out, errOut := runBin(t, etcdutl, "snapshot", "restore", etcdFile, "--name", cfg.Name,
		"--data-dir", cfg.Dir, "--initial-cluster", cfg.InitialCluster,
		"--initial-cluster-token", cfg.InitialClusterToken, "--initial-advertise-peer-urls", cfg.AdvertisePeerUrls[0].String())
	if code != 0 {
		t.Fatalf("etcdutl snapshot restore: exit %d\n%s%s", code, out, errOut)
	}
	e := startEmbedEtcd(t, "etcd", cfg)
	etcd := newTarget(t, "etcd", e.Clients[0].Addr().String())
	sameData(t, keel.client, etcd.client, compactAt)
}
