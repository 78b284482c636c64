package integration

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestHealthEndpoint checks GET /health on the client port, linearizable
// and serializable, and that other methods are refused.
func TestHealthEndpoint(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	tests := []struct {
		method, path string
		code         int
		body         string
	}{
		{http.MethodGet, "/health", http.StatusOK, `{"health":"true","reason":""}`},
		{http.MethodGet, "/health?serializable=true", http.StatusOK, `{"health":"true","reason":""}`},
		{http.MethodGet, "/health?serializable=false", http.StatusOK, `{"health":"true","reason":""}`},
		{http.MethodPost, "/health", http.StatusMethodNotAllowed, "Method Not Allowed\n"},
		{http.MethodPut, "/health", http.StatusMethodNotAllowed, "Method Not Allowed\n"},
		{http.MethodHead, "/health", http.StatusMethodNotAllowed, ""},
		{http.MethodGet, "/health/", http.StatusNotFound, "404 page not found\n"},
		{http.MethodGet, "/no-such-path", http.StatusNotFound, "404 page not found\n"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			code, hdr, body := httpDo(t, m, tt.method, tt.path)
			if code != tt.code || body != tt.body {
				t.Fatalf("got %d %q, want %d %q", code, body, tt.code, tt.body)
			}
			if code == http.StatusMethodNotAllowed && hdr.Get("Allow") != http.MethodGet {
				t.Fatalf("Allow header %q, want GET", hdr.Get("Allow"))
			}
		})
	}
}

// TestVersionEndpoint checks GET /version: etcd's server and cluster
// versions, as clients and operators read them.
func TestVersionEndpoint(t *testing.T) {
	t.Parallel()
	m := startMember(t)
	code, hdr, body := httpDo(t, m, http.MethodGet, "/version")
	if code != http.StatusOK {
		t.Fatalf("GET /version: %d %q", code, body)
	}
	if ct := hdr.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type %q, want application/json", ct)
	}
	var v map[string]string
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("GET /version: %q is not a JSON object of strings: %v", body, err)
	}
	want := map[string]string{"etcdserver": "3.7.3", "etcdcluster": "3.7.0", "storage": "3.7.0"}
	for k, w := range want {
		if v[k] != w {
			t.Errorf("%s = %q, want %q (body %s)", k, v[k], w, body)
		}
	}
	code, _, _ = httpDo(t, m, http.MethodPost, "/version")
	if code != http.StatusMethodNotAllowed {
		t.Errorf("POST /version: %d, want 405", code)
	}
}

// TestPprofEndpoint checks that /debug/pprof/ is served only with
// --enable-pprof, as etcd does.
func TestPprofEndpoint(t *testing.T) {
	t.Parallel()
	off := startMember(t)
	if code, _, _ := httpDo(t, off, http.MethodGet, "/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("without --enable-pprof: GET /debug/pprof/ = %d, want 404", code)
	}
	on := startMember(t, withPprof())
	code, _, body := httpDo(t, on, http.MethodGet, "/debug/pprof/")
	if code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Fatalf("with --enable-pprof: GET /debug/pprof/ = %d %.200q, want 200 and the profile index", code, body)
	}
	if code, _, _ := httpDo(t, on, http.MethodGet, "/debug/pprof/heap?debug=1"); code != http.StatusOK {
		t.Errorf("with --enable-pprof: GET /debug/pprof/heap = %d, want 200", code)
	}
}
