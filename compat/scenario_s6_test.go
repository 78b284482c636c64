//go:build linux

package compat

import (
	"context"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// s6Timeout bounds one run of the S6 script (about 10 s when all is well).
const s6Timeout = 3 * time.Minute

// TestScenarioS6 runs SCENARIOS.md's day-2 operations as the shell script
// testdata/s6.sh: first with the official etcdctl against etcd, which proves
// the script's expectations are etcd's, then with keelctl against keel.
// The script checks every step itself (see its header).
//
// Left out for keel: user/role/auth (issue 7).
func TestScenarioS6(t *testing.T) {
	t.Run("etcd-etcdctl", func(t *testing.T) {
		runS6(t, buildEtcdctl(t), startEtcd(t, "etcd").endpoint, startEtcd(t, "etcd-mirror").endpoint)
	})
	t.Run("keel-keelctl", func(t *testing.T) {
		runS6(t, buildKeelctl(t), startKeel(t, "keel").endpoint, startKeel(t, "keel-mirror").endpoint)
	})
}

func runS6(t *testing.T, cli, endpoint, mirror string, env ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), s6Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "testdata/s6.sh")
	cmd.Env = append(dropPrefix(os.Environ(), "ETCDCTL_"),
		"CTL="+cli, "ETCDCTL_ENDPOINTS="+endpoint, "MIRROR_ENDPOINT="+mirror)
	cmd.Env = append(cmd.Env, env...)
	// The script stops what it starts in the background; its own process
	// group is killed as well, in case it could not (killed on timeout).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second // a leftover child must not hold the output pipe open forever
	defer func() {
		if cmd.Process != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	}()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("testdata/s6.sh with %s: %v\n%s", cli, err, out)
	}
	t.Logf("%s", out)
}
