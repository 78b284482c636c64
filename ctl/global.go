package ctl

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

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
	// envApplied is set once the ETCDCTL_* variables have been read.
	envApplied bool
	flags      *pflag.FlagSet
}

func (g *globals) register(fs *pflag.FlagSet) {
	g.flags = fs
	fs.StringSliceVar(&g.endpoints, "endpoints", []string{"127.0.0.1:2379"}, "gRPC endpoints")
	fs.DurationVar(&g.dialTimeout, "dial-timeout", 2*time.Second, "dial timeout for client connections")
	fs.DurationVar(&g.commandTimeout, "command-timeout", 5*time.Second, "timeout for short running command (excluding dial timeout)")
	fs.DurationVar(&g.keepAliveTime, "keepalive-time", 2*time.Second, "keepalive time for client connections")
	fs.DurationVar(&g.keepAliveTimeout, "keepalive-timeout", 6*time.Second, "keepalive timeout for client connections")
	fs.IntVar(&g.maxRecvBytes, "max-recv-bytes", 0, "client-side response receive limit in bytes (0: math.MaxInt32)")
	fs.IntVar(&g.maxRequestBytes, "max-request-bytes", 0, "client-side request send limit in bytes (0: 2 MiB)")
	fs.StringVarP(&g.writeOut, "write-out", "w", "simple", "output format (fields, json, protobuf, simple, table)")
	fs.BoolVar(&g.hex, "hex", false, "print byte strings as hex encoded strings")
	fs.BoolVar(&g.debug, "debug", false, "enable client-side debug logging")
	fs.StringVar(&g.cacert, "cacert", "", "verify certificates of TLS servers with this CA bundle")
	fs.StringVar(&g.cert, "cert", "", "identify the client with this TLS certificate file")
	fs.StringVar(&g.key, "key", "", "identify the client with this TLS key file")
	fs.BoolVar(&g.insecureSkipVerify, "insecure-skip-tls-verify", false, "skip server certificate verification (only for tests)")
	fs.BoolVar(&g.insecureTransport, "insecure-transport", true, "disable transport security for client connections")
	fs.BoolVar(&g.insecureDiscovery, "insecure-discovery", true, "accept insecure SRV records describing cluster endpoints")
	fs.StringVarP(&g.discoverySRV, "discovery-srv", "d", "", "domain name to query for SRV records describing cluster endpoints")
	fs.StringVar(&g.discoverySRVName, "discovery-srv-name", "", "service name to query when using DNS discovery")
	fs.StringVar(&g.user, "user", "", "username[:password] for authentication (prompt if password is not supplied)")
	fs.StringVar(&g.password, "password", "", "password for authentication (if set, --user must not include one)")
	fs.StringVar(&g.token, "auth-jwt-token", "", "JWT token used for authentication (not with --user and --password)")
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
// ETCDCTL_* variable. A variable that shadows a flag given on the command line
// is an error, as in etcdctl; unknown ETCDCTL_* variables get a warning.
func (g *globals) applyEnv() error {
	if g.envApplied {
		return nil
	}
	g.envApplied = true
	known := map[string]bool{}
	var err error
	g.flags.VisitAll(func(f *pflag.Flag) {
		name := envPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		known[name] = true
		v, ok := os.LookupEnv(name)
		if !ok || v == "" || err != nil {
			return
		}
		if f.Changed {
			g.logger().Fatal("conflicting environment variable is shadowed by corresponding command-line flag (either unset environment variable or disable flag))",
				zap.String("environment-variable", name))
			err = withCode(ExitError, errSilent)
			return
		}
		if serr := f.Value.Set(v); serr != nil {
			err = badArgs("invalid value %q for %s: %v", v, name, serr)
		}
	})
	if err != nil {
		return err
	}
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, envPrefix) && !known[name] {
			g.logger().Warn("unrecognized environment variable", zap.String("environment-variable", kv))
		}
	}
	return nil
}

// errSilent ends keelctl with its exit code without printing anything more:
// the cause has already been printed.
var errSilent = errors.New("")

// commandContext is the context of one short request: --command-timeout.
func (g *globals) commandContext() (context.Context, context.CancelFunc) {
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

func newClient(cfg clientv3.Config) (*clientv3.Client, error) {
	c, err := clientv3.New(cfg)
	if err != nil {
		return nil, withCode(ExitBadConnection, err)
	}
	return c, nil
}

// clientConfig is the client configuration for endpoints, with the global
// flags' timeouts, limits, TLS and credentials.
func (g *globals) clientConfig(endpoints []string) (clientv3.Config, error) {
	eps := endpoints
	if g.discoverySRV != "" && !g.flags.Changed("endpoints") && os.Getenv(envPrefix+"ENDPOINTS") == "" {
		var err error
		if eps, err = g.discoverEndpoints(); err != nil {
			return clientv3.Config{}, withCode(ExitError, err)
		}
	}
	cfg := clientv3.Config{
		Endpoints:            eps,
		DialTimeout:          g.dialTimeout,
		DialKeepAliveTime:    g.keepAliveTime,
		DialKeepAliveTimeout: g.keepAliveTimeout,
		MaxCallSendMsgSize:   g.maxRequestBytes,
		MaxCallRecvMsgSize:   g.maxRecvBytes,
	}
	if g.debug {
		lg, _ := zap.NewDevelopment()
		cfg.Logger = lg
	}
	tlsCfg, err := g.tlsConfig()
	if err != nil {
		return clientv3.Config{}, withCode(ExitBadArgs, err)
	}
	cfg.TLS = tlsCfg
	if err := g.credentials(&cfg); err != nil {
		return clientv3.Config{}, err
	}
	return cfg, nil
}

// tlsConfig is nil unless a TLS flag is given or an endpoint is https.
func (g *globals) tlsConfig() (*tls.Config, error) {
	secure := g.cacert != "" || g.cert != "" || g.key != "" || g.insecureSkipVerify || !g.insecureTransport
	for _, ep := range g.endpoints {
		if strings.HasPrefix(ep, "https://") || strings.HasPrefix(ep, "unixs://") {
			secure = true
		}
	}
	if !secure {
		return nil, nil
	}
	cfg := &tls.Config{InsecureSkipVerify: g.insecureSkipVerify, MinVersion: tls.VersionTLS12}
	if g.cacert != "" {
		pem, err := os.ReadFile(g.cacert)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", g.cacert)
		}
		cfg.RootCAs = pool
	}
	if (g.cert == "") != (g.key == "") {
		return nil, errors.New("--cert and --key must be given together")
	}
	if g.cert != "" {
		pair, err := tls.LoadX509KeyPair(g.cert, g.key)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// credentials fills in the user name and password (prompting for a password
// not given) or the JWT token.
func (g *globals) credentials(cfg *clientv3.Config) error {
	if g.token != "" {
		if g.user != "" || g.password != "" {
			return badArgs("--auth-jwt-token and --user/--password are mutually exclusive")
		}
		cfg.Token = g.token
		return nil
	}
	if g.user == "" {
		if g.password != "" {
			return badArgs("empty string is passed to --user option")
		}
		return nil
	}
	if g.password != "" {
		if strings.Contains(g.user, ":") {
			return badArgs("--user option shouldn't include password when --password is specified")
		}
		cfg.Username, cfg.Password = g.user, g.password
		return nil
	}
	name, pass, ok := strings.Cut(g.user, ":")
	if !ok {
		var err error
		if pass, err = g.readPassword(); err != nil {
			return badArgs("failed to read password: %v", err)
		}
	}
	cfg.Username, cfg.Password = name, pass
	return nil
}

// readPassword prompts for a password and reads one line from standard input.
func (g *globals) readPassword() (string, error) {
	fmt.Fprint(g.stdio.Err, "Password: ")
	line, err := readLine(g.stdio.In)
	fmt.Fprintln(g.stdio.Err)
	return line, err
}

func readLine(r io.Reader) (string, error) {
	var b []byte
	buf := make([]byte, 1)
	for {
		n, err := r.Read(buf)
		if n == 1 {
			if buf[0] == '\n' {
				return strings.TrimSuffix(string(b), "\r"), nil
			}
			b = append(b, buf[0])
		}
		if err != nil {
			if err == io.EOF && len(b) > 0 {
				return string(b), nil
			}
			return "", err
		}
	}
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

// run wraps a command body: it applies the environment, then runs fn.
func (g *globals) run(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := g.applyEnv(); err != nil {
			return err
		}
		return fn(cmd, args)
	}
}
