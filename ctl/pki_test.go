package ctl

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keeldb/keel/pki"
)

// runCtl runs keelctl in-process and returns its exit code and outputs.
func runCtl(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(args, Stdio{In: strings.NewReader(""), Out: &out, Err: &errOut})
	return code, out.String(), errOut.String()
}

func loadCert(t *testing.T, name string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pki.ParseCertificates(data)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

func TestPKICreateWritesTheLayoutTheFlagsExpect(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	code, out, errOut := runCtl(t, "pki", "create", "--dir", dir, "--members", "m1=127.0.0.1,m2=m2.example,m2=10.0.0.2", "--clients", "root,alice")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	ca := loadCert(t, filepath.Join(dir, "ca.crt"))
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	verify := func(file, host string, eku ...x509.ExtKeyUsage) {
		t.Helper()
		c := loadCert(t, filepath.Join(dir, file))
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, DNSName: host, KeyUsages: eku}); err != nil {
			t.Errorf("%s for %q %v: %v", file, host, eku, err)
		}
		if st, err := os.Stat(filepath.Join(dir, strings.TrimSuffix(file, ".crt")+".key")); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("key of %s: %v %v", file, st.Mode(), err)
		}
	}
	server, client := x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth
	verify("m1/server.crt", "127.0.0.1", server)
	verify("m1/server.crt", "localhost", server)
	verify("m1/peer.crt", "127.0.0.1", server)
	verify("m1/peer.crt", "127.0.0.1", client)
	verify("m2/server.crt", "m2.example", server)
	verify("m2/server.crt", "10.0.0.2", server)
	verify("m2/server.crt", "::1", server)
	verify("m2/peer.crt", "10.0.0.2", server)
	verify("clients/root.crt", "", client)
	verify("clients/alice.crt", "", client)
	if c := loadCert(t, filepath.Join(dir, "m2/peer.crt")); slices.Contains(c.DNSNames, "localhost") {
		t.Errorf("peer certificate covers localhost: %v", c.DNSNames)
	}
	if c := loadCert(t, filepath.Join(dir, "clients/alice.crt")); c.Subject.CommonName != "alice" || pki.HasExtKeyUsage(c, server) {
		t.Errorf("client certificate: CN %q, usages %s", c.Subject.CommonName, pki.ExtKeyUsages(c))
	}
	for _, w := range []string{
		"Created CA " + filepath.Join(dir, "ca.crt"),
		"--cert-file=" + filepath.Join(dir, "m1", "server.crt"),
		"--peer-key-file=" + filepath.Join(dir, "m2", "peer.key"),
		"--trusted-ca-file=" + filepath.Join(dir, "ca.crt") + " --client-cert-auth",
		"--peer-client-cert-auth",
		"keelctl --endpoints=https://127.0.0.1:2379,https://m2.example:2379 --cacert=" + filepath.Join(dir, "ca.crt") + " --cert=" + filepath.Join(dir, "clients", "root.crt"),
	} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}

	// Again: refused, nothing changed.
	before, _ := os.ReadFile(filepath.Join(dir, "m1", "server.crt"))
	code, _, errOut = runCtl(t, "pki", "create", "--dir", dir, "--members", "m1=127.0.0.1")
	if code != ExitError || !strings.Contains(errOut, "exist already") || !strings.Contains(errOut, "--force") {
		t.Errorf("second create: exit %d, %s", code, errOut)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "m1", "server.crt")); !bytes.Equal(before, after) {
		t.Error("a refused create changed a file")
	}

	// A new member reuses the CA.
	code, out, errOut = runCtl(t, "pki", "create", "--dir", dir, "--members", "m3=127.0.0.3", "--clients", "")
	if code != 0 || !strings.Contains(out, "Reused CA") {
		t.Fatalf("add m3: exit %d: %s%s", code, out, errOut)
	}
	verify("m3/peer.crt", "127.0.0.3", client)

	// --force replaces member files and keeps the CA.
	code, _, errOut = runCtl(t, "pki", "create", "--dir", dir, "--members", "m1=127.0.0.1", "--force", "--key-type", "rsa")
	if code != 0 {
		t.Fatalf("force: exit %d: %s", code, errOut)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "m1", "server.crt")); bytes.Equal(before, after) {
		t.Error("--force did not replace the file")
	}
	verify("m1/server.crt", "127.0.0.1", server)
	if !loadCert(t, filepath.Join(dir, "ca.crt")).Equal(ca) {
		t.Error("the CA changed")
	}
}

func TestPKICreateBadArguments(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{}, "--members is required"},
		{[]string{"--members", "m1"}, "want name=host"},
		{[]string{"--members", "../x=1.2.3.4"}, "bad member name"},
		{[]string{"--members", "m1=1.2.3.4", "--key-type", "dsa"}, "unknown key type"},
		{[]string{"--members", "m1=1.2.3.4", "--validity", "-1h"}, "must be positive"},
	} {
		code, _, errOut := runCtl(t, append([]string{"pki", "create", "--dir", dir}, tc.args...)...)
		if code != ExitBadArgs || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, %q; want %q", tc.args, code, errOut, tc.want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("bad arguments wrote files: %v", entries)
	}
	// Half a CA is an error, not a new CA.
	os.WriteFile(filepath.Join(dir, "ca.crt"), []byte("x"), 0o644)
	code, _, errOut := runCtl(t, "pki", "create", "--dir", dir, "--members", "m1=1.2.3.4")
	if code != ExitError || !strings.Contains(errOut, "must both exist") {
		t.Errorf("half a CA: exit %d, %q", code, errOut)
	}
}

func TestPKIInspect(t *testing.T) {
	dir := t.TempDir()
	if code, _, errOut := runCtl(t, "pki", "create", "--dir", dir, "--members", "m1=127.0.0.1"); code != 0 {
		t.Fatal(errOut)
	}
	code, out, errOut := runCtl(t, "pki", "inspect", filepath.Join(dir, "m1", "peer.crt"), filepath.Join(dir, "ca.crt"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, w := range []string{"== " + filepath.Join(dir, "m1", "peer.crt") + " ==", "Subject:          CN=m1", "serverAuth, clientAuth", "--peer-cert-file with --peer-key-file", "== " + filepath.Join(dir, "ca.crt") + " ==", "CA:               yes"} {
		if !strings.Contains(out, w) {
			t.Errorf("lacks %q:\n%s", w, out)
		}
	}
	code, _, errOut = runCtl(t, "pki", "inspect", filepath.Join(dir, "nothing"))
	if code != ExitError || !strings.Contains(errOut, "no such file") {
		t.Errorf("missing file: exit %d, %q", code, errOut)
	}
}
