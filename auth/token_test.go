package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// login runs both halves of Authenticate as a member does: password check,
// then the applied half at Raft index index.
func login(t *testing.T, f *fixture, user, password string, index uint64) string {
	t.Helper()
	rev, err := f.s.CheckPassword(user, password)
	if err != nil {
		t.Fatal(err)
	}
	prefix, err := f.s.TokenPrefix()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := f.s.Authenticate(index, &pb.InternalAuthenticateRequest{Name: user, SimpleToken: prefix})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Token == "" {
		if resp.Token, err = f.s.SignToken(user, rev); err != nil {
			t.Fatal(err)
		}
	}
	return resp.Token
}

func simpleFixture(t *testing.T, clock *fakeClock) *fixture {
	f := newFixture(t, Options{Token: "simple", TokenTTL: 10 * time.Second, Now: clock.Now})
	f.addUser("root", "pw", "root")
	f.addUser("u", "pw")
	f.enable()
	return f
}

func TestSimpleTokenExpiresAfterTTLWithoutUse(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	f := simpleFixture(t, clock)
	tok := login(t, f, "u", "pw", 7)
	if !strings.HasSuffix(tok, ".7") || len(tok) != simpleTokenLength+2 {
		t.Fatalf("token %q is not 16 letters, '.', the index", tok)
	}
	ctx := context.Background()
	for i := 0; i < 3; i++ { // every use renews the TTL
		clock.Advance(9 * time.Second)
		ai, err := f.s.AuthInfoFromToken(ctx, tok)
		if err != nil || ai.Username != "u" || ai.Revision != f.s.Revision() {
			t.Fatalf("use %d: %v %v", i, ai, err)
		}
	}
	clock.Advance(11 * time.Second)
	if _, err := f.s.AuthInfoFromToken(ctx, tok); err != rpctypes.ErrGRPCInvalidAuthToken {
		t.Fatalf("after the TTL: %v, want %v", err, rpctypes.ErrGRPCInvalidAuthToken)
	}
	if _, err := f.s.AuthInfoFromToken(ctx, "garbage"); err != rpctypes.ErrGRPCInvalidAuthToken {
		t.Fatalf("garbage token: %v", err)
	}
}

func TestSimpleTokensAreDroppedWithTheirUser(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	f := simpleFixture(t, clock)
	f.addUser("v", "pw")
	ctx := context.Background()
	tu, tv, troot := login(t, f, "u", "pw", 1), login(t, f, "v", "pw", 2), login(t, f, "root", "pw", 3)
	hash, _ := f.s.HashPassword("new")
	f.must(func(b *pebble.Batch) error {
		_, err := f.s.UserChangePassword(b, &pb.AuthUserChangePasswordRequest{Name: "u", HashedPassword: hash})
		return err
	})
	if _, err := f.s.AuthInfoFromToken(ctx, tu); err != rpctypes.ErrGRPCInvalidAuthToken {
		t.Errorf("token after a password change: %v", err)
	}
	f.must(func(b *pebble.Batch) error {
		_, err := f.s.UserDelete(b, &pb.AuthUserDeleteRequest{Name: "v"})
		return err
	})
	if _, err := f.s.AuthInfoFromToken(ctx, tv); err != rpctypes.ErrGRPCInvalidAuthToken {
		t.Errorf("token after user delete: %v", err)
	}
	if ai, err := f.s.AuthInfoFromToken(ctx, troot); err != nil || ai.Username != "root" {
		t.Errorf("another user's token: %v %v", ai, err)
	}
	f.must(func(b *pebble.Batch) error { _, err := f.s.AuthDisable(b); return err })
	f.enable()
	if _, err := f.s.AuthInfoFromToken(ctx, troot); err != rpctypes.ErrGRPCInvalidAuthToken {
		t.Errorf("token after auth disable and enable: %v", err)
	}
}

// TestSimpleTokenWaitsForItsEntry: a token names the index of the entry
// that issued it; a member that has not applied it yet waits (bounded by
// the request's context) instead of refusing at once.
func TestSimpleTokenWaitsForItsEntry(t *testing.T) {
	var waited []uint64
	f := newFixture(t, Options{Token: "simple", WaitApplied: func(ctx context.Context, index uint64) error {
		waited = append(waited, index)
		if index > 100 {
			return context.DeadlineExceeded
		}
		return nil
	}})
	f.addUser("root", "pw", "root")
	f.enable()
	tok := login(t, f, "root", "pw", 42)
	if _, err := f.s.AuthInfoFromToken(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	if len(waited) != 1 || waited[0] != 42 {
		t.Fatalf("waited for %v, want [42]", waited)
	}
	if _, err := f.s.AuthInfoFromToken(context.Background(), "abc.101"); err != rpctypes.ErrGRPCInvalidAuthToken {
		t.Fatalf("token of an entry never applied: %v", err)
	}
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// keyPair writes an ECDSA P-256 key pair; rsaPair an RSA one.
func keyPair(t *testing.T, dir, name string) (pub, priv string) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalECPrivateKey(k)
	pubDER, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	return writePEM(t, dir, name+".pub", "PUBLIC KEY", pubDER), writePEM(t, dir, name+".key", "EC PRIVATE KEY", der)
}

func rsaPair(t *testing.T, dir, name string) (pub, priv string) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	return writePEM(t, dir, name+".pub", "PUBLIC KEY", pubDER), writePEM(t, dir, name+".key", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k))
}

func jwtFixture(t *testing.T, token string) *fixture {
	f := newFixture(t, Options{Token: token})
	f.addUser("root", "pw", "root")
	f.enable()
	return f
}

func TestJWTSignAndVerify(t *testing.T) {
	dir := t.TempDir()
	pub, priv := keyPair(t, dir, "es")
	rpub, rpriv := rsaPair(t, dir, "rs")
	for _, opt := range []string{
		"jwt,pub-key=" + pub + ",priv-key=" + priv + ",sign-method=ES256",
		"jwt,pub-key=" + rpub + ",priv-key=" + rpriv + ",sign-method=RS256,ttl=1h",
		"jwt,priv-key=" + rpriv + ",sign-method=PS256",
	} {
		f := jwtFixture(t, opt)
		tok := login(t, f, "root", "pw", 5)
		if strings.Count(tok, ".") != 2 {
			t.Fatalf("%s: %q is not a JWT", opt, tok)
		}
		ai, err := f.s.AuthInfoFromToken(context.Background(), tok)
		if err != nil || ai.Username != "root" || ai.Revision != f.s.Revision() {
			t.Fatalf("%s: %v %v", opt, ai, err)
		}
	}
}

func TestJWTOfAnotherKeyOrExpiredIsRefused(t *testing.T) {
	dir := t.TempDir()
	pub, priv := keyPair(t, dir, "a")
	opub, opriv := keyPair(t, dir, "b")
	a := jwtFixture(t, "jwt,pub-key="+pub+",priv-key="+priv+",sign-method=ES256")
	b := jwtFixture(t, "jwt,pub-key="+opub+",priv-key="+opriv+",sign-method=ES256")
	tok := login(t, a, "root", "pw", 1)
	if _, err := b.s.AuthInfoFromToken(context.Background(), tok); err != rpctypes.ErrGRPCInvalidAuthToken {
		t.Fatalf("token of another key: %v", err)
	}

	// A verify-only member accepts a's tokens and cannot sign its own.
	v := jwtFixture(t, "jwt,pub-key="+pub+",sign-method=ES256")
	if ai, err := v.s.AuthInfoFromToken(context.Background(), tok); err != nil || ai.Username != "root" {
		t.Fatalf("verify-only member: %v %v", ai, err)
	}
	if _, err := v.s.SignToken("root", 1); !errors.Is(err, ErrVerifyOnly) {
		t.Fatalf("sign on a verify-only member: %v", err)
	}

	// Expiry follows the provider's clock.
	clock := &fakeClock{now: time.Now()}
	a.s.tokens.(*jwtTokens).now = clock.Now
	tok = login(t, a, "root", "pw", 2)
	clock.Advance(defaultJWTTTL + time.Minute)
	if _, err := a.s.AuthInfoFromToken(context.Background(), tok); err != rpctypes.ErrGRPCInvalidAuthToken {
		t.Fatalf("expired token: %v", err)
	}
}

func TestBadAuthTokenOptionsAreEtcdsErrors(t *testing.T) {
	dir := t.TempDir()
	pub, priv := keyPair(t, dir, "a")
	opub, _ := keyPair(t, dir, "b")
	for _, tc := range []struct {
		opt  string
		want string
	}{
		{"bogus", "auth: invalid auth options"},
		{"jwt,pub-key", "auth: invalid auth options"},
		{"jwt,sign-method=ES256,sign-method=ES256", "auth: invalid auth options"},
		{"jwt,pub-key=" + pub + ",priv-key=" + priv, "auth: invalid auth options"},
		{"jwt,pub-key=" + pub + ",priv-key=" + priv + ",sign-method=XX1", "auth: invalid auth options"},
		{"jwt,pub-key=/nonexistent,sign-method=ES256", "auth: invalid auth options"},
		{"jwt,pub-key=" + pub + ",priv-key=" + priv + ",sign-method=ES256,ttl=forever", "auth: invalid auth options"},
		{"jwt,sign-method=ES256", "auth: missing key data"},
		{"jwt,sign-method=HS256", "auth: missing key data"},
		{"jwt,pub-key=" + opub + ",priv-key=" + priv + ",sign-method=ES256", "auth: public and private keys don't match"},
	} {
		_, err := Load(openDB(t), Options{Token: tc.opt})
		if err == nil || err.Error() != tc.want {
			t.Errorf("%q: %v, want %q", tc.opt, err, tc.want)
		}
	}
}

// TestReloadDropsTokensTheSkippedEntriesWouldHave: a member that installs
// a snapshot skips the entries in it, so Reload drops the simple tokens of
// users deleted or given a new password meanwhile, and keeps the others.
func TestReloadDropsTokensTheSkippedEntriesWouldHave(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	f := simpleFixture(t, clock)
	f.addUser("v", "pw")
	tu, tv, troot := login(t, f, "u", "pw", 1), login(t, f, "v", "pw", 2), login(t, f, "root", "pw", 3)

	// The leader's state: u has a new password, v is gone.
	leader := newFixture(t, Options{})
	leader.addUser("root", "pw", "root")
	leader.addUser("u", "other")
	leader.enable()
	root := f.s.users["root"]
	leader.must(func(b *pebble.Batch) error {
		// root's record as the lagging member has it (same hash).
		leader.s.users["root"] = root
		return putRecord(b, kindUser, "root", root)
	})
	if err := f.s.Reload(leader.db); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tok := range []string{tu, tv} {
		if _, err := f.s.AuthInfoFromToken(ctx, tok); err != rpctypes.ErrGRPCInvalidAuthToken {
			t.Errorf("token %s after reload: %v", tok, err)
		}
	}
	if ai, err := f.s.AuthInfoFromToken(ctx, troot); err != nil || ai.Username != "root" {
		t.Errorf("root's token after reload: %v %v", ai, err)
	}
}

// TestReloadDropsTokensAfterASkippedDisable: an AuthDisable followed by an
// AuthEnable in the skipped entries leaves the users, their hashes and the
// enabled flag as they were, but applying the entries would have dropped
// every simple token; Reload must too.
func TestReloadDropsTokensAfterASkippedDisable(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	f := simpleFixture(t, clock)
	troot := login(t, f, "root", "pw", 3)

	// The leader: the same state, then auth disabled and enabled again.
	leader, err := Load(f.db, Options{Token: "simple"})
	if err != nil {
		t.Fatal(err)
	}
	f.must(func(b *pebble.Batch) error { _, err := leader.AuthDisable(b); return err })
	f.must(func(b *pebble.Batch) error { _, err := leader.AuthEnable(b); return err })

	if err := f.s.Reload(f.db); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.AuthInfoFromToken(context.Background(), troot); err != rpctypes.ErrGRPCInvalidAuthToken {
		t.Fatalf("token after a skipped disable and enable: %v, want %v", err, rpctypes.ErrGRPCInvalidAuthToken)
	}
}

// TestSimpleTokenRevisionIsReadAfterTheWait: a simple token resolves at the
// auth revision of the moment it is resolved, after waiting for its entry,
// not the one before: a change applied during the wait counts.
func TestSimpleTokenRevisionIsReadAfterTheWait(t *testing.T) {
	var f *fixture
	wait := func(ctx context.Context, index uint64) error {
		if index == 50 { // the entries up to 50 add a role meanwhile
			f.addRole("late")
		}
		return nil
	}
	f = newFixture(t, Options{Token: "simple", WaitApplied: wait})
	f.addUser("root", "pw", "root")
	f.enable()
	tok := login(t, f, "root", "pw", 50)
	before := f.s.Revision()
	ai, err := f.s.AuthInfoFromToken(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if ai.Revision != f.s.Revision() || ai.Revision == before {
		t.Fatalf("token resolved at revision %d, want %d (the revision after the wait)", ai.Revision, f.s.Revision())
	}
}

// TestSimpleTokenPurgeExaminesOnlyExpiredTokens: every Authenticate applied
// purges the expired tokens; under login churn it must not examine every
// live token each time (quadratic), only those due.
func TestSimpleTokenPurgeExaminesOnlyExpiredTokens(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	tp := newSimpleTokens(Options{TokenTTL: 10 * time.Second, Now: clock.Now})
	const n = 1000
	for i := range n {
		tp.assignSimple("p", uint64(i), "u")
	}
	if got := tp.purgeLocked(clock.Now()); got != 0 {
		t.Fatalf("purge with %d live tokens examined %d", n, got)
	}
	// Renewing a token pushes its expiry out: it must survive the purge at
	// its first expiry, and go at its second.
	clock.Advance(5 * time.Second)
	if _, ok := tp.info(context.Background(), "p.7"); !ok {
		t.Fatal("live token refused")
	}
	clock.Advance(6 * time.Second)
	if got := tp.purgeLocked(clock.Now()); got != n {
		t.Fatalf("purge of %d expired tokens examined %d", n, got)
	}
	if len(tp.tokens) != 1 {
		t.Fatalf("%d tokens after the purge, want the renewed one", len(tp.tokens))
	}
	clock.Advance(10 * time.Second)
	tp.assignSimple("q", n, "u")
	if _, ok := tp.tokens["p.7"]; ok || len(tp.tokens) != 1 {
		t.Fatalf("tokens after the renewed one expired: %v", tp.tokens)
	}
}

// TestSimpleTokenLettersAreUniform: the letters of a simple token come from
// random bytes without favouring any letter: over every byte value, each
// of the 52 letters comes out equally often.
func TestSimpleTokenLettersAreUniform(t *testing.T) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	count := map[byte]int{}
	for _, c := range appendTokenLetters(nil, all, 256) {
		count[c]++
	}
	if len(count) != len(simpleTokenLetters) {
		t.Fatalf("%d distinct letters, want %d", len(count), len(simpleTokenLetters))
	}
	for c, n := range count {
		if n != count['a'] {
			t.Fatalf("letter %c came %d times, 'a' %d times", c, n, count['a'])
		}
	}
}
