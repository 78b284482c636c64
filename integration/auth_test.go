package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/keeldb/keel/config"
	"github.com/keeldb/keel/internal/keeltest"
	"github.com/keeldb/keel/server"
)

const rootPassword = "rootpw"

// enableAuth adds user root with role root, enables auth through cli and
// returns a client logged in as root on m.
func enableAuth(t *testing.T, cli *clientv3.Client, newClient func(edit ...func(*clientv3.Config)) *clientv3.Client) *clientv3.Client {
	t.Helper()
	if _, err := cli.UserAdd(ctx(t), "root", rootPassword); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.UserGrantRole(ctx(t), "root", "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.AuthEnable(ctx(t)); err != nil {
		t.Fatal(err)
	}
	return newClient(as("root", rootPassword))
}

func as(user, password string) func(*clientv3.Config) {
	return func(c *clientv3.Config) { c.Username, c.Password = user, password }
}

// withToken returns a context that sends token in the gRPC metadata, as
// clients logged in with a password do.
func withToken(t *testing.T, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx(t), rpctypes.TokenFieldNameGRPC, token)
}

func memberClient(t *testing.T, m *member) func(edit ...func(*clientv3.Config)) *clientv3.Client {
	return func(edit ...func(*clientv3.Config)) *clientv3.Client { return m.newClient(t, edit...) }
}

func authStatus(t *testing.T, cli *clientv3.Client) (bool, uint64) {
	t.Helper()
	st, err := cli.AuthStatus(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	return st.Enabled, st.AuthRevision
}

func TestAuthEnableNeedsRootUserWithRootRole(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	if on, rev := authStatus(t, cli); on || rev != 1 {
		t.Fatalf("fresh auth status %v %d, want false 1", on, rev)
	}
	_, err := cli.AuthEnable(ctx(t))
	wantErr(t, err, rpctypes.ErrGRPCRootUserNotExist)
	if _, err := cli.UserAdd(ctx(t), "root", rootPassword); err != nil {
		t.Fatal(err)
	}
	_, err = cli.AuthEnable(ctx(t))
	wantErr(t, err, rpctypes.ErrGRPCRootRoleNotExist)
	_, err = cli.Authenticate(ctx(t), "root", rootPassword)
	wantErr(t, err, rpctypes.ErrGRPCAuthNotEnabled)
	if _, err := cli.UserGrantRole(ctx(t), "root", "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.AuthEnable(ctx(t)); err != nil {
		t.Fatal(err)
	}
	root := m.newClient(t, as("root", rootPassword))
	if on, rev := authStatus(t, root); !on || rev != 3 {
		t.Fatalf("auth status %v %d after enable, want true 3", on, rev)
	}
	// Without a token, management is refused; AuthStatus is not.
	_, err = cli.UserList(ctx(t))
	wantErr(t, err, rpctypes.ErrGRPCUserEmpty)
	if on, _ := authStatus(t, cli); !on {
		t.Fatal("auth status without a token")
	}
	if _, err := root.AuthDisable(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if on, rev := authStatus(t, cli); on || rev != 4 {
		t.Fatalf("auth status %v %d after disable, want false 4", on, rev)
	}
}

func TestAuthAuthenticateChecksThePassword(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	root := enableAuth(t, m.cli(), memberClient(t, m))
	if _, err := root.UserAdd(ctx(t), "u", "upw"); err != nil {
		t.Fatal(err)
	}
	_, err := root.Authenticate(ctx(t), "u", "wrong")
	wantErr(t, err, rpctypes.ErrGRPCAuthFailed)
	_, err = root.Authenticate(ctx(t), "nobody", "upw")
	wantErr(t, err, rpctypes.ErrGRPCAuthFailed)

	u := m.newClient(t, as("u", "upw"))
	if resp, err := u.UserGet(ctx(t), "u"); err != nil || len(resp.Roles) != 0 {
		t.Fatalf("user get of oneself: %v %v", resp, err)
	}
	_, err = u.UserGet(ctx(t), "root")
	wantErr(t, err, rpctypes.ErrGRPCPermissionDenied)
	_, err = u.UserList(ctx(t))
	wantErr(t, err, rpctypes.ErrGRPCPermissionDenied)
	_, err = u.UserChangePassword(ctx(t), "u", "new")
	wantErr(t, err, rpctypes.ErrGRPCPermissionDenied)

	// A user without a password can only be a certificate's CN.
	if _, err := root.UserAddWithOptions(ctx(t), "cert", "", &clientv3.UserAddOptions{NoPassword: true}); err != nil {
		t.Fatal(err)
	}
	_, err = root.Authenticate(ctx(t), "cert", "")
	wantErr(t, err, status.Error(codes.Unknown, "auth: authentication failed, password was given for no password user"))
}

// TestAuthTokenOfAChangedUserIsRefused: a simple token dies with its
// user's password change or deletion.
func TestAuthTokenOfAChangedUserIsRefused(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	root := enableAuth(t, m.cli(), memberClient(t, m))
	for _, u := range []string{"u", "v"} {
		if _, err := root.UserAdd(ctx(t), u, "pw"); err != nil {
			t.Fatal(err)
		}
	}
	anon := m.newClient(t)
	token := func(user string) string {
		resp, err := anon.Authenticate(ctx(t), user, "pw")
		if err != nil {
			t.Fatal(err)
		}
		return resp.Token
	}
	tu, tv := token("u"), token("v")
	if _, err := anon.UserGet(withToken(t, tu), "u"); err != nil {
		t.Fatal(err)
	}
	if _, err := root.UserChangePassword(ctx(t), "u", "pw2"); err != nil {
		t.Fatal(err)
	}
	_, err := anon.UserGet(withToken(t, tu), "u")
	wantErr(t, err, rpctypes.ErrGRPCInvalidAuthToken)
	if _, err := root.UserDelete(ctx(t), "v"); err != nil {
		t.Fatal(err)
	}
	_, err = anon.UserGet(withToken(t, tv), "v")
	wantErr(t, err, rpctypes.ErrGRPCInvalidAuthToken)
	_, err = anon.UserGet(withToken(t, "nonsense.12"), "u")
	wantErr(t, err, rpctypes.ErrGRPCInvalidAuthToken)
}

func permString(ps []*authpb.Permission) string {
	var out []string
	for _, p := range ps {
		out = append(out, fmt.Sprintf("%s %q %q", p.PermType, p.Key, p.RangeEnd))
	}
	return strings.Join(out, "; ")
}

func TestAuthUsersAndRolesRoundTrip(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	root := enableAuth(t, m.cli(), memberClient(t, m))
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(root.RoleAdd(ctx(t), "r1"))
	must(root.RoleAdd(ctx(t), "r0"))
	must(root.RoleGrantPermission(ctx(t), "r1", "x", "\x00", clientv3.PermissionType(clientv3.PermRead)))
	must(root.RoleGrantPermission(ctx(t), "r1", "p/", "p0", clientv3.PermissionType(clientv3.PermWrite)))
	must(root.RoleGrantPermission(ctx(t), "r1", "b", "c", clientv3.PermissionType(clientv3.PermRead)))
	must(root.RoleGrantPermission(ctx(t), "r1", "a", "", clientv3.PermissionType(clientv3.PermReadWrite)))
	must(root.RoleGrantPermission(ctx(t), "r1", "b", "c", clientv3.PermissionType(clientv3.PermReadWrite))) // an update
	must(root.UserAdd(ctx(t), "u2", "pw"))
	must(root.UserAdd(ctx(t), "u1", "pw"))
	must(root.UserGrantRole(ctx(t), "u1", "r1"))
	must(root.UserGrantRole(ctx(t), "u1", "r0"))
	must(root.UserGrantRole(ctx(t), "u1", "r0")) // held: no change

	rg, err := root.RoleGet(ctx(t), "r1")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := permString(rg.Perm), `READWRITE "a" ""; READWRITE "b" "c"; WRITE "p/" "p0"; READ "x" "\x00"`; got != want {
		t.Errorf("role get r1:\n%s\nwant\n%s", got, want)
	}
	ug, err := root.UserGet(ctx(t), "u1")
	if err != nil || strings.Join(ug.Roles, ",") != "r0,r1" {
		t.Errorf("user get u1: %v %v", ug, err)
	}
	ul, err := root.UserList(ctx(t))
	if err != nil || strings.Join(ul.Users, ",") != "root,u1,u2" {
		t.Errorf("user list: %v %v", ul, err)
	}
	rl, err := root.RoleList(ctx(t))
	if err != nil || strings.Join(rl.Roles, ",") != "r0,r1" {
		t.Errorf("role list: %v %v", rl, err)
	}
	_, err = root.RoleGet(ctx(t), "root")
	wantErr(t, err, rpctypes.ErrGRPCRoleNotFound)
	must(root.RoleAdd(ctx(t), "root"))
	if rg, err := root.RoleGet(ctx(t), "root"); err != nil || permString(rg.Perm) != `READWRITE "" "\x00"` {
		t.Errorf("role get root: %v %v", rg, err)
	}

	_, err = root.UserAdd(ctx(t), "u1", "pw")
	wantErr(t, err, rpctypes.ErrGRPCUserAlreadyExist)
	// The official client answers ErrUserEmpty by logging in again, over
	// and over: ask through the raw stub.
	tok, err := root.Authenticate(ctx(t), "root", rootPassword)
	if err != nil {
		t.Fatal(err)
	}
	_, err = pb.NewAuthClient(m.cli().ActiveConnection()).UserAdd(withToken(t, tok.Token), &pb.AuthUserAddRequest{Name: "", Password: "pw"})
	wantErr(t, err, rpctypes.ErrGRPCUserEmpty)
	_, err = root.RoleAdd(ctx(t), "r1")
	wantErr(t, err, rpctypes.ErrGRPCRoleAlreadyExist)
	_, err = root.UserGrantRole(ctx(t), "u1", "nope")
	wantErr(t, err, rpctypes.ErrGRPCRoleNotFound)
	_, err = root.UserGrantRole(ctx(t), "nope", "r1")
	wantErr(t, err, rpctypes.ErrGRPCUserNotFound)
	_, err = root.UserRevokeRole(ctx(t), "u2", "r1")
	wantErr(t, err, rpctypes.ErrGRPCRoleNotGranted)
	_, err = root.RoleRevokePermission(ctx(t), "r1", "zz", "")
	wantErr(t, err, rpctypes.ErrGRPCPermissionNotGranted)
	_, err = root.RoleGrantPermission(ctx(t), "r1", "d", "c", clientv3.PermissionType(clientv3.PermRead))
	wantErr(t, err, rpctypes.ErrGRPCInvalidAuthMgmt)
	_, err = root.RoleGrantPermission(ctx(t), "nope", "a", "", clientv3.PermissionType(clientv3.PermRead))
	wantErr(t, err, rpctypes.ErrGRPCRoleNotFound)
	_, err = root.UserDelete(ctx(t), "root")
	wantErr(t, err, rpctypes.ErrGRPCInvalidAuthMgmt)
	_, err = root.RoleDelete(ctx(t), "root")
	wantErr(t, err, rpctypes.ErrGRPCInvalidAuthMgmt)
	_, err = root.UserRevokeRole(ctx(t), "root", "root")
	wantErr(t, err, rpctypes.ErrGRPCInvalidAuthMgmt)
	_, err = root.UserDelete(ctx(t), "nope")
	wantErr(t, err, rpctypes.ErrGRPCUserNotFound)
	_, err = root.RoleDelete(ctx(t), "nope")
	wantErr(t, err, rpctypes.ErrGRPCRoleNotFound)

	must(root.RoleRevokePermission(ctx(t), "r1", "p/", "p0"))
	must(root.RoleDelete(ctx(t), "r0"))
	if ug, err := root.UserGet(ctx(t), "u1"); err != nil || strings.Join(ug.Roles, ",") != "r1" {
		t.Errorf("user get u1 after role delete: %v %v", ug, err)
	}
	if rg, err := root.RoleGet(ctx(t), "r1"); err != nil || permString(rg.Perm) != `READWRITE "a" ""; READWRITE "b" "c"; READ "x" "\x00"` {
		t.Errorf("role get r1 after revoke: %v %v", rg, err)
	}
	// 3 (after enable) + 2 role adds + 5 grants + 2 user adds + 2 role
	// grants (not the repeated one) + root role add + revoke + role delete.
	if _, rev := authStatus(t, root); rev != 17 {
		t.Errorf("auth revision %d, want 17", rev)
	}
}

func TestAuthSurvivesRestart(t *testing.T) {
	t.Parallel()
	if os.Getenv(etcdEnv) != "" {
		t.Skip("the etcd harness checks a restart with an unauthenticated member list")
	}
	m := startMember(t)
	root := enableAuth(t, m.cli(), memberClient(t, m))
	if _, err := root.RoleAdd(ctx(t), "r"); err != nil {
		t.Fatal(err)
	}
	if _, err := root.RoleGrantPermission(ctx(t), "r", "k", "l", clientv3.PermissionType(clientv3.PermRead)); err != nil {
		t.Fatal(err)
	}
	if _, err := root.UserAdd(ctx(t), "u", "upw"); err != nil {
		t.Fatal(err)
	}
	if _, err := root.UserGrantRole(ctx(t), "u", "r"); err != nil {
		t.Fatal(err)
	}
	_, rev := authStatus(t, root)
	m.restart(t)
	root = m.newClient(t, as("root", rootPassword))
	if on, got := authStatus(t, root); !on || got != rev {
		t.Fatalf("after restart: %v %d, want true %d", on, got, rev)
	}
	u := m.newClient(t, as("u", "upw"))
	if ug, err := u.UserGet(ctx(t), "u"); err != nil || strings.Join(ug.Roles, ",") != "r" {
		t.Fatalf("u after restart: %v %v", ug, err)
	}
	if rg, err := u.RoleGet(ctx(t), "r"); err != nil || permString(rg.Perm) != `READ "k" "l"` {
		t.Fatalf("u's role after restart: %v %v", rg, err)
	}
}

// TestClusterAuthTokenWorksOnEveryMember: a simple token issued through one
// member works on the others, which registered it when they applied the
// Authenticate entry; and a member that joins after the log was compacted
// gets the auth state with the snapshot.
func TestClusterAuthTokenWorksOnEveryMember(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.InfoLevel)
	c := startCluster(t, 3, keeltest.WithSnapshotCount(20), keeltest.WithLogger(zap.New(core)), keeltest.WithConfig(func(cfg *config.Config) {
		cfg.SnapshotCatchUpEntries = 5
		cfg.BcryptCost = 4
	}))
	m1 := c.Members[0]
	root := enableAuth(t, m1.Client, func(edit ...func(*clientv3.Config)) *clientv3.Client { return m1.NewClient(t, edit...) })
	if _, err := root.UserAdd(ctx(t), "u", "upw"); err != nil {
		t.Fatal(err)
	}
	resp, err := m1.Client.Authenticate(ctx(t), "u", "upw")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range c.Members[1:] {
		if _, err := m.Client.UserGet(withToken(t, resp.Token), "u"); err != nil {
			t.Fatalf("token of m1 on %s: %v", m.Config.Name, err)
		}
	}

	for i := range 60 {
		put(t, root, fmt.Sprintf("k%02d", i), "v")
	}
	peer, err := keeltest.NewPeerURL()
	if err != nil {
		t.Fatal(err)
	}
	if err := retryUnhealthy(t, func() error { _, err := root.MemberAdd(ctx(t), []string{peer}); return err }); err != nil {
		t.Fatal(err)
	}
	m4 := c.JoinAs(t, root, "m4", peer) // the member list needs a user
	r4 := m4.NewClient(t, as("root", rootPassword))
	installs := logs.Filter(func(e observer.LoggedEntry) bool {
		_, installed := e.ContextMap()["applied-index"] // not set when only the log is cut
		return strings.HasPrefix(e.LoggerName, "m4") && e.Message == "applied snapshot" && installed
	})
	if installs.Len() == 0 {
		t.Fatal("m4 caught up without installing a snapshot: the auth state did not travel with one")
	}
	ul, err := r4.UserList(ctx(t))
	if err != nil || strings.Join(ul.Users, ",") != "root,u" {
		t.Fatalf("users on the joined member: %v %v", ul, err)
	}
	_, rev := authStatus(t, root)
	if on, got := authStatus(t, r4); !on || got != rev {
		t.Fatalf("auth on the joined member: %v %d, want true %d", on, got, rev)
	}
}

func writeECKeys(t *testing.T) (pub, priv string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pub, priv = filepath.Join(dir, "jwt.pub"), filepath.Join(dir, "jwt.key")
	for p, b := range map[string]*pem.Block{pub: {Type: "PUBLIC KEY", Bytes: pubDER}, priv: {Type: "EC PRIVATE KEY", Bytes: der}} {
		if err := os.WriteFile(p, pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return pub, priv
}

func TestAuthJWTTokens(t *testing.T) {
	t.Parallel()
	if os.Getenv(etcdEnv) != "" {
		t.Skip("keel only: the member's --auth-token is set in-process")
	}
	pub, priv := writeECKeys(t)
	m := keeltest.Start(t, keeltest.WithConfig(func(cfg *config.Config) {
		cfg.AuthToken = "jwt,pub-key=" + pub + ",priv-key=" + priv + ",sign-method=ES256,ttl=10m"
	}))
	root := enableAuth(t, m.Client, func(edit ...func(*clientv3.Config)) *clientv3.Client { return m.NewClient(t, edit...) })
	resp, err := root.Authenticate(ctx(t), "root", rootPassword)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(resp.Token, ".") != 2 {
		t.Fatalf("token %q is not a JWT", resp.Token)
	}
	if _, err := m.Client.UserList(withToken(t, resp.Token)); err != nil {
		t.Fatal(err)
	}
	forged := resp.Token[:len(resp.Token)-4] + "AAAA"
	_, err = m.Client.UserList(withToken(t, forged))
	wantErr(t, err, rpctypes.ErrGRPCInvalidAuthToken)
}

// TestClusterAuthJWTWorksOnEveryMember: a JWT is self-contained: signed by
// the member that answered Authenticate, it is verified by any member with
// the same key; a forged one is refused by the others too.
func TestClusterAuthJWTWorksOnEveryMember(t *testing.T) {
	t.Parallel()
	pub, priv := writeECKeys(t)
	c := startCluster(t, 3, keeltest.WithConfig(func(cfg *config.Config) {
		cfg.AuthToken = "jwt,pub-key=" + pub + ",priv-key=" + priv + ",sign-method=ES256,ttl=10m"
		cfg.BcryptCost = 4
	}))
	m1 := c.Members[0]
	root := enableAuth(t, m1.Client, func(edit ...func(*clientv3.Config)) *clientv3.Client { return m1.NewClient(t, edit...) })
	if _, err := root.UserAdd(ctx(t), "u", "upw"); err != nil {
		t.Fatal(err)
	}
	resp, err := m1.Client.Authenticate(ctx(t), "u", "upw")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(resp.Token, ".") != 2 {
		t.Fatalf("token %q is not a JWT", resp.Token)
	}
	for _, m := range c.Members {
		if _, err := m.Client.UserGet(withToken(t, resp.Token), "u"); err != nil {
			t.Fatalf("JWT of m1 on %s: %v", m.Config.Name, err)
		}
	}
	forged := resp.Token[:len(resp.Token)-4] + "AAAA"
	for _, m := range c.Members[1:] {
		_, err := m.Client.UserGet(withToken(t, forged), "u")
		wantErr(t, err, rpctypes.ErrGRPCInvalidAuthToken)
	}
}

// TestAuthSimpleTokenExpiresAfterTTL: a simple token unused for
// --auth-token-ttl is refused; one used meanwhile is renewed and lives on.
// Whether the TTL has passed is learnt without touching the token under
// test (a use would renew it): each poll spends one more token issued just
// after it, never used before; once one of those is refused, the older
// token must be too. (A refused call is slow: the client retries it.)
func TestAuthSimpleTokenExpiresAfterTTL(t *testing.T) {
	t.Parallel()
	if os.Getenv(etcdEnv) != "" {
		t.Skip("keel only: the member's --auth-token-ttl is set in-process")
	}
	const ttl = 3 * time.Second
	m := keeltest.Start(t, keeltest.WithConfig(func(cfg *config.Config) {
		// Long enough for a loaded machine to use the renewed token
		// well within it.
		cfg.AuthTokenTTL = ttl
		cfg.BcryptCost = 4
	}))
	enableAuth(t, m.Client, func(edit ...func(*clientv3.Config)) *clientv3.Client { return m.NewClient(t, edit...) })
	login := func() string {
		t.Helper()
		resp, err := m.Client.Authenticate(ctx(t), "root", rootPassword)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Token
	}
	idle := login()
	const polls, every = 80, 250 * time.Millisecond
	probes := make([]string, polls)
	for i := range probes {
		probes[i] = login()
	}
	// Issued after the probes: on a loaded machine the 80 logins above
	// can take longer than the TTL.
	renewed := login()
	renewedAt := time.Now()
	// A plain gRPC connection: the official client retries a call whose
	// token is refused, for long enough that renewed would expire meanwhile.
	conn, err := grpc.NewClient(strings.TrimPrefix(m.Endpoint, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	authc := pb.NewAuthClient(conn)
	use := func(tok string) error {
		_, err := authc.UserList(metadata.AppendToOutgoingContext(ctx(t), rpctypes.TokenFieldNameGRPC, tok), &pb.AuthUserListRequest{})
		return err
	}
	expired := false
	// Go on until a probe expired and renewed has lived, by being used,
	// for twice the TTL.
	for i := 0; i < polls && !(expired && time.Since(renewedAt) > 2*ttl); i++ {
		time.Sleep(every) // let time pass; no condition to wait on
		if err := use(renewed); err != nil {
			t.Fatalf("token used every %v refused at poll %d, %v after it was issued: %v", every, i, time.Since(renewedAt), err)
		}
		if expired {
			continue
		}
		switch err := use(probes[i]); {
		case err == nil:
		case rpctypes.ErrorDesc(err) == rpctypes.ErrorDesc(rpctypes.ErrGRPCInvalidAuthToken):
			expired = true
		default:
			t.Fatalf("probe token: %v", err)
		}
	}
	if !expired {
		t.Fatalf("no token unused for %d polls of %v expired with a TTL of %v", polls, every, ttl)
	}
	// renewed, used before every probe, outlived the probe that expired;
	// idle, issued before all of them and never used, is gone.
	wantErr(t, use(idle), rpctypes.ErrGRPCInvalidAuthToken)
}

// TestBadAuthTokenOptionsStopTheStart: etcd refuses to start with a bad
// --auth-token and says why.
func TestBadAuthTokenOptionsStopTheStart(t *testing.T) {
	t.Parallel()
	if os.Getenv(etcdEnv) != "" {
		t.Skip("keel only")
	}
	pub, _ := writeECKeys(t)
	for _, tc := range []struct{ opt, want string }{
		{"bogus", "auth: invalid auth options"},
		{"jwt,sign-method=ES256", "auth: missing key data"},
		{"jwt,pub-key=" + pub, "auth: invalid auth options"},
	} {
		port, err := keeltest.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		peer := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(port)}
		client := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
		cfg := config.Default()
		cfg.DataDir = t.TempDir()
		cfg.ListenClientURLs, cfg.AdvertiseClientURLs = []url.URL{client}, []url.URL{client}
		cfg.ListenPeerURLs, cfg.InitialAdvertisePeerURLs = []url.URL{peer}, []url.URL{peer}
		cfg.InitialCluster = "default=" + peer.String()
		cfg.AuthToken = tc.opt
		srv, err := server.Start(cfg, zap.NewNop())
		if err == nil {
			srv.Stop()
			t.Errorf("%q: started", tc.opt)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.opt, err, tc.want)
		}
	}
}
