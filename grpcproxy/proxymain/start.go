package proxymain

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	clientpkgtransport "go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/leasing"
	"go.etcd.io/etcd/client/v3/ordering"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/keeldb/keel/api"
	"github.com/keeldb/keel/config"
	"github.com/keeldb/keel/grpcproxy"
	"github.com/keeldb/keel/server"
	"github.com/keeldb/keel/tlsutil"
)

// Main runs `keel grpc-proxy <args>` and returns the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, "grpc-proxy related command\n\nUsage:\n  keel grpc-proxy <subcommand>\n\nAvailable Commands:\n  start       start the grpc proxy\n")
		return 0
	}
	if args[0] != "start" {
		fmt.Fprintf(stderr, "Error: unknown command %q for \"keel grpc-proxy\"\nRun 'keel grpc-proxy --help' for usage.\n", args[0])
		return 1
	}
	var f Flags
	fs := newFlagSet(&f)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, pflagHelp) {
			fmt.Fprint(stdout, usage(fs))
			return 0
		}
		fmt.Fprintf(stderr, "Error: %v\nRun 'keel grpc-proxy start --help' for usage.\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "Error: unexpected arguments %q\nRun 'keel grpc-proxy start --help' for usage.\n", fs.Args())
		return 2
	}
	if err := f.validate(); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	lcfg := config.Default()
	if f.Debug {
		lcfg.LogLevel = "debug"
	}
	lg, err := server.NewLogger(lcfg)
	if err != nil {
		fmt.Fprintf(stderr, "keel: cannot set up logging: %v\n", err)
		return 1
	}
	defer lg.Sync()

	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigc)

	s, err := Start(f, lg)
	if err != nil {
		lg.Error("failed to start gRPC proxy; exiting", zap.Error(err))
		return 1
	}
	select {
	case sig := <-sigc:
		lg.Info("received signal; shutting down gRPC proxy", zap.String("signal", sig.String()))
		s.Stop()
		return 0
	case err := <-s.Err():
		lg.Error("gRPC proxy stopped serving; exiting", zap.Error(err))
		s.Stop()
		return 1
	}
}

// Server is a running `keel grpc-proxy start`.
type Server struct {
	f       Flags
	lg      *zap.Logger
	client  *clientv3.Client
	self    *clientv3.Client // the proxy's own client, for /proxy/health
	proxy   *grpcproxy.Proxy
	grpc    *grpc.Server
	http    *http.Server
	metrics *http.Server
	ls      []net.Listener
	addr    string
	maddr   string
	cancel  context.CancelFunc
	closers []func()
	errc    chan error
	wg      sync.WaitGroup
	stop    sync.Once
}

// Start starts the proxy described by f: it connects to the cluster,
// binds --listen-addr (and --metrics-addr) and serves until Stop.
func Start(f Flags, lg *zap.Logger) (_ *Server, err error) {
	if lg == nil {
		lg = zap.NewNop()
	}
	if err := f.validate(); err != nil {
		return nil, err
	}
	s := &Server{f: f, lg: lg, errc: make(chan error, 4)}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	if f.DiscoverySRV != "" {
		if err := s.discoverEndpoints(); err != nil {
			return nil, err
		}
	}
	listenTLS, err := s.listenTLS()
	if err != nil {
		return nil, err
	}
	if s.client, err = s.upstreamClient(); err != nil {
		return nil, err
	}
	pcfg := grpcproxy.Config{Client: s.client, Namespace: f.Namespace, AdvertiseClientURL: f.AdvertiseClientURL,
		ResolverPrefix: f.ResolverPrefix, Logger: lg}
	kv := s.client.KV
	if f.SerializableOrdering {
		kv = ordering.NewKV(kv, ordering.NewOrderViolationSwitchEndpointClosure(s.client))
		lg.Info("waiting for linearized read from cluster to recover ordering")
		if err := s.recoverOrdering(kv); err != nil {
			return nil, err
		}
	}
	if f.LeasingPrefix != "" {
		lkv, closeLeasing, err := leasing.NewKV(s.client, f.LeasingPrefix)
		if err != nil {
			return nil, fmt.Errorf("--experimental-leasing-prefix: %w", err)
		}
		s.closers = append(s.closers, closeLeasing)
		kv = lkv
	}
	pcfg.KV = kv
	s.proxy = grpcproxy.New(pcfg)

	s.grpc = grpc.NewServer(s.grpcOptions()...)
	s.proxy.Register(s.grpc)
	s.proxy.Metrics().GRPC.InitializeMetrics(s.grpc)

	l, err := net.Listen("tcp", f.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("listen on --listen-addr %s: %w", f.ListenAddr, err)
	}
	s.addr = l.Addr().String()
	if listenTLS != nil {
		l = tlsutil.NewListener(l, tlsutil.ListenerConfig{Source: listenTLS, NextProtos: []string{"h2", "http/1.1"}, Port: "client", Logger: lg})
	}
	s.ls = append(s.ls, l)
	grpcL, httpL := api.Split(l)
	s.http = &http.Server{Handler: api.WithGRPCFallback(s.httpHandler(true), s.grpc), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: zap.NewStdLog(lg)}
	s.serve("gRPC", func() error { return s.grpc.Serve(grpcL) })
	s.serve("HTTP", func() error { return s.http.Serve(httpL) })
	lg.Info("listening for gRPC proxy client requests", zap.String("address", s.addr), zap.Bool("tls", listenTLS != nil))

	if f.MetricsAddr != "" {
		if err := s.serveMetrics(listenTLS); err != nil {
			return nil, err
		}
	}
	if f.AdvertiseClientURL != "" {
		if s.self, err = s.selfClient(listenTLS); err != nil {
			return nil, err
		}
	}
	if f.ResolverPrefix != "" {
		ctx, cancel := context.WithCancel(context.Background())
		s.cancel = cancel
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			grpcproxy.Register(ctx, lg, s.client, f.ResolverPrefix, f.AdvertiseClientURL, f.ResolverTTL)
		}()
	}
	lg.Info("started gRPC proxy", zap.String("address", s.addr), zap.Strings("endpoints", s.f.Endpoints))
	return s, nil
}

// Addr is the address the proxy serves clients on.
func (s *Server) Addr() string { return s.addr }

// MetricsAddr is the address of --metrics-addr, "" without one.
func (s *Server) MetricsAddr() string { return s.maddr }

// Proxy is the proxy being served.
func (s *Server) Proxy() *grpcproxy.Proxy { return s.proxy }

// Err reports a listener that stopped serving.
func (s *Server) Err() <-chan error { return s.errc }

// Stop stops serving, closes the connections to the cluster and waits for
// every goroutine of the server.
func (s *Server) Stop() {
	s.stop.Do(func() {
		if s.cancel != nil {
			s.cancel()
		}
		if s.http != nil {
			s.http.Close()
		}
		if s.metrics != nil {
			s.metrics.Close()
		}
		if s.grpc != nil {
			s.grpc.Stop()
		}
		for _, l := range s.ls {
			l.Close()
		}
		if s.self != nil {
			s.self.Close()
		}
		if s.proxy != nil {
			s.proxy.Close()
		}
		for _, c := range s.closers {
			c()
		}
		if s.client != nil {
			s.client.Close()
		}
		s.wg.Wait()
		s.lg.Info("stopped gRPC proxy", zap.String("address", s.addr))
	})
}

func (s *Server) serve(what string, serve func() error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := serve()
		if err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrServerClosed) || errors.Is(err, grpc.ErrServerStopped) {
			return
		}
		select {
		case s.errc <- fmt.Errorf("serving %s: %w", what, err):
		default:
		}
	}()
}

// recoverOrdering waits, as etcd does, for one linearizable read to pass
// through the ordering layer.
func (s *Server) recoverOrdering(kv clientv3.KV) error {
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := kv.Get(ctx, "_", clientv3.WithKeysOnly())
		cancel()
		if err == nil {
			return nil
		}
		if attempt >= 30 {
			return fmt.Errorf("--experimental-serializable-ordering: cannot read from the cluster: %w", err)
		}
		s.lg.Warn("ordering recovery failed, retrying in 1s", zap.Error(err))
		time.Sleep(time.Second)
	}
}

// upstreamClient connects to the cluster with --endpoints, the --cert
// family and the dial settings.
func (s *Server) upstreamClient() (*clientv3.Client, error) {
	f := s.f
	cc := clientv3.Config{
		Endpoints:           f.Endpoints,
		AutoSyncInterval:    f.EndpointsAutoSyncInterval,
		DialTimeout:         5 * time.Second,
		DialKeepAliveTime:   f.DialKeepAliveTime,
		PermitWithoutStream: f.PermitWithoutStream,
		Logger:              s.lg.Named("client"),
	}
	if f.DialKeepAliveTimeout > 0 {
		cc.DialKeepAliveTimeout = f.DialKeepAliveTimeout
	}
	if f.DiscoverySRV != "" {
		// The SRV targets are resolved as the records were.
		d := &net.Dialer{Resolver: srvResolver()}
		cc.DialOptions = append(cc.DialOptions, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", addr)
		}))
	}
	if f.MaxSendBytes > 0 {
		cc.MaxCallSendMsgSize = f.MaxSendBytes
	}
	if f.MaxRecvBytes > 0 {
		cc.MaxCallRecvMsgSize = f.MaxRecvBytes
	}
	switch {
	case f.Cert != "" || f.Key != "" || f.CACert != "":
		// As etcd's proxy: the client certificate must have an empty
		// common name, so that the cluster does not take it for a user.
		info := clientpkgtransport.TLSInfo{CertFile: f.Cert, KeyFile: f.Key, TrustedCAFile: f.CACert, EmptyCN: true}
		tc, err := info.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("upstream TLS (--cert, --key, --cacert): %w", err)
		}
		tc.InsecureSkipVerify = f.InsecureSkipTLSVerify
		cc.TLS = tc
	case f.InsecureSkipTLSVerify:
		cc.TLS = &tls.Config{InsecureSkipVerify: true}
	}
	if f.InsecureSkipTLSVerify {
		s.lg.Warn("--insecure-skip-tls-verify was given, this grpc proxy process skips authentication of etcd server TLS certificates. This option should be enabled only for testing purposes.")
	}
	cli, err := clientv3.New(cc)
	if err != nil {
		return nil, fmt.Errorf("connect to the cluster at %s: %w", strings.Join(f.Endpoints, ","), err)
	}
	return cli, nil
}

// listenTLS builds the TLS of the client port from the --cert-file family
// or --auto-tls; nil serves plain text.
func (s *Server) listenTLS() (*tlsutil.Source, error) {
	f := s.f
	info := tlsutil.Info{TLS: config.TLS{CertFile: f.CertFile, KeyFile: f.KeyFile, TrustedCAFile: f.TrustedCAFile, CRLFile: f.ClientCRLFile}}
	if f.CertFile == "" && f.KeyFile == "" && f.TrustedCAFile == "" {
		if !f.AutoTLS {
			return nil, nil
		}
		certFile, keyFile, err := tlsutil.SelfCert(s.lg, filepath.Join(f.DataDir, "fixtures", "proxy"), []string{f.ListenAddr}, f.SelfSignedCertValidity)
		if err != nil {
			return nil, fmt.Errorf("--auto-tls: %w", err)
		}
		info = tlsutil.Info{TLS: config.TLS{CertFile: certFile, KeyFile: keyFile}, SelfSigned: true}
	}
	var err error
	if info.CipherSuites, err = tlsutil.CipherSuites(f.ListenCipherSuites); err != nil {
		return nil, err
	}
	// validate checked the versions.
	info.MinVersion, _ = tlsutil.Version(f.TLSMinVersion)
	info.MaxVersion, _ = tlsutil.Version(f.TLSMaxVersion)
	src, err := tlsutil.New(info, s.lg)
	if err != nil {
		return nil, fmt.Errorf("proxy TLS: %w", err)
	}
	s.lg.Info("gRPC proxy server TLS", zap.String("cert-file", info.CertFile), zap.String("key-file", info.KeyFile),
		zap.String("trusted-ca-file", info.TrustedCAFile), zap.Bool("self-signed", info.SelfSigned))
	return src, nil
}

func (s *Server) grpcOptions() []grpc.ServerOption {
	f := s.f
	opts := []grpc.ServerOption{
		// TLS, if any, is done by the listener.
		grpc.Creds(tlsutil.ServerCredentials()),
		grpc.MaxConcurrentStreams(f.MaxConcurrentStreams),
	}
	if f.GRPCKeepAliveMinTime > 0 {
		opts = append(opts, grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: f.GRPCKeepAliveMinTime}))
	}
	if f.GRPCKeepAliveInterval > 0 || f.GRPCKeepAliveTimeout > 0 {
		opts = append(opts, grpc.KeepaliveParams(keepalive.ServerParameters{Time: f.GRPCKeepAliveInterval, Timeout: f.GRPCKeepAliveTimeout}))
	}
	// The metrics first, so that every call counts (grpc_server_* on
	// /proxy/metrics, as etcd's proxy).
	gm := s.proxy.Metrics().GRPC
	opts = append(opts, grpc.ChainUnaryInterceptor(gm.UnaryServerInterceptor()), grpc.ChainStreamInterceptor(gm.StreamServerInterceptor()))
	if f.EnableGRPCLogging {
		opts = append(opts, grpc.ChainUnaryInterceptor(s.logUnary), grpc.ChainStreamInterceptor(s.logStream))
	}
	return opts
}

func (s *Server) logUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := h(ctx, req)
	s.lg.Info("gRPC call", zap.String("method", info.FullMethod), zap.Duration("took", time.Since(start)),
		zap.Any("request", req), zap.Any("response", resp), zap.Error(err))
	return resp, err
}

func (s *Server) logStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	start := time.Now()
	s.lg.Info("gRPC stream started", zap.String("method", info.FullMethod))
	err := h(srv, ss)
	s.lg.Info("gRPC stream finished", zap.String("method", info.FullMethod), zap.Duration("took", time.Since(start)), zap.Error(err))
	return err
}

// serveMetrics serves /metrics and the health endpoints on --metrics-addr.
func (s *Server) serveMetrics(src *tlsutil.Source) error {
	u, err := url.Parse(s.f.MetricsAddr)
	if err != nil || u.Host == "" {
		return fmt.Errorf("cannot parse --metrics-addr %q: want a URL such as http://127.0.0.1:2381", s.f.MetricsAddr)
	}
	l, err := net.Listen("tcp", u.Host)
	if err != nil {
		return fmt.Errorf("listen on --metrics-addr %s: %w", u.Host, err)
	}
	s.maddr = l.Addr().String()
	if u.Scheme == "https" {
		if src == nil {
			l.Close()
			return fmt.Errorf("--metrics-addr %s is https but the proxy has no TLS (--cert-file or --auto-tls)", s.f.MetricsAddr)
		}
		l = tlsutil.NewListener(l, tlsutil.ListenerConfig{Source: src, NextProtos: []string{"http/1.1"}, Port: "client", Logger: s.lg})
	}
	s.ls = append(s.ls, l)
	s.metrics = &http.Server{Handler: s.httpHandler(false), ReadHeaderTimeout: 10 * time.Second, ErrorLog: zap.NewStdLog(s.lg)}
	s.serve("metrics HTTP", func() error { return s.metrics.Serve(l) })
	s.lg.Info("gRPC proxy listening for metrics", zap.String("address", u.String()))
	return nil
}

// selfClient is a client of the proxy itself at --advertise-client-url,
// which /proxy/health goes through.
func (s *Server) selfClient(src *tlsutil.Source) (*clientv3.Client, error) {
	adv := s.f.AdvertiseClientURL
	cc := clientv3.Config{Endpoints: []string{adv}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
	if src != nil {
		host := adv
		if u, err := url.Parse(adv); err == nil && u.Host != "" {
			host = u.Host
		}
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		cc.TLS = src.ClientConfigFor(host)
	}
	return clientv3.New(cc)
}

// upstreamHTTPTLS is the TLS of the proxy's HTTP requests to the cluster,
// nil for plain text.
func (s *Server) upstreamHTTPTLS() *tls.Config {
	f := s.f
	if f.Cert == "" && f.Key == "" && f.CACert == "" && !f.InsecureSkipTLSVerify {
		return nil
	}
	info := clientpkgtransport.TLSInfo{CertFile: f.Cert, KeyFile: f.Key, TrustedCAFile: f.CACert}
	tc, err := info.ClientConfig()
	if err != nil {
		tc = &tls.Config{}
	}
	tc.InsecureSkipVerify = f.InsecureSkipTLSVerify
	return tc
}
