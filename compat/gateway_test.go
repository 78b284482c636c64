package compat

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/keeldb/keel/pki"
)

// Differential tests of the JSON gateway under /v3/: the same HTTP
// requests, made as curl makes them (curl -L URL -X POST -d JSON: an
// "Accept: */*" header and a form content type), go to real etcd and to
// keel, and the two transcripts of status codes, response headers and
// JSON bodies must be equal step by step.
//
// Both sides are "twins" (see ctlTwinKeelConfig): one member of the same
// name advertising the same (never dialled) peer URL, so their cluster and
// member IDs are equal and the "header" of every JSON answer is compared
// whole:
// cluster_id, member_id, raft_term and revision (the histories are the
// same request by request). What differs for reasons that are no server's
// fault is normalised, each in one place:
//   - JSON bodies are parsed and printed again with sorted keys: protojson
//     varies its whitespace on purpose, so bytes are no contract.
//   - ports in URLs (127.0.0.1:PORT): each side's client port is its own.
//   - values a server makes up at random (simple auth tokens, the IDs of
//     members added and of leases granted without an ID) become
//     placeholders named by the step that made them, so equal values stay
//     equal and the next steps send each side its own value.
//   - a lease's remaining TTL (LeaseTimeToLive's "TTL") may be one second
//     lower on one side, depending on when the request lands: it becomes
//     "<ttl>" when it is within two seconds of the granted TTL.
//   - maintenance hashes and database sizes come from each side's storage
//     engine (bbolt pages against Pebble): the values become "<masked>",
//     their presence is still compared.
//   - Status's raftIndex and raftAppliedIndex: the Raft log also holds the
//     entries each server proposes for itself (etcd one more than keel by
//     the time of the test: its cluster version and the like), so they are
//     masked like the sizes.
//   - response headers are compared all but Date and Content-Length; over
//     TLS, the gRPC metadata headers that etcd's internal hop through its
//     own HTTP handler adds are left out (see gwHeaders).

// gwSide is one server's gateway as a curl user sees it.
type gwSide struct {
	t     *testing.T
	name  string
	base  string // scheme://host:port
	hc    *http.Client
	trans []string
	// aliases maps values the server made up (tokens, IDs) to their
	// placeholders; alias records them.
	aliases map[string]string
	// tlsHop leaves out the headers etcd adds over TLS only (gwHeaders).
	tlsHop bool
	// vals holds the same values by placeholder, to send them back.
	vals map[string]string
}

func newGWSide(t *testing.T, name, base string, tlsCfg *tls.Config) *gwSide {
	tr := &http.Transport{TLSClientConfig: tlsCfg}
	t.Cleanup(tr.CloseIdleConnections)
	return &gwSide{t: t, name: name, base: base, hc: &http.Client{Transport: tr, Timeout: opTimeout},
		aliases: map[string]string{}, vals: map[string]string{}}
}

// gwReq is one request of a transcript.
type gwReq struct {
	label  string
	method string // POST when empty
	path   string
	body   string // "{name}" is replaced by the value of placeholder name
	token  string // the Authorization header: a placeholder or a literal
	// mask lists JSON keys whose values are masked (see the file comment).
	mask []string
}

func (s *gwSide) expand(v string) string {
	for name, val := range s.vals {
		v = strings.ReplaceAll(v, "{"+name+"}", val)
	}
	return v
}

func (s *gwSide) newRequest(ctx context.Context, r gwReq) *http.Request {
	s.t.Helper()
	method := r.method
	if method == "" {
		method = http.MethodPost
	}
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(s.expand(r.body))
	}
	req, err := http.NewRequestWithContext(ctx, method, s.base+r.path, body)
	if err != nil {
		s.t.Fatalf("%s: %s: %v", s.name, r.label, err)
	}
	req.Header.Set("Accept", "*/*")
	req.Header.Set("User-Agent", "curl/8.5.0")
	if r.body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if r.token != "" {
		req.Header.Set("Authorization", s.expand(r.token))
	}
	return req
}

// do sends r, records the answer and returns its JSON body (nil if it is
// not JSON).
func (s *gwSide) do(r gwReq) map[string]any {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	resp, err := s.hc.Do(s.newRequest(ctx, r))
	if err != nil {
		s.t.Fatalf("%s: %s: %v", s.name, r.label, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("%s: %s: read body: %v", s.name, r.label, err)
	}
	text, obj := s.normalise(b, r.mask)
	s.record(r, fmt.Sprintf("-> %d%s\n%s", resp.StatusCode, gwHeaders(resp.Header, resp.StatusCode, s.tlsHop), text))
	return obj
}

// stream sends r to a streaming endpoint and records its first lines:
// first lines, then after has run (when not nil), then more.
func (s *gwSide) stream(r gwReq, first int, after func(), more int) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	resp, err := s.hc.Do(s.newRequest(ctx, r))
	if err != nil {
		s.t.Fatalf("%s: %s: %v", s.name, r.label, err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	var out []string
	read := func(n int) {
		for range n {
			line, err := br.ReadBytes('\n')
			if err != nil {
				out = append(out, fmt.Sprintf("(stream ended: %v, %q)", err, line))
				return
			}
			text, _ := s.normalise(line, r.mask)
			out = append(out, text)
		}
	}
	read(first)
	s.record(r, fmt.Sprintf("-> %d%s\n%s", resp.StatusCode, gwHeaders(resp.Header, resp.StatusCode, s.tlsHop), strings.Join(out, "\n")))
	if after != nil {
		after()
	}
	if more > 0 {
		out = out[:0]
		read(more)
		s.record(gwReq{label: r.label + " (continued)"}, strings.Join(out, "\n"))
	}
}

func (s *gwSide) record(r gwReq, answer string) {
	if r.method == "" {
		r.method = http.MethodPost
	}
	s.trans = append(s.trans, fmt.Sprintf("%s\n%s %s %s\n%s", r.label, r.method, r.path, r.body, answer))
}

// alias makes the value of key in obj (a string at the top level or in
// "member") a placeholder named name.
func (s *gwSide) alias(name string, v any) {
	s.t.Helper()
	str, ok := v.(string)
	if !ok || str == "" {
		s.t.Fatalf("%s: no value for placeholder %s: %v", s.name, name, v)
	}
	s.aliases[str] = "<" + name + ">"
	s.vals[name] = str
}

var gwPort = regexp.MustCompile(`127\.0\.0\.1:[0-9]+`)

// normalise prints a JSON body with sorted keys, aliases and masks
// applied; other bodies are returned as they are.
func (s *gwSide) normalise(b []byte, mask []string) (string, map[string]any) {
	var obj map[string]any
	if err := json.Unmarshal(b, &obj); err != nil {
		return fmt.Sprintf("%q", b), nil
	}
	var out strings.Builder
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false) // placeholders stay <readable>
	if err := enc.Encode(s.maskValue(obj, mask)); err != nil {
		s.t.Fatalf("%s: %v", s.name, err)
	}
	return gwPort.ReplaceAllString(strings.TrimSuffix(out.String(), "\n"), "127.0.0.1:<port>"), obj
}

func (s *gwSide) maskValue(v any, mask []string) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			switch {
			case k == "TTL" && slicesContains(mask, "remaining-ttl"):
				m[k] = remainingTTL(v)
			case slicesContains(mask, k):
				m[k] = "<masked>"
			default:
				m[k] = s.maskValue(x, mask)
			}
		}
		return m
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = s.maskValue(x, mask)
		}
		return out
	case string:
		if a, ok := s.aliases[v]; ok {
			return a
		}
	}
	return v
}

// remainingTTL is "<ttl>" when a time-to-live answer's TTL is within two
// seconds of its grantedTTL, else the TTL itself.
func remainingTTL(m map[string]any) any {
	var ttl, granted int64
	fmt.Sscan(fmt.Sprint(m["TTL"]), &ttl)
	fmt.Sscan(fmt.Sprint(m["grantedTTL"]), &granted)
	if granted > 0 && ttl <= granted && ttl >= granted-2 {
		return "<ttl>"
	}
	return m["TTL"]
}

func slicesContains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

// gwHeaders renders the response headers, sorted by name, but Date (the
// time of the answer) and Content-Length (the length of a body compared
// after normalising). With tlsHop, it also leaves out what etcd's gateway
// adds over TLS only: there it reaches etcd's gRPC through etcd's own HTTP
// handler (grpc.Server.ServeHTTP behind its CORS wrapper), whose CORS
// headers and "Trailer" come back as gRPC header metadata
// (Grpc-Metadata-Access-Control-*, Grpc-Metadata-Trailer), and which sends
// a content type before an error status (Grpc-Metadata-Content-Type on an
// error answer). They describe etcd's internal hop, not the answer; keel's
// gateway has no such hop, and over plain HTTP etcd has none either (all
// headers are compared there).
func gwHeaders(h http.Header, status int, tlsHop bool) string {
	var b strings.Builder
	keys := make([]string, 0, len(h))
	for k := range h {
		switch {
		case k == "Date", k == "Content-Length":
			continue
		case tlsHop && (k == "Grpc-Metadata-Trailer" || strings.HasPrefix(k, "Grpc-Metadata-Access-Control-") ||
			k == "Grpc-Metadata-Content-Type" && status != http.StatusOK):
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, " [%s: %s]", k, strings.Join(h.Values(k), ", "))
	}
	return b.String()
}

// startGatewayTwins starts etcd and keel twins (or two etcds with
// -selfcheck) and returns their gateways.
func compareGateway(t *testing.T, etcd, keel *gwSide) {
	t.Helper()
	if testing.Verbose() {
		t.Logf("etcd's transcript:\n%s", strings.Join(etcd.trans, "\n\n"))
	}
	compareTranscripts(t, etcd.trans, keel.trans)
}

func startGatewayTwins(t *testing.T) (etcd, keel *gwSide) {
	t.Helper()
	a := startCtlTwinEtcd(t, "etcd")
	b := ""
	if selfCheck() {
		b = startCtlTwinEtcd(t, "etcd2")
	} else {
		b = startCtlTwinKeel(t, "keel")
	}
	return newGWSide(t, "etcd", "http://"+a, nil), newGWSide(t, "keel", "http://"+b, nil)
}

// TestGatewayKV covers the KV part of the gateway: put (with prev_kv,
// without a key), range (prefix, count, keys only, limit, at a compacted
// and at a future revision), deleterange, txn (both branches, a duplicate
// key), compaction, malformed bodies, unknown paths and methods.
func TestGatewayKV(t *testing.T) {
	etcd, keel := startGatewayTwins(t)
	for _, s := range []*gwSide{etcd, keel} {
		gatewayKVSession(s)
	}
	compareGateway(t, etcd, keel)
}

func gatewayKVSession(s *gwSide) {
	for _, r := range []gwReq{
		{label: "put foo=bar (the README's curl)", path: "/v3/kv/put", body: `{"key":"Zm9v","value":"YmFy"}`},
		{label: "put with prev_kv", path: "/v3/kv/put", body: `{"key":"Zm9v","value":"YmF6","prev_kv":true}`},
		{label: "put without a key", path: "/v3/kv/put", body: `{"value":"YmFy"}`},
		{label: "put with an unknown field", path: "/v3/kv/put", body: `{"key":"eA==","value":"eQ==","no_such_field":1}`},
		{label: "put with a bad base64 key", path: "/v3/kv/put", body: `{"key":"%%%","value":"eQ=="}`},
		{label: "put with a body that is not JSON", path: "/v3/kv/put", body: `key=foo`},
		{label: "put a/1", path: "/v3/kv/put", body: `{"key":"YS8x","value":"MQ=="}`},
		{label: "put a/2", path: "/v3/kv/put", body: `{"key":"YS8y","value":"Mg=="}`},
		{label: "range foo", path: "/v3/kv/range", body: `{"key":"Zm9v"}`},
		{label: "range a/ prefix", path: "/v3/kv/range", body: `{"key":"YS8=","range_end":"YTA="}`},
		{label: "range a/ prefix, count only", path: "/v3/kv/range", body: `{"key":"YS8=","range_end":"YTA=","count_only":true}`},
		{label: "range a/ prefix, keys only, limit 1, descending", path: "/v3/kv/range",
			body: `{"key":"YS8=","range_end":"YTA=","keys_only":true,"limit":1,"sort_order":"DESCEND","sort_target":"KEY"}`},
		{label: "range a missing key", path: "/v3/kv/range", body: `{"key":"bm9wZQ=="}`},
		{label: "range without a key", path: "/v3/kv/range", body: `{}`},
		{label: "deleterange a/1 with prev_kv", path: "/v3/kv/deleterange", body: `{"key":"YS8x","prev_kv":true}`},
		{label: "deleterange a missing key", path: "/v3/kv/deleterange", body: `{"key":"bm9wZQ=="}`},
		{label: "txn: foo is baz, so put", path: "/v3/kv/txn",
			body: `{"compare":[{"key":"Zm9v","result":"EQUAL","target":"VALUE","value":"YmF6"}],"success":[{"request_put":{"key":"Zm9v","value":"cXV4"}}],"failure":[{"request_range":{"key":"Zm9v"}}]}`},
		{label: "txn: foo is not baz any more, so range", path: "/v3/kv/txn",
			body: `{"compare":[{"key":"Zm9v","result":"EQUAL","target":"VALUE","value":"YmF6"}],"success":[{"request_put":{"key":"Zm9v","value":"cXV4"}}],"failure":[{"request_range":{"key":"Zm9v"}}]}`},
		{label: "txn: mod revision compare, delete in success", path: "/v3/kv/txn",
			body: `{"compare":[{"key":"YS8y","result":"GREATER","target":"MOD","mod_revision":"0"}],"success":[{"request_delete_range":{"key":"YS8y","prev_kv":true}}]}`},
		{label: "txn: the same key put twice", path: "/v3/kv/txn",
			body: `{"success":[{"request_put":{"key":"Zm9v","value":"MQ=="}},{"request_put":{"key":"Zm9v","value":"Mg=="}}]}`},
		{label: "compaction at 4", path: "/v3/kv/compaction", body: `{"revision":"4","physical":true}`},
		{label: "compaction at 4 again", path: "/v3/kv/compaction", body: `{"revision":"4"}`},
		{label: "compaction in the future", path: "/v3/kv/compaction", body: `{"revision":"1000"}`},
		{label: "range at a compacted revision", path: "/v3/kv/range", body: `{"key":"Zm9v","revision":"2"}`},
		{label: "range at a future revision", path: "/v3/kv/range", body: `{"key":"Zm9v","revision":"1000"}`},
		{label: "range at the compacted revision itself", path: "/v3/kv/range", body: `{"key":"Zm9v","revision":"4"}`},
		{label: "an unknown path", path: "/v3/kv/nothing", body: `{}`},
		{label: "GET on a POST path", method: http.MethodGet, path: "/v3/kv/range"},
		{label: "the v3beta path of old releases", path: "/v3beta/kv/range", body: `{"key":"Zm9v"}`},
		{label: "CORS preflight", method: http.MethodOptions, path: "/v3/kv/put"},
	} {
		s.do(r)
	}
}

// TestGatewayWatch covers POST /v3/watch: the created response, events
// of puts and deletes made meanwhile (prev_kv, a prefix, a filter), a
// start revision below the compaction and a future one.
func TestGatewayWatch(t *testing.T) {
	etcd, keel := startGatewayTwins(t)
	for _, s := range []*gwSide{etcd, keel} {
		gatewayWatchSession(s)
	}
	compareGateway(t, etcd, keel)
}

func gatewayWatchSession(s *gwSide) {
	put := func(key, value string) func() {
		return func() {
			s.do(gwReq{label: "put " + key, path: "/v3/kv/put", body: fmt.Sprintf(`{"key":%q,"value":%q}`, key, value)})
		}
	}
	for range 3 {
		put("Zm9v", "YmFy")()
	}
	s.stream(gwReq{label: "watch foo, then put it", path: "/v3/watch", body: `{"create_request":{"key":"Zm9v"}}`}, 1, put("Zm9v", "YmF6"), 1)
	s.stream(gwReq{label: "watch foo from revision 2 with prev_kv", path: "/v3/watch",
		body: `{"create_request":{"key":"Zm9v","start_revision":"2","prev_kv":true}}`}, 2, nil, 0)
	s.stream(gwReq{label: "watch the w/ prefix without puts, then put and delete", path: "/v3/watch",
		body: `{"create_request":{"key":"dy8=","range_end":"dzA=","filters":["NOPUT"],"prev_kv":true}}`}, 1,
		func() {
			put("dy94", "MQ==")()
			s.do(gwReq{label: "delete w/x", path: "/v3/kv/deleterange", body: `{"key":"dy94"}`})
		}, 1)
	s.stream(gwReq{label: "two watches in one body", path: "/v3/watch",
		body: `{"create_request":{"key":"Zm9v","watch_id":"7"}}` + "\n" + `{"create_request":{"key":"YmFy","watch_id":"7"}}`}, 2, nil, 0)
	s.do(gwReq{label: "compaction at 3", path: "/v3/kv/compaction", body: `{"revision":"3"}`})
	s.stream(gwReq{label: "watch from a compacted revision", path: "/v3/watch",
		body: `{"create_request":{"key":"Zm9v","start_revision":"2"}}`}, 2, nil, 0)
	s.stream(gwReq{label: "watch from a future revision, then reach it", path: "/v3/watch",
		body: `{"create_request":{"key":"Zm9v","start_revision":"9"}}`}, 1,
		func() { put("Zm9v", "MQ==")(); put("Zm9v", "Mg==")() }, 1)
}

// TestGatewayLease covers grant (with an ID, a duplicate, a generated ID,
// a TTL too large), keepalive as a stream, timetolive with keys, leases,
// revoke, and that a revoke deletes the lease's keys.
func TestGatewayLease(t *testing.T) {
	etcd, keel := startGatewayTwins(t)
	for _, s := range []*gwSide{etcd, keel} {
		gatewayLeaseSession(s)
	}
	compareGateway(t, etcd, keel)
}

func gatewayLeaseSession(s *gwSide) {
	s.do(gwReq{label: "grant lease 1000", path: "/v3/lease/grant", body: `{"ID":"1000","TTL":"60"}`})
	s.do(gwReq{label: "grant lease 1000 again", path: "/v3/lease/grant", body: `{"ID":"1000","TTL":"60"}`})
	gen := s.do(gwReq{label: "grant a lease, ID chosen by the server", path: "/v3/lease/grant", body: `{"TTL":30}`})
	s.alias("generated-lease", gen["ID"])
	s.trans[len(s.trans)-1] = strings.ReplaceAll(s.trans[len(s.trans)-1], fmt.Sprint(gen["ID"]), "<generated-lease>")
	s.do(gwReq{label: "grant a TTL above the maximum", path: "/v3/lease/grant", body: `{"TTL":"9000000001"}`})
	s.do(gwReq{label: "put foo with lease 1000", path: "/v3/kv/put", body: `{"key":"Zm9v","value":"YmFy","lease":"1000"}`})
	s.do(gwReq{label: "put with a lease nobody granted", path: "/v3/kv/put", body: `{"key":"Zm9v","value":"YmFy","lease":"999"}`})
	s.stream(gwReq{label: "keepalive lease 1000", path: "/v3/lease/keepalive", body: `{"ID":"1000"}`}, 1, nil, 0)
	s.stream(gwReq{label: "keepalive the generated lease", path: "/v3/lease/keepalive", body: `{"ID":"{generated-lease}"}`}, 1, nil, 0)
	s.stream(gwReq{label: "keepalive a lease nobody granted", path: "/v3/lease/keepalive", body: `{"ID":"999"}`}, 1, nil, 0)
	s.do(gwReq{label: "timetolive lease 1000 with keys", path: "/v3/lease/timetolive", body: `{"ID":"1000","keys":true}`, mask: []string{"remaining-ttl"}})
	s.do(gwReq{label: "timetolive a lease nobody granted", path: "/v3/lease/timetolive", body: `{"ID":"999"}`})
	s.do(gwReq{label: "the old timetolive path", path: "/v3/kv/lease/timetolive", body: `{"ID":"1000"}`, mask: []string{"remaining-ttl"}})
	s.do(gwReq{label: "revoke the generated lease", path: "/v3/lease/revoke", body: `{"ID":"{generated-lease}"}`})
	s.do(gwReq{label: "leases", path: "/v3/lease/leases", body: `{}`})
	s.do(gwReq{label: "revoke lease 1000", path: "/v3/lease/revoke", body: `{"ID":"1000"}`})
	s.do(gwReq{label: "revoke lease 1000 again", path: "/v3/lease/revoke", body: `{"ID":"1000"}`})
	s.do(gwReq{label: "foo went with its lease", path: "/v3/kv/range", body: `{"key":"Zm9v"}`})
}

// TestGatewayClusterAndMaintenance covers the cluster and maintenance
// services through the gateway: member list, add (as a learner), update,
// promote (refused: the learner is not in sync), remove; status, alarms,
// defragment, hashes, a snapshot stream and move-leader.
func TestGatewayClusterAndMaintenance(t *testing.T) {
	etcd, keel := startGatewayTwins(t)
	for _, s := range []*gwSide{etcd, keel} {
		gatewayClusterSession(s)
	}
	compareGateway(t, etcd, keel)
}

func gatewayClusterSession(s *gwSide) {
	list := s.do(gwReq{label: "member list", path: "/v3/cluster/member/list", body: `{}`})
	self := list["members"].([]any)[0].(map[string]any)["ID"]
	s.vals["self"] = self.(string)
	added := s.do(gwReq{label: "member add a learner", path: "/v3/cluster/member/add", body: `{"peerURLs":["http://127.0.0.1:1"],"isLearner":true}`})
	id := added["member"].(map[string]any)["ID"]
	s.alias("learner", id)
	s.trans[len(s.trans)-1] = strings.ReplaceAll(s.trans[len(s.trans)-1], fmt.Sprint(id), "<learner>")
	for _, r := range []gwReq{
		{label: "member add the same peer URL", path: "/v3/cluster/member/add", body: `{"peerURLs":["http://127.0.0.1:1"]}`},
		{label: "member update the learner", path: "/v3/cluster/member/update", body: `{"ID":"{learner}","peerURLs":["http://127.0.0.1:2"]}`},
		{label: "member promote the learner", path: "/v3/cluster/member/promote", body: `{"ID":"{learner}"}`},
		{label: "member list, linearizable", path: "/v3/cluster/member/list", body: `{"linearizable":true}`},
		{label: "member remove the learner", path: "/v3/cluster/member/remove", body: `{"ID":"{learner}"}`},
		{label: "member remove it again", path: "/v3/cluster/member/remove", body: `{"ID":"{learner}"}`},
		{label: "status", path: "/v3/maintenance/status", body: `{}`,
			mask: []string{"dbSize", "dbSizeInUse", "raftIndex", "raftAppliedIndex"}},
		{label: "alarm list", path: "/v3/maintenance/alarm", body: `{"action":"GET"}`},
		{label: "alarm deactivate NOSPACE", path: "/v3/maintenance/alarm", body: `{"action":"DEACTIVATE","memberID":"{self}","alarm":"NOSPACE"}`},
		{label: "defragment", path: "/v3/maintenance/defragment", body: `{}`},
		{label: "put something to hash", path: "/v3/kv/put", body: `{"key":"Zm9v","value":"YmFy"}`},
		{label: "hash", path: "/v3/maintenance/hash", body: `{}`, mask: []string{"hash"}},
		{label: "hashkv", path: "/v3/maintenance/hashkv", body: `{"revision":"0"}`, mask: []string{"hash"}},
		{label: "hashkv at a future revision", path: "/v3/maintenance/hashkv", body: `{"revision":"100"}`, mask: []string{"hash"}},
		{label: "move-leader to itself", path: "/v3/maintenance/transfer-leadership", body: `{"targetID":"{self}"}`},
		{label: "move-leader to a stranger", path: "/v3/maintenance/transfer-leadership", body: `{"targetID":"12345"}`},
	} {
		s.do(r)
	}
	s.stream(gwReq{label: "snapshot: the first chunk", path: "/v3/maintenance/snapshot", body: `{}`,
		mask: []string{"blob", "remaining_bytes"}}, 1, nil, 0)
}

// TestGatewayAuth covers the auth service and tokens through the
// gateway: users and roles, enable, authenticate (good and bad
// passwords), the Authorization header with a good, a bogus and no
// token, a user without write permission, watch and lease calls with a
// token, disable.
func TestGatewayAuth(t *testing.T) {
	etcd, keel := startGatewayTwins(t)
	for _, s := range []*gwSide{etcd, keel} {
		gatewayAuthSession(s)
	}
	compareGateway(t, etcd, keel)
}

func gatewayAuthSession(s *gwSide) {
	for _, r := range []gwReq{
		{label: "enable without a root user", path: "/v3/auth/enable", body: `{}`},
		{label: "add user root", path: "/v3/auth/user/add", body: `{"name":"root","password":"rootpw"}`},
		{label: "add user root again", path: "/v3/auth/user/add", body: `{"name":"root","password":"rootpw"}`},
		{label: "add a user without a name", path: "/v3/auth/user/add", body: `{"password":"x"}`},
		{label: "grant root the root role", path: "/v3/auth/user/grant", body: `{"user":"root","role":"root"}`},
		{label: "add role reader", path: "/v3/auth/role/add", body: `{"name":"reader"}`},
		{label: "grant reader read on foo", path: "/v3/auth/role/grant", body: `{"name":"reader","perm":{"permType":"READ","key":"Zm9v"}}`},
		{label: "add user alice", path: "/v3/auth/user/add", body: `{"name":"alice","password":"alicepw"}`},
		{label: "grant alice reader", path: "/v3/auth/user/grant", body: `{"user":"alice","role":"reader"}`},
		{label: "grant alice a role nobody added", path: "/v3/auth/user/grant", body: `{"user":"alice","role":"nope"}`},
		{label: "auth status", path: "/v3/auth/status", body: `{}`},
		{label: "enable", path: "/v3/auth/enable", body: `{}`},
		{label: "put without a token", path: "/v3/kv/put", body: `{"key":"Zm9v","value":"YmFy"}`},
		{label: "authenticate root with a wrong password", path: "/v3/auth/authenticate", body: `{"name":"root","password":"nope"}`},
		{label: "authenticate a user nobody added", path: "/v3/auth/authenticate", body: `{"name":"bob","password":"nope"}`},
	} {
		s.do(r)
	}
	tok := s.do(gwReq{label: "authenticate root", path: "/v3/auth/authenticate", body: `{"name":"root","password":"rootpw"}`})
	s.alias("root-token", tok["token"])
	s.trans[len(s.trans)-1] = strings.ReplaceAll(s.trans[len(s.trans)-1], fmt.Sprint(tok["token"]), "<root-token>")
	tok = s.do(gwReq{label: "authenticate alice", path: "/v3/auth/authenticate", body: `{"name":"alice","password":"alicepw"}`})
	s.alias("alice-token", tok["token"])
	s.trans[len(s.trans)-1] = strings.ReplaceAll(s.trans[len(s.trans)-1], fmt.Sprint(tok["token"]), "<alice-token>")
	for _, r := range []gwReq{
		{label: "put with root's token", path: "/v3/kv/put", body: `{"key":"Zm9v","value":"YmFy"}`, token: "{root-token}"},
		{label: "put with a bogus token", path: "/v3/kv/put", body: `{"key":"Zm9v","value":"YmFy"}`, token: "bogus.17"},
		{label: "range with alice's token", path: "/v3/kv/range", body: `{"key":"Zm9v"}`, token: "{alice-token}"},
		{label: "put with alice's token", path: "/v3/kv/put", body: `{"key":"Zm9v","value":"YmFy"}`, token: "{alice-token}"},
		{label: "range beyond alice's permission", path: "/v3/kv/range", body: `{"key":"Zm9v","range_end":"Zm9w"}`, token: "{alice-token}"},
		{label: "lease grant without a token", path: "/v3/lease/grant", body: `{"ID":"77","TTL":"60"}`},
		{label: "lease grant with root's token", path: "/v3/lease/grant", body: `{"ID":"77","TTL":"60"}`, token: "{root-token}"},
		{label: "member list without a token", path: "/v3/cluster/member/list", body: `{}`},
		{label: "user list with alice's token", path: "/v3/auth/user/list", body: `{}`, token: "{alice-token}"},
		{label: "user list with root's token", path: "/v3/auth/user/list", body: `{}`, token: "{root-token}"},
		{label: "role list", path: "/v3/auth/role/list", body: `{}`, token: "{root-token}"},
		{label: "user get alice", path: "/v3/auth/user/get", body: `{"name":"alice"}`, token: "{root-token}"},
		{label: "role get reader", path: "/v3/auth/role/get", body: `{"role":"reader"}`, token: "{root-token}"},
	} {
		s.do(r)
	}
	s.stream(gwReq{label: "watch foo with alice's token", path: "/v3/watch", body: `{"create_request":{"key":"Zm9v"}}`, token: "{alice-token}"}, 1,
		func() {
			s.do(gwReq{label: "put foo as root", path: "/v3/kv/put", body: `{"key":"Zm9v","value":"YmF6"}`, token: "{root-token}"})
		}, 1)
	s.stream(gwReq{label: "watch beyond alice's permission", path: "/v3/watch", body: `{"create_request":{"key":"Zm9w"}}`, token: "{alice-token}"}, 1, nil, 0)
	s.stream(gwReq{label: "watch without a token", path: "/v3/watch", body: `{"create_request":{"key":"Zm9v"}}`}, 1, nil, 0)
	s.stream(gwReq{label: "keepalive with root's token", path: "/v3/lease/keepalive", body: `{"ID":"77"}`, token: "{root-token}"}, 1, nil, 0)
	for _, r := range []gwReq{
		{label: "disable with alice's token", path: "/v3/auth/disable", body: `{}`, token: "{alice-token}"},
		{label: "disable with root's token", path: "/v3/auth/disable", body: `{}`, token: "{root-token}"},
		{label: "put without a token once disabled", path: "/v3/kv/put", body: `{"key":"Zm9v","value":"YmFy"}`},
	} {
		s.do(r)
	}
}

// TestGatewayTLS runs the gateway over https with client certificate
// auth: put, range, watch, lease grant and keepalive with the root
// certificate; then, with auth enabled, a certificate that names a user
// (a CN) is refused with etcd's message, since the gateway cannot act as
// that user, and a certificate without a CN works with a token.
func TestGatewayTLS(t *testing.T) {
	c := newCtlTLS(t)
	c.issue(t, c.ca, "nocn", pkiClientNoCN())
	// etcd's gateway dials its own client port presenting the server
	// certificate, which --client-cert-auth then verifies as a client
	// certificate: it must allow clientAuth, or every gateway request
	// fails ("tls: bad certificate"). Keel's gateway needs no certificate
	// (see docs/gateway.md); the twins get one that works for both.
	c.issue(t, c.ca, "server", pki.Request{CommonName: "server", Hosts: []string{"127.0.0.1"}, Usage: pki.Peer})
	a := c.startEtcd(t, "etcd")
	b := ""
	if selfCheck() {
		b = c.startEtcd(t, "etcd2")
	} else {
		b = c.startKeel(t, "keel")
	}
	root := c.clientConfig(t)
	noCN := c.clientConfigFor(t, "nocn")
	sides := [][2]*gwSide{
		{newGWSide(t, "etcd", "https://"+a, root), newGWSide(t, "keel", "https://"+b, root)},
		{newGWSide(t, "etcd", "https://"+a, noCN), newGWSide(t, "keel", "https://"+b, noCN)},
	}
	for i := range 2 {
		rootSide, noCNSide := sides[0][i], sides[1][i]
		rootSide.tlsHop, noCNSide.tlsHop = true, true
		gatewayTLSSession(rootSide, noCNSide)
	}
	compareGateway(t, sides[0][0], sides[0][1])
	compareGateway(t, sides[1][0], sides[1][1])
}

func gatewayTLSSession(root, noCN *gwSide) {
	put := func() {
		root.do(gwReq{label: "put foo over TLS", path: "/v3/kv/put", body: `{"key":"Zm9v","value":"YmFy"}`})
	}
	put()
	root.do(gwReq{label: "range foo over TLS", path: "/v3/kv/range", body: `{"key":"Zm9v"}`})
	root.do(gwReq{label: "delete foo over TLS", path: "/v3/kv/deleterange", body: `{"key":"Zm9v"}`})
	root.do(gwReq{label: "txn over TLS", path: "/v3/kv/txn",
		body: `{"compare":[{"key":"Zm9v","result":"EQUAL","target":"VERSION","version":"0"}],"success":[{"request_put":{"key":"Zm9v","value":"MQ=="}}]}`})
	root.stream(gwReq{label: "watch foo over TLS", path: "/v3/watch", body: `{"create_request":{"key":"Zm9v"}}`}, 1, put, 1)
	root.do(gwReq{label: "lease grant over TLS", path: "/v3/lease/grant", body: `{"ID":"1000","TTL":"60"}`})
	root.stream(gwReq{label: "keepalive over TLS", path: "/v3/lease/keepalive", body: `{"ID":"1000"}`}, 1, nil, 0)
	root.do(gwReq{label: "add user root", path: "/v3/auth/user/add", body: `{"name":"root","password":"rootpw"}`})
	root.do(gwReq{label: "grant root the root role", path: "/v3/auth/user/grant", body: `{"user":"root","role":"root"}`})
	root.do(gwReq{label: "enable auth", path: "/v3/auth/enable", body: `{}`})
	root.do(gwReq{label: "a certificate with a CN, auth enabled", path: "/v3/kv/range", body: `{"key":"Zm9v"}`})
	root.do(gwReq{label: "non-gateway paths still serve it", method: http.MethodGet, path: "/health"})
	noCN.do(gwReq{label: "no CN, no token", path: "/v3/kv/range", body: `{"key":"Zm9v"}`})
	tok := noCN.do(gwReq{label: "authenticate root", path: "/v3/auth/authenticate", body: `{"name":"root","password":"rootpw"}`})
	noCN.alias("root-token", tok["token"])
	noCN.trans[len(noCN.trans)-1] = strings.ReplaceAll(noCN.trans[len(noCN.trans)-1], fmt.Sprint(tok["token"]), "<root-token>")
	noCN.do(gwReq{label: "no CN, root's token", path: "/v3/kv/range", body: `{"key":"Zm9v"}`, token: "{root-token}"})
	noCN.stream(gwReq{label: "keepalive with a token over TLS", path: "/v3/lease/keepalive", body: `{"ID":"1000"}`, token: "{root-token}"}, 1, nil, 0)
	noCN.do(gwReq{label: "disable auth", path: "/v3/auth/disable", body: `{}`, token: "{root-token}"})
}

// pkiClientNoCN is a client certificate that names no user.
func pkiClientNoCN() pki.Request { return pki.Request{Usage: pki.Client} }

// clientConfigFor is a client trusting the test CA and presenting the
// certificate name (NAME.crt, NAME.key).
func (c *ctlTLS) clientConfigFor(t *testing.T, name string) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(c.file(name+".crt"), c.file(name+".key"))
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: c.ca.Pool()}
}

// wsStream opens path as a websocket, sends each of reqs as a message and
// records the first n messages received, after has run once the first
// answer arrived (when not nil).
func (s *gwSide) wsStream(label, path string, reqs []string, after func(), n int) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	url := "ws" + strings.TrimPrefix(s.base, "http") + path
	conn, resp, err := websocket.DefaultDialer.DialContext(ctx, url, nil)
	if err != nil {
		s.t.Fatalf("%s: %s: dial: %v", s.name, label, err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(opTimeout))
	for _, r := range reqs {
		if err := conn.WriteMessage(websocket.TextMessage, []byte(s.expand(r))); err != nil {
			s.t.Fatalf("%s: %s: write: %v", s.name, label, err)
		}
	}
	var out []string
	for i := range n {
		_, msg, err := conn.ReadMessage()
		if err != nil {
			out = append(out, fmt.Sprintf("(websocket ended: %v)", err))
			break
		}
		text, _ := s.normalise(msg, nil)
		out = append(out, text)
		if i == 0 && after != nil {
			after()
		}
	}
	s.record(gwReq{label: label, method: "WEBSOCKET", path: path, body: strings.Join(reqs, " ")},
		fmt.Sprintf("-> %d\n%s", resp.StatusCode, strings.Join(out, "\n")))
}

// TestGatewayWebsocket covers the websocket form of the streams (a GET
// upgraded; each message one request, each answer one message): a watch
// seeing a put and a keepalive answering two requests. (A unary path
// over a websocket waits for the request body to end, which only the
// websocket's close does, in etcd as in keel: not a use anyone has.)
func TestGatewayWebsocket(t *testing.T) {
	etcd, keel := startGatewayTwins(t)
	for _, s := range []*gwSide{etcd, keel} {
		s.do(gwReq{label: "grant lease 1000", path: "/v3/lease/grant", body: `{"ID":"1000","TTL":"60"}`})
		s.wsStream("watch foo over a websocket, then put it", "/v3/watch", []string{`{"create_request":{"key":"Zm9v"}}`},
			func() { s.do(gwReq{label: "put foo", path: "/v3/kv/put", body: `{"key":"Zm9v","value":"YmFy"}`}) }, 2)
		s.wsStream("keepalive twice over a websocket", "/v3/lease/keepalive", []string{`{"ID":"1000"}`, `{"ID":"1000"}`}, nil, 2)
	}
	compareGateway(t, etcd, keel)
}
