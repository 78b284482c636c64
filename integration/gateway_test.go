package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/keeldb/keel/config"
	"github.com/keeldb/keel/internal/keeltest"
	"github.com/keeldb/keel/pki"
)

// The JSON gateway's answers are compared with etcd's in compat/
// (TestGateway*); these tests cover what only keel's side shows: the
// flag that turns it off, the curl binary, websockets, HTTP/2 over TLS
// and the gateway's part in stopping the server.

// gwPost posts body to path on the member's client port and returns the
// status and body.
func gwPost(t *testing.T, hc *http.Client, m *keeltest.Member, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx(t), http.MethodPost, m.Endpoint+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: read body: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// kvsOf returns the values of a range answer's kvs, decoded from base64
// by encoding/json.
func kvsOf(t *testing.T, body string) []string {
	t.Helper()
	var r struct {
		Kvs []struct {
			Value []byte `json:"value"`
		} `json:"kvs"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("range answer %q: %v", body, err)
	}
	var out []string
	for _, kv := range r.Kvs {
		out = append(out, string(kv.Value))
	}
	return out
}

func TestGatewayPutThenRangeSeesTheValue(t *testing.T) {
	t.Parallel()
	m := keeltest.Start(t)
	hc := &http.Client{}
	if code, body := gwPost(t, hc, m, "/v3/kv/put", `{"key":"Zm9v","value":"YmFy"}`); code != http.StatusOK {
		t.Fatalf("put: %d %s", code, body)
	}
	code, body := gwPost(t, hc, m, "/v3/kv/range", `{"key":"Zm9v"}`)
	if got := kvsOf(t, body); code != http.StatusOK || len(got) != 1 || got[0] != "bar" {
		t.Fatalf("range: %d %s, want the value bar", code, body)
	}
	// The official client sees what the gateway wrote.
	resp, err := m.Client.Get(ctx(t), "foo")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "bar" {
		t.Fatalf("get foo through gRPC: %v %v", resp, err)
	}
}

// TestGatewayAnswersTheCurlCommandOfTheDocs runs the curl binary, when
// there is one, with the command line of etcd's documentation.
func TestGatewayAnswersTheCurlCommandOfTheDocs(t *testing.T) {
	t.Parallel()
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("no curl binary: the net/http tests cover the same requests")
	}
	m := keeltest.Start(t)
	out, err := exec.CommandContext(ctx(t), curl, "-sS", "-L", m.Endpoint+"/v3/kv/put", "-X", "POST", "-d", `{"key":"Zm9v","value":"YmFy"}`).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"revision":"2"`) {
		t.Fatalf("curl put: %v: %s", err, out)
	}
	out, err = exec.CommandContext(ctx(t), curl, "-sS", "-L", m.Endpoint+"/v3/kv/range", "-X", "POST", "-d", `{"key":"Zm9v"}`).CombinedOutput()
	if got := kvsOf(t, string(out)); err != nil || len(got) != 1 || got[0] != "bar" {
		t.Fatalf("curl range: %v: %s", err, out)
	}
}

func TestGatewayDisabledByFlagAnswersNotFound(t *testing.T) {
	t.Parallel()
	m := keeltest.Start(t, keeltest.WithConfig(func(c *config.Config) { c.EnableGRPCGateway = false }))
	hc := &http.Client{}
	code, body := gwPost(t, hc, m, "/v3/kv/put", `{"key":"Zm9v","value":"YmFy"}`)
	if code != http.StatusNotFound || body != "404 page not found\n" {
		t.Fatalf("put with the gateway off: %d %q, want 404", code, body)
	}
	req, _ := http.NewRequestWithContext(ctx(t), http.MethodGet, m.Endpoint+"/health", nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/health with the gateway off: %d", resp.StatusCode)
	}
	if _, err := m.Client.Put(ctx(t), "k", "v"); err != nil {
		t.Fatalf("gRPC with the gateway off: %v", err)
	}
}

// TestGatewayWatchOverWebsocket opens /v3/watch as a websocket, as
// etcd's gateway allows (a GET upgraded, then one JSON request and
// response per message).
func TestGatewayWatchOverWebsocket(t *testing.T) {
	t.Parallel()
	m := keeltest.Start(t)
	conn, resp, err := websocket.DefaultDialer.DialContext(ctx(t), "ws://"+m.HostPort()+"/v3/watch", nil)
	if err != nil {
		t.Fatalf("websocket dial: %v (%v)", err, resp)
	}
	defer conn.Close()
	if err := conn.WriteMessage(websocket.TextMessage, []byte(`{"create_request":{"key":"Zm9v"}}`)); err != nil {
		t.Fatal(err)
	}
	var created struct {
		Result struct {
			Created bool `json:"created"`
		} `json:"result"`
	}
	if err := conn.ReadJSON(&created); err != nil || !created.Result.Created {
		t.Fatalf("first message: %+v, %v; want created", created, err)
	}
	if _, err := m.Client.Put(ctx(t), "foo", "bar"); err != nil {
		t.Fatal(err)
	}
	var ev struct {
		Result struct {
			Events []struct {
				Kv struct {
					Value []byte `json:"value"`
				} `json:"kv"`
			} `json:"events"`
		} `json:"result"`
	}
	if err := conn.ReadJSON(&ev); err != nil || len(ev.Result.Events) != 1 || string(ev.Result.Events[0].Kv.Value) != "bar" {
		t.Fatalf("second message: %+v, %v; want the put of bar", ev, err)
	}
}

// TestGatewayOverTLSServesHTTP2 uses the gateway over https with a
// client certificate and HTTP/2, as curl does by default: unary calls
// and a watch stream work, the server does not take the request for
// gRPC.
func TestGatewayOverTLSServesHTTP2(t *testing.T) {
	t.Parallel()
	p := newTestPKI(t)
	srv := p.server("server")
	cli := p.issue("client", pki.Request{CommonName: "client", Usage: pki.Client})
	tlsCfg := p.clientTLS(&cli)
	m := keeltest.Start(t, keeltest.WithClientTLS(config.TLS{CertFile: srv.CertFile, KeyFile: srv.KeyFile,
		TrustedCAFile: p.CAFile, ClientCertAuth: true}, tlsCfg))
	tr := &http.Transport{TLSClientConfig: tlsCfg.Clone(), ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	if code, body := gwPost(t, hc, m, "/v3/kv/put", `{"key":"Zm9v","value":"YmFy"}`); code != http.StatusOK {
		t.Fatalf("put over TLS: %d %s", code, body)
	}

	wctx, cancel := context.WithCancel(ctx(t))
	defer cancel()
	req, _ := http.NewRequestWithContext(wctx, http.MethodPost, m.Endpoint+"/v3/watch",
		strings.NewReader(`{"create_request":{"key":"Zm9v","start_revision":"2"}}`))
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Errorf("watch answered over %s, want HTTP/2", resp.Proto)
	}
	br := bufio.NewReader(resp.Body)
	for i, want := range []string{`"created":true`, `"value":"YmFy"`} {
		line, err := br.ReadString('\n')
		if err != nil || !strings.Contains(line, want) {
			t.Fatalf("watch line %d: %q, %v; want %s", i, line, err, want)
		}
	}

	// Without a client certificate the TLS handshake fails, gateway or not.
	plain := &http.Client{Transport: &http.Transport{TLSClientConfig: p.clientTLS(nil)}}
	req, _ = http.NewRequestWithContext(ctx(t), http.MethodPost, m.Endpoint+"/v3/kv/range", strings.NewReader(`{"key":"Zm9v"}`))
	if resp, err := plain.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("range without a client certificate: %d, want a TLS failure", resp.StatusCode)
	}
}

// TestServerStopEndsGatewayWatch stops a member while a gateway watch is
// open: the stream ends and Stop returns (it waits for every goroutine
// it started, the gateway's link included).
func TestServerStopEndsGatewayWatch(t *testing.T) {
	t.Parallel()
	m := keeltest.Start(t)
	req, _ := http.NewRequestWithContext(ctx(t), http.MethodPost, m.Endpoint+"/v3/watch", strings.NewReader(`{"create_request":{"key":"Zm9v"}}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || !strings.Contains(line, `"created":true`) {
		t.Fatalf("created: %q, %v", line, err)
	}
	m.Stop()
	// The stream ends: with the gateway's error line for the stopped
	// watch, or with the connection.
	for range 10 {
		if _, err := br.ReadString('\n'); err != nil {
			return
		}
	}
	t.Fatal("the watch stream still runs after Stop")
}

// TestGatewayRefusesACertificateNamingAUserWhileAuthIsOn checks etcd's
// rule: with --client-cert-auth and auth enabled, a gateway request whose
// client certificate has a CN is refused (the gateway cannot act as that
// user); before auth is enabled, and on other paths, it is served.
func TestGatewayRefusesACertificateNamingAUserWhileAuthIsOn(t *testing.T) {
	t.Parallel()
	p := newTestPKI(t)
	srv := p.server("server")
	root := p.issue("root", pki.Request{CommonName: "root", Usage: pki.Client})
	tlsCfg := p.clientTLS(&root)
	m := keeltest.Start(t, keeltest.WithClientTLS(config.TLS{CertFile: srv.CertFile, KeyFile: srv.KeyFile,
		TrustedCAFile: p.CAFile, ClientCertAuth: true}, tlsCfg))
	tr := &http.Transport{TLSClientConfig: tlsCfg.Clone()}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	if code, body := gwPost(t, hc, m, "/v3/kv/range", `{"key":"Zm9v"}`); code != http.StatusOK {
		t.Fatalf("range before auth: %d %s", code, body)
	}
	if _, err := m.Client.UserAdd(ctx(t), "root", "pw"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Client.UserGrantRole(ctx(t), "root", "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Client.AuthEnable(ctx(t)); err != nil {
		t.Fatal(err)
	}
	const want = "CommonName of client sending a request against gateway will be ignored and not used as expected\n"
	for _, path := range []string{"/v3/kv/range", "/v3beta/kv/range", "/v3/auth/authenticate"} {
		if code, body := gwPost(t, hc, m, path, `{"key":"Zm9v"}`); code != http.StatusBadRequest || body != want {
			t.Errorf("%s with auth on: %d %q, want 400 %q", path, code, body, want)
		}
	}
	// gRPC still takes the CN as the user.
	if _, err := m.Client.Get(ctx(t), "foo"); err != nil {
		t.Errorf("gRPC get as root by certificate: %v", err)
	}
}

// TestGatewaySnapshotStreamsTheWholeDatabase reads /v3/maintenance/snapshot
// to its end: the chunks add up to what the first announced and to what
// the gRPC Snapshot call sends, and the stream ends by itself.
func TestGatewaySnapshotStreamsTheWholeDatabase(t *testing.T) {
	t.Parallel()
	m := keeltest.Start(t)
	for i := range 50 {
		if _, err := m.Client.Put(ctx(t), "k"+strings.Repeat("x", i), strings.Repeat("v", 1000)); err != nil {
			t.Fatal(err)
		}
	}
	req, _ := http.NewRequestWithContext(ctx(t), http.MethodPost, m.Endpoint+"/v3/maintenance/snapshot", strings.NewReader(`{}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	var total, announced int64
	for chunks := 0; ; chunks++ {
		var c struct {
			Result *struct {
				Blob           []byte `json:"blob"`
				RemainingBytes int64  `json:"remaining_bytes,string"`
			} `json:"result"`
			Error any `json:"error"`
		}
		if err := dec.Decode(&c); err == io.EOF {
			break
		} else if err != nil || c.Result == nil {
			t.Fatalf("chunk %d: %v, %+v", chunks, err, c)
		}
		if chunks == 0 {
			announced = int64(len(c.Result.Blob)) + c.Result.RemainingBytes
		}
		total += int64(len(c.Result.Blob))
		if c.Result.RemainingBytes != announced-total {
			t.Fatalf("chunk %d: remaining %d after %d of %d bytes", chunks, c.Result.RemainingBytes, total, announced)
		}
	}
	if total == 0 || total != announced {
		t.Fatalf("streamed %d bytes, first chunk announced %d", total, announced)
	}
	rc, err := m.Client.Snapshot(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	n, err := io.Copy(io.Discard, rc)
	if err != nil || n != total {
		t.Fatalf("gRPC snapshot: %d bytes, %v; the gateway streamed %d", n, err, total)
	}
}
