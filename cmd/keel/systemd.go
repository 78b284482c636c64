package main

import (
	"github.com/coreos/go-systemd/v22/daemon"
	"go.uber.org/zap"
)

// notifySystemd tells systemd that the member serves (sd_notify READY=1),
// as etcd does once it is ready, so that a unit with Type=notify is
// started only then. Without $NOTIFY_SOCKET it does nothing, and etcd
// still logs success.
func notifySystemd(lg *zap.Logger) {
	lg.Info("notifying init daemon")
	if _, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
		lg.Error("failed to notify systemd for readiness", zap.Error(err))
		return
	}
	lg.Info("successfully notified init daemon")
}
