package compat

import (
	"crypto/tls"
	"crypto/x509"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keeldb/keel/config"
	"github.com/keeldb/keel/pki"
)

// Golden tests of keelctl's TLS flags (--cacert, --cert, --key,
// --insecure-skip-tls-verify, --insecure-transport and their ETCDCTL_*
// variables) against twins that serve https with client certificate auth:
// the twins share one CA, one server certificate for 127.0.0.1, and the
// client certificates below. Where etcdctl says only "context deadline
// exceeded" because of a TLS mistake, keelctl must print the same line
// extended with the cause (twinStep.Explains).

// ctlTLS is the certificate files of a TLS twins test, all in one
// directory (the same paths on both sides).
type ctlTLS struct {
	dir string
	ca  *pki.CA
}

// The client certificates newCtlTLS makes, by file name (NAME.crt and
// NAME.key): each names a way a client may present itself.
const (
	certRoot     = "root"     // CN root, clientAuth: the root user's identity
	certAlice    = "alice"    // CN alice, clientAuth
	certStranger = "stranger" // CN root, clientAuth, signed by another CA
	certNoClient = "noclient" // CN root, serverAuth only
	certExpired  = "expired"  // CN root, clientAuth, expired yesterday
)

// newCtlTLS makes the CA (ca.crt), another CA (other-ca.crt), the twins'
// server certificate (server.crt, serverAuth for 127.0.0.1) and the
// client certificates.
func newCtlTLS(t *testing.T) *ctlTLS {
	t.Helper()
	c := &ctlTLS{dir: t.TempDir()}
	c.ca = c.newCA(t, "ctl-tls-ca", "ca")
	other := c.newCA(t, "ctl-tls-other-ca", "other-ca")
	yesterday := time.Now().Add(-24 * time.Hour)
	for name, req := range map[string]pki.Request{
		"server":     {CommonName: "server", Hosts: []string{"127.0.0.1"}, Usage: pki.Server},
		certRoot:     {CommonName: "root", Usage: pki.Client},
		certAlice:    {CommonName: "alice", Usage: pki.Client},
		certNoClient: {CommonName: "root", Usage: pki.Client, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		certExpired:  {CommonName: "root", Usage: pki.Client, NotBefore: yesterday.Add(-time.Hour), Validity: time.Hour},
	} {
		c.issue(t, c.ca, name, req)
	}
	c.issue(t, other, certStranger, pki.Request{CommonName: "root", Usage: pki.Client})
	if err := os.WriteFile(c.file("garbage.pem"), []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *ctlTLS) newCA(t *testing.T, cn, name string) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA(cn, 0, pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Write(c.file(name+".crt"), c.file(name+".key")); err != nil {
		t.Fatal(err)
	}
	return ca
}

func (c *ctlTLS) issue(t *testing.T, ca *pki.CA, name string, req pki.Request) {
	t.Helper()
	pair, err := ca.Issue(req)
	if err != nil {
		t.Fatalf("issue %s: %v", name, err)
	}
	if err := pair.Write(c.file(name+".crt"), c.file(name+".key")); err != nil {
		t.Fatal(err)
	}
}

// file is the path of a file of the test's PKI.
func (c *ctlTLS) file(name string) string { return filepath.Join(c.dir, name) }

// flags are etcdctl's flags trusting the CA and presenting the client
// certificate cert.
func (c *ctlTLS) flags(cert string) []string {
	return []string{"--cacert=" + c.file("ca.crt"), "--cert=" + c.file(cert+".crt"), "--key=" + c.file(cert+".key")}
}

// step is a command line presenting cert (see flags).
func (c *ctlTLS) step(cert string, args ...string) twinStep {
	return twinStep{Args: append(c.flags(cert), args...)}
}

// serverTLS is the twins' client port security: the server certificate,
// client certificates required and verified against the CA.
func (c *ctlTLS) serverTLS() config.TLS {
	return config.TLS{CertFile: c.file("server.crt"), KeyFile: c.file("server.key"), TrustedCAFile: c.file("ca.crt"), ClientCertAuth: true}
}

// clientConfig is the harness's own client: root's certificate.
func (c *ctlTLS) clientConfig(t *testing.T) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(c.file(certRoot+".crt"), c.file(certRoot+".key"))
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: c.ca.Pool()}
}

// newTwins starts twins serving https with client certificate auth.
func (c *ctlTLS) newTwins(t *testing.T) *ctlTwins {
	t.Helper()
	return newCtlTwinsWith(t, c.startKeel, c.startEtcd)
}

func (c *ctlTLS) startKeel(t *testing.T, name string) string {
	t.Helper()
	cfg := ctlTwinKeelConfig(t)
	cfg.ClientTLS = c.serverTLS()
	httpsURLs(cfg.ListenClientURLs)
	httpsURLs(cfg.AdvertiseClientURLs)
	return newTargetTLS(t, name, startKeelServer(t, name, cfg), c.clientConfig(t)).endpoint
}

func (c *ctlTLS) startEtcd(t *testing.T, name string) string {
	t.Helper()
	cfg := etcdConfig(t, name)
	cfg.AdvertisePeerUrls = []url.URL{ctlTwinPeerURL(t)}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	s := c.serverTLS()
	cfg.ClientTLSInfo.CertFile, cfg.ClientTLSInfo.KeyFile = s.CertFile, s.KeyFile
	cfg.ClientTLSInfo.TrustedCAFile, cfg.ClientTLSInfo.ClientCertAuth = s.TrustedCAFile, s.ClientCertAuth
	httpsURLs(cfg.ListenClientUrls)
	httpsURLs(cfg.AdvertiseClientUrls)
	e := startEmbedEtcd(t, name, cfg)
	return newTargetTLS(t, name, e.Clients[0].Addr().String(), c.clientConfig(t)).endpoint
}

// httpsURLs turns us's schemes to https.
func httpsURLs(us []url.URL) {
	for i := range us {
		us[i].Scheme = "https"
	}
}

// tlsTimeouts bound the steps that fail on a TLS mistake: etcdctl waits
// for --command-timeout, then keelctl makes one handshake of at most
// --dial-timeout to name the cause.
var tlsTimeouts = []string{"--dial-timeout=2s", "--command-timeout=1s"}

// maskRetries turns a run of the client library's "retrying of unary
// invoker failed" warnings into one placeholder: how often the library
// retries before the deadline depends on timing (a plain-text client on
// a TLS port is refused at once and retries dozens of times).
var maskRetries = regexp.MustCompile(`((?:\{[^\n]*"msg":"retrying of unary invoker failed"[^\n]*\n)*\{[^\n]*"msg":"retrying of unary invoker failed"[^\n]*)`)

// mistake is a command line that fails on a TLS mistake with etcdctl's
// "context deadline exceeded" (or "unhealthy cluster"), which keelctl must
// extend with the cause: every one of explains (nil: keelctl must print
// exactly what etcdctl does). tlsArgs are the TLS flags.
func mistake(tlsArgs []string, explains []string, args ...string) twinStep {
	return twinStep{
		Args:     append(append(slices.Clone(tlsTimeouts), tlsArgs...), args...),
		Explains: explains,
		Mask:     []*regexp.Regexp{maskRetries, maskDuration},
	}
}

// atEndpoint is a step that names the endpoint itself, as
// --endpoints=URL (URL with "{endpoint}" in it).
func atEndpoint(u string, st twinStep) twinStep {
	st.NoEndpoints = true
	st.Args = append([]string{"--endpoints=" + u}, st.Args...)
	return st
}

// TestCtlTLSClientCert covers the commands that work over TLS with a
// client certificate: get, put and del in every format, endpoint health
// and status, member list, with the endpoint bare or https://, and
// --insecure-skip-tls-verify with a certificate and no CA.
func TestCtlTLSClientCert(t *testing.T) {
	c := newCtlTLS(t)
	tw := c.newTwins(t)
	root := c.flags(certRoot)
	with := func(args ...string) []string { return append(slices.Clone(root), args...) }
	tw.run(seq(
		withFormats(with("put", "a", "1")...),
		withFormats(with("put", "b", "2", "--prev-kv")...),
		withFormats(with("get", "a")...),
		withFormats(with("get", "", "--prefix")...),
		withFormats(with("del", "a", "--prev-kv")...),
		withFormats(with("del", "b")...),
		[]twinStep{c.step(certRoot, "put", "c", "3")},
		tookMasked(withFormats(with("endpoint", "health")...)[:4]),
		tookMasked(withFormats(with("endpoint", "health", "--cluster")...)[:4]),
		withFormats(with("member", "list")...),
		withFormats(with("member", "list", "--hex")...),
		[]twinStep{
			atEndpoint("https://{endpoint}", c.step(certRoot, "get", "c")),
			atEndpoint("https://{endpoint}", c.step(certRoot, "put", "d", "4")),
			atEndpoint("https://{endpoint}", twinStep{Args: with("--insecure-transport=false", "del", "d")}),
			// No CA: the server certificate is not checked.
			{Args: []string{"--insecure-skip-tls-verify", "--cert=" + c.file("root.crt"), "--key=" + c.file("root.key"), "get", "c"}},
			atEndpoint("https://{endpoint}", twinStep{Args: []string{"--insecure-skip-tls-verify", "--cert=" + c.file("root.crt"), "--key=" + c.file("root.key"), "put", "e", "5"}}),
			{Args: with("--insecure-skip-tls-verify", "get", "e", "-w", "json")},
			// A client certificate of another user is accepted: without
			// authentication, its CN does not matter.
			c.step(certAlice, "get", "", "--prefix", "--keys-only"),
		},
	)...)
	tw.runBlanked([]*regexp.Regexp{maskDBSizeSimple, maskDBSizeJSON}, seq(
		withFormats(with("endpoint", "status")...)[:4],
		withFormats(with("endpoint", "status", "--cluster")...)[:4],
	)...)
	tw.runTable([]int{5, 6, 7}, twinStep{Args: with("endpoint", "status", "-w", "table")}, twinStep{Args: with("endpoint", "status", "--cluster", "-w", "table")})
	tw.runTable([]int{3}, twinStep{Args: with("endpoint", "health", "-w", "table")})
}

// runBlanked runs steps whose output has values that legitimately differ
// in the first group of a pattern of blank, and differ independently of
// each other (the database size and the size in use), so that a mask's
// placeholders, which keep equal values equal, cannot be used: the groups
// are replaced by "<blank>" before the comparison.
func (tw *ctlTwins) runBlanked(blank []*regexp.Regexp, steps ...twinStep) {
	tw.t.Helper()
	blanked := func(s string) string {
		for _, re := range blank {
			s = re.ReplaceAllStringFunc(s, func(m string) string {
				g := re.FindStringSubmatchIndex(m)
				return m[:g[2]] + "<blank>" + m[g[3]:]
			})
		}
		return s
	}
	for i, st := range steps {
		want, got := tw.exec(0, st), tw.exec(1, st)
		want.stdout, got.stdout = blanked(want.stdout), blanked(got.stdout)
		if diff := compareCtlRuns(want, got); diff != "" {
			tw.t.Fatalf("step %d: %s\n%s\netcdctl printed:\n%s%s\nkeelctl printed:\n%s%s", i, strings.Join(st.Args, " "), diff, want.stdout, want.stderr, got.stdout, got.stderr)
		}
	}
}

// TestCtlTLSEnv covers ETCDCTL_CACERT, ETCDCTL_CERT, ETCDCTL_KEY,
// ETCDCTL_INSECURE_SKIP_TLS_VERIFY and ETCDCTL_INSECURE_TRANSPORT: used,
// incomplete, shadowed by a flag, and wrong.
func TestCtlTLSEnv(t *testing.T) {
	c := newCtlTLS(t)
	tw := c.newTwins(t)
	caEnv := "ETCDCTL_CACERT=" + c.file("ca.crt")
	certEnv := []string{"ETCDCTL_CERT=" + c.file("root.crt"), "ETCDCTL_KEY=" + c.file("root.key")}
	all := append([]string{caEnv}, certEnv...)
	envStep := func(env []string, args ...string) twinStep { return twinStep{Args: args, Env: env} }
	noCert := mistake(nil, []string{"keelctl:", "requires a client certificate", "none was presented"}, "get", "k")
	noCert.Env = []string{caEnv, "ETCDCTL_INSECURE_TRANSPORT=false"}
	tw.run(
		envStep(all, "put", "k", "v"),
		envStep(all, "get", "k", "-w", "json"),
		envLine(append([]string{"ETCDCTL_ENDPOINTS=https://{endpoint}"}, all...), "get", "k"),
		envStep(append(slices.Clone(certEnv), "ETCDCTL_INSECURE_SKIP_TLS_VERIFY=true"), "get", "k"),
		envStep(certEnv, "--insecure-skip-tls-verify", "get", "k"),
		envStep(append([]string{caEnv}, certEnv[0]), "get", "k"),
		envStep(append([]string{caEnv}, certEnv[1]), "get", "k"),
		envStep(all, "--cacert="+c.file("ca.crt"), "get", "k"),
		envStep(all, "--cert="+c.file("root.crt"), "get", "k"),
		envStep(append([]string{"ETCDCTL_CACERT=" + c.file("nonexistent.crt")}, certEnv...), "get", "k"),
		envStep(append(slices.Clone(all), "ETCDCTL_INSECURE_SKIP_TLS_VERIFY=maybe"), "get", "k"),
		noCert,
	)
}

// TestCtlTLSFiles covers the TLS files etcdctl refuses before it dials:
// a certificate without its key and the other way round, missing files, a
// directory, a file that is not PEM, switched or mismatched files.
func TestCtlTLSFiles(t *testing.T) {
	c := newCtlTLS(t)
	tw := c.newTwins(t)
	ca := "--cacert=" + c.file("ca.crt")
	files := func(cert, key string) []string {
		return []string{ca, "--cert=" + c.file(cert), "--key=" + c.file(key), "get", "k"}
	}
	rootCert, rootKey := "--cert="+c.file("root.crt"), "--key="+c.file("root.key")
	tw.run(
		line(ca, rootCert, "get", "k"),
		line(ca, rootKey, "put", "k", "v"),
		line(rootCert, "get", "k"),
		line("--cacert="+c.file("nonexistent.crt"), rootCert, rootKey, "get", "k"),
		line("--cacert="+c.dir, rootCert, rootKey, "get", "k"),
		line(files("nonexistent.crt", "root.key")...),
		line(files("root.crt", "nonexistent.key")...),
		line(files("garbage.pem", "root.key")...),
		line(files("root.crt", "garbage.pem")...),
		line(files("root.key", "root.key")...),
		line(files("root.crt", "root.crt")...),
		line(files("root.crt", "alice.key")...),
		// A CA file without a certificate is no error of its own: no
		// server certificate is trusted then.
		mistake([]string{"--cacert=" + c.file("garbage.pem"), rootCert, rootKey},
			[]string{"keelctl:", "not a trusted CA", "are none"}, "get", "k"),
	)
}

// TestCtlTLSMistakes covers the TLS mistakes that make etcdctl wait for its
// deadline and say only "context deadline exceeded" (endpoint health:
// "unhealthy cluster"), for which keelctl must print the same and name
// the cause: a plain-text client, no client certificate, a client
// certificate from another CA, lacking clientAuth or expired, a CA that
// did not sign the server certificate, and no CA at all.
func TestCtlTLSMistakes(t *testing.T) {
	c := newCtlTLS(t)
	tw := c.newTwins(t)
	ca := "--cacert=" + c.file("ca.crt")
	withCert := func(cert string, more ...string) []string {
		return append([]string{"--cert=" + c.file(cert+".crt"), "--key=" + c.file(cert+".key")}, more...)
	}
	var (
		plainText = []string{"keelctl:", "speaks TLS", "plain text"}
		noCert    = []string{"keelctl:", "requires a client certificate", "none was presented"}
		otherCA   = []string{"keelctl:", "does not trust its issuer", "ctl-tls-other-ca"}
		noClient  = []string{"keelctl:", "lacks the clientAuth extended key usage"}
		expired   = []string{"keelctl:", "not valid now", "local clock"}
		untrusted = []string{"keelctl:", `signed by "CN=ctl-tls-ca,O=keel"`, "not a trusted CA"}
	)
	// every is the commands each mistake is tried with.
	every := func(tlsArgs, explains []string) []twinStep {
		return []twinStep{
			mistake(tlsArgs, explains, "get", "k"),
			mistake(tlsArgs, explains, "put", "k", "v"),
			mistake(tlsArgs, explains, "del", "k", "-w", "json"),
			mistake(tlsArgs, explains, "member", "list"),
			mistake(tlsArgs, explains, "endpoint", "health"),
			mistake(tlsArgs, explains, "endpoint", "health", "-w", "json"),
		}
	}
	tw.run(seq(
		every(nil, plainText),
		every([]string{"--insecure-transport=true"}, plainText),
		every([]string{ca}, noCert),
		every([]string{"--insecure-skip-tls-verify"}, noCert),
		every(append([]string{ca}, withCert(certStranger)...), otherCA),
		every(append([]string{ca}, withCert(certNoClient)...), noClient),
		every(append([]string{ca}, withCert(certExpired)...), expired),
		every(withCert(certRoot, "--cacert="+c.file("other-ca.crt")), append(slices.Clone(untrusted), "ctl-tls-other-ca")),
		every(withCert(certRoot), untrusted),
		every(withCert(certRoot, "--insecure-transport=false"), untrusted),
		[]twinStep{
			atEndpoint("https://{endpoint}", mistake(nil, untrusted, "get", "k")),
			atEndpoint("https://{endpoint}", mistake([]string{"--insecure-transport"}, untrusted, "get", "k")),
			atEndpoint("https://{endpoint}", mistake([]string{ca}, noCert, "get", "k")),
			// endpoint status reports each endpoint's failure on its own
			// line and names no cause, in keelctl as in etcdctl.
			mistake([]string{ca}, nil, "endpoint", "status"),
			mistake([]string{ca}, nil, "endpoint", "status", "-w", "json"),
			mistake(append([]string{ca}, withCert(certStranger)...), nil, "endpoint", "status"),
		},
	)...)
}

// TestCtlTLSCertIdentity covers identity from the client certificate's CN
// with authentication on: root's certificate acts as root without --user,
// alice's is refused a write with etcd's permission error, --user takes
// precedence over the certificate, and a CN naming no user is refused.
func TestCtlTLSCertIdentity(t *testing.T) {
	c := newCtlTLS(t)
	c.issue(t, c.ca, "nobody", pki.Request{CommonName: "nobody", Usage: pki.Client})
	tw := c.newTwins(t)
	root := func(args ...string) twinStep { return c.step(certRoot, args...) }
	alice := func(args ...string) twinStep { return c.step(certAlice, args...) }
	tw.run(seq(
		[]twinStep{
			root("user", "add", "root:"+rootPassword),
			root("user", "grant-role", "root", "root"),
			root("role", "add", "reader"),
			root("role", "grant-permission", "reader", "read", "k"),
			root("user", "add", "alice:alicepw"),
			root("user", "grant-role", "alice", "reader"),
			root("put", "k", "v0"),
			root(asRoot("auth", "enable")...),
		},
		withFormats(append(c.flags(certRoot), "user", "list")...),
		[]twinStep{
			root("put", "k", "v1"),
			root("user", "get", "alice"),
			root("auth", "status"),
			alice("get", "k"),
			alice("get", "k", "-w", "json"),
			alice("put", "k", "v2"),
			alice("put", "k", "v2", "-w", "json"),
			alice("del", "k"),
			alice("user", "list"),
			alice("auth", "disable"),
			// --user takes precedence over the certificate.
			root("--user=alice:alicepw", "put", "k", "v3"),
			root("--user=root:wrong", "put", "k", "v3"),
			c.step("nobody", "get", "k"),
			c.step("nobody", "put", "k", "v4"),
			{Args: []string{"--insecure-skip-tls-verify", "--cert=" + c.file("alice.crt"), "--key=" + c.file("alice.key"), "get", "k"}},
			root("get", "k"),
			root("auth", "disable"),
			alice("put", "k", "v5"),
		},
	)...)
}
