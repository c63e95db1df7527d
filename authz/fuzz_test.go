package authz_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzForwarded: whatever method, URI and host a gateway forwards, the answer is a
// decision of the Gate on exactly that request, or a 400 without asking it; never a
// panic, never an allow of anything but the public route.
func FuzzForwarded(f *testing.F) {
	for _, seed := range [][3]string{
		{"GET", "/healthz", "orders.example.com"},
		{"GET", "/orders/1?x=1", ""},
		{"HEAD", "/healthz?", "api.example.com:8443"},
		{"GET", "/healthz#x", "h"},
		{"GET", "/%2e%2e/healthz", "h"},
		{"get", "//healthz", "[::1]:80"},
		{"CONNECT", "/healthz", "h"},
		{"GET", "/healthz/../healthz", "h"},
		{"GET", "/héalthz", "h"},
		{"GET\x00", "/healthz", "h"},
		{"GET", "/healthz", "a b"},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	r := newRig(f)
	f.Fuzz(func(t *testing.T, method, uri, host string) {
		req := httptest.NewRequest("GET", "/nginx", nil)
		req.Host = "127.0.0.1:9191"
		req.Header = http.Header{"X-Original-Method": {method}, "X-Original-Uri": {uri}}
		if host != "" {
			req.Host = host
		}
		before := r.decided()
		w := httptest.NewRecorder()
		r.handler.ServeHTTP(w, req)
		switch w.Code {
		case 200, 401, 403:
			if r.decided() != before+1 {
				t.Fatalf("%d without a decision", w.Code)
			}
			seen := r.lastSeen(t)
			if seen.Method != method || seen.RequestURI != uri || seen.Host != req.Host {
				t.Fatalf("decided on %q %q %q, asked %q %q %q", seen.Method, seen.RequestURI, seen.Host, method, uri, req.Host)
			}
			if w.Code == 200 && seen.URL.Path != "/healthz" {
				t.Fatalf("allowed %q %q (path %q)", method, uri, seen.URL.Path)
			}
		case 400:
			if r.decided() != before && r.lastSeen(t).RequestURI != uri {
				t.Fatal("400 after deciding on another request")
			}
		default:
			t.Fatalf("status %d for %q %q %q", w.Code, method, uri, host)
		}
	})
}
