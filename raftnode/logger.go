package raftnode

import (
	"fmt"

	"go.uber.org/zap"
)

// raftLogger adapts zap to raft.Logger.
type raftLogger struct{ s *zap.SugaredLogger }

func newRaftLogger(lg *zap.Logger) *raftLogger {
	return &raftLogger{s: lg.WithOptions(zap.AddCallerSkip(1)).Sugar()}
}

func (l *raftLogger) Debug(v ...interface{})                 { l.s.Debug(fmt.Sprint(v...)) }
func (l *raftLogger) Debugf(format string, v ...interface{}) { l.s.Debugf(format, v...) }
func (l *raftLogger) Error(v ...interface{})                 { l.s.Error(fmt.Sprint(v...)) }
func (l *raftLogger) Errorf(format string, v ...interface{}) { l.s.Errorf(format, v...) }
func (l *raftLogger) Info(v ...interface{})                  { l.s.Info(fmt.Sprint(v...)) }
func (l *raftLogger) Infof(format string, v ...interface{})  { l.s.Infof(format, v...) }
func (l *raftLogger) Warning(v ...interface{})               { l.s.Warn(fmt.Sprint(v...)) }
func (l *raftLogger) Warningf(format string, v ...interface{}) {
	l.s.Warnf(format, v...)
}
func (l *raftLogger) Fatal(v ...interface{})                 { l.s.Fatal(fmt.Sprint(v...)) }
func (l *raftLogger) Fatalf(format string, v ...interface{}) { l.s.Fatalf(format, v...) }
func (l *raftLogger) Panic(v ...interface{})                 { l.s.Panic(fmt.Sprint(v...)) }
func (l *raftLogger) Panicf(format string, v ...interface{}) { l.s.Panicf(format, v...) }
