package proc

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
)

// etcdutlMain is etcd's offline tool (snapshot restore, defrag). bench/go.mod
// pins it with a tool directive at the same release as etcd's server, so a
// snapshot the server wrote is restored by the tool of that release.
const etcdutlMain = "go.etcd.io/etcd/etcdutl/v3"

// BuildEtcdutl compiles etcdutl, at the version bench/go.mod pins, into
// dir/etcdutl and returns its path. Like Build, it must run with the working
// directory inside the bench module.
func BuildEtcdutl(ctx context.Context, dir string) (string, error) {
	benchDir, err := moduleDir(ctx)
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "etcdutl")
	if err := goBuild(ctx, benchDir, out, etcdutlMain); err != nil {
		return "", err
	}
	return out, nil
}

// RestoreSnapshot runs `etcdutl snapshot restore file --data-dir dataDir`,
// which checks the snapshot's hash and writes a new one-member data dir
// (etcdutl's default member name and peer URL; the data dir is not meant to
// be started). dataDir must not exist yet. On failure the error holds
// etcdutl's output.
func RestoreSnapshot(ctx context.Context, etcdutl, file, dataDir string) error {
	cmd := exec.CommandContext(ctx, etcdutl, "snapshot", "restore", file, "--data-dir", dataDir)
	cmd.Env = serverEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s snapshot restore %s: %w\n%s", etcdutl, file, err, out.String())
	}
	return nil
}
