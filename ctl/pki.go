package ctl

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keeldb/keel/pki"
)

// pkiCommands is keel's own certificate tooling, which etcdctl lacks.
func pkiCommands(g *globals) []*cobra.Command {
	cmd := &cobra.Command{
		Use:     "pki <subcommand>",
		Short:   "Creates and explains the TLS certificates of a cluster (keel's own)",
		GroupID: groupUtility,
	}
	cmd.AddCommand(pkiCreateCommand(g), pkiInspectCommand(g))
	return []*cobra.Command{cmd}
}

// pkiCreateOptions are pki create's flags.
type pkiCreateOptions struct {
	members      []string
	clients      []string
	dir          string
	keyType      string
	caName       string
	validity     time.Duration
	caValidity   time.Duration
	loopbackSANs bool
	force        bool
}

func pkiCreateCommand(g *globals) *cobra.Command {
	var o pkiCreateOptions
	cmd := &cobra.Command{
		Use:   "create --members name=host[,name=host...] [options]",
		Short: "Creates a CA and the server, peer and client certificates of the members",
		Long: `Creates a CA, or reuses the one in --dir, and signs with it for every member a
server certificate (the client port: serverAuth) and a peer certificate (the
peer port: serverAuth and clientAuth), and for every --clients name a client
certificate (clientAuth) whose CN is that user name, which keel takes as the
identity under --client-cert-auth. A member's host (a DNS name or an IP) is
the subject alternative name of both its certificates; repeat name=host to
give a member more hosts. Server certificates also cover localhost, 127.0.0.1
and ::1 unless --loopback-sans=false, so that health checks and keelctl on the
member's own machine verify it; peer certificates do not, as peers dial each
other by their advertised URLs.

Files (what the printed flags point at):
  <dir>/ca.crt, ca.key                the CA (never overwritten)
  <dir>/<member>/server.crt, .key     --cert-file, --key-file
  <dir>/<member>/peer.crt, .key       --peer-cert-file, --peer-key-file
  <dir>/clients/<user>.crt, .key      keelctl --cert, --key
Existing files are not overwritten without --force.`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.members, "members", nil, "the members as name=host, comma separated; host is a DNS name or an IP")
	f.StringSliceVar(&o.clients, "clients", []string{"root"}, "user names to make client certificates for, comma separated")
	f.StringVar(&o.dir, "dir", "pki", "directory to write the files in")
	f.StringVar(&o.keyType, "key-type", "ecdsa", "key type: ecdsa (P-256), rsa (2048 bits) or rsa4096")
	f.StringVar(&o.caName, "ca-name", "keel-ca", "common name of a new CA")
	f.DurationVar(&o.validity, "validity", pki.DefaultValidity, "how long the member and client certificates are valid")
	f.DurationVar(&o.caValidity, "ca-validity", pki.DefaultCAValidity, "how long a new CA is valid")
	f.BoolVar(&o.loopbackSANs, "loopback-sans", true, "also cover localhost, 127.0.0.1 and ::1 in server certificates")
	f.BoolVar(&o.force, "force", false, "replace existing member and client files (the CA is always reused)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		plan, err := o.plan()
		if err != nil {
			return withCode(ExitBadArgs, err)
		}
		return withCode(ExitError, plan.run(g.stdio.Out))
	}
	return cmd
}

// memberHosts are the members in the order given, each with its hosts.
type memberHosts struct {
	name  string
	hosts []string
}

// parseMembers reads name=host entries; a repeated name adds a host.
func parseMembers(specs []string) ([]memberHosts, error) {
	var members []memberHosts
	index := map[string]int{}
	for _, s := range specs {
		name, host, ok := strings.Cut(strings.TrimSpace(s), "=")
		name, host = strings.TrimSpace(name), strings.TrimSpace(host)
		if !ok || name == "" || host == "" {
			return nil, fmt.Errorf("bad member %q: want name=host, e.g. m1=10.0.0.1", s)
		}
		if err := checkFileName(name); err != nil {
			return nil, fmt.Errorf("bad member name %q: %w", name, err)
		}
		i, seen := index[name]
		if !seen {
			i = len(members)
			index[name] = i
			members = append(members, memberHosts{name: name})
		}
		members[i].hosts = append(members[i].hosts, host)
	}
	return members, nil
}

// checkFileName refuses names that cannot be one path element.
func checkFileName(name string) error {
	if name == "." || name == ".." || name == "clients" || strings.ContainsAny(name, `/\`) {
		return errors.New("it must be usable as a directory name (no slashes, not . .. or clients)")
	}
	return nil
}

// pkiFile is one certificate and key to write.
type pkiFile struct {
	cert, key string
	req       pki.Request
	what      string // e.g. "server certificate of m1"
}

// pkiPlan is what pki create will do, checked before anything is written.
type pkiPlan struct {
	o       *pkiCreateOptions
	keyType pki.KeyType
	members []memberHosts
	files   []pkiFile
}

func (o *pkiCreateOptions) plan() (*pkiPlan, error) {
	if len(o.members) == 0 {
		return nil, errors.New("--members is required, e.g. --members m1=10.0.0.1,m2=10.0.0.2")
	}
	members, err := parseMembers(o.members)
	if err != nil {
		return nil, err
	}
	kt, err := pki.ParseKeyType(o.keyType)
	if err != nil {
		return nil, err
	}
	if o.validity <= 0 || o.caValidity <= 0 {
		return nil, errors.New("--validity and --ca-validity must be positive")
	}
	p := &pkiPlan{o: o, keyType: kt, members: members}
	for _, m := range members {
		serverHosts := m.hosts
		if o.loopbackSANs {
			serverHosts = append(append([]string{}, m.hosts...), "localhost", "127.0.0.1", "::1")
		}
		dir := filepath.Join(o.dir, m.name)
		p.files = append(p.files,
			pkiFile{filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"),
				pki.Request{CommonName: m.name, Hosts: serverHosts, Usage: pki.Server}, "server certificate of " + m.name},
			pkiFile{filepath.Join(dir, "peer.crt"), filepath.Join(dir, "peer.key"),
				pki.Request{CommonName: m.name, Hosts: m.hosts, Usage: pki.Peer}, "peer certificate of " + m.name})
	}
	for _, c := range o.clients {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		if err := checkFileName(c); err != nil {
			return nil, fmt.Errorf("bad client name %q: %w", c, err)
		}
		dir := filepath.Join(o.dir, "clients")
		p.files = append(p.files, pkiFile{filepath.Join(dir, c+".crt"), filepath.Join(dir, c+".key"),
			pki.Request{CommonName: c, Usage: pki.Client}, "client certificate of user " + c})
	}
	for i := range p.files {
		p.files[i].req.Validity = o.validity
		p.files[i].req.KeyType = kt
	}
	return p, nil
}

func (p *pkiPlan) caFiles() (cert, key string) {
	return filepath.Join(p.o.dir, "ca.crt"), filepath.Join(p.o.dir, "ca.key")
}

// existing lists the member and client files that exist already.
func (p *pkiPlan) existing() []string {
	var found []string
	for _, f := range p.files {
		for _, name := range []string{f.cert, f.key} {
			if _, err := os.Lstat(name); err == nil {
				found = append(found, name)
			}
		}
	}
	return found
}

// ca loads the CA of the directory, or makes and writes a new one when
// neither of its files exists.
func (p *pkiPlan) ca(out io.Writer) (*pki.CA, error) {
	certFile, keyFile := p.caFiles()
	_, certErr := os.Stat(certFile)
	_, keyErr := os.Stat(keyFile)
	switch {
	case certErr == nil && keyErr == nil:
		ca, err := pki.LoadCA(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("reuse the CA in %s: %w", p.o.dir, err)
		}
		fmt.Fprintf(out, "Reused CA %s (%s, expires %s)\n", certFile, ca.Cert.Subject, ca.Cert.NotAfter.UTC().Format(time.RFC3339))
		return ca, nil
	case certErr == nil || keyErr == nil:
		return nil, fmt.Errorf("%s and %s must both exist (to reuse the CA) or both be absent (to make one)", certFile, keyFile)
	}
	ca, err := pki.NewCA(p.o.caName, p.o.caValidity, p.keyType)
	if err != nil {
		return nil, err
	}
	if err := ca.Write(certFile, keyFile); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "Created CA %s and %s (%s, expires %s)\n", certFile, keyFile, ca.Cert.Subject, ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	return ca, nil
}

// run checks for existing files, then writes the CA and every
// certificate, and prints the flags that use them.
func (p *pkiPlan) run(out io.Writer) error {
	if found := p.existing(); len(found) > 0 && !p.o.force {
		return fmt.Errorf("these files exist already: %s; pass --force to replace them (the CA is kept), or name only new members and clients", strings.Join(found, ", "))
	}
	ca, err := p.ca(out)
	if err != nil {
		return err
	}
	for _, f := range p.files {
		pair, err := ca.Issue(f.req)
		if err != nil {
			return fmt.Errorf("%s: %w", f.what, err)
		}
		if err := pair.Write(f.cert, f.key); err != nil {
			return err
		}
		fmt.Fprintf(out, "Wrote %s and %s: %s, CN %q, %s, SANs %s\n", f.cert, f.key, f.what, f.req.CommonName,
			pki.ExtKeyUsages(pair.Cert), sanList(f.req.Hosts))
	}
	p.printFlags(out)
	return nil
}

func sanList(hosts []string) string {
	dns, ips := pki.SplitHosts(hosts)
	all := append([]string{}, dns...)
	for _, ip := range ips {
		all = append(all, ip.String())
	}
	if len(all) == 0 {
		return "none"
	}
	return strings.Join(all, ", ")
}

// printFlags prints the keel flags of each member and keelctl's.
func (p *pkiPlan) printFlags(out io.Writer) {
	caFile, _ := p.caFiles()
	fmt.Fprintln(out, "\nStart each member with (its URLs must use https:// and one of its hosts):")
	var endpoints []string
	for _, m := range p.members {
		dir := filepath.Join(p.o.dir, m.name)
		fmt.Fprintf(out, "  keel --name %s --cert-file=%s --key-file=%s --trusted-ca-file=%s --client-cert-auth --peer-cert-file=%s --peer-key-file=%s --peer-trusted-ca-file=%s --peer-client-cert-auth\n",
			m.name, filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"), caFile,
			filepath.Join(dir, "peer.crt"), filepath.Join(dir, "peer.key"), caFile)
		endpoints = append(endpoints, "https://"+net.JoinHostPort(m.hosts[0], "2379"))
	}
	clients := append([]string{}, p.o.clients...)
	sort.Strings(clients)
	for _, c := range clients {
		if c = strings.TrimSpace(c); c == "" {
			continue
		}
		dir := filepath.Join(p.o.dir, "clients")
		fmt.Fprintf(out, "\nkeelctl as user %s:\n  keelctl --endpoints=%s --cacert=%s --cert=%s --key=%s\n", c,
			strings.Join(endpoints, ","), caFile, filepath.Join(dir, c+".crt"), filepath.Join(dir, c+".key"))
	}
}

func pkiInspectCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect FILE...",
		Short: "Explains certificates, bundles and revocation lists: usages, SANs, validity, issuer, and what keel can use them for",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			now := time.Now()
			for i, name := range args {
				data, err := os.ReadFile(name)
				if err != nil {
					return withCode(ExitError, err)
				}
				text, err := pki.DescribePEM(data, now)
				if err != nil {
					return withCode(ExitError, fmt.Errorf("%s: %w", name, err))
				}
				if len(args) > 1 {
					if i > 0 {
						fmt.Fprintln(g.stdio.Out)
					}
					fmt.Fprintf(g.stdio.Out, "== %s ==\n", name)
				}
				fmt.Fprint(g.stdio.Out, text)
			}
			return nil
		},
	}
}
