package auth

import (
	"encoding/base64"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"
)

// bcryptCost is cost, or bcrypt's default when cost is out of bcrypt's
// range, as etcd does.
func bcryptCost(lg *zap.Logger, cost int) int {
	if cost < bcrypt.MinCost || cost > bcrypt.MaxCost {
		lg.Warn("use default bcrypt cost instead of the invalid given cost",
			zap.Int("min-cost", bcrypt.MinCost), zap.Int("max-cost", bcrypt.MaxCost),
			zap.Int("default-cost", bcrypt.DefaultCost), zap.Int("given-cost", cost))
		return bcrypt.DefaultCost
	}
	return cost
}

// HashPassword returns the bcrypt hash of password, base64-encoded as the
// HashedPassword field of UserAdd and UserChangePassword carries it. The
// proposer hashes before proposing, so that the entry holds no clear
// password and applying it draws no randomness.
func (s *Store) HashPassword(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), s.bcryptCost)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(h), nil
}

// CheckPassword checks a user's password (slow: bcrypt; call it outside
// the apply loop) and returns the auth revision the check saw. Errors as
// etcd's: rpctypes.ErrGRPCAuthNotEnabled, rpctypes.ErrGRPCAuthFailed for an
// unknown user or a wrong password, and etcd's Unknown-coded "password was
// given for no password user" for a user without a password.
func (s *Store) CheckPassword(username, password string) (uint64, error) {
	s.mu.RLock()
	enabled, rev, u := s.enabled.Load(), s.revision, s.users[username]
	s.mu.RUnlock()
	if !enabled {
		return 0, rpctypes.ErrGRPCAuthNotEnabled
	}
	if u == nil {
		return 0, errAuthFailed
	}
	if u.Options != nil && u.Options.NoPassword {
		return 0, errNoPasswordUser
	}
	if bcrypt.CompareHashAndPassword(u.Password, []byte(password)) != nil {
		s.lg.Info("invalid password", zap.String("user-name", username))
		return 0, errAuthFailed
	}
	return rev, nil
}

// TokenPrefix returns the random part of a new simple token, to propose
// with an Authenticate request; "" when this member does not issue simple
// tokens.
func (s *Store) TokenPrefix() (string, error) { return s.tokens.prefix() }

// SignToken issues a self-contained token (JWT) for username at auth
// revision rev, for an Authenticate applied without a simple token.
// Errors: ErrVerifyOnly on a member holding only the public key, and
// rpctypes.ErrGRPCAuthFailed when this member issues no tokens at all.
func (s *Store) SignToken(username string, rev uint64) (string, error) {
	return s.tokens.sign(username, rev)
}
