package ctl

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keeldb/keel/pki"
)

// explainFailure adds the cause to the error of a command that failed the
// way a TLS mistake makes it fail (etcdctl says only "context deadline
// exceeded"): when the command built a client, it makes one TLS handshake
// with each endpoint, with the command's TLS settings, and appends the
// first failure's explanation as
// "<err>: <handshake error> (keelctl: <cause>)". The exit code stays the
// original one. Any other error, and one whose endpoints all handshake
// fine, is returned unchanged, so output never differs from etcdctl's where
// TLS is not at fault. It takes up to --dial-timeout per endpoint.
func (g *globals) explainFailure(err error) error {
	if g.spec == nil || !looksLikeConnectionFailure(err) {
		return err
	}
	cfg, cerr := g.specConfig(g.spec, g.spec.Endpoints)
	if cerr != nil {
		return err
	}
	for _, ep := range g.spec.Endpoints {
		raw, cause := g.diagnoseEndpoint(ep, cfg.TLS)
		if cause != "" {
			return &exitError{code: exitCode(err), err: fmt.Errorf("%w: %v (keelctl: %s)", err, raw, cause)}
		}
	}
	return err
}

// looksLikeConnectionFailure reports whether err is how a client reports
// an endpoint it could not talk to: a deadline, gRPC's Unavailable, or
// endpoint health's "unhealthy cluster".
func looksLikeConnectionFailure(err error) bool {
	if errors.Is(err, errSilent) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	if s, ok := status.FromError(errors.Unwrap(err)); ok && (s.Code() == codes.Unavailable || s.Code() == codes.DeadlineExceeded) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "context deadline exceeded") || strings.Contains(msg, "unhealthy cluster") ||
		strings.Contains(msg, "code = Unavailable")
}

// diagnoseEndpoint makes one TLS handshake with ep as the client library
// would (TLS for https://, none for http://, TLS for a bare address when
// tlsCfg is set) and returns the handshake error and its explanation, or
// "" when TLS is not the problem. For a plain-text endpoint it checks
// whether the server speaks TLS instead.
func (g *globals) diagnoseEndpoint(ep string, tlsCfg *tls.Config) (raw error, cause string) {
	scheme, addr := splitEndpoint(ep)
	switch {
	case scheme == "unix" || scheme == "unixs":
		return nil, ""
	case scheme == "http" || (scheme == "" && tlsCfg == nil):
		if g.speaksTLS(addr) {
			return errors.New("the connection was closed"), fmt.Sprintf("the server at %s speaks TLS, and keelctl dialled it in plain text: use https://%s with --cacert (and --cert and --key if it requires client certificates)", addr, addr)
		}
		return nil, ""
	}
	if tlsCfg == nil {
		tlsCfg = &tls.Config{}
	}
	cfg := tlsCfg.Clone()
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	err = g.handshake(addr, cfg)
	if err == nil {
		return nil, ""
	}
	h := pki.Handshake{Role: pki.Dialer, Addr: addr, ServerName: cfg.ServerName, CAFile: g.cacert, CertFlags: "--cert and --key"}
	if g.cacert != "" {
		if data, rerr := os.ReadFile(g.cacert); rerr == nil {
			h.CAs, _ = pki.ParseCertificates(data)
		}
	}
	if g.cert != "" {
		if data, rerr := os.ReadFile(g.cert); rerr == nil {
			if certs, perr := pki.ParseCertificates(data); perr == nil {
				h.Cert = certs[0]
			}
		}
	}
	return err, h.Explain(err)
}

// splitEndpoint is an endpoint's scheme ("" for a bare address) and
// host:port.
func splitEndpoint(ep string) (scheme, addr string) {
	if !strings.Contains(ep, "://") {
		return "", ep
	}
	u, err := url.Parse(ep)
	if err != nil {
		return "", ep
	}
	return u.Scheme, u.Host
}

// handshake dials addr and makes a TLS handshake with cfg, then sends an
// HTTP probe and reads the first byte of the answer: a server refuses a
// client certificate only after a TLS 1.3 client's handshake has completed,
// and the refusal arrives on the first read. A read that merely times out
// counts as success.
func (g *globals) handshake(addr string, cfg *tls.Config) error {
	d := net.Dialer{Timeout: g.dialTimeout}
	conn, err := tls.DialWithDialer(&d, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(g.dialTimeout))
	if _, err := fmt.Fprintf(conn, "GET /health HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", addr); err != nil {
		return err
	}
	_, err = conn.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || err == io.EOF || (errors.As(err, &ne) && ne.Timeout()) {
		return nil
	}
	return err
}

// speaksTLS reports whether the server at addr completes a TLS handshake,
// its certificate unchecked (or refuses one in TLS terms, with an alert).
func (g *globals) speaksTLS(addr string) bool {
	d := net.Dialer{Timeout: g.dialTimeout}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return false
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(g.dialTimeout))
	err = tls.Client(conn, &tls.Config{InsecureSkipVerify: true}).Handshake()
	var opErr *net.OpError
	return err == nil || (errors.As(err, &opErr) && opErr.Op == "remote error")
}
