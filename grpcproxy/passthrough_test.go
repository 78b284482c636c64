package grpcproxy_test

import (
	"io"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keeldb/keel/grpcproxy"
	"github.com/keeldb/keel/internal/keeltest"
)

// TestMaintenanceAndClusterPassThrough: maintenance calls reach the member
// and answer as it does; MemberList answers the member list, or the proxy
// when it advertises a client URL.
func TestMaintenanceAndClusterPassThrough(t *testing.T) {
	m := keeltest.Start(t)
	tp := startProxy(t, m)
	ctx := testCtx(t)
	cli := tp.client(t)
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	st, err := cli.Status(ctx, tp.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	want, err := m.Client.Status(ctx, m.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	if st.Header.MemberId != want.Header.MemberId || st.Leader != want.Leader || st.Version != want.Version {
		t.Fatalf("status through the proxy %v, from the member %v", st, want)
	}
	h1, err := cli.HashKV(ctx, tp.Endpoint, 0)
	if err != nil {
		t.Fatal(err)
	}
	h2, err := m.Client.HashKV(ctx, m.Endpoint, 0)
	if err != nil || h1.Hash != h2.Hash {
		t.Fatalf("hashkv through the proxy %v, from the member %v (%v)", h1, h2, err)
	}
	al, err := cli.AlarmList(ctx)
	if err != nil || len(al.Alarms) != 0 {
		t.Fatalf("alarm list: %v %v", al, err)
	}
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, rc)
	rc.Close()
	if err != nil || n == 0 {
		t.Fatalf("snapshot through the proxy: %d bytes, %v", n, err)
	}
	ml, err := cli.MemberList(ctx)
	if err != nil || len(ml.Members) != 1 || ml.Members[0].Name != "default" {
		t.Fatalf("member list without an advertised URL: %v %v", ml, err)
	}
	adv := startProxy(t, m, func(c *grpcproxy.Config) { c.AdvertiseClientURL = "127.0.0.1:23790" })
	ml, err = adv.client(t).MemberList(ctx, clientv3.WithSerializable())
	if err != nil || len(ml.Members) != 1 || ml.Members[0].ClientURLs[0] != "127.0.0.1:23790" {
		t.Fatalf("member list with an advertised URL: %v %v", ml, err)
	}
}
