package tlsutil

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/keeldb/keel/pki"
)

// SelfCert returns the files of a self-signed certificate for hosts in dir
// (--auto-tls: <data-dir>/fixtures/client, --peer-auto-tls: .../peer),
// valid for validityYears years. As in etcd, a certificate already there
// is reused; otherwise one is made.
func SelfCert(lg *zap.Logger, dir string, hosts []string, validityYears uint) (certFile, keyFile string, err error) {
	if validityYears == 0 {
		return "", "", errors.New("selfSignedCertValidity is invalid,it should be greater than 0")
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	_, cerr := os.Stat(certFile)
	_, kerr := os.Stat(keyFile)
	if cerr == nil && kerr == nil {
		return certFile, keyFile, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("cannot generate cert: %w", err)
	}
	p, err := pki.SelfSigned(hosts, time.Duration(validityYears)*365*24*time.Hour)
	if err != nil {
		return "", "", fmt.Errorf("cannot generate cert: %w", err)
	}
	if err := p.Write(certFile, keyFile); err != nil {
		return "", "", fmt.Errorf("cannot write self-signed certificate: %w", err)
	}
	if lg != nil {
		lg.Info("created self-signed certificate", zap.String("path", certFile), zap.Strings("hosts", hosts))
	}
	return certFile, keyFile, nil
}
