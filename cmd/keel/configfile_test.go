package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestConfigFileRunsTheMember starts keel with --config-file and a
// contradicting flag and variable: the member takes its settings from the
// file and logs etcd's message naming the file.
func TestConfigFileRunsTheMember(t *testing.T) {
	bin := keelBinary(t)
	dir := t.TempDir()
	logFile := filepath.Join(dir, "keel.log")
	peer := freePort(t)
	cfgPath := filepath.Join(dir, "keel.yml")
	text := fmt.Sprintf("name: from-file\ndata-dir: %s\nlisten-peer-urls: %s\ninitial-advertise-peer-urls: %s\n"+
		"listen-client-urls: http://127.0.0.1:0\nadvertise-client-urls: http://127.0.0.1:0\nlog-outputs: [%s]\n",
		filepath.Join(dir, "m.keel"), peer, peer, logFile)
	if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--config-file", cfgPath, "--name", "from-flag")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "ETCD_DATA_DIR=" + filepath.Join(dir, "wrong")}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(logFile)
		if strings.Contains(string(b), `"msg":"ready to serve client requests"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready; log %s; stderr %s", b, stderr.String())
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v", err)
	}
	recs := logRecords(t, logFile)
	if r := findLog(recs, "loaded server configuration, other configuration command line flags and environment variables will be ignored if provided"); r == nil || r["path"] != cfgPath || r["level"] != "info" {
		t.Errorf("config file message: %v", r)
	}
	if r := findLog(recs, "starting a keel server"); r == nil || r["name"] != "from-file" || r["data-dir"] != filepath.Join(dir, "m.keel") {
		t.Errorf("started as %v", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "wrong")); !os.IsNotExist(err) {
		t.Errorf("ETCD_DATA_DIR was used: %v", err)
	}
}
