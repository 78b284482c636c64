package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
	"go.uber.org/zap"

	"github.com/keeldb/keel/config"
)

func parseLogConfig(t *testing.T, args ...string) *config.Config {
	t.Helper()
	cfg, _, err := config.Parse(args, nil)
	if err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	return cfg
}

// jsonLines reads a log file as JSON lines with etcd's keys.
func jsonLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("%s: line is not JSON: %q", path, sc.Text())
		}
		for _, k := range []string{"level", "ts", "caller", "msg"} {
			if _, ok := rec[k]; !ok {
				t.Fatalf("%s: line without %q: %q", path, k, sc.Text())
			}
		}
		out = append(out, rec)
	}
	return out
}

type fakeJournal struct {
	dialErr, sendErr error
	sent             []sentEntry
}

type sentEntry struct {
	msg  string
	pri  journal.Priority
	vars map[string]string
}

func (j *fakeJournal) Dial() error { return j.dialErr }
func (j *fakeJournal) Send(msg string, pri journal.Priority, vars map[string]string) error {
	if j.sendErr != nil {
		return j.sendErr
	}
	j.sent = append(j.sent, sentEntry{msg, pri, vars})
	return nil
}

func TestLoggerWritesJSONLinesToFileAndStdout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keel.log")
	// An existing file is appended to, not truncated.
	if err := os.WriteFile(path, []byte(`{"level":"info","ts":"x","caller":"c","msg":"before"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := parseLogConfig(t, "--log-outputs", path+",stdout", "--log-level", "warn")
	var stdout, stderr bytes.Buffer
	lg, err := newLogger(cfg, logEnv{stderr: &stderr, stdout: &stdout, journal: &fakeJournal{}})
	if err != nil {
		t.Fatal(err)
	}
	lg.Info("not logged at warn level")
	lg.Warn("disk is slow", zap.String("data-dir", "/var/lib/etcd"))
	lg.Sync()
	recs := jsonLines(t, path)
	if len(recs) != 2 || recs[0]["msg"] != "before" || recs[1]["msg"] != "disk is slow" || recs[1]["level"] != "warn" || recs[1]["data-dir"] != "/var/lib/etcd" {
		t.Fatalf("file holds %v", recs)
	}
	// etcd's time layout: microseconds and a zone without a colon.
	if _, err := time.Parse("2006-01-02T15:04:05.000000Z0700", recs[1]["ts"].(string)); err != nil {
		t.Errorf("ts %q: %v", recs[1]["ts"], err)
	}
	if !strings.Contains(stdout.String(), `"msg":"disk is slow"`) || strings.Count(stdout.String(), "\n") != 1 {
		t.Errorf("stdout: %q", stdout.String())
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr is not an output but got %q", stderr.String())
	}
}

func TestLoggerDefaultIsStderrAndConsoleFormatWorks(t *testing.T) {
	var stdout, stderr bytes.Buffer
	lg, err := newLogger(parseLogConfig(t, "--log-format", "console"), logEnv{stderr: &stderr, stdout: &stdout, journal: &fakeJournal{}})
	if err != nil {
		t.Fatal(err)
	}
	lg.Info("hello", zap.Int("n", 1))
	if s := stderr.String(); !strings.Contains(s, "\tinfo\t") || !strings.Contains(s, "hello\t{\"n\": 1}") || json.Valid([]byte(s)) {
		t.Errorf("console line on stderr: %q", s)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout: %q", stdout.String())
	}
}

// TestLoggerRotatesTheFileOutput: with --enable-log-rotation the file is
// rotated at maxsize megabytes and at most maxbackups old files are kept.
func TestLoggerRotatesTheFileOutput(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keel.log")
	cfg := parseLogConfig(t, "--log-outputs", path, "--enable-log-rotation",
		"--log-rotation-config-json", `{"maxsize": 1, "maxage": 0, "maxbackups": 2, "localtime": false, "compress": false}`)
	if cfg.LogRotation == nil || cfg.LogRotation.MaxSize != 1 || cfg.LogRotation.MaxBackups != 2 {
		t.Fatalf("LogRotation = %+v", cfg.LogRotation)
	}
	lg, err := newLogger(cfg, logEnv{stderr: new(bytes.Buffer), stdout: new(bytes.Buffer), journal: &fakeJournal{}})
	if err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", 1000)
	// About 4 MB: four rotations. Distinct messages dodge the sampler.
	for i := range 4000 {
		lg.Info(fmt.Sprint("filler ", i), zap.String("pad", pad))
	}
	lg.Sync()
	// lumberjack removes old backups in a goroutine: poll.
	var backups []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		backups, _ = filepath.Glob(filepath.Join(dir, "keel-*.log"))
		if len(backups) == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	if len(backups) != 2 {
		t.Fatalf("backups %q, want 2", backups)
	}
	for _, f := range append(backups, path) {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > 1<<20 {
			t.Errorf("%s is %d bytes, above maxsize", f, fi.Size())
		}
		if len(jsonLines(t, f)) == 0 {
			t.Errorf("%s holds no lines", f)
		}
	}
}

func TestLoggerRotationFlagsAreChecked(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--enable-log-rotation"}, "--log-outputs requires a single file path when --log-rotate-config-json is defined"},
		{[]string{"--enable-log-rotation", "--log-outputs", "a.log,b.log"}, "--log-outputs requires a single file path"},
		{[]string{"--enable-log-rotation", "--log-outputs", "a.log", "--log-rotation-config-json", "{"}, "improperly formatted log rotation config"},
		{[]string{"--enable-log-rotation", "--log-outputs", "a.log", "--log-rotation-config-json", `{"maxsize":"big"}`}, "invalid log rotation config"},
		{[]string{"--logger", "capnslog"}, "--logger=capnslog is removed in v3.5"},
		{[]string{"--logger", "glog"}, `unknown logger option "glog"`},
		{[]string{"--log-outputs", "systemd/journal,stderr"}, "running with systemd/journal but other '--log-outputs' values"},
	} {
		_, _, err := config.Parse(tt.args, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want %q", tt.args, err, tt.want)
		}
	}
}

func TestLoggerToJournal(t *testing.T) {
	cfg := parseLogConfig(t, "--log-outputs", "systemd/journal", "--log-level", "debug")
	j := &fakeJournal{}
	var stderr bytes.Buffer
	lg, err := newLogger(cfg, logEnv{stderr: &stderr, stdout: new(bytes.Buffer), journal: j})
	if err != nil {
		t.Fatal(err)
	}
	lg.Debug("d")
	lg.Info("i", zap.String("k", "v"))
	lg.With(zap.String("member", "m1")).Warn("w")
	lg.Error("e")
	want := []journal.Priority{journal.PriDebug, journal.PriInfo, journal.PriWarning, journal.PriErr}
	if len(j.sent) != len(want) {
		t.Fatalf("sent %d entries: %+v", len(j.sent), j.sent)
	}
	for i, e := range j.sent {
		if e.pri != want[i] {
			t.Errorf("entry %d priority %d, want %d", i, e.pri, want[i])
		}
		if e.vars["PACKAGE"] != "server" || e.vars["SYSLOG_IDENTIFIER"] == "" {
			t.Errorf("entry %d vars %v", i, e.vars)
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(e.msg), &rec); err != nil {
			t.Errorf("entry %d is not a JSON line: %q", i, e.msg)
		}
	}
	if !strings.Contains(j.sent[2].msg, `"member":"m1"`) || !strings.Contains(j.sent[1].msg, `"k":"v"`) {
		t.Errorf("fields lost: %q %q", j.sent[1].msg, j.sent[2].msg)
	}
	// An entry journald refuses goes to stderr, as in etcd.
	j.sendErr = errors.New("journal full")
	lg.Info("fallback")
	if !strings.Contains(stderr.String(), `"msg":"fallback"`) {
		t.Errorf("stderr after a failed send: %q", stderr.String())
	}
}

// TestLoggerWithoutJournalFails: etcd refuses to start with
// --log-outputs=systemd/journal when journald cannot be reached.
func TestLoggerWithoutJournalFails(t *testing.T) {
	cfg := parseLogConfig(t, "--log-outputs", "systemd/journal")
	_, err := newLogger(cfg, logEnv{stderr: new(bytes.Buffer), stdout: new(bytes.Buffer), journal: &fakeJournal{dialErr: errors.New("dial unixgram " + journalSocket + ": connect: no such file or directory")}})
	if err == nil || err.Error() != "can't find journal (dial unixgram /run/systemd/journal/socket: connect: no such file or directory)" {
		t.Fatalf("error %v", err)
	}
	if _, serr := os.Stat(journalSocket); serr == nil {
		t.Skip("this host runs journald")
	}
	if _, err := NewLogger(cfg); err == nil || !strings.HasPrefix(err.Error(), "can't find journal (dial unixgram /run/systemd/journal/socket: ") {
		t.Fatalf("without journald: %v", err)
	}
}
