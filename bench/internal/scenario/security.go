package scenario

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keeldb/keel/bench/internal/harness"
	"github.com/keeldb/keel/bench/internal/proc"
)

// Security is how a scenario's cluster is secured. The zero value is
// plain HTTP without auth. etcd and keel get the same flags, files and
// setup.
type Security struct {
	// TLS serves clients over HTTPS with a server certificate and requires
	// a client certificate (--client-cert-auth, --trusted-ca-file); with
	// more than one member the peers talk TLS too, also requiring
	// certificates (--peer-client-cert-auth). The load generator presents
	// a client certificate whose CN is benchUser. The certificates are
	// made with keel's pki package in the run's directory.
	TLS bool
	// Auth enables auth: a root user with the root role, and a user
	// benchUser whose role may read and write benchKeys; the load
	// generator's clients log in as benchUser with a password.
	Auth bool
	// AuthToken is the kind of token the servers issue with Auth:
	// AuthSimple (also when empty) or AuthJWT, ES256 with a key pair made
	// in the run's directory.
	AuthToken string
}

// The tokens Security.AuthToken can ask for.
const (
	AuthSimple = "simple"
	AuthJWT    = "jwt"
)

// The auth setup of a secured cluster. The scenarios' keys are decimal
// digits, so the range ["0", ":") holds every key they write and nothing
// else: the permission is a range, checked like a prefix.
const (
	benchUser     = "bench"
	benchPassword = "bench-password"
	rootPassword  = "root-password"
	benchKeys     = "0"
	benchKeysEnd  = ":"
)

// Validate checks the parameters.
func (s Security) Validate() error {
	switch s.AuthToken {
	case "", AuthSimple, AuthJWT:
		return nil
	}
	return fmt.Errorf("-auth-token %q: want %s or %s", s.AuthToken, AuthSimple, AuthJWT)
}

// token is the kind of token the servers issue with Auth.
func (s Security) token() string {
	if s.AuthToken == "" {
		return AuthSimple
	}
	return s.AuthToken
}

// String names the setup for progress lines: "plain", "TLS", "auth
// (simple tokens)", "TLS, auth (jwt tokens)".
func (s Security) String() string {
	switch {
	case s.TLS && s.Auth:
		return "TLS, auth (" + s.token() + " tokens)"
	case s.TLS:
		return "TLS"
	case s.Auth:
		return "auth (" + s.token() + " tokens)"
	}
	return "plain"
}

// prepareFiles writes what the servers need before they start into dir:
// the certificates (TLS) and the JWT signing keys (jwt). It returns the
// certificates, nil without TLS, and the server flags to add.
func (s Security) prepareFiles(dir string) (*proc.TLS, []string, error) {
	var (
		t    *proc.TLS
		args []string
		err  error
	)
	if s.TLS {
		if t, err = proc.NewTLS(filepath.Join(dir, "tls"), benchUser); err != nil {
			return nil, nil, err
		}
	}
	if s.Auth && s.token() == AuthJWT {
		pub, priv, err := writeJWTKeys(filepath.Join(dir, "jwt"))
		if err != nil {
			return nil, nil, err
		}
		args = append(args, "--auth-token", fmt.Sprintf("jwt,pub-key=%s,priv-key=%s,sign-method=ES256", pub, priv))
	}
	return t, args, nil
}

// writeJWTKeys makes an ECDSA P-256 key pair for ES256 tokens and writes
// it into dir as PEM: the public key (PKIX) and the private key (SEC 1).
func writeJWTKeys(dir string) (pub, priv string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return "", "", err
	}
	privDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	pub, priv = filepath.Join(dir, "jwt.pub"), filepath.Join(dir, "jwt.key")
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: privDER}), 0o600); err != nil {
		return "", "", err
	}
	return pub, priv, nil
}

// enableAuth sets up the users and roles on a running cluster and enables
// auth, through cli (not yet logged in: auth is off). Every step must
// succeed, or the run cannot measure what it says.
func enableAuth(ctx context.Context, cli *clientv3.Client, progress *harness.Progress) error {
	steps := []struct {
		what string
		do   func(ctx context.Context) error
	}{
		{"add user root", func(ctx context.Context) error { _, err := cli.UserAdd(ctx, "root", rootPassword); return err }},
		{"add role root", func(ctx context.Context) error { _, err := cli.RoleAdd(ctx, "root"); return err }},
		{"grant role root to root", func(ctx context.Context) error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err }},
		{"add role " + benchUser, func(ctx context.Context) error { _, err := cli.RoleAdd(ctx, benchUser); return err }},
		{"grant readwrite to role " + benchUser, func(ctx context.Context) error {
			_, err := cli.RoleGrantPermission(ctx, benchUser, benchKeys, benchKeysEnd, clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		}},
		{"add user " + benchUser, func(ctx context.Context) error { _, err := cli.UserAdd(ctx, benchUser, benchPassword); return err }},
		{"grant role to user " + benchUser, func(ctx context.Context) error { _, err := cli.UserGrantRole(ctx, benchUser, benchUser); return err }},
		{"enable auth", func(ctx context.Context) error { _, err := cli.AuthEnable(ctx); return err }},
	}
	for _, st := range steps {
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		err := st.do(rctx)
		cancel()
		if err != nil {
			return fmt.Errorf("auth setup: %s: %w", st.what, err)
		}
	}
	progress.Printf("auth enabled: user %s may read and write [%q, %q)", benchUser, benchKeys, benchKeysEnd)
	return nil
}

// outsideKey is a key outside benchUser's permission.
const outsideKey = "keelbench-outside"

// checkAuthEnforced checks, with a client logged in as benchUser, that the
// cluster refuses a put outside the user's permission: otherwise the run
// would measure a cluster that checks nothing.
func checkAuthEnforced(ctx context.Context, cli *clientv3.Client) error {
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	if _, err := cli.Put(rctx, outsideKey, ""); err == nil {
		return fmt.Errorf("auth setup: user %s may put %q, outside its permission", benchUser, outsideKey)
	}
	return nil
}
