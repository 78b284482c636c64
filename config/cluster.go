package config

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"sort"
	"strings"
)

// InitialClusterMap parses c.InitialCluster into name -> peer URLs. The
// format is etcd's: comma-separated name=url pairs, a name repeated once per
// URL, empty elements skipped. Each member's URLs are sorted. An empty
// InitialCluster gives an empty map.
func (c *Config) InitialClusterMap() (map[string][]url.URL, error) {
	return parseInitialCluster(c.InitialCluster)
}

func parseInitialCluster(s string) (map[string][]url.URL, error) {
	raw := make(map[string][]string)
	for pair := range strings.SplitSeq(s, ",") {
		if pair == "" {
			continue
		}
		name, u, _ := strings.Cut(pair, "=")
		raw[name] = append(raw[name], u)
	}
	m := make(map[string][]url.URL, len(raw))
	for _, name := range sortedKeys(raw) {
		us, err := ParseURLList(raw[name])
		if err != nil {
			return nil, err
		}
		m[name] = us
	}
	return m, nil
}

// VerifyBootstrap checks --initial-cluster against this member, as etcd does
// before it bootstraps an empty data dir: the member's --name must be in the
// initial cluster, no peer URL may appear twice, and for a new cluster the
// member's URLs there must be exactly --initial-advertise-peer-urls.
//
// The server must call it before bootstrapping a member from an empty data
// dir, and must not call it for a data dir that is already initialised:
// etcd ignores --initial-cluster, --initial-cluster-state and their checks
// once a member has state, and so must keel, or a member whose unit still
// carries its original bootstrap flags could not restart.
//
// URLs are compared after normalising IP addresses, without DNS. etcd also
// resolves host names other than localhost before it gives up, so a cluster
// that names peers by host name in one flag and by IP in the other passes
// etcd's check but not this one.
func (c *Config) VerifyBootstrap() error {
	m, err := c.InitialClusterMap()
	if err != nil {
		return fmt.Errorf("error setting up initial cluster: %w", err)
	}
	if _, ok := m[c.Name]; !ok {
		return fmt.Errorf("couldn't find local name %q in the initial cluster configuration", c.Name)
	}
	if c.InitialClusterState == "new" {
		if err := c.advertiseMatchesCluster(m); err != nil {
			return err
		}
	}
	if HasDuplicateURL(m) {
		return fmt.Errorf("initial cluster %s has duplicate url", clusterString(m))
	}
	return nil
}

// advertiseMatchesCluster reports, in etcd's words, how this member's entry
// in the initial cluster differs from its advertised peer URLs.
func (c *Config) advertiseMatchesCluster(m map[string][]url.URL) error {
	inCluster := m[c.Name]
	advertised := slices.Clone(c.InitialAdvertisePeerURLs)
	sortURLs(advertised)
	apStrs := urlStrings(advertised)
	cmpErr := urlsEqual(advertised, inCluster)
	if cmpErr == nil {
		return nil
	}

	var missing []string
	for _, u := range urlStrings(inCluster) {
		if !slices.Contains(apStrs, u) {
			missing = append(missing, c.Name+"="+u)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("--initial-cluster has %s but missing from --initial-advertise-peer-urls=%s (%w)",
			strings.Join(missing, ","), strings.Join(apStrs, ","), cmpErr)
	}
	clusterStrs := urlStrings(inCluster)
	for _, u := range apStrs {
		if !slices.Contains(clusterStrs, u) {
			missing = append(missing, u)
		}
	}
	self := clusterString(map[string][]url.URL{c.Name: advertised})
	if len(missing) > 0 {
		return fmt.Errorf("--initial-advertise-peer-urls has %s but missing from --initial-cluster=%s",
			strings.Join(missing, ","), self)
	}
	return fmt.Errorf("failed to resolve %s to match --initial-cluster=%s (%w)", strings.Join(apStrs, ","), self, cmpErr)
}

// urlsEqual compares two sorted URL lists element by element on scheme,
// normalised host and path. The error says where they differ, in etcd's
// words.
func urlsEqual(a, b []url.URL) error {
	if len(a) != len(b) {
		return fmt.Errorf("len(%q) != len(%q)", urlStrings(a), urlStrings(b))
	}
	for i := range a {
		if a[i].Scheme != b[i].Scheme || a[i].Path != b[i].Path || normalizeHost(a[i].Host) != normalizeHost(b[i].Host) {
			return fmt.Errorf("resolved urls: %q != %q", a[i].String(), b[i].String())
		}
	}
	return nil
}

// normalizeHost writes an IP address host in its canonical form, so that
// "[::1]:2380" and "[0:0::1]:2380" compare equal. Names are left alone.
func normalizeHost(hostport string) string {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = hostport, ""
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	if ip == nil {
		return hostport
	}
	h := ip.String()
	if ip.To4() == nil {
		h = "[" + h + "]"
	}
	if port != "" {
		h += ":" + port
	}
	return h
}

// HasDuplicateURL reports whether two members of the initial cluster m
// share a peer URL.
func HasDuplicateURL(m map[string][]url.URL) bool {
	seen := make(map[string]bool)
	for _, us := range m {
		for _, u := range us {
			if seen[u.String()] {
				return true
			}
			seen[u.String()] = true
		}
	}
	return false
}

// clusterString is the cluster as sorted name=url pairs, as etcd prints it.
func clusterString(m map[string][]url.URL) string {
	var pairs []string
	for name, us := range m {
		for _, u := range us {
			pairs = append(pairs, name+"="+u.String())
		}
	}
	sort.Strings(pairs)
	return strings.Join(pairs, ",")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
