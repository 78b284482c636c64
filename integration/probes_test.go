package integration

import (
	"io"
	"net/http"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/keeldb/keel/internal/keeltest"
)

// The /livez and /readyz probes, with etcd 3.7's checks, verbose form,
// exclusions and per-check paths (compat/probes_test.go compares the same
// requests with real etcd byte for byte).

type probeCase struct {
	path string
	code int
	body string
}

func checkProbes(t *testing.T, m *member, cases []probeCase) {
	t.Helper()
	for _, tt := range cases {
		code, hdr, body := httpDo(t, m, http.MethodGet, tt.path)
		if code != tt.code || body != tt.body {
			t.Errorf("GET %s: got %d %q, want %d %q", tt.path, code, body, tt.code, tt.body)
		}
		if ct := hdr.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
			t.Errorf("GET %s: Content-Type %q", tt.path, ct)
		}
		if hdr.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no X-Content-Type-Options: nosniff", tt.path)
		}
	}
}

func TestLivezReadyzOnAHealthyMember(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	checkProbes(t, m, []probeCase{
		{"/livez", 200, "ok\n"},
		{"/livez?verbose", 200, "[+]serializable_read ok\nok\n"},
		{"/livez/serializable_read", 200, "ok\n"},
		{"/livez/serializable_read?verbose=1", 200, "[+]serializable_read ok\nok\n"},
		{"/livez?exclude=serializable_read&verbose", 200, "ok\n"},
		// Excluding an unknown check is not an error.
		{"/livez?exclude=no_such_check&verbose", 200, "[+]serializable_read ok\nok\n"},
		{"/readyz", 200, "ok\n"},
		{"/readyz?verbose", 200, "[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\n[+]non_learner ok\nok\n"},
		{"/readyz?verbose&exclude=linearizable_read&exclude=non_learner", 200, "[+]data_corruption ok\n[+]serializable_read ok\nok\n"},
		{"/readyz/data_corruption?verbose", 200, "[+]data_corruption ok\nok\n"},
		{"/readyz/linearizable_read", 200, "ok\n"},
		{"/readyz/non_learner?verbose", 200, "[+]non_learner ok\nok\n"},
		// A per-check path ignores exclude.
		{"/readyz/non_learner?exclude=non_learner&verbose", 200, "[+]non_learner ok\nok\n"},
	})
	for _, p := range []string{"/livez", "/readyz", "/readyz/non_learner"} {
		code, hdr, body := httpDo(t, m, http.MethodPost, p)
		if code != http.StatusMethodNotAllowed || body != "Method Not Allowed\n" || hdr.Get("Allow") != "GET" {
			t.Errorf("POST %s: %d %q Allow %q", p, code, body, hdr.Get("Allow"))
		}
	}
	if code, _, _ := httpDo(t, m, http.MethodGet, "/readyz/no_such_check"); code != http.StatusNotFound {
		t.Errorf("GET /readyz/no_such_check: %d, want 404", code)
	}
}

// TestReadyzFailsOnCorruptAlarm: a CORRUPT alarm makes the member unready
// (data_corruption) but leaves it live; /health reports the alarm unless
// excluded. NOSPACE only fails /health.
func TestProbesUnderAlarms(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	raiseAlarm(t, m, pb.AlarmType_NOSPACE)
	checkProbes(t, m, []probeCase{
		{"/readyz?verbose", 200, "[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\n[+]non_learner ok\nok\n"},
		{"/health", 503, "{\"health\":\"false\",\"reason\":\"ALARM NOSPACE\"}\n"},
	})
	code, _, body := httpDo(t, m, http.MethodGet, "/health?exclude=NOSPACE")
	if code != 200 || body != `{"health":"true","reason":""}` {
		t.Errorf("/health?exclude=NOSPACE: %d %q", code, body)
	}
	raiseAlarm(t, m, pb.AlarmType_CORRUPT)
	corrupt := "[-]data_corruption failed: alarm activated: CORRUPT\n[+]serializable_read ok\n[+]linearizable_read ok\n[+]non_learner ok\n\n"
	checkProbes(t, m, []probeCase{
		{"/livez?verbose", 200, "[+]serializable_read ok\nok\n"},
		{"/readyz", 503, corrupt},
		{"/readyz?verbose", 503, corrupt},
		{"/readyz/data_corruption", 503, "[-]data_corruption failed: alarm activated: CORRUPT\n\n"},
		{"/readyz?exclude=data_corruption", 200, "ok\n"},
		// The first alarm listed wins, as in etcd.
		{"/health", 503, "{\"health\":\"false\",\"reason\":\"ALARM NOSPACE\"}\n"},
		{"/health?exclude=NOSPACE", 503, "{\"health\":\"false\",\"reason\":\"ALARM CORRUPT\"}\n"},
	})
}

// TestReadyzWithoutQuorum: a member that lost its quorum stays live (its
// local reads work) but is not ready (linearizable reads fail).
func TestReadyzWithoutQuorum(t *testing.T) {
	t.Parallel()
	c := keeltest.StartCluster(t, 3)
	c.Members[1].Stop()
	c.Members[2].Stop()
	m := c.Members[0]
	get := func(path string) (int, string) {
		resp, err := http.Get(m.Endpoint + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/livez?verbose"); code != 200 || body != "[+]serializable_read ok\nok\n" {
		t.Errorf("/livez?verbose: %d %q", code, body)
	}
	code, body := get("/readyz/linearizable_read")
	// etcd's words: "request timed out", or "leader changed" when the
	// member was the leader and stepped down.
	if code != 503 || (body != "[-]linearizable_read failed: etcdserver: request timed out\n\n" &&
		body != "[-]linearizable_read failed: etcdserver: leader changed\n\n") {
		t.Errorf("/readyz/linearizable_read without quorum: %d %q", code, body)
	}
	if code, body := get("/readyz?exclude=linearizable_read"); code != 200 || body != "ok\n" {
		t.Errorf("/readyz?exclude=linearizable_read: %d %q", code, body)
	}
}

// TestReadyzOnALearner: a learner is live but not ready (non_learner), as
// in etcd, until it is promoted.
func TestReadyzOnALearner(t *testing.T) {
	t.Parallel()
	c := keeltest.StartCluster(t, 1)
	peer, err := keeltest.NewPeerURL()
	if err != nil {
		t.Fatal(err)
	}
	cli := c.Members[0].Client
	add, err := cli.MemberAddAsLearner(ctx(t), []string{peer})
	if err != nil {
		t.Fatal(err)
	}
	learner := c.Join(t, "m2", peer)
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(learner.Endpoint + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/livez"); code != 200 || body != "ok\n" {
		t.Errorf("/livez on the learner: %d %q", code, body)
	}
	if code, body := get("/readyz/non_learner"); code != 503 || body != "[-]non_learner failed: not supported for learner\n\n" {
		t.Errorf("/readyz/non_learner on the learner: %d %q", code, body)
	}
	if code, body := get("/readyz?exclude=non_learner&exclude=linearizable_read&verbose"); code != 200 ||
		body != "[+]data_corruption ok\n[+]serializable_read ok\nok\n" {
		t.Errorf("/readyz without non_learner on the learner: %d %q", code, body)
	}
	// Promoted (once it has caught up), it is ready.
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := cli.MemberPromote(ctx(t), add.Member.ID)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("promote: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // retry interval while the learner catches up
	}
	deadline = time.Now().Add(20 * time.Second)
	for {
		code, body := get("/readyz/non_learner")
		if code == 200 && body == "ok\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz/non_learner after promotion: %d %q", code, body)
		}
		time.Sleep(20 * time.Millisecond) // poll interval until the promotion is applied
	}
}
