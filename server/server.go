// Package server wires one keel member together: configuration, storage,
// the member (Raft, apply loop, request processing) and the client-facing
// services. It owns their lifecycle and holds no request logic of its own.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3"
	"go.uber.org/zap"

	"github.com/keeldb/keel/api"
	"github.com/keeldb/keel/compactor"
	"github.com/keeldb/keel/config"
	"github.com/keeldb/keel/discovery"
	"github.com/keeldb/keel/member"
	"github.com/keeldb/keel/membership"
	"github.com/keeldb/keel/metrics"
	"github.com/keeldb/keel/storage"
	"github.com/keeldb/keel/tlsutil"
	"github.com/keeldb/keel/transport"
)

// Server is one running keel member.
type Server struct {
	cfg *config.Config
	lg  *zap.Logger
	fs  vfs.FS

	clientLs     []net.Listener // TLS ones do their handshakes (tlsutil)
	peerLs       []net.Listener
	clientSecure []bool          // per clientLs: serves TLS
	clientTLS    *tlsutil.Source // nil without an https client URL
	peerTLS      *tlsutil.Source // nil without peer certificates
	clientURLs   []string        // advertised, port 0 resolved
	bound        []string        // the URLs the client listeners bound

	engine    *storage.Engine
	transport *transport.Transport
	member    *member.Member
	grpc      *api.GRPCServer
	http      *http.Server
	gw        *gateway // nil with --enable-grpc-gateway=false

	// resolver serves DNS SRV discovery; peerServerName, when set by it,
	// is the name https peers are verified against (discovery.go).
	resolver       *net.Resolver
	peerServerName string

	metrics      *metrics.Metrics
	metricsLs    []net.Listener
	metricsBound []string // the URLs the metrics listeners bound
	metricsHTTP  *http.Server

	readyc   chan struct{}
	stopc    chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// Option adjusts how a server runs, beyond its configuration.
type Option func(*options)

type options struct {
	fs       vfs.FS
	resolver *net.Resolver
}

// WithFS runs the member's database on fs instead of the real filesystem;
// crash tests pass an in-memory filesystem that can forget unsynced writes.
func WithFS(fs vfs.FS) Option { return func(o *options) { o.fs = fs } }

// Start opens (or bootstraps) the member described by cfg and returns once it
// serves client requests. lg receives the server's logs.
func Start(cfg *config.Config, lg *zap.Logger, opts ...Option) (*Server, error) {
	s, err := New(cfg, lg, opts...)
	if err != nil {
		return nil, err
	}
	select {
	case <-s.ReadyNotify():
		return s, nil
	case <-s.member.Done():
		err := s.member.Err()
		s.Stop()
		return nil, fmt.Errorf("member stopped before serving: %w", err)
	}
}

// New starts the member described by cfg: it binds the listeners (so a port
// in use is reported before anything is written), opens or bootstraps the
// data dir, starts the member, and starts serving clients once the member is
// ready (see ReadyNotify).
func New(cfg *config.Config, lg *zap.Logger, opts ...Option) (_ *Server, err error) {
	s := &Server{cfg: cfg, lg: lg, fs: vfs.Default, readyc: make(chan struct{}), stopc: make(chan struct{})}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.fs != nil {
		s.fs = o.fs
	}
	s.resolver = o.resolver
	if s.resolver == nil {
		s.resolver = discovery.Resolver()
	}
	defer func() {
		if err != nil {
			s.closeResources()
		}
	}()
	if err := s.setupTLS(); err != nil {
		return nil, err
	}
	if err := s.listen(); err != nil {
		return nil, err
	}
	if err := s.listenMetrics(); err != nil {
		return nil, err
	}
	s.newMetrics()
	if err := s.openMember(); err != nil {
		return nil, err
	}
	s.servePeers()
	s.grpc = api.NewGRPCServer(s.member, api.GRPCConfig{MaxRequestBytes: cfg.MaxRequestBytes, MaxTxnOps: cfg.MaxTxnOps,
		ClientCertAuth: cfg.ClientTLS.ClientCertAuth, Metrics: s.metrics, Logger: lg})
	if cfg.EnablePprof {
		lg.Info("pprof is enabled", zap.String("path", "/debug/pprof"))
	}
	handler := api.NewHTTPHandler(s.member, api.HTTPConfig{EnablePprof: cfg.EnablePprof, Logger: lg})
	if handler, err = s.withGateway(handler); err != nil {
		return nil, err
	}
	s.http = &http.Server{Handler: api.WithGRPCFallback(s.withMetrics(handler), s.grpc.Server), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: zap.NewStdLog(lg)}
	s.serveMetrics(handler)
	lg.Info("now serving peer/client/metrics",
		zap.String("local-member-id", fmt.Sprintf("%x", s.member.ID())),
		zap.Strings("initial-advertise-peer-urls", urlStrings(cfg.InitialAdvertisePeerURLs)),
		zap.Strings("listen-peer-urls", urlStrings(cfg.ListenPeerURLs)),
		zap.Strings("advertise-client-urls", s.clientURLs),
		zap.Strings("listen-client-urls", urlStrings(cfg.ListenClientURLs)))
	s.wg.Add(1)
	go s.serveWhenReady()
	return s, nil
}

// listen binds every client and peer listener. A client address listed
// with https:// does its TLS handshakes in the listener; one listed with
// both http:// and https:// serves both, as in etcd. Each peer URL binds a
// listener of its own, as in etcd, so http:// and https:// on one peer
// address fail rather than let plaintext peer traffic through.
func (s *Server) listen() error {
	s.lg.Info("configuring peer listeners", zap.Strings("listen-peer-urls", urlStrings(s.cfg.ListenPeerURLs)))
	for _, u := range s.cfg.ListenPeerURLs {
		if u.Scheme != "http" && u.Scheme != "https" {
			return fmt.Errorf("listen-peer-urls %s: only http and https peer URLs are supported (unix sockets are not supported)", u.String())
		}
	}
	for _, u := range s.cfg.ListenPeerURLs {
		l, err := net.Listen("tcp", u.Host)
		if err != nil {
			return fmt.Errorf("listen on peer URL %s: %w", u.String(), err)
		}
		if u.Scheme == "https" {
			l = tlsutil.NewListener(l, tlsutil.ListenerConfig{Source: s.peerTLS, NextProtos: []string{"h2"}, Port: "peer",
				VerifyClientSAN: !s.cfg.PeerTLS.SkipClientSANVerify, Logger: s.lg})
		}
		s.peerLs = append(s.peerLs, l)
	}
	s.lg.Info("configuring client listeners", zap.Strings("listen-client-urls", urlStrings(s.cfg.ListenClientURLs)))
	byHost := map[string]net.Listener{}
	for _, u := range s.cfg.ListenClientURLs {
		if u.Scheme != "http" && u.Scheme != "https" {
			return fmt.Errorf("listen-client-urls %s: only http and https client URLs are supported (unix sockets are not supported)", u.String())
		}
	}
	for _, pl := range groupByAddress(s.cfg.ListenClientURLs) {
		l, err := net.Listen("tcp", pl.host)
		if err != nil {
			return fmt.Errorf("listen on client URL %s: %w", pl.host, err)
		}
		addr := l.Addr().String()
		if pl.secure {
			l = tlsutil.NewListener(l, tlsutil.ListenerConfig{Source: s.clientTLS, NextProtos: []string{"h2", "http/1.1"}, Port: "client",
				AllowPlaintext: pl.insecure, Logger: s.lg})
			s.bound = append(s.bound, "https://"+addr)
		}
		if pl.insecure {
			s.bound = append(s.bound, "http://"+addr)
		}
		s.clientLs = append(s.clientLs, l)
		s.clientSecure = append(s.clientSecure, pl.secure)
		byHost[pl.host] = l
	}
	bound := make([]net.Listener, len(s.cfg.ListenClientURLs)) // one per URL
	for i, u := range s.cfg.ListenClientURLs {
		bound[i] = byHost[u.Host]
	}
	s.clientURLs = resolvePorts(s.cfg.AdvertiseClientURLs, s.cfg.ListenClientURLs, bound)
	return nil
}

// resolvePorts replaces port 0 in advertised URLs by the port the listener
// for the same host bound (or the first listener's), so tests can ask for
// free ports.
func resolvePorts(advertise, listen []url.URL, ls []net.Listener) []string {
	out := make([]string, 0, len(advertise))
	for _, a := range advertise {
		if a.Port() == "0" && len(ls) > 0 {
			port := ls[0].Addr().(*net.TCPAddr).Port
			for i, l := range listen {
				if l.Hostname() == a.Hostname() {
					port = ls[i].Addr().(*net.TCPAddr).Port
					break
				}
			}
			a.Host = net.JoinHostPort(a.Hostname(), strconv.Itoa(port))
		}
		out = append(out, a.String())
	}
	return out
}

func urlStrings(us []url.URL) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.String()
	}
	return out
}

// openMember opens the data dir and starts the member: from its own state
// when the data dir is initialised (the --initial-cluster* flags are then
// ignored), else by bootstrapping a new cluster or joining an existing one
// as the --initial-cluster* flags say (see bootstrap.go).
func (s *Server) openMember() error {
	cfg := s.cfg
	if fi, err := s.fs.Stat(cfg.DataDir); err == nil && fi.Mode().Perm() != 0o700 {
		s.lg.Warn("check file permission", zap.String("data-dir", cfg.DataDir),
			zap.String("error", fmt.Sprintf("directory %q exist, but the permission is %q. The recommended permission is \"-rwx------\" to prevent possible unprivileged access to the data", cfg.DataDir, fi.Mode().Perm())))
	}
	var plan *bootstrapPlan
	if _, err := s.fs.Stat(storage.DBDir(cfg.DataDir)); err != nil {
		// A new data dir: refuse a configuration that cannot bootstrap
		// before anything is created.
		if plan, err = s.planBootstrap(); err != nil {
			return err
		}
	}
	engine, err := storage.Open(storage.DBDir(cfg.DataDir), storage.Options{FS: s.fs, Logger: s.lg})
	if err != nil {
		return err
	}
	s.engine = engine
	ident, haveIdent, err := engine.Identity()
	if err != nil {
		return err
	}
	haveRaft, err := engine.HasRaftState()
	if err != nil {
		return err
	}
	_, joined, err := engine.JoinPeers()
	if err != nil {
		return err
	}
	// A member that joined is initialised once its identity is recorded:
	// starting over would need the cluster to answer again.
	initialised := haveIdent && (haveRaft || joined)
	switch {
	case haveRaft && !haveIdent:
		return fmt.Errorf("data dir %s holds Raft state but no member identity: it is damaged; restore it from a snapshot", cfg.DataDir)
	case haveIdent && !initialised:
		// The bootstrap stopped between recording the identity and Raft's
		// first save: nothing can have been acknowledged, so start over.
		s.lg.Warn("data dir holds a member identity but no Raft state (an interrupted bootstrap); bootstrapping again", zap.String("data-dir", cfg.DataDir))
	}
	var peers []raft.Peer
	var remotes []*membership.Member
	if initialised {
		s.lg.Info("restarting local member", zap.String("data-dir", cfg.DataDir),
			zap.String("local-member-id", fmt.Sprintf("%x", ident.MemberID)), zap.String("cluster-id", fmt.Sprintf("%x", ident.ClusterID)))
		if remotes, err = s.restartPeers(ident); err != nil {
			return err
		}
	} else {
		if plan == nil {
			// An interrupted bootstrap left the directory behind.
			if plan, err = s.planBootstrap(); err != nil {
				return err
			}
		}
		if err := s.bootstrap(plan); err != nil {
			return err
		}
		ident, peers, remotes = plan.ident, plan.peers, plan.remotes
	}
	s.lg.Info("starting local member", zap.String("local-member-id", fmt.Sprintf("%x", ident.MemberID)), zap.String("cluster-id", fmt.Sprintf("%x", ident.ClusterID)))
	s.transport = s.newTransport(ident)
	for _, r := range remotes {
		if r.ID != ident.MemberID {
			s.transport.AddPeer(r.ID, r.PeerURLs)
		}
	}
	// Validated with the flags.
	retention, err := compactor.ParseRetention(cfg.AutoCompactionMode, cfg.AutoCompactionRetention)
	if err != nil {
		return err
	}
	s.member, err = member.Start(member.Config{
		ID:                      ident.MemberID,
		ClusterID:               ident.ClusterID,
		Name:                    cfg.Name,
		ClientURLs:              s.clientURLs,
		Engine:                  engine,
		Peers:                   peers,
		Transport:               s.transport,
		TickInterval:            cfg.HeartbeatInterval,
		ElectionTicks:           int(cfg.ElectionTimeout / cfg.HeartbeatInterval),
		SnapshotCount:           cfg.SnapshotCount,
		SnapshotCatchUpEntries:  cfg.SnapshotCatchUpEntries,
		MaxRequestBytes:         cfg.MaxRequestBytes,
		QuotaBackendBytes:       cfg.QuotaBackendBytes,
		StrictReconfigCheck:     cfg.StrictReconfigCheck,
		WatchProgressInterval:   cfg.WatchProgressNotifyInterval,
		AuthToken:               cfg.AuthToken,
		AuthTokenTTL:            cfg.AuthTokenTTL,
		BcryptCost:              int(cfg.BcryptCost),
		AutoCompactionMode:      cfg.AutoCompactionMode,
		AutoCompactionRetention: retention,
		// A new member has nothing to compare yet, as in etcd.
		InitialCorruptCheck:  cfg.InitialCorruptCheck && initialised,
		CorruptCheckTime:     cfg.CorruptCheckTime,
		CompactHashCheckTime: compactHashCheckTime(cfg),
		Metrics:              s.metrics,
		Logger:               s.lg,
	})
	return err
}

// compactHashCheckTime is the interval of the compaction hash check, 0
// when its feature gate is off.
func compactHashCheckTime(cfg *config.Config) time.Duration {
	if !cfg.CompactHashCheck {
		return 0
	}
	return cfg.CompactHashCheckTime
}

// serveWhenReady starts serving clients once the member has published itself.
func (s *Server) serveWhenReady() {
	defer s.wg.Done()
	select {
	case <-s.member.ReadyNotify():
	case <-s.stopc:
		return
	case <-s.member.Done():
		return
	}
	s.grpc.SetServing()
	s.serveGateway()
	for i, l := range s.clientLs {
		grpcL, httpL := api.Split(l)
		s.wg.Add(2)
		go func() {
			defer s.wg.Done()
			if err := s.grpc.Serve(grpcL); err != nil && !errors.Is(err, net.ErrClosed) {
				s.lg.Warn("stopped serving gRPC", zap.String("address", l.Addr().String()), zap.Error(err))
			}
		}()
		go func() {
			defer s.wg.Done()
			if err := s.http.Serve(httpL); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				s.lg.Warn("stopped serving HTTP", zap.String("address", l.Addr().String()), zap.Error(err))
			}
		}()
		if s.clientSecure[i] {
			s.lg.Info("serving client traffic securely", zap.String("traffic", "grpc+http"), zap.String("address", l.Addr().String()))
		} else {
			s.lg.Info("serving client traffic insecurely; this is strongly discouraged!", zap.String("traffic", "grpc+http"), zap.String("address", l.Addr().String()))
		}
	}
	s.lg.Info("ready to serve client requests")
	close(s.readyc)
}

// ReadyNotify is closed once the member serves client requests.
func (s *Server) ReadyNotify() <-chan struct{} { return s.readyc }

// Done is closed when the member stopped on its own after a failure; Err
// says why.
func (s *Server) Done() <-chan struct{} { return s.member.Done() }

// Err returns why the member stopped on its own.
func (s *Server) Err() error { return s.member.Err() }

// ClientURLs returns the URLs the client listeners actually bound, with port
// 0 resolved, e.g. "http://127.0.0.1:41234".
func (s *Server) ClientURLs() []string { return slices.Clone(s.bound) }

// MemberID returns this member's ID.
func (s *Server) MemberID() uint64 { return s.member.ID() }

// Stop shuts the member down gracefully and waits until every goroutine it
// started has returned.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		s.lg.Info("closing etcd server", zap.String("name", s.cfg.Name), zap.String("data-dir", s.cfg.DataDir),
			zap.Strings("advertise-client-urls", s.clientURLs))
		close(s.stopc)
		if s.member != nil {
			// Watch streams last as long as their clients: end them first,
			// or the graceful stop below would wait for them in vain.
			s.member.Watch().Stop()
		}
		if s.grpc != nil {
			done := make(chan struct{})
			go func() { s.grpc.GracefulStop(); close(done) }()
			select {
			case <-done:
			case <-time.After(2 * time.Second):
				s.grpc.Stop()
				<-done
			}
		}
		if s.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			s.http.Shutdown(ctx)
			cancel()
		}
		s.stopMetrics()
		s.closeResources()
		s.wg.Wait()
		s.lg.Info("closed etcd server", zap.String("name", s.cfg.Name), zap.String("data-dir", s.cfg.DataDir),
			zap.Strings("advertise-client-urls", s.clientURLs))
	})
}

// closeResources closes listeners, stops the member and closes the engine.
func (s *Server) closeResources() {
	s.closeGateway()
	for _, l := range slices.Concat(s.clientLs, s.peerLs, s.metricsLs) {
		l.Close()
	}
	if s.member != nil {
		s.member.Stop()
	}
	if s.transport != nil {
		// After the member: Raft no longer sends, and snapshot streams
		// reading the engine end before it closes.
		s.transport.Stop()
	}
	if s.engine != nil {
		if err := s.engine.Close(); err != nil {
			s.lg.Warn("failed to close the database", zap.Error(err))
		}
	}
}
