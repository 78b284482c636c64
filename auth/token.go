package auth

import (
	"container/heap"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Options configure a Store's tokens and password hashing.
type Options struct {
	// Token is --auth-token: "simple" (the flag's default), or
	// "jwt,pub-key=FILE,priv-key=FILE,sign-method=ALG,ttl=DURATION". An
	// empty Token, as in etcd, issues no tokens at all.
	Token string
	// TokenTTL is how long a simple token stays valid without being used
	// (--auth-token-ttl); 0 means etcd's 300 seconds.
	TokenTTL time.Duration
	// BcryptCost is the cost of password hashes (--bcrypt-cost); out of
	// bcrypt's range means bcrypt's default, as in etcd.
	BcryptCost int
	// WaitApplied blocks until the member has applied the Raft entry at
	// index, and must fail soon for an index past the leader's commit
	// index (any token can name any index: a wait for an entry that may
	// never come would park the request until its context ends). A
	// simple token carries the index of the entry that issued it, so that
	// a member asked about a token issued through another one first
	// catches up with it; an error refuses the token. Nil means no wait.
	WaitApplied func(ctx context.Context, index uint64) error
	// Now is the clock simple token expiry reads; nil means time.Now.
	Now    func() time.Time
	Logger *zap.Logger
}

// ErrInvalidAuthOpts and its kin are etcd's errors for a bad --auth-token;
// the member refuses to start with them.
var (
	ErrInvalidAuthOpts   = errors.New("auth: invalid auth options")
	ErrInvalidAuthMethod = errors.New("auth: invalid auth signature method")
	ErrMissingKey        = errors.New("auth: missing key data")
	ErrKeyMismatch       = errors.New("auth: public and private keys don't match")
	ErrVerifyOnly        = errors.New("auth: token signing attempted with verify-only key")
)

// tokenProvider issues and resolves tokens.
type tokenProvider interface {
	// info resolves token; nil means invalid. A self-contained token (JWT)
	// carries its auth revision. A simple token is bound to none: current
	// is true and the caller fills in the store's revision once info has
	// returned, because info may wait for the entry that issued the token
	// and changes applied meanwhile count.
	info(ctx context.Context, token string) (ai *AuthInfo, current bool)
	// prefix returns the random part of a new simple token ("" for others).
	prefix() (string, error)
	// assignSimple records the simple token prefix.index for username and
	// returns it; ok is false for providers without simple tokens.
	assignSimple(prefix string, index uint64, username string) (token string, ok bool)
	// sign makes a self-contained token (JWT) for username at rev.
	sign(username string, rev uint64) (string, error)
	// disable forgets every token; keepUsers forgets the tokens of users
	// keep refuses.
	disable()
	keepUsers(keep func(username string) bool)
}

func newTokenProvider(lg *zap.Logger, opts Options) (tokenProvider, error) {
	kind, params, err := splitTokenOptions(opts.Token)
	if err != nil {
		lg.Error("invalid token option", zap.String("option", opts.Token), zap.Error(err))
		return nil, ErrInvalidAuthOpts
	}
	switch kind {
	case "simple":
		lg.Warn("simple token is not cryptographically signed")
		return newSimpleTokens(opts), nil
	case "jwt":
		return newJWTTokens(lg, params)
	case "":
		return noTokens{}, nil
	}
	lg.Warn("unknown token type", zap.String("type", kind), zap.Error(ErrInvalidAuthOpts))
	return nil, ErrInvalidAuthOpts
}

// splitTokenOptions splits "kind,k=v,..." refusing malformed or repeated
// parameters.
func splitTokenOptions(s string) (string, map[string]string, error) {
	parts := strings.Split(s, ",")
	params := make(map[string]string)
	for _, p := range parts[1:] {
		k, v, ok := strings.Cut(p, "=")
		if !ok || strings.Contains(v, "=") {
			return "", nil, fmt.Errorf("malformed parameter %q", p)
		}
		if _, dup := params[k]; dup {
			return "", nil, fmt.Errorf("duplicate parameter %q", k)
		}
		params[k] = v
	}
	return parts[0], params, nil
}

func trimBearer(token string) string { return strings.TrimPrefix(token, "Bearer ") }

// fingerprint identifies a token in logs without revealing it.
func fingerprint(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])[:12]
}

// simpleTokens are etcd's simple tokens: a random prefix, ".", and the Raft
// index of the Authenticate entry. Every member registers them when it
// applies the entry; each one expires after ttl without use.
type simpleTokens struct {
	ttl         time.Duration
	now         func() time.Time
	waitApplied func(ctx context.Context, index uint64) error

	mu     sync.Mutex
	tokens map[string]simpleToken
	// queue holds one entry per token in tokens (and some of tokens
	// dropped since), by expiry, for purgeLocked.
	queue expiryQueue
}

type simpleToken struct {
	username string
	expires  time.Time
}

const (
	simpleTokenLetters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	simpleTokenLength  = 16
	defaultSimpleTTL   = 300 * time.Second
)

func newSimpleTokens(opts Options) *simpleTokens {
	t := &simpleTokens{ttl: opts.TokenTTL, now: opts.Now, waitApplied: opts.WaitApplied, tokens: map[string]simpleToken{}}
	if t.ttl <= 0 {
		t.ttl = defaultSimpleTTL
	}
	if t.now == nil {
		t.now = time.Now
	}
	return t
}

func (t *simpleTokens) prefix() (string, error) {
	out := make([]byte, 0, simpleTokenLength)
	random := make([]byte, 2*simpleTokenLength)
	for len(out) < simpleTokenLength { // a byte is refused with odds 48/256
		if _, err := rand.Read(random); err != nil {
			return "", err
		}
		out = appendTokenLetters(out, random, simpleTokenLength)
	}
	return string(out), nil
}

// appendTokenLetters appends to dst, until it holds n letters, one letter
// per byte of random, skipping the bytes from 208 (4*52) up: taken modulo
// 52 they would favour the first 48 letters.
func appendTokenLetters(dst, random []byte, n int) []byte {
	const limit = 256 - 256%len(simpleTokenLetters)
	for _, b := range random {
		if len(dst) == n {
			break
		}
		if int(b) < limit {
			dst = append(dst, simpleTokenLetters[int(b)%len(simpleTokenLetters)])
		}
	}
	return dst
}

func (t *simpleTokens) assignSimple(prefix string, index uint64, username string) (string, bool) {
	token := prefix + "." + strconv.FormatUint(index, 10)
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.purgeLocked(now)
	st := simpleToken{username: username, expires: now.Add(t.ttl)}
	t.tokens[token] = st
	heap.Push(&t.queue, tokenExpiry{token: token, expires: st.expires})
	return token, true
}

// purgeLocked drops expired tokens, so that the map holds no more than the
// tokens issued within one TTL. It examines only the queue entries due, so
// each Authenticate applied costs O(log n), not a scan of every token; it
// returns how many it examined.
func (t *simpleTokens) purgeLocked(now time.Time) int {
	examined := 0
	for len(t.queue) > 0 && now.After(t.queue[0].expires) {
		e := heap.Pop(&t.queue).(tokenExpiry)
		examined++
		st, ok := t.tokens[e.token]
		switch {
		case !ok: // dropped already
		case now.After(st.expires):
			delete(t.tokens, e.token)
		default: // renewed since it was queued
			heap.Push(&t.queue, tokenExpiry{token: e.token, expires: st.expires})
		}
	}
	return examined
}

// tokenExpiry is a token and the expiry it had when it was queued; a use
// since may have renewed it (the map holds the current expiry).
type tokenExpiry struct {
	token   string
	expires time.Time
}

// expiryQueue is a min-heap of token expiries (container/heap).
type expiryQueue []tokenExpiry

func (q expiryQueue) Len() int           { return len(q) }
func (q expiryQueue) Less(i, j int) bool { return q[i].expires.Before(q[j].expires) }
func (q expiryQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *expiryQueue) Push(x any)        { *q = append(*q, x.(tokenExpiry)) }
func (q *expiryQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

func (t *simpleTokens) info(ctx context.Context, token string) (*AuthInfo, bool) {
	_, idx, ok := strings.Cut(token, ".")
	if !ok || strings.Contains(idx, ".") {
		return nil, false
	}
	index, err := strconv.ParseUint(idx, 10, 64)
	if err != nil {
		return nil, false
	}
	if t.waitApplied != nil && t.waitApplied(ctx, index) != nil {
		return nil, false
	}
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.tokens[token]
	if !ok {
		return nil, false
	}
	if now.After(st.expires) {
		delete(t.tokens, token)
		return nil, false
	}
	st.expires = now.Add(t.ttl) // etcd renews a simple token on every use
	t.tokens[token] = st
	return &AuthInfo{Username: st.username}, true
}

func (t *simpleTokens) sign(string, uint64) (string, error) {
	return "", errors.New("auth: simple tokens are issued by the apply loop")
}

func (t *simpleTokens) disable() {
	t.mu.Lock()
	t.tokens = map[string]simpleToken{}
	t.queue = nil
	t.mu.Unlock()
}

func (t *simpleTokens) keepUsers(keep func(string) bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, v := range t.tokens {
		if !keep(v.username) {
			delete(t.tokens, k)
		}
	}
}

// noTokens is --auth-token "": no token is ever issued or accepted.
type noTokens struct{}

func (noTokens) info(context.Context, string) (*AuthInfo, bool)     { return nil, false }
func (noTokens) prefix() (string, error)                            { return "", nil }
func (noTokens) assignSimple(string, uint64, string) (string, bool) { return "", false }
func (noTokens) sign(string, uint64) (string, error)                { return "", errAuthFailed }
func (noTokens) disable()                                           {}
func (noTokens) keepUsers(func(string) bool)                        {}
