package compat

import (
	"testing"
)

// newAuthTwins starts the twins and checks that both servers serve the Auth
// service: the golden comparison alone would pass on servers that refuse
// every auth request alike.
func newAuthTwins(t *testing.T) *ctlTwins {
	t.Helper()
	tw := newCtlTwins(t)
	for _, ep := range []string{tw.etcdctlEP, tw.keelctlEP} {
		out, errOut, code, err := runCtlRaw(tw.etcdctl, "--endpoints="+ep, "auth", "status")
		if err != nil || code != 0 {
			t.Fatalf("the twins' servers do not serve authentication: etcdctl auth status: exit %d, %v\n%s%s", code, err, out, errOut)
		}
	}
	return tw
}

// Golden tests of keelctl's user, role and auth commands. Commands that
// create something are run once per output format on a name of their own
// (perFormat), so that every format prints a success; etcdctl makes the
// request before it finds that a format is not supported, so the table runs
// create too.

// perFormat is one step per output format, args(f) giving the command line
// for the format f.
func perFormat(args func(f string) []string) []twinStep {
	var out []twinStep
	for _, f := range formats {
		out = append(out, twinStep{Args: append(args(f), "-w", f)})
	}
	return out
}

// stdinStep is a command line with standard input.
func stdinStep(stdin string, args ...string) twinStep {
	return twinStep{Args: args, Stdin: stdin}
}

// rootPassword is the root user's password in the tests that turn
// authentication on.
const rootPassword = "rootpw"

// asRoot prefixes a command line with root's credentials.
func asRoot(args ...string) []string {
	return append([]string{"--user=root:" + rootPassword}, args...)
}

// TestCtlUser covers user add (every way of giving the password), get
// (with --detail), list, passwd, grant-role, revoke-role and delete, in
// every format, and their mistakes.
func TestCtlUser(t *testing.T) {
	tw := newAuthTwins(t)
	tw.run(seq(
		perFormat(func(f string) []string { return []string{"user", "add", "u-" + f + ":pw"} }),
		[]twinStep{
			line("user", "add", "u-simple:again"),
			line("user", "add", "flag", "--new-user-password=secret"),
			line("user", "add", "flag:colon", "--new-user-password=secret"),
			line("user", "add", "cert-only", "--no-password"),
			line("user", "add", "cert:only", "--no-password", "--new-user-password=x"),
			stdinStep("from-stdin  rest\n", "user", "add", "stdin", "--interactive=false"),
			stdinStep("", "user", "add", "stdin-empty", "--interactive=false"),
			stdinStep("\nlate\n", "user", "add", "stdin-newline", "--interactive=false"),
			// The terminal prompts read standard input, which is not a terminal here.
			stdinStep("tty\ntty\n", "user", "add", "tty"),
			stdinStep("tty\nother\n", "user", "add", "tty-differs"),
			stdinStep("", "user", "add", "tty-empty"),
			stdinStep("\n\n", "user", "add", "tty-blank"),
			line("user", "add", ":nameless"),
			line("user", "add", ""),
			line("user", "add", "", "--no-password"),
			line("user", "add"),
			line("user", "add", "a:b", "c"),
			line("user", "add", "x:y", "--interactive=maybe"),
			line("user", "add", "x:y", "-w", "yaml"),
			line("role", "add", "r1"),
			line("role", "add", "r2"),
			line("role", "grant-permission", "r1", "read", "k1"),
			line("role", "grant-permission", "r2", "readwrite", "p/", "--prefix"),
		},
		perFormat(func(f string) []string { return []string{"user", "grant-role", "u-" + f, "r1"} }),
		[]twinStep{
			line("user", "grant-role", "u-simple", "r2"),
			line("user", "grant-role", "u-simple", "r2"),
			line("user", "grant-role", "nobody", "r1"),
			line("user", "grant-role", "u-simple", "norole"),
			line("user", "grant-role", "u-simple"),
			line("user", "grant-role", "u-simple", "r1", "r2"),
		},
		withFormats("user", "get", "u-simple"),
		withFormats("user", "get", "u-simple", "--detail"),
		withFormats("user", "get", "cert-only", "--detail"),
		withFormats("user", "get", "--hex", "u-fields", "--detail"),
		withFormats("user", "get", "nobody"),
		withFormats("user", "list"),
		[]twinStep{
			line("user", "get"),
			line("user", "get", "a", "b"),
			line("user", "get", "nobody", "--detail"),
			line("user", "list", "extra"),
		},
		perFormat(func(f string) []string { return []string{"user", "revoke-role", "u-" + f, "r1"} }),
		[]twinStep{
			line("user", "revoke-role", "u-simple", "r1"),
			line("user", "revoke-role", "nobody", "r1"),
			line("user", "revoke-role", "u-simple", "norole"),
			line("user", "revoke-role", "u-simple"),
			line("user", "get", "u-simple"),
			stdinStep("newpw\n", "user", "passwd", "u-simple", "--interactive=false"),
			stdinStep("newpw\nnewpw\n", "user", "passwd", "u-json", "-w", "json"),
			stdinStep("a\nb\n", "user", "passwd", "u-json"),
			stdinStep("", "user", "passwd", "u-json"),
			stdinStep("", "user", "passwd", "u-json", "--interactive=false"),
			stdinStep("pw\n", "user", "passwd", "nobody", "--interactive=false"),
			line("user", "passwd"),
			line("user", "passwd", "a", "b"),
		},
		perFormat(func(f string) []string {
			return []string{"user", "passwd", "u-" + f, "--interactive=false"}
		}),
		perFormat(func(f string) []string { return []string{"user", "delete", "u-" + f} }),
		[]twinStep{
			line("user", "delete", "nobody"),
			line("user", "delete"),
			line("user", "delete", "a", "b"),
			line("user", "list"),
		},
	)...)
}

// TestCtlRole covers role add, get, list, grant-permission (every
// permission type and key shape) and revoke-permission, in every format,
// and their mistakes.
func TestCtlRole(t *testing.T) {
	tw := newAuthTwins(t)
	tw.run(seq(
		perFormat(func(f string) []string { return []string{"role", "add", "r-" + f} }),
		[]twinStep{
			line("role", "add", "r-simple"),
			line("role", "add", "root"),
			line("role", "add"),
			line("role", "add", "a", "b"),
			line("role", "add", ""),
		},
		withFormats("role", "get", "r-simple"),
		withFormats("role", "get", "root"),
		withFormats("role", "get", "nobody"),
		withFormats("role", "list"),
		perFormat(func(f string) []string {
			return []string{"role", "grant-permission", "r-" + f, "readwrite", "key-" + f}
		}),
		[]twinStep{
			line("role", "grant-permission", "r-simple", "read", "k"),
			line("role", "grant-permission", "r-simple", "WRITE", "w"),
			line("role", "grant-permission", "r-simple", "ReadWrite", "rw"),
			line("role", "grant-permission", "r-simple", "read", "a", "c"),
			line("role", "grant-permission", "r-simple", "write", "a", "c", "ignored"),
			line("role", "grant-permission", "r-simple", "read", "p/", "--prefix"),
			line("role", "grant-permission", "r-simple", "write", "from", "--from-key"),
			line("role", "grant-permission", "r-simple", "read", "", "--prefix"),
			line("role", "grant-permission", "r-simple", "write", "", "--from-key"),
			line("role", "grant-permission", "r-simple", "readwrite", ""),
			line("role", "grant-permission", "r-simple", "readwrite", "", "ignored"),
			line("role", "grant-permission", "r-simple", "read", "\xff", "--prefix"),
			line("role", "grant-permission", "root", "read", "rootkey"),
			// mistakes
			line("role", "grant-permission", "r-simple", "execute", "k"),
			line("role", "grant-permission", "r-simple", "read"),
			line("role", "grant-permission", "r-simple"),
			line("role", "grant-permission"),
			line("role", "grant-permission", "r-simple", "read", "k", "--prefix", "--from-key"),
			line("role", "grant-permission", "r-simple", "read", "", "--prefix", "--from-key"),
			line("role", "grant-permission", "r-simple", "read", "a", "b", "--prefix"),
			line("role", "grant-permission", "r-simple", "read", "a", "b", "--from-key"),
			line("role", "grant-permission", "r-simple", "read", "a", "b", "--prefix", "--from-key"),
			line("role", "grant-permission", "nobody", "read", "k"),
			line("role", "grant-permission", "r-simple", "read", "z", "a"),
		},
		withFormats("role", "get", "r-simple"),
		withFormats("role", "get", "--hex", "r-fields"),
		withFormats("role", "get", "root"),
		perFormat(func(f string) []string {
			return []string{"role", "revoke-permission", "r-" + f, "key-" + f}
		}),
		[]twinStep{
			line("role", "revoke-permission", "r-simple", "k"),
			line("role", "revoke-permission", "r-simple", "a", "c"),
			line("role", "revoke-permission", "r-simple", "p/", "--prefix"),
			line("role", "revoke-permission", "r-simple", "from", "--from-key"),
			line("role", "revoke-permission", "r-simple", "", "--prefix"),
			line("role", "revoke-permission", "r-simple", "", "--from-key"),
			line("role", "revoke-permission", "r-simple", ""),
			line("role", "get", "r-simple"),
			// mistakes
			line("role", "revoke-permission", "r-simple", "k"),
			line("role", "revoke-permission", "r-simple", "w", "--prefix"),
			line("role", "revoke-permission", "nobody", "k"),
			line("role", "revoke-permission", "r-simple"),
			line("role", "revoke-permission", "r-simple", "k", "--prefix", "--from-key"),
			line("role", "revoke-permission", "r-simple", "a", "b", "--prefix"),
			line("role", "revoke-permission", "r-simple", "a", "b", "--from-key"),
			line("role", "get"),
			line("role", "get", "a", "b"),
			line("role", "list", "extra"),
		},
		perFormat(func(f string) []string { return []string{"role", "delete", "r-" + f} }),
		[]twinStep{
			line("role", "delete", "nobody"),
			line("role", "delete"),
			line("role", "delete", "a", "b"),
			line("role", "list"),
		},
	)...)
}

// TestCtlAuth covers auth enable (the root user missing, the root role
// made on the way, already on), status and disable, the credentials of the
// later commands (--user with and without the password, --password, wrong
// ones, none), and a user without the root role on management commands.
func TestCtlAuth(t *testing.T) {
	tw := newAuthTwins(t)
	tw.run(seq(
		withFormats("auth", "status"),
		[]twinStep{
			line("auth", "enable"),
			line("auth", "enable", "extra"),
			line("auth", "disable", "extra"),
			line("auth", "status", "extra"),
			line("auth", "disable"),
			line("user", "add", "root:"+rootPassword),
			line("auth", "enable", "-w", "yaml"),
			line("auth", "enable", "-w", "table"),
			line("auth", "enable"),
			line("auth", "status"),
			line("role", "list"),
			line("put", "a", "b"),
			line("--user=root:wrong", "role", "list"),
			line("--user=nobody:pw", "role", "list"),
			line("--password="+rootPassword, "role", "list"),
			stdinStep(rootPassword+"\n", "--user=root", "role", "list"),
			stdinStep("wrong\n", "--user=root", "role", "list"),
			line("--user=root", "--password="+rootPassword, "role", "list"),
			line("--user", "root", "--password", rootPassword, "user", "list"),
			{Args: []string{"user", "list"}, Env: []string{"ETCDCTL_USER=root:" + rootPassword}},
			{Args: []string{"user", "list"}, Env: []string{"ETCDCTL_USER=root", "ETCDCTL_PASSWORD=" + rootPassword}},
			{Args: []string{"user", "list"}, Env: []string{"ETCDCTL_PASSWORD=" + rootPassword}},
			twinStep{Args: asRoot("auth", "enable")},
			twinStep{Args: asRoot("user", "get", "root", "--detail")},
			twinStep{Args: asRoot("role", "get", "root")},
			twinStep{Args: asRoot("user", "add", "alice:alicepw")},
			// The new user's password is asked for before root's.
			stdinStep("bobpw\nbobpw\n"+rootPassword+"\n", "--user=root", "user", "add", "bob"),
			stdinStep("bobpw2\n"+rootPassword+"\n", "--user=root", "user", "passwd", "bob", "--interactive=false"),
			line("--user=bob:bobpw2", "user", "get", "bob"),
			line("--auth-jwt-token=not-a-token", "user", "list"),
			twinStep{Args: asRoot("role", "add", "reader")},
			twinStep{Args: asRoot("role", "grant-permission", "reader", "read", "a")},
			twinStep{Args: asRoot("user", "grant-role", "alice", "reader")},
			twinStep{Args: asRoot("put", "a", "b")},
			line("--user=alice:alicepw", "get", "a"),
			line("--user=alice:alicepw", "put", "a", "c"),
			line("--user=alice:alicepw", "user", "list"),
			line("--user=alice:alicepw", "role", "add", "mine"),
			line("--user=alice:alicepw", "user", "get", "alice"),
			line("--user=alice:alicepw", "role", "get", "reader"),
			line("--user=alice:alicepw", "role", "get", "root"),
			line("--user=alice:alicepw", "auth", "status"),
			line("--user=alice:alicepw", "auth", "disable"),
			stdinStep("alicepw2\n", "--user=alice:alicepw", "user", "passwd", "alice", "--interactive=false"),
			line("--user=alice:alicepw", "get", "a"),
			twinStep{Args: asRoot("user", "revoke-role", "root", "root")},
			twinStep{Args: asRoot("user", "delete", "root")},
			twinStep{Args: asRoot("role", "delete", "root")},
		},
		withFormats(asRoot("auth", "status")...),
		[]twinStep{
			line("auth", "disable"),
			line("--user=alice:alicepw", "auth", "disable"),
			twinStep{Args: asRoot("auth", "disable", "-w", "json")},
			twinStep{Args: asRoot("auth", "status")},
			line("auth", "disable"),
			line("get", "a"),
			line("user", "list"),
			// The root role exists, not granted to root: enable grants it.
			line("user", "revoke-role", "root", "root"),
			line("user", "get", "root"),
			line("auth", "enable"),
			twinStep{Args: asRoot("user", "get", "root")},
			twinStep{Args: asRoot("auth", "disable")},
			// The root role missing: enable makes it.
			line("role", "delete", "root"),
			line("auth", "enable"),
			twinStep{Args: asRoot("role", "list")},
			twinStep{Args: asRoot("auth", "disable")},
			// The root user missing, the role there.
			line("user", "delete", "root"),
			line("auth", "enable"),
		},
	)...)
}
