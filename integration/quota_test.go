package integration

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestQuotaFillNoSpaceCompactDisarm fills a member with a 256 KiB quota
// until a put is refused with "database space exceeded", checks that the
// refusal raised the member's NOSPACE alarm and that reads and deletes go on
// while writes and lease grants are refused; then deletes most keys,
// compacts and defragments (on keel the compaction alone frees quota, as
// its quota counts live data; the defragment is the operator's runbook and
// must not lose anything), disarms, and writes again. Every key written
// before and not deleted keeps its value.
func TestQuotaFillNoSpaceCompactDisarm(t *testing.T) {
	t.Parallel()
	const quota = 256 << 10
	m := startMember(t, withQuotaBackendBytes(quota))
	cli := m.cli()
	st, err := cli.Status(ctx(t), m.endpoint())
	if err != nil {
		t.Fatal(err)
	}
	if st.DbSizeQuota != quota {
		t.Fatalf("status reports quota %d, want %d", st.DbSizeQuota, quota)
	}
	id := st.Header.MemberId

	val := strings.Repeat("v", 8<<10)
	written := 0
	for ; written < 200; written++ {
		_, err = cli.Put(ctx(t), fmt.Sprintf("k%03d", written), val)
		if errors.Is(err, rpctypes.ErrNoSpace) {
			break
		}
		if err != nil {
			t.Fatalf("put %d: %v", written, err)
		}
	}
	if written == 200 || written < 10 {
		t.Fatalf("%d puts of 8 KiB before NOSPACE under a 256 KiB quota", written)
	}
	if err.Error() != "etcdserver: mvcc: database space exceeded" {
		t.Fatalf("refusal %q", err)
	}
	list, err := cli.AlarmList(ctx(t))
	if err != nil || len(list.Alarms) != 1 || list.Alarms[0].Alarm != pb.AlarmType_NOSPACE || list.Alarms[0].MemberID != id {
		t.Fatalf("alarm list after the refusal: %v %v", list, err)
	}
	if _, err := cli.Put(ctx(t), "small", "x"); !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Fatalf("small put under NOSPACE: %v", err)
	}
	if _, err := cli.Grant(ctx(t), 60); !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Fatalf("lease grant under NOSPACE: %v", err)
	}
	if r := get(t, cli, "k000"); len(r.Kvs) != 1 || string(r.Kvs[0].Value) != val {
		t.Fatalf("read under NOSPACE: %v", r.Kvs)
	}
	keep := 5
	del, err := cli.Delete(ctx(t), fmt.Sprintf("k%03d", keep), clientv3.WithRange("l"))
	if err != nil || del.Deleted != int64(written-keep) {
		t.Fatalf("delete under NOSPACE: %v %v", del, err)
	}
	if _, err := cli.Compact(ctx(t), del.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("compact: %v", err)
	}
	if _, err := cli.Defragment(ctx(t), m.endpoint()); err != nil {
		t.Fatalf("defragment: %v", err)
	}
	// Still refused: the alarm stays until it is disarmed.
	if _, err := cli.Put(ctx(t), "small", "x"); !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Fatalf("put before disarm: %v", err)
	}
	if _, err := cli.AlarmDisarm(ctx(t), &clientv3.AlarmMember{MemberID: id, Alarm: pb.AlarmType_NOSPACE}); err != nil {
		t.Fatalf("disarm: %v", err)
	}
	if _, err := cli.Put(ctx(t), "small", "x"); err != nil {
		t.Fatalf("put after compaction and disarm: %v", err)
	}
	if _, err := cli.Grant(ctx(t), 60); err != nil {
		t.Fatalf("lease grant after disarm: %v", err)
	}
	if list, err := cli.AlarmList(ctx(t)); err != nil || len(list.Alarms) != 0 {
		t.Fatalf("alarms after disarm and a write: %v %v", list, err)
	}
	r := get(t, cli, "k", clientv3.WithPrefix())
	if len(r.Kvs) != keep {
		t.Fatalf("%d keys left, want %d", len(r.Kvs), keep)
	}
	for i, kv := range r.Kvs {
		if string(kv.Key) != fmt.Sprintf("k%03d", i) || string(kv.Value) != val {
			t.Fatalf("key %d is %q with a %d-byte value", i, kv.Key, len(kv.Value))
		}
	}
}

// TestQuotaNegativeDisables checks that a negative --quota-backend-bytes
// turns the quota off, as in etcd: writes go on beyond any size.
func TestQuotaNegativeDisables(t *testing.T) {
	t.Parallel()
	m := startMember(t, withQuotaBackendBytes(-1))
	cli := m.cli()
	val := strings.Repeat("v", 64<<10)
	for i := range 20 {
		put(t, cli, fmt.Sprintf("k%d", i), val)
	}
	if list, err := cli.AlarmList(ctx(t)); err != nil || len(list.Alarms) != 0 {
		t.Fatalf("alarms: %v %v", list, err)
	}
}
