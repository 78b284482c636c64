package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/bgentry/speakeasy"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"

	"github.com/keeldb/keel/discovery"
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
	// spec is the command's connection settings once built; see clientSpec.
	spec *clientv3.ConfigSpec
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
func (g *globals) applyEnv() {
	if g.envApplied {
		return
	}
	g.envApplied = true
	g.flagCommandTimeout = g.commandTimeout
	g.flags.VisitAll(func(f *pflag.Flag) {
		if v := os.Getenv(envName(f)); v != "" && !f.Changed {
			_ = f.Value.Set(v) // etcdctl drops this error too
		}
	})
}

func envName(f *pflag.Flag) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
}

// checkEnv reports, once, the ETCDCTL_* variables applyEnv could not use:
// a variable naming a flag given on the command line is fatal, any other
// one (an empty one included) gets a warning. etcdctl does this where it
// builds its client configuration, after checking a command's arguments, so
// it is called by newSpec, not by run. The environment is
// walked in its own order, as etcdctl, so the same warnings come before the
// fatal line.
func (g *globals) checkEnv() error {
	if g.envChecked {
		return nil
	}
	g.envChecked = true
	g.applyEnv()
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
// compaction, defrag, endpoint and move-leader commands read it
// first: they use envCommandContext. Call it in a command body wrapped by
// run, which has read the environment.
func (g *globals) commandContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), g.flagCommandTimeout)
}

// envCommandContext is the context of one short request: --command-timeout,
// or ETCDCTL_COMMAND_TIMEOUT when the flag is not given.
func (g *globals) envCommandContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), g.commandTimeout)
}

// client connects to the command's endpoints (see clientSpec).
func (g *globals) client() (*clientv3.Client, error) {
	cfg, err := g.clientConfig(nil)
	if err != nil {
		return nil, err
	}
	return newClient(cfg)
}

// connect is the start of most commands: the printer for -w, then the
// client. The caller closes the client.
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

// callBody is the part of a simple command that runs connected (see call):
// it makes the command's requests through c within ctx and prints the
// result with p.
type callBody func(ctx context.Context, p *printer, c *clientv3.Client, args []string) error

// call is the body of a simple command, one that makes its requests over
// one client. prepare checks the arguments and reads what etcdctl reads
// before it connects (a new user's password, ...); nil checks nothing. Then
// call connects (connect: a bad -w fails here, before any request) and runs
// do within one --command-timeout (commandContext). A format the command
// cannot print fails only after the request is made, as in etcdctl.
//
// The error do returns ends keelctl with its exit code (exitCode: ExitError
// unless the error carries another), so do returns a failed request's error
// as etcdctl reports it: as it is, wrapped in the command's words, or with
// withCode.
func (g *globals) call(prepare func(args []string) error, do callBody) func(*cobra.Command, []string) error {
	return g.callWithin(g.commandContext, prepare, do)
}

// callWithin is call with the context of the requests from newCtx rather
// than commandContext: envCommandContext where etcdctl reads
// ETCDCTL_COMMAND_TIMEOUT first, noTimeout where it sets no timeout.
func (g *globals) callWithin(newCtx func() (context.Context, context.CancelFunc), prepare func(args []string) error, do callBody) func(*cobra.Command, []string) error {
	return g.run(func(cmd *cobra.Command, args []string) error {
		if prepare != nil {
			if err := prepare(args); err != nil {
				return err
			}
		}
		p, c, err := g.connect()
		if err != nil {
			return err
		}
		defer c.Close()
		ctx, cancel := newCtx()
		defer cancel()
		return do(ctx, p, c, args)
	})
}

// noTimeout is the context of the requests etcdctl makes without a timeout
// (txn, lease timetolive, list and keep-alive): they wait until they end or
// keelctl is stopped.
func noTimeout() (context.Context, context.CancelFunc) {
	return context.Background(), func() {}
}

// nArgs is a prepare for call: exactly n arguments, else the error need,
// with etcdctl's exit code.
func nArgs(n int, need string) func([]string) error {
	return func(args []string) error {
		if len(args) != n {
			return badArgs("%s", need)
		}
		return nil
	}
}

func newClient(cfg clientv3.Config) (*clientv3.Client, error) {
	c, err := clientv3.New(cfg)
	if err != nil {
		return nil, withCode(ExitBadConnection, err)
	}
	return c, nil
}

// clientConfig is the client configuration of the command's settings
// (clientSpec) for endpoints, or for the command's own endpoints when
// endpoints is nil.
func (g *globals) clientConfig(endpoints []string) (clientv3.Config, error) {
	spec, err := g.clientSpec()
	if err != nil {
		return clientv3.Config{}, err
	}
	if endpoints == nil {
		endpoints = spec.Endpoints
	}
	cfg, err := g.specConfig(spec, endpoints)
	return cfg, withCode(ExitBadArgs, err)
}

// clientSpec is the command's connection settings: built by the first call
// (newSpec) and kept, so that a command asks for a password once however
// many clients it makes.
func (g *globals) clientSpec() (*clientv3.ConfigSpec, error) {
	if g.spec == nil {
		spec, err := g.newSpec()
		if err != nil {
			return nil, err
		}
		g.spec = spec
	}
	return g.spec, nil
}

// newSpec builds connection settings from the global flags, in etcdctl's
// order and with its exit codes: the unused ETCDCTL_* variables reported,
// the endpoints (the discovered ones, else --endpoints), the TLS flags, the
// credentials (which may prompt for a password), and last -w. Every call
// prompts again: use clientSpec, except where etcdctl prompts twice.
func (g *globals) newSpec() (*clientv3.ConfigSpec, error) {
	if err := g.checkEnv(); err != nil {
		return nil, err
	}
	eps, err := g.discoveredEndpoints()
	if err != nil {
		return nil, withCode(ExitError, err)
	}
	if len(eps) == 0 {
		for _, ep := range g.endpoints {
			eps = append(eps, strings.TrimSpace(ep))
		}
	}
	secure, err := g.secureConfig()
	if err != nil {
		return nil, err
	}
	auth, err := g.authConfig()
	if err != nil {
		return nil, err
	}
	switch g.writeOut {
	case formatSimple, formatJSON, formatTable, formatFields, formatProtobuf:
	default:
		return nil, withCode(ExitBadFeature, errors.New("unsupported output format"))
	}
	return &clientv3.ConfigSpec{
		Endpoints:          eps,
		DialTimeout:        g.dialTimeout,
		KeepAliveTime:      g.keepAliveTime,
		KeepAliveTimeout:   g.keepAliveTimeout,
		MaxCallSendMsgSize: g.maxRequestBytes,
		MaxCallRecvMsgSize: g.maxRecvBytes,
		Secure:             secure,
		Auth:               auth,
	}, nil
}

// specConfig is the client configuration of spec for endpoints. The client
// library reads the TLS files here, with etcdctl's error messages; the
// caller gives the error its exit code, which differs between commands.
func (g *globals) specConfig(spec *clientv3.ConfigSpec, endpoints []string) (clientv3.Config, error) {
	s := *spec
	s.Endpoints = endpoints
	cfg, err := clientv3.NewClientConfig(&s, g.logger())
	if err != nil {
		return clientv3.Config{}, err
	}
	if d := discovery.TestDialer(); d != nil {
		cfg.DialOptions = append(cfg.DialOptions, grpc.WithContextDialer(d))
	}
	if g.debug {
		lg, _ := zap.NewDevelopment()
		cfg.Logger = lg
	}
	return *cfg, nil
}

// secureConfig is the TLS part of the global flags. A TLS file flag given
// as an empty string is an error, as in etcdctl. With
// --insecure-discovery=false the server certificates must name the
// --discovery-srv domain.
func (g *globals) secureConfig() (*clientv3.SecureConfig, error) {
	for _, f := range []struct{ name, value string }{{"cert", g.cert}, {"key", g.key}, {"cacert", g.cacert}} {
		if f.value == "" && g.flags.Changed(f.name) {
			return nil, badArgs("empty string is passed to --%s option", f.name)
		}
	}
	sc := &clientv3.SecureConfig{
		Cert:               g.cert,
		Key:                g.key,
		Cacert:             g.cacert,
		InsecureTransport:  g.insecureTransport,
		InsecureSkipVerify: g.insecureSkipVerify,
	}
	if !g.insecureDiscovery {
		sc.ServerName = g.discoverySRV
	}
	return sc, nil
}

// authConfig is the credentials of --user, --password and
// --auth-jwt-token (see authConfig), prompting on standard output.
func (g *globals) authConfig() (*clientv3.AuthConfig, error) {
	return authConfig(g.user, g.password, g.token, "Password: ", g.stdio.Out)
}

// authConfig turns a user flag ("name" or "name:password"), a password
// flag and a JWT token into credentials, nil for none. The token alone
// counts when given. Otherwise a password flag is used with the user flag
// taken whole as the name; without one, the user flag is split at its first
// colon, and with no colon the password is asked for on out with prompt. A
// password flag without a user flag counts for nothing.
func authConfig(user, password, token, prompt string, out io.Writer) (*clientv3.AuthConfig, error) {
	if token != "" {
		return &clientv3.AuthConfig{Token: token}, nil
	}
	if user == "" {
		return nil, nil
	}
	cred := &clientv3.AuthConfig{Username: user, Password: password}
	if password != "" {
		return cred, nil
	}
	var colon bool
	if cred.Username, cred.Password, colon = strings.Cut(user, ":"); colon {
		return cred, nil
	}
	answer, err := speakeasy.FAsk(out, prompt)
	if err != nil {
		return nil, withCode(ExitError, err)
	}
	cred.Password = answer
	return cred, nil
}

// srvResolver is the resolver of --discovery-srv: the system's, or the test
// DNS server discovery.TestDNSServerEnv names; a variable for tests.
var srvResolver = discovery.Resolver

// discoveredEndpoints are the client endpoints named by the SRV records of
// the --discovery-srv domain, none without it (discovery.ClientEndpoints:
// https ones, then http ones). With --insecure-discovery=false the http
// ones are left out, each with a line on standard error. It fails only
// when both lookups fail.
func (g *globals) discoveredEndpoints() ([]string, error) {
	if g.discoverySRV == "" {
		return nil, nil
	}
	found, err := discovery.ClientEndpoints(context.Background(), srvResolver(), g.discoverySRV, g.discoverySRVName)
	if err != nil {
		return nil, err
	}
	var eps []string
	for _, ep := range found {
		if strings.HasPrefix(ep, "http://") && !g.insecureDiscovery {
			fmt.Fprintf(g.stdio.Err, "ignoring discovered insecure endpoint %q\n", ep)
			continue
		}
		eps = append(eps, ep)
	}
	return eps, nil
}

// run wraps a command body: it applies the environment, then runs fn. The
// unused variables are reported later, by checkEnv.
func (g *globals) run(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		g.applyEnv()
		return fn(cmd, args)
	}
}
