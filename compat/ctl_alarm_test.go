package compat

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Golden tests of the alarm commands with a NOSPACE alarm the space quota
// raised itself (ctl_cluster_test.go raises its alarms through the API).

// tinyQuota is the --quota-backend-bytes of the twins: above what a fresh
// member holds (etcd's bbolt file starts at some tens of KiB) and below
// tooBig, so the first put of tooBig bytes is refused on both servers,
// whatever each counts against its quota, and raises NOSPACE before any
// revision changes.
const (
	tinyQuota = 256 << 10
	tooBig    = 300 << 10
)

func startQuotaTwinKeel(t *testing.T, name string) string {
	t.Helper()
	cfg := ctlTwinKeelConfig(t)
	cfg.QuotaBackendBytes = tinyQuota
	return startKeelConfig(t, name, cfg).endpoint
}

func startQuotaTwinEtcd(t *testing.T, name string) string {
	t.Helper()
	adv := ctlTwinPeerURL(t)
	return startEtcdWith(t, name, func(cfg *embed.Config) {
		cfg.AdvertisePeerUrls = []url.URL{adv}
		cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
		cfg.QuotaBackendBytes = tinyQuota
	}).endpoint
}

// fillQuota is the put that does not fit in tinyQuota: its value comes on
// standard input (etcdctl reads it there when the command line has none).
func fillQuota(key string) twinStep {
	return twinStep{Args: []string{"put", key}, Stdin: strings.Repeat("x", tooBig)}
}

func TestCtlAlarmNoSpaceFromTheQuota(t *testing.T) {
	tw := newCtlTwinsWith(t, startQuotaTwinKeel, startQuotaTwinEtcd)
	tw.run(seq(
		[]twinStep{
			line("put", "small", "fits"),
			line("alarm", "list"),
			// Refused: "etcdserver: mvcc: database space exceeded", and
			// NOSPACE raised for the member.
			fillQuota("big"),
		},
		alarmMasked(withFormats("alarm", "list")),
		[]twinStep{
			line("alarm", "list", "--hex", "-w", "fields"),
			// Under NOSPACE every write is refused, a small one too, and a
			// txn with a put; reads and deletes are served.
			line("put", "small2", "v"),
			{Args: []string{"txn"}, Stdin: "\n\nput t v\n\n"},
			line("get", "small"),
			line("get", "", "--prefix", "-w", "json"),
			line("del", "small"),
			line("lease", "grant", "60"),
		},
	)...)
	// The case is not vacuous: both twins hold a NOSPACE alarm and refuse
	// a write with etcd's error.
	for _, ep := range []string{tw.etcdctlEP, tw.keelctlEP} {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: etcdctlTimeout, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), etcdctlTimeout)
		al, err := c.AlarmList(ctx)
		if err == nil && (len(al.Alarms) != 1 || al.Alarms[0].Alarm != pb.AlarmType_NOSPACE) {
			err = fmt.Errorf("alarms %v, want one NOSPACE", al.Alarms)
		}
		if err == nil {
			if _, perr := c.Put(ctx, "x", "y"); perr == nil || perr.Error() != "etcdserver: mvcc: database space exceeded" {
				err = fmt.Errorf("put under NOSPACE: %v", perr)
			}
		}
		cancel()
		c.Close()
		if err != nil {
			t.Fatalf("%s: %v", ep, err)
		}
	}
	// Disarm in every format, raising NOSPACE again before each.
	for _, f := range formats {
		tw.run(seq(
			[]twinStep{fillQuota("big")},
			alarmMasked([]twinStep{line("alarm", "disarm", "-w", f)}),
			[]twinStep{
				line("alarm", "list", "-w", f),
				line("alarm", "disarm", "-w", f), // nothing left to disarm
				line("put", "small", "again"),
			},
		)...)
	}
	tw.run(line("get", "", "--prefix"))
}
