package server

import (
	"fmt"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/keeldb/keel/config"
)

// NewLogger builds the server's logger from --log-level, --log-outputs and
// --log-format: structured JSON to stderr by default, with etcd's field names
// (level, ts, caller, msg) so operators' queries keep working.
func NewLogger(cfg *config.Config) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(cfg.LogLevel)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	var outputs []string
	for _, o := range cfg.LogOutputs {
		switch o {
		case "default", "stderr":
			outputs = append(outputs, "stderr")
		default:
			outputs = append(outputs, o)
		}
	}
	if len(outputs) == 0 {
		outputs = []string{"stderr"}
	}
	encoding := "json"
	if cfg.LogFormat == "console" {
		encoding = "console"
	}
	zc := zap.Config{
		Level:    zap.NewAtomicLevelAt(level),
		Encoding: encoding,
		EncoderConfig: zapcore.EncoderConfig{
			TimeKey:        "ts",
			LevelKey:       "level",
			NameKey:        "logger",
			CallerKey:      "caller",
			MessageKey:     "msg",
			StacktraceKey:  "stacktrace",
			LineEnding:     zapcore.DefaultLineEnding,
			EncodeLevel:    zapcore.LowercaseLevelEncoder,
			EncodeTime:     zapcore.TimeEncoderOfLayout("2006-01-02T15:04:05.000000Z07:00"),
			EncodeDuration: zapcore.StringDurationEncoder,
			EncodeCaller:   zapcore.ShortCallerEncoder,
		},
		OutputPaths:      outputs,
		ErrorOutputPaths: outputs,
	}
	return zc.Build()
}
