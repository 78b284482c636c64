package server

import (
	"fmt"
	"net/url"
	"path/filepath"

	"go.uber.org/zap"

	"github.com/keeldb/keel/config"
	"github.com/keeldb/keel/tlsutil"
)

// setupTLS loads the TLS set-up of the client port (when a client URL is
// https) and of the peer port (when peer certificates are given: a member
// listening on http still dials https peers during a migration to peer
// TLS), generating the auto-TLS certificates first.
func (s *Server) setupTLS() error {
	cfg := s.cfg
	if hasScheme(cfg.ListenClientURLs, "https", "unixs") {
		src, err := s.tlsSource("client", cfg.ClientTLS, cfg.ListenClientURLs)
		if err != nil {
			return err
		}
		s.clientTLS = src
	}
	warnIgnoredTLS(s.lg, "client", cfg.ClientTLS, cfg.ListenClientURLs)
	if !cfg.PeerTLS.Empty() || cfg.PeerTLS.AutoTLS {
		src, err := s.tlsSource("peer", cfg.PeerTLS, cfg.ListenPeerURLs)
		if err != nil {
			return err
		}
		s.peerTLS = src
	}
	warnIgnoredTLS(s.lg, "peer", cfg.PeerTLS, cfg.ListenPeerURLs)
	return nil
}

// tlsSource builds the TLS source of one port from its flags.
func (s *Server) tlsSource(port string, t config.TLS, listen []url.URL) (*tlsutil.Source, error) {
	info, err := s.tlsInfo(port, t, listen)
	if err != nil {
		return nil, err
	}
	src, err := tlsutil.New(info, s.lg)
	if err != nil {
		return nil, fmt.Errorf("%s TLS: %w", port, err)
	}
	s.lg.Info("starting with "+port+" TLS",
		zap.String("cert-file", info.CertFile), zap.String("key-file", info.KeyFile),
		zap.String("trusted-ca-file", info.TrustedCAFile), zap.Bool("client-cert-auth", info.ClientCertAuth),
		zap.String("crl-file", info.CRLFile), zap.Bool("self-signed", info.SelfSigned),
		zap.Strings("cipher-suites", s.cfg.CipherSuites))
	return src, nil
}

func (s *Server) tlsInfo(port string, t config.TLS, listen []url.URL) (tlsutil.Info, error) {
	cfg := s.cfg
	info := tlsutil.Info{TLS: t}
	if t.AutoTLS {
		if !t.Empty() {
			s.lg.Warn("ignoring " + port + " auto TLS since certs given")
		} else {
			hosts := make([]string, len(listen))
			for i, u := range listen {
				hosts[i] = u.Host
			}
			certFile, keyFile, err := tlsutil.SelfCert(s.lg, filepath.Join(cfg.DataDir, "fixtures", port), hosts, cfg.SelfSignedCertValidity)
			if err != nil {
				return info, fmt.Errorf("failed to get %s self-signed certs: %w", port, err)
			}
			// etcd's self-signed set-up has only the certificate.
			info = tlsutil.Info{TLS: config.TLS{CertFile: certFile, KeyFile: keyFile}, SelfSigned: true}
		}
	}
	var err error
	if info.CipherSuites, err = tlsutil.CipherSuites(cfg.CipherSuites); err != nil {
		return info, err
	}
	if info.MinVersion, err = tlsutil.Version(cfg.TLSMinVersion); err != nil {
		return info, err
	}
	if info.MaxVersion, err = tlsutil.Version(cfg.TLSMaxVersion); err != nil {
		return info, err
	}
	return info, nil
}

// warnIgnoredTLS gives etcd's warnings for TLS flags that an http URL
// ignores.
func warnIgnoredTLS(lg *zap.Logger, port string, t config.TLS, listen []url.URL) {
	for _, u := range listen {
		if u.Scheme != "http" && u.Scheme != "unix" {
			continue
		}
		// etcd's wording differs between the ports.
		scheme, flag := "HTTP", "--peer-client-cert-auth"
		if port == "client" {
			scheme, flag = "http or unix", "--client-cert-auth"
		}
		if !t.Empty() {
			lg.Warn("scheme is "+scheme+" while key and cert files are present; ignoring key and cert files", zap.String(port+"-url", u.String()))
		}
		if t.ClientCertAuth {
			lg.Warn("scheme is "+scheme+" while "+flag+" is enabled; ignoring client cert auth for this URL", zap.String(port+"-url", u.String()))
		}
	}
}

func hasScheme(us []url.URL, schemes ...string) bool {
	for _, u := range us {
		for _, sc := range schemes {
			if u.Scheme == sc {
				return true
			}
		}
	}
	return false
}

// portListener is one address of a port, listed with http://, https:// or
// both.
type portListener struct {
	host             string
	secure, insecure bool
}

// groupByAddress merges client URLs of one address: etcd serves http and
// https on one client listener when both are listed (never on a peer
// listener).
func groupByAddress(us []url.URL) []*portListener {
	var out []*portListener
	byHost := map[string]*portListener{}
	for _, u := range us {
		pl := byHost[u.Host]
		if pl == nil {
			pl = &portListener{host: u.Host}
			byHost[u.Host] = pl
			out = append(out, pl)
		}
		if u.Scheme == "https" || u.Scheme == "unixs" {
			pl.secure = true
		} else {
			pl.insecure = true
		}
	}
	return out
}
