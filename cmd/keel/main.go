// Command keel is the keel server: one member of a keel cluster. It takes
// etcd's flags and ETCD_* variables.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"go.uber.org/zap"

	"github.com/keeldb/keel/config"
	"github.com/keeldb/keel/grpcproxy/proxymain"
	"github.com/keeldb/keel/member"
	"github.com/keeldb/keel/server"
	"github.com/keeldb/keel/version"
)

func main() {
	os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

func run(args, environ []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "grpc-proxy" {
		// etcd's "etcd grpc-proxy start": its own flags, no ETCD_* variables.
		return proxymain.Main(args[1:], stdout, stderr)
	}
	cfg, action, err := config.Parse(args, environ)
	if err != nil {
		fmt.Fprintf(stderr, "keel: %v\n", err)
		var syntax *config.SyntaxError
		if errors.As(err, &syntax) {
			fmt.Fprintln(stderr, "Run 'keel --help' for the list of flags.")
			return 2
		}
		return 1
	}
	switch action {
	case config.ActionHelp:
		fmt.Fprint(stdout, config.Usage())
		return 0
	case config.ActionVersion:
		fmt.Fprintf(stdout, "keel Version: %s\netcd API Version: %s\nGit SHA: %s\nGo Version: %s\nGo OS/Arch: %s/%s\n",
			version.Version, version.Etcd, version.GitSHA, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	}
	lg, err := server.NewLogger(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "keel: cannot set up logging: %v\n", err)
		return 1
	}
	defer lg.Sync()
	lg.Info("Running: ", zap.Strings("args", os.Args))
	if cfg.ConfigFile != "" {
		lg.Info(config.MsgConfigFileLoaded, zap.String("path", cfg.ConfigFile))
	}
	for _, n := range cfg.EnvUsed {
		lg.Info(n.Msg, zap.String("variable-name", n.Key), zap.String("variable-value", n.Value))
	}
	for _, n := range cfg.Notices {
		lg.Warn(n.Msg, zap.String("key", n.Key), zap.String("value", n.Value))
	}
	lg.Info("starting a keel server", zap.String("keel-version", version.Version), zap.String("etcd-api-version", version.Etcd),
		zap.String("go-version", runtime.Version()), zap.String("name", cfg.Name), zap.String("data-dir", cfg.DataDir))

	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigc)

	srv, err := server.New(cfg, lg)
	if err != nil {
		lg.Error("failed to start keel server; exiting", zap.Error(err))
		return 1
	}
	return waitForStop(srv, sigc, lg)
}

// waitForStop runs until the member stops, tells systemd once it serves,
// and logs why it stopped: a signal, its removal from the cluster or an
// unrecoverable error. It returns the exit status.
func waitForStop(srv *server.Server, sigc <-chan os.Signal, lg *zap.Logger) int {
	ready := srv.ReadyNotify()
	for {
		select {
		case <-ready:
			ready = nil
			notifySystemd(lg)
		case sig := <-sigc:
			lg.Info("received signal; shutting down", zap.String("signal", sig.String()))
			srv.Stop()
			return 0
		case <-srv.Done():
			err := srv.Err()
			srv.Stop()
			if errors.Is(err, member.ErrRemoved) {
				// Not a failure: the operator removed this member. etcd exits
				// with status 0 too, so a supervisor does not restart it.
				lg.Info("member was removed from the cluster; exiting", zap.Error(err))
				return 0
			}
			lg.Error("member stopped after an unrecoverable error; exiting", zap.Error(err))
			return 1
		}
	}
}
