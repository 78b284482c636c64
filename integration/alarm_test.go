package integration

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestNoSpaceAlarmRefusesWritesButNotReadsOrDeletes raises NOSPACE by hand,
// as an operator (or the space quota) would, and checks etcd's rules: puts
// and txns that put are refused with "database space exceeded", reads,
// deletes and delete-only txns go on; Status, the alarm list and /health
// report it; disarming restores writes.
func TestNoSpaceAlarmRefusesWritesButNotReadsOrDeletes(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	cli := m.cli()
	put(t, cli, "a", "1")
	put(t, cli, "b", "2")
	st, err := cli.Status(ctx(t), m.endpoint())
	if err != nil {
		t.Fatal(err)
	}
	id := st.Header.MemberId

	mc := pb.NewMaintenanceClient(cli.ActiveConnection())
	resp, err := mc.Alarm(ctx(t), &pb.AlarmRequest{Action: pb.AlarmRequest_ACTIVATE, MemberID: id, Alarm: pb.AlarmType_NOSPACE})
	if err != nil {
		t.Fatalf("activate NOSPACE: %v", err)
	}
	if len(resp.Alarms) != 1 || resp.Alarms[0].MemberID != id || resp.Alarms[0].Alarm != pb.AlarmType_NOSPACE {
		t.Fatalf("activate answered %v", resp.Alarms)
	}
	if resp.Header.GetRevision() != 3 || resp.Header.GetMemberId() != id {
		t.Fatalf("alarm response header %v", resp.Header)
	}

	if _, err := cli.Put(ctx(t), "c", "3"); !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Fatalf("put under NOSPACE: %v, want %v", err, rpctypes.ErrNoSpace)
	}
	if _, err := cli.Txn(ctx(t)).Then(clientv3.OpPut("c", "3")).Commit(); !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Fatalf("txn with a put under NOSPACE: %v", err)
	}
	if r, err := cli.Get(ctx(t), "a"); err != nil || len(r.Kvs) != 1 {
		t.Fatalf("get under NOSPACE: %v %v", r, err)
	}
	if r, err := cli.Txn(ctx(t)).Then(clientv3.OpDelete("b")).Commit(); err != nil || r.Header.Revision != 4 {
		t.Fatalf("delete-only txn under NOSPACE: %v %v", r, err)
	}
	if r, err := cli.Delete(ctx(t), "a"); err != nil || r.Deleted != 1 {
		t.Fatalf("delete under NOSPACE: %v %v", r, err)
	}

	st, err = cli.Status(ctx(t), m.endpoint())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Errors) != 1 || !strings.Contains(st.Errors[0], "NOSPACE") {
		t.Fatalf("status errors %q", st.Errors)
	}
	list, err := cli.AlarmList(ctx(t))
	if err != nil || len(list.Alarms) != 1 || list.Alarms[0].Alarm != pb.AlarmType_NOSPACE {
		t.Fatalf("alarm list: %v %v", list, err)
	}
	if code, _, body := httpDo(t, m, http.MethodGet, "/health"); code != http.StatusServiceUnavailable || body != "{\"health\":\"false\",\"reason\":\"ALARM NOSPACE\"}\n" {
		t.Fatalf("/health under NOSPACE: %d %q", code, body)
	}
	if code, _, body := httpDo(t, m, http.MethodGet, "/health?exclude=NOSPACE"); code != http.StatusOK {
		t.Fatalf("/health excluding NOSPACE: %d %q", code, body)
	}

	if _, err := cli.AlarmDisarm(ctx(t), &clientv3.AlarmMember{MemberID: id, Alarm: pb.AlarmType_NOSPACE}); err != nil {
		t.Fatalf("disarm: %v", err)
	}
	if r, err := cli.Put(ctx(t), "c", "3"); err != nil || r.Header.Revision != 6 {
		t.Fatalf("put after disarm: %v %v", r, err)
	}
	list, err = cli.AlarmList(ctx(t))
	if err != nil || len(list.Alarms) != 0 {
		t.Fatalf("alarm list after disarm: %v %v", list, err)
	}
}

// TestAlarmsSurviveRestart checks that a raised alarm is part of the
// member's durable state.
func TestAlarmsSurviveRestart(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	raiseAlarm(t, m, pb.AlarmType_CORRUPT)
	m.restart(t)
	cli := m.cli()
	if _, err := cli.Put(ctx(t), "k", "v"); !errors.Is(err, rpctypes.ErrCorrupt) {
		t.Fatalf("put under CORRUPT after restart: %v, want %v", err, rpctypes.ErrCorrupt)
	}
}

// TestHTTPHeadersAsEtcd checks the CORS headers etcd sends with its default
// --cors and the content types of /health and /version.
func TestHTTPHeadersAsEtcd(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	_, hdr, _ := httpDo(t, m, http.MethodGet, "/health")
	if got := hdr.Get("Content-Type"); got != "text/plain; charset=utf-8" {
		t.Errorf("/health content type %q", got)
	}
	for k, want := range map[string]string{
		"Access-Control-Allow-Origin":  "*",
		"Access-Control-Allow-Methods": "POST, GET, OPTIONS, PUT, DELETE",
		"Access-Control-Allow-Headers": "accept, content-type, authorization",
	} {
		if got := hdr.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if code, _, _ := httpDo(t, m, http.MethodOptions, "/health"); code != http.StatusOK {
		t.Errorf("OPTIONS /health: %d", code)
	}
}

// raiseAlarm raises alarm on m for m itself, as the member would;
// disarmAlarm disarms it.
func raiseAlarm(t *testing.T, m *member, alarm pb.AlarmType) {
	t.Helper()
	alarmAction(t, m, pb.AlarmRequest_ACTIVATE, alarm)
}

// disarmAlarm: see raiseAlarm.
func disarmAlarm(t *testing.T, m *member, alarm pb.AlarmType) {
	t.Helper()
	alarmAction(t, m, pb.AlarmRequest_DEACTIVATE, alarm)
}

func alarmAction(t *testing.T, m *member, action pb.AlarmRequest_AlarmAction, alarm pb.AlarmType) {
	t.Helper()
	mc := pb.NewMaintenanceClient(m.cli().ActiveConnection())
	req := &pb.AlarmRequest{Action: action, MemberID: identityOf(t, m).member, Alarm: alarm}
	if _, err := mc.Alarm(ctx(t), req); err != nil {
		t.Fatalf("%v %v: %v", action, alarm, err)
	}
}
