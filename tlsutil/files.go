package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"strings"
	"sync"
	"time"
)

// watched holds what load makes of a set of files and makes it again when
// one of the files changes (its modification time, size, inode or change
// time). Checking costs
// one stat per file and is done on every get, that is once per TLS
// handshake, so that a renewed certificate is used by the next connection.
type watched[T any] struct {
	paths []string
	load  func() (T, error)
	// onReloadErr is told when changed files cannot be loaded; the
	// previous value stays in use until they can.
	onReloadErr func(error)

	mu    sync.Mutex
	stamp string
	val   T
}

// newWatched loads the files once; an error means there is nothing to use.
func newWatched[T any](paths []string, load func() (T, error), onReloadErr func(error)) (*watched[T], error) {
	w := &watched[T]{paths: paths, load: load, onReloadErr: onReloadErr}
	w.stamp = w.currentStamp()
	v, err := load()
	if err != nil {
		return nil, err
	}
	w.val = v
	return w, nil
}

// get returns the current value, reloading it first if a file changed.
func (w *watched[T]) get() T {
	stamp := w.currentStamp()
	w.mu.Lock()
	defer w.mu.Unlock()
	if stamp == w.stamp {
		return w.val
	}
	v, err := w.load()
	if err != nil {
		// A rotation in progress (the certificate written, the key not
		// yet) or a mistake: keep serving with what worked, retry on
		// the next handshake.
		if w.onReloadErr != nil {
			w.onReloadErr(err)
		}
		return w.val
	}
	w.stamp, w.val = stamp, v
	return v
}

func (w *watched[T]) currentStamp() string {
	var b strings.Builder
	for _, p := range w.paths {
		fi, err := os.Stat(p)
		if err != nil {
			fmt.Fprintf(&b, "%s:missing;", p)
			continue
		}
		fmt.Fprintf(&b, "%s:%d:%d", p, fi.ModTime().UnixNano(), fi.Size())
		// The inode changes when a new file is renamed over the old one,
		// the change time on any write: both catch a rewrite of the same
		// size within one tick of the modification time.
		b.WriteString(fileIdentity(fi) + ";")
	}
	return b.String()
}

func loadKeyPair(certFile, keyFile string) func() (*tls.Certificate, error) {
	return func() (*tls.Certificate, error) {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("load certificate %s and key %s: %w", certFile, keyFile, err)
		}
		return &c, nil
	}
}

// caBundle is a trusted CA file: the pool verification uses and its
// certificates, which explanations name.
type caBundle struct {
	pool  *x509.CertPool
	certs []*x509.Certificate
}

func loadCAs(caFile string) func() (caBundle, error) {
	return func() (caBundle, error) {
		data, err := os.ReadFile(caFile)
		if err != nil {
			return caBundle{}, fmt.Errorf("read trusted CA file: %w", err)
		}
		b := caBundle{pool: x509.NewCertPool()}
		for rest := data; ; {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			if block.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return caBundle{}, fmt.Errorf("parse trusted CA file %s: %w", caFile, err)
			}
			b.pool.AddCert(c)
			b.certs = append(b.certs, c)
		}
		if len(b.certs) == 0 {
			return caBundle{}, fmt.Errorf("trusted CA file %s holds no PEM certificate", caFile)
		}
		return b, nil
	}
}

// revocations is what the CRL file revokes: revocation times by serial
// number. As in etcd, a serial is revoked whichever CA issued the list (so
// an indirect CRL works) and whichever issued the certificate.
type revocations map[string]time.Time

// revoked reports whether c is listed, and when it was revoked.
func (r revocations) revoked(c *x509.Certificate) (time.Time, bool) {
	at, ok := r[string(c.SerialNumber.Bytes())]
	return at, ok
}

// loadCRL reads CRLs in DER (as etcd reads them) or PEM ("X509 CRL"
// blocks, any number of them).
func loadCRL(crlFile string) func() (revocations, error) {
	return func() (revocations, error) {
		data, err := os.ReadFile(crlFile)
		if err != nil {
			return nil, fmt.Errorf("read CRL file: %w", err)
		}
		ders := [][]byte{data}
		if strings.HasPrefix(strings.TrimSpace(string(data)), "-----BEGIN") {
			ders = nil
			for rest := data; ; {
				var b *pem.Block
				b, rest = pem.Decode(rest)
				if b == nil {
					break
				}
				if b.Type == "X509 CRL" {
					ders = append(ders, b.Bytes)
				}
			}
			if len(ders) == 0 {
				return nil, fmt.Errorf("CRL file %s holds no \"X509 CRL\" PEM block", crlFile)
			}
		}
		r := revocations{}
		for _, der := range ders {
			list, err := x509.ParseRevocationList(der)
			if err != nil {
				return nil, fmt.Errorf("parse CRL file %s: %w", crlFile, err)
			}
			for _, e := range list.RevokedCertificateEntries {
				r[string(e.SerialNumber.Bytes())] = e.RevocationTime
			}
		}
		return r, nil
	}
}

// RevokedError refuses a certificate listed in the CRL file.
type RevokedError struct {
	Cert      *x509.Certificate
	RevokedAt time.Time
	CRLFile   string
}

func (e *RevokedError) Error() string {
	return fmt.Sprintf("certificate %q (serial %s) was revoked at %s by the CRL in %s",
		e.Cert.Subject.CommonName, serialHex(e.Cert.SerialNumber), e.RevokedAt.UTC().Format(time.RFC3339), e.CRLFile)
}

func serialHex(n *big.Int) string { return fmt.Sprintf("%x", n) }
