package server

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/keeldb/keel/config"
	"github.com/keeldb/keel/discovery"
	"github.com/keeldb/keel/internal/dnstest"
	"github.com/keeldb/keel/storage"
)

// srvConfig is testConfig bootstrapping from the SRV records of keel.test.
func srvConfig(t *testing.T) *config.Config {
	c := testConfig(t, filepath.Join(t.TempDir(), "m1.keel"))
	c.InitialCluster = ""
	c.DiscoverySRV = "keel.test"
	return c
}

func TestSRVBootstrapOfOneMember(t *testing.T) {
	c := srvConfig(t)
	port, _ := strconv.Atoi(c.InitialAdvertisePeerURLs[0].Port())
	dns := dnstest.Start(t)
	dns.AddA("m1.keel.test.", "127.0.0.1")
	dns.AddSRV("_etcd-server._tcp.keel.test.", "m1.keel.test.", uint16(port))
	// The member advertises the name the records use.
	u, _ := url.Parse("http://m1.keel.test:" + strconv.Itoa(port))
	c.InitialAdvertisePeerURLs = []url.URL{*u}

	s, err := Start(c, zap.NewNop(), WithResolver(discovery.NewResolver(dns.Addr)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	ms, err := s.member.Members(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || strings.Join(ms[0].PeerURLs, ",") != u.String() || ms[0].Name != "m1" || ms[0].ID != s.MemberID() {
		t.Fatalf("members %+v, want m1 alone with peer URL %s", ms, u)
	}
	if c.InitialCluster != "" {
		t.Errorf("the caller's configuration was changed: %q", c.InitialCluster)
	}
}

func TestSRVBootstrapRefusesAMemberNotInTheRecords(t *testing.T) {
	c := srvConfig(t)
	dns := dnstest.Start(t)
	dns.AddA("other.keel.test.", "127.0.0.1")
	dns.AddSRV("_etcd-server._tcp.keel.test.", "other.keel.test.", 1)
	_, err := Start(c, zap.NewNop(), WithResolver(discovery.NewResolver(dns.Addr)))
	want := `error setting up initial cluster: cannot find local etcd member "m1" in SRV records`
	if err == nil || err.Error() != want {
		t.Fatalf("error %v, want %q", err, want)
	}
	// Nothing was written.
	if _, err := os.Stat(storage.DBDir(c.DataDir)); err == nil {
		t.Error("the data dir was initialised")
	}

	// No records at all: etcd's lookup errors.
	dns2 := dnstest.Start(t)
	_, err = Start(c, zap.NewNop(), WithResolver(discovery.NewResolver(dns2.Addr)))
	if err == nil || !strings.HasPrefix(err.Error(), "error setting up initial cluster: error querying DNS SRV records for _etcd-server-ssl ") {
		t.Fatalf("no records: %v", err)
	}
}
