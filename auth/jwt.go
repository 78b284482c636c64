package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
)

// defaultJWTTTL is how long a JWT is valid when --auth-token sets no ttl.
const defaultJWTTTL = 5 * time.Minute

// jwtTokens are signed tokens carrying the claims username, revision and
// exp, as etcd's. A member given only the public key verifies tokens but
// cannot issue them.
type jwtTokens struct {
	lg     *zap.Logger
	method jwt.SigningMethod
	key    any // private key (signs and verifies) or public key (verifies)
	verify any // the key that verifies
	ttl    time.Duration
	now    func() time.Time
}

// jwtParams are the parameters of --auth-token jwt,...
var jwtParams = map[string]bool{"sign-method": true, "pub-key": true, "priv-key": true, "ttl": true}

func newJWTTokens(lg *zap.Logger, params map[string]string) (*jwtTokens, error) {
	t, pub, priv, err := parseJWTParams(params)
	if err != nil {
		lg.Error("problem loading JWT options", zap.Error(err))
		return nil, ErrInvalidAuthOpts
	}
	var unknown []string
	for k := range params {
		if !jwtParams[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		lg.Warn("unknown JWT options", zap.Strings("keys", unknown))
	}
	t.lg = lg
	if t.key, t.verify, err = jwtKeys(t.method, pub, priv); err != nil {
		return nil, err
	}
	return t, nil
}

// parseJWTParams reads the ttl, the key files and the signing method.
func parseJWTParams(params map[string]string) (t *jwtTokens, pub, priv []byte, err error) {
	t = &jwtTokens{ttl: defaultJWTTTL, now: time.Now}
	if v := params["ttl"]; v != "" {
		if t.ttl, err = time.ParseDuration(v); err != nil {
			return nil, nil, nil, err
		}
	}
	if f := params["pub-key"]; f != "" {
		if pub, err = os.ReadFile(f); err != nil {
			return nil, nil, nil, err
		}
	}
	if f := params["priv-key"]; f != "" {
		if priv, err = os.ReadFile(f); err != nil {
			return nil, nil, nil, err
		}
	}
	if t.method = jwt.GetSigningMethod(params["sign-method"]); t.method == nil {
		return nil, nil, nil, ErrInvalidAuthMethod
	}
	return t, pub, priv, nil
}

// jwtKeys parses the PEM keys for method and returns the signing key (the
// public key when only that was given) and the verifying key.
func jwtKeys(method jwt.SigningMethod, pubPEM, privPEM []byte) (key, verify any, err error) {
	var pub crypto.PublicKey
	var priv crypto.Signer
	switch method.(type) {
	case *jwt.SigningMethodHMAC:
		if len(privPEM) == 0 {
			return nil, nil, ErrMissingKey
		}
		return privPEM, privPEM, nil
	case *jwt.SigningMethodRSA, *jwt.SigningMethodRSAPSS:
		pub, priv, err = parsePEMKeys(pubPEM, privPEM,
			func(b []byte) (crypto.PublicKey, error) { return jwt.ParseRSAPublicKeyFromPEM(b) },
			func(b []byte) (crypto.Signer, error) { return jwt.ParseRSAPrivateKeyFromPEM(b) })
	case *jwt.SigningMethodECDSA:
		pub, priv, err = parsePEMKeys(pubPEM, privPEM,
			func(b []byte) (crypto.PublicKey, error) { return jwt.ParseECPublicKeyFromPEM(b) },
			func(b []byte) (crypto.Signer, error) { return jwt.ParseECPrivateKeyFromPEM(b) })
	case *jwt.SigningMethodEd25519:
		pub, priv, err = parsePEMKeys(pubPEM, privPEM, jwt.ParseEdPublicKeyFromPEM,
			func(b []byte) (crypto.Signer, error) {
				k, err := jwt.ParseEdPrivateKeyFromPEM(b)
				if err != nil {
					return nil, err
				}
				return k.(crypto.Signer), nil
			})
	default:
		return nil, nil, fmt.Errorf("unsupported signing method: %T", method)
	}
	if err != nil {
		return nil, nil, err
	}
	if priv == nil {
		return pub, pub, nil
	}
	if pub != nil && !publicKeysEqual(pub, priv.Public()) {
		return nil, nil, ErrKeyMismatch
	}
	return priv, priv.Public(), nil
}

func parsePEMKeys(pubPEM, privPEM []byte, parsePub func([]byte) (crypto.PublicKey, error), parsePriv func([]byte) (crypto.Signer, error)) (crypto.PublicKey, crypto.Signer, error) {
	var pub crypto.PublicKey
	var priv crypto.Signer
	var err error
	if len(privPEM) > 0 {
		if priv, err = parsePriv(privPEM); err != nil {
			return nil, nil, err
		}
	}
	if len(pubPEM) > 0 {
		if pub, err = parsePub(pubPEM); err != nil {
			return nil, nil, err
		}
	}
	if pub == nil && priv == nil {
		return nil, nil, ErrMissingKey
	}
	return pub, priv, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	switch k := a.(type) {
	case *rsa.PublicKey:
		return k.Equal(b)
	case *ecdsa.PublicKey:
		return k.Equal(b)
	case ed25519.PublicKey:
		return k.Equal(b)
	}
	return false
}

func (t *jwtTokens) verifyOnly() bool {
	switch t.key.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		return true
	}
	return false
}

func (t *jwtTokens) info(_ context.Context, token string) (*AuthInfo, bool) {
	parsed, err := jwt.Parse(token, func(tok *jwt.Token) (any, error) {
		if tok.Method.Alg() != t.method.Alg() {
			return nil, errors.New("invalid signing method")
		}
		return t.verify, nil
	}, jwt.WithTimeFunc(t.now))
	if err != nil {
		t.lg.Warn("failed to parse a JWT token", zap.Error(err))
		return nil, false
	}
	claims, ok := parsed.Claims.(jwt.MapClaims)
	if !ok || !parsed.Valid {
		return nil, false
	}
	username, ok := claims["username"].(string)
	if !ok {
		t.lg.Warn("failed to obtain user claims from jwt token")
		return nil, false
	}
	rev, ok := claims["revision"].(float64)
	if !ok {
		t.lg.Warn("failed to obtain revision claims from jwt token")
		return nil, false
	}
	return &AuthInfo{Username: username, Revision: uint64(rev)}, false
}

func (t *jwtTokens) sign(username string, rev uint64) (string, error) {
	if t.verifyOnly() {
		return "", ErrVerifyOnly
	}
	tok := jwt.NewWithClaims(t.method, jwt.MapClaims{
		"username": username,
		"revision": rev,
		"exp":      t.now().Add(t.ttl).Unix(),
	})
	return tok.SignedString(t.key)
}

func (t *jwtTokens) prefix() (string, error)                            { return "", nil }
func (t *jwtTokens) assignSimple(string, uint64, string) (string, bool) { return "", false }
func (t *jwtTokens) disable()                                           {}
func (t *jwtTokens) keepUsers(func(string) bool)                        {}
