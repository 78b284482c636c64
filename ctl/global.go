package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/bgentry/speakeasy"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// envPrefix is the prefix of the environment variables that stand in for
// global flags: ETCDCTL_ENDPOINTS for --endpoints, and so on.
const envPrefix = "ETCDCTL_"

// globals holds the global flags, which every command takes.
type globals struct {
	endpoints        []string
	dialTimeout      time.Duration
	commandTimeout   time.Duration
	keepAliveTime    time.Duration
	keepAliveTimeout time.Duration
	maxRecvBytes     int
	maxRequestBytes  int

	writeOut string
	hex      bool
	debug    bool

	cacert, cert, key     string
	insecureSkipVerify    bool
	insecureTransport     bool
	insecureDiscovery     bool
	discoverySRV          string
	discoverySRVName      string
	user, password, token string

	stdio Stdio
	// envApplied is set once the ETCDCTL_* variables have been read,
	// envChecked once the unused ones have been reported.
	envApplied, envChecked bool
	// flagCommandTimeout is --command-timeout as given on the command line
	// (or its default), before ETCDCTL_COMMAND_TIMEOUT; see commandContext.
	flagCommandTimeout time.Duration
	flags              *pflag.FlagSet
}

func (g *globals) register(fs *pflag.FlagSet) {
	g.flags = fs
	fs.StringSliceVar(&g.endpoints, "endpoints", []string{"127.0.0.1:2379"}, "the cluster addresses to talk to, comma separated")
	fs.DurationVar(&g.dialTimeout, "dial-timeout", 2*time.Second, "how long to wait for a connection to an endpoint")
	fs.DurationVar(&g.commandTimeout, "command-timeout", 5*time.Second, "how long a one-shot request may take, connecting aside")
	fs.DurationVar(&g.keepAliveTime, "keepalive-time", 2*time.Second, "idle time after which keelctl pings the server")
	fs.DurationVar(&g.keepAliveTimeout, "keepalive-timeout", 6*time.Second, "how long a ping may go unanswered before the connection is dropped")
	fs.IntVar(&g.maxRecvBytes, "max-recv-bytes", 0, "largest response keelctl accepts, in bytes (0 means 2 GiB)")
	fs.IntVar(&g.maxRequestBytes, "max-request-bytes", 0, "largest request keelctl sends, in bytes (0 means 2 MiB)")
	fs.StringVarP(&g.writeOut, "write-out", "w", "simple", "how to print the result: simple, json, fields, protobuf or table")
	fs.BoolVar(&g.hex, "hex", false, "print keys, values and IDs in hexadecimal")
	fs.BoolVar(&g.debug, "debug", false, "log what the client library does, on standard error")
	fs.StringVar(&g.cacert, "cacert", "", "CA bundle that signed the servers' TLS certificates")
	fs.StringVar(&g.cert, "cert", "", "TLS certificate keelctl presents to the servers")
	fs.StringVar(&g.key, "key", "", "private key of --cert")
	fs.BoolVar(&g.insecureSkipVerify, "insecure-skip-tls-verify", false, "accept any server certificate (tests only: this is unsafe)")
	fs.BoolVar(&g.insecureTransport, "insecure-transport", true, "talk plain text when no TLS file is given")
	fs.BoolVar(&g.insecureDiscovery, "insecure-discovery", true, "also use the plain-text endpoints DNS discovery finds")
	fs.StringVarP(&g.discoverySRV, "discovery-srv", "d", "", "find the endpoints in this domain's DNS SRV records")
	fs.StringVar(&g.discoverySRVName, "discovery-srv-name", "", "suffix of the SRV service names DNS discovery looks up")
	fs.StringVar(&g.user, "user", "", "log in as this user; add :password or be asked for it")
	fs.StringVar(&g.password, "password", "", "password of --user, which then holds the name alone")
	fs.StringVar(&g.token, "auth-jwt-token", "", "log in with this JWT instead of --user and --password")
}

// logger is keelctl's own logger for warnings about its configuration, in
// the JSON form etcdctl uses, on standard error.
func (g *globals) logger() *zap.Logger {
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey = "ts"
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(g.stdio.Err), zap.InfoLevel)
	return zap.New(core, zap.AddCaller(), zap.WithFatalHook(returnHook{}))
}

// returnHook lets a fatal log entry return to its caller, which ends keelctl
// with the right exit code through Main instead of os.Exit in the logger.
type returnHook struct{}

func (returnHook) OnWrite(*zapcore.CheckedEntry, []zapcore.Field) {}

// applyEnv sets every global flag not given on the command line from its
// non-empty ETCDCTL_* variable, as etcdctl does: a value the flag rejects is
// ignored (the flag keeps its default, or the zero value where pflag stores
// it anyway). It prints nothing: checkEnv does, later, as etcdctl.
func (g *globals) applyEnv() error {
	if g.envApplied {
		return nil
	}
	g.envApplied = true
	g.flagCommandTimeout = g.commandTimeout
	g.flags.VisitAll(func(f *pflag.Flag) {
		if v := os.Getenv(envName(f)); v != "" && !f.Changed {
			_ = f.Value.Set(v) // etcdctl drops this error too
		}
	})
	return nil
}

func envName(f *pflag.Flag) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
}

// checkEnv reports, once, the ETCDCTL_* variables applyEnv could not use:
// a variable naming a flag given on the command line is fatal, any other
// one (an empty one included) gets a warning. etcdctl does this where it
// builds its client configuration, after checking a command's arguments, so
// it is called by printer and clientConfig, not by run. The environment is
// walked in its own order, as etcdctl, so the same warnings come before the
// fatal line.
func (g *globals) checkEnv() error {
	if g.envChecked {
		return nil
	}
	g.envChecked = true
	if err := g.applyEnv(); err != nil {
		return err
	}
	shadowed, used := map[string]bool{}, map[string]bool{}
	g.flags.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			shadowed[envName(f)] = true
		} else if os.Getenv(envName(f)) != "" {
			used[envName(f)] = true
		}
	})
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case used[name]:
		case shadowed[name]:
			g.logger().Fatal("conflicting environment variable is shadowed by corresponding command-line flag (either unset environment variable or disable flag))",
				zap.String("environment-variable", name))
			return withCode(ExitError, errSilent)
		case strings.HasPrefix(name, envPrefix):
			g.logger().Warn("unrecognized environment variable", zap.String("environment-variable", kv))
		}
	}
	return nil
}

// errSilent ends keelctl with its exit code without printing anything more:
// the cause has already been printed.
var errSilent = errors.New("")

// commandContext is the context of one short request: --command-timeout as
// given on the command line. ETCDCTL_COMMAND_TIMEOUT does not count, as in
// etcdctl's get, put, del, lease, member, alarm, user and role commands,
// which make their context before reading the environment. etcdctl's
// compaction, defrag, endpoint, move-leader and snapshot commands read it
// first: they use envCommandContext.
func (g *globals) commandContext() (context.Context, context.CancelFunc) {
	if !g.envApplied {
		return g.envCommandContext()
	}
	return context.WithTimeout(context.Background(), g.flagCommandTimeout)
}

// envCommandContext is the context of one short request: --command-timeout,
// or ETCDCTL_COMMAND_TIMEOUT when the flag is not given.
func (g *globals) envCommandContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), g.commandTimeout)
}

// client connects to the endpoints the global flags name.
func (g *globals) client() (*clientv3.Client, error) {
	if err := g.applyEnv(); err != nil {
		return nil, err
	}
	cfg, err := g.clientConfig(g.endpoints)
	if err != nil {
		return nil, err
	}
	return newClient(cfg)
}

// connect is the start of most commands: the printer for -w (checked
// first, as etcdctl does), then the client. The caller closes the client.
func (g *globals) connect() (*printer, *clientv3.Client, error) {
	p, err := g.printer()
	if err != nil {
		return nil, nil, err
	}
	c, err := g.client()
	if err != nil {
		return nil, nil, err
	}
	return p, c, nil
}

func newClient(cfg clientv3.Config) (*clientv3.Client, error) {
	c, err := clientv3.New(cfg)
	if err != nil {
		return nil, withCode(ExitBadConnection, err)
	}
	return c, nil
}

// clientConfig is the client configuration for endpoints, with the global
// flags' timeouts, limits, TLS and credentials. It may prompt for a password
// (--user without one), so call it once per command.
func (g *globals) clientConfig(endpoints []string) (clientv3.Config, error) {
	if err := g.checkEnv(); err != nil {
		return clientv3.Config{}, err
	}
	eps := endpoints
	if g.discoverySRV != "" && !g.flags.Changed("endpoints") && os.Getenv(envPrefix+"ENDPOINTS") == "" {
		var err error
		if eps, err = g.discoverEndpoints(); err != nil {
			return clientv3.Config{}, withCode(ExitError, err)
		}
	}
	secure, err := g.secureConfig()
	if err != nil {
		return clientv3.Config{}, err
	}
	auth, err := g.authConfig()
	if err != nil {
		return clientv3.Config{}, err
	}
	spec := &clientv3.ConfigSpec{
		Endpoints:          eps,
		DialTimeout:        g.dialTimeout,
		KeepAliveTime:      g.keepAliveTime,
		KeepAliveTimeout:   g.keepAliveTimeout,
		MaxCallSendMsgSize: g.maxRequestBytes,
		MaxCallRecvMsgSize: g.maxRecvBytes,
		Secure:             secure,
		Auth:               auth,
	}
	// The client library turns the TLS files into a tls.Config, with
	// etcdctl's error messages.
	cfg, err := clientv3.NewClientConfig(spec, g.logger())
	if err != nil {
		return clientv3.Config{}, withCode(ExitBadArgs, err)
	}
	if g.debug {
		lg, _ := zap.NewDevelopment()
		cfg.Logger = lg
	}
	return *cfg, nil
}

// secureConfig is the TLS part of the global flags. A TLS file flag given
// as an empty string is an error, as in etcdctl.
func (g *globals) secureConfig() (*clientv3.SecureConfig, error) {
	for _, f := range []struct{ name, value string }{{"cert", g.cert}, {"key", g.key}, {"cacert", g.cacert}} {
		if f.value == "" && g.flags.Changed(f.name) {
			return nil, badArgs("empty string is passed to --%s option", f.name)
		}
	}
	return &clientv3.SecureConfig{
		Cert:               g.cert,
		Key:                g.key,
		Cacert:             g.cacert,
		InsecureTransport:  g.insecureTransport,
		InsecureSkipVerify: g.insecureSkipVerify,
	}, nil
}

// authConfig is the user name and password or the JWT token of the global
// flags, nil without --user and --auth-jwt-token. As etcdctl v3.7: the token
// wins over --user; --password wins over a password in --user (which then
// is the user name as given); with neither, the password is asked for.
func (g *globals) authConfig() (*clientv3.AuthConfig, error) {
	return authConfig(g.user, g.password, g.token, "Password: ", g.stdio.Out)
}

func authConfig(user, password, token, prompt string, out io.Writer) (*clientv3.AuthConfig, error) {
	switch {
	case user == "" && token == "":
		return nil, nil
	case token != "":
		return &clientv3.AuthConfig{Token: token}, nil
	case password != "":
		return &clientv3.AuthConfig{Username: user, Password: password}, nil
	}
	if name, pass, ok := strings.Cut(user, ":"); ok {
		return &clientv3.AuthConfig{Username: name, Password: pass}, nil
	}
	pass, err := speakeasy.FAsk(out, prompt)
	if err != nil {
		return nil, withCode(ExitError, err)
	}
	return &clientv3.AuthConfig{Username: user, Password: pass}, nil
}

// discoverEndpoints finds the client endpoints in the SRV records of
// --discovery-srv: _etcd-client-ssl._tcp (https) and _etcd-client._tcp
// (http), with --discovery-srv-name appended to the service names.
func (g *globals) discoverEndpoints() ([]string, error) {
	var eps []string
	for _, s := range []struct{ service, scheme string }{{"etcd-client-ssl", "https"}, {"etcd-client", "http"}} {
		service := s.service
		if g.discoverySRVName != "" {
			service += "-" + g.discoverySRVName
		}
		_, addrs, err := net.LookupSRV(service, "tcp", g.discoverySRV)
		if err != nil {
			continue
		}
		if s.scheme == "http" && !g.insecureDiscovery && len(eps) > 0 {
			continue
		}
		for _, a := range addrs {
			host := strings.TrimSuffix(a.Target, ".")
			eps = append(eps, s.scheme+"://"+net.JoinHostPort(host, fmt.Sprint(a.Port)))
		}
	}
	if len(eps) == 0 {
		return nil, fmt.Errorf("could not find any client endpoints in the SRV records of %q", g.discoverySRV)
	}
	return eps, nil
}

// run wraps a command body: it applies the environment, then runs fn. The
// unused variables are reported later, by checkEnv.
func (g *globals) run(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := g.applyEnv(); err != nil {
			return err
		}
		return fn(cmd, args)
	}
}
