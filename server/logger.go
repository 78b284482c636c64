package server

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/keeldb/keel/config"
)

// Log outputs with a meaning of their own (--log-outputs); anything else is
// a file path.
const (
	logOutputDefault = "default"
	logOutputStderr  = "stderr"
	logOutputStdout  = "stdout"
	logOutputJournal = "systemd/journal"
	logOutputDevNull = "/dev/null"
)

// journalSocket is where systemd-journald receives native log messages.
const journalSocket = "/run/systemd/journal/socket"

// NewLogger builds the server's logger from --log-level, --log-outputs,
// --log-format and the log rotation flags, as etcd builds its own: JSON to
// stderr by default, with etcd's field names (level, ts, caller, msg) and
// time format so operators' queries keep working. cfg must have passed
// config.Parse, which checks the combinations etcd refuses.
//
// A file output is opened for appending and created if needed; with
// cfg.LogRotation it is written through lumberjack, which rotates it.
// "systemd/journal" sends each entry to journald with the entry's level as
// its priority, and fails when journald's socket cannot be reached, as
// etcd does; an entry journald refuses goes to stderr instead. The files
// stay open for the life of the process.
func NewLogger(cfg *config.Config) (*zap.Logger, error) {
	return newLogger(cfg, logEnv{stderr: os.Stderr, stdout: os.Stdout, journal: systemJournal{}})
}

// logEnv is what the logger writes to, swapped by tests.
type logEnv struct {
	stderr, stdout io.Writer
	journal        journalSender
}

// journalSender reaches journald.
type journalSender interface {
	// Dial checks that journald can be reached.
	Dial() error
	// Send sends one entry.
	Send(msg string, pri journal.Priority, vars map[string]string) error
}

type systemJournal struct{}

func (systemJournal) Dial() error {
	conn, err := net.Dial("unixgram", journalSocket)
	if err != nil {
		return err
	}
	return conn.Close()
}

func (systemJournal) Send(msg string, pri journal.Priority, vars map[string]string) error {
	return journal.Send(msg, pri, vars)
}

// logEncoderConfig is etcd's encoder configuration.
var logEncoderConfig = zapcore.EncoderConfig{
	TimeKey:        "ts",
	LevelKey:       "level",
	NameKey:        "logger",
	CallerKey:      "caller",
	MessageKey:     "msg",
	StacktraceKey:  "stacktrace",
	LineEnding:     zapcore.DefaultLineEnding,
	EncodeLevel:    zapcore.LowercaseLevelEncoder,
	EncodeTime:     zapcore.TimeEncoderOfLayout("2006-01-02T15:04:05.000000Z0700"),
	EncodeDuration: zapcore.StringDurationEncoder,
	EncodeCaller:   zapcore.ShortCallerEncoder,
}

func newLogger(cfg *config.Config, env logEnv) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(cfg.LogLevel)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	var enc zapcore.Encoder
	if cfg.LogFormat == "console" {
		enc = zapcore.NewConsoleEncoder(logEncoderConfig)
	} else {
		enc = zapcore.NewJSONEncoder(logEncoderConfig)
	}
	outputs := slices.Clone(cfg.LogOutputs)
	if len(outputs) == 0 {
		outputs = []string{logOutputDefault}
	}
	if slices.Contains(outputs, logOutputJournal) {
		if len(outputs) > 1 {
			return nil, fmt.Errorf("running with systemd/journal but other '--log-outputs' values (%q) are configured with 'default'; override 'default' value with something else", outputs)
		}
		if err := env.journal.Dial(); err != nil {
			return nil, fmt.Errorf("can't find journal (%w)", err)
		}
		fallback := zapcore.Lock(zapcore.AddSync(env.stderr))
		core := &journalCore{LevelEnabler: level, enc: enc, send: env.journal, fallback: fallback,
			ident: filepath.Base(os.Args[0])}
		return zap.New(core, zap.AddCaller(), zap.ErrorOutput(fallback)), nil
	}
	// As etcd: /dev/null among the outputs discards everything.
	if slices.Contains(outputs, logOutputDevNull) {
		outputs = []string{logOutputDevNull}
	}
	slices.Sort(outputs)
	outputs = slices.Compact(outputs)
	var sinks []zapcore.WriteSyncer
	seenStderr := false
	for _, o := range outputs {
		switch o {
		case logOutputDefault, logOutputStderr:
			if !seenStderr {
				sinks = append(sinks, zapcore.Lock(zapcore.AddSync(env.stderr)))
			}
			seenStderr = true
		case logOutputStdout:
			sinks = append(sinks, zapcore.Lock(zapcore.AddSync(env.stdout)))
		default:
			if cfg.LogRotation != nil {
				r := cfg.LogRotation
				sinks = append(sinks, zapcore.AddSync(&lumberjack.Logger{Filename: o, MaxSize: r.MaxSize,
					MaxAge: r.MaxAge, MaxBackups: r.MaxBackups, LocalTime: r.LocalTime, Compress: r.Compress}))
				continue
			}
			f, err := os.OpenFile(o, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o666)
			if err != nil {
				return nil, fmt.Errorf("open log output %s: %w", o, err)
			}
			sinks = append(sinks, zapcore.Lock(f))
		}
	}
	ws := zapcore.NewMultiWriteSyncer(sinks...)
	// etcd's sampling: per second, the first 100 entries of one message
	// and level, then every 100th.
	core := zapcore.NewSamplerWithOptions(zapcore.NewCore(enc, ws, level), time.Second, 100, 100)
	return zap.New(core, zap.AddCaller(), zap.AddStacktrace(zapcore.ErrorLevel), zap.ErrorOutput(ws)), nil
}

// journalCore sends each entry to journald, encoded as the other outputs
// are, with a priority following its level and the fields etcd sets
// (PACKAGE, SYSLOG_IDENTIFIER).
type journalCore struct {
	zapcore.LevelEnabler
	enc      zapcore.Encoder
	send     journalSender
	fallback zapcore.WriteSyncer
	ident    string
}

func (c *journalCore) With(fields []zapcore.Field) zapcore.Core {
	clone := *c
	clone.enc = c.enc.Clone()
	for _, f := range fields {
		f.AddTo(clone.enc)
	}
	return &clone
}

func (c *journalCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(ent.Level) {
		return ce.AddCore(ent, c)
	}
	return ce
}

func (c *journalCore) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	buf, err := c.enc.EncodeEntry(ent, fields)
	if err != nil {
		return err
	}
	defer buf.Free()
	vars := map[string]string{"SYSLOG_IDENTIFIER": c.ident}
	if ent.Caller.Defined {
		vars["PACKAGE"] = filepath.Dir(ent.Caller.TrimmedPath())
	}
	if err := c.send.Send(buf.String(), journalPriority(ent.Level), vars); err != nil {
		_, werr := c.fallback.Write(buf.Bytes())
		return werr
	}
	return nil
}

func (c *journalCore) Sync() error { return c.fallback.Sync() }

// journalPriority maps a zap level onto a syslog priority, as etcd does.
func journalPriority(l zapcore.Level) journal.Priority {
	switch l {
	case zapcore.DebugLevel:
		return journal.PriDebug
	case zapcore.InfoLevel:
		return journal.PriInfo
	case zapcore.WarnLevel:
		return journal.PriWarning
	case zapcore.ErrorLevel:
		return journal.PriErr
	default:
		return journal.PriCrit
	}
}
