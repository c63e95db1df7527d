package authz_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/authz"
)

// forwardAuth is Traefik's forwardAuth middleware as its documentation and source
// (pkg/middlewares/auth/forward.go, v3) define the contract, written here because a
// real Traefik does not build from the Go module proxy within CI's time
// (docs/gateways.md): a GET to address with the client's headers (hop-by-hop ones
// removed) and X-Forwarded-Method, -Proto, -Host, -Uri and -For set from the request
// itself (trustForwardHeader false); a 2xx answer lets the request through, after the
// headers authResponseHeaders names (and those authResponseHeadersRegex matches) are
// deleted from it and copied from the answer; any other answer goes back to the client
// as it is: status, headers, body.
type forwardAuth struct {
	address                  string
	authResponseHeaders      []string
	authResponseHeadersRegex *regexp.Regexp
	next                     http.Handler
	client                   *http.Client
}

func (fa *forwardAuth) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	fwd, err := http.NewRequestWithContext(req.Context(), http.MethodGet, fa.address, nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	for k, v := range req.Header {
		fwd.Header[k] = append([]string(nil), v...)
	}
	for _, h := range []string{"Connection", "Keep-Alive", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Proxy-Connection"} {
		fwd.Header.Del(h)
	}
	host, _, _ := net.SplitHostPort(req.RemoteAddr)
	fwd.Header.Set("X-Forwarded-For", host)
	fwd.Header.Set("X-Forwarded-Method", req.Method)
	fwd.Header.Set("X-Forwarded-Proto", "http")
	fwd.Header.Set("X-Forwarded-Host", req.Host)
	fwd.Header.Set("X-Forwarded-Uri", req.URL.RequestURI())
	resp, err := fa.client.Do(fwd)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(b)
		return
	}
	for _, name := range fa.authResponseHeaders {
		key := http.CanonicalHeaderKey(name)
		req.Header.Del(key)
		if v := resp.Header[key]; len(v) > 0 {
			req.Header[key] = append([]string(nil), v...)
		}
	}
	if fa.authResponseHeadersRegex != nil {
		for key := range req.Header {
			if fa.authResponseHeadersRegex.MatchString(key) {
				req.Header.Del(key)
			}
		}
		for key, v := range resp.Header {
			if fa.authResponseHeadersRegex.MatchString(key) {
				req.Header[key] = append([]string(nil), v...)
			}
		}
	}
	fa.next.ServeHTTP(w, req)
}

// upstream records the headers of the requests that reach it.
type upstream struct {
	mu   sync.Mutex
	last http.Header
	n    int
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.last, u.n = r.Header.Clone(), u.n+1
	u.mu.Unlock()
	_, _ = io.WriteString(w, "order")
}

func (u *upstream) received() (http.Header, int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last, u.n
}

// TestTraefikForwardAuth drives the decision service through the forwardAuth contract
// with the configuration docs/gateways.md gives: identity headers reach the upstream
// and spoofed ones, in any spelling, do not; a denial reaches the client with its
// status, challenge and body.
func TestTraefikForwardAuth(t *testing.T) {
	r := newRig(t)
	addr := r.serve(t)
	up := &upstream{}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)
	traefik := httptest.NewServer(&forwardAuth{
		address:                  "http://" + addr + authz.PathTraefik,
		authResponseHeaders:      []string{"X-Auth-Subject", "X-Auth-Client-Id", "X-Auth-Scopes"},
		authResponseHeadersRegex: regexp.MustCompile(`(?i)^x[-_]auth[-_]`),
		next:                     up,
		client:                   client,
	})
	t.Cleanup(traefik.Close)
	get := func(path string, header ...string) (*http.Response, string) {
		req, _ := http.NewRequest("GET", traefik.URL+path, nil)
		for _, h := range header {
			k, v, _ := strings.Cut(h, ": ")
			req.Header.Add(k, v)
		}
		resp, err := traefik.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp, body(t, resp)
	}

	resp, got := get("/orders/5?x=1", "Authorization: Bearer "+r.token("orders:read"),
		"X-Auth-Subject: admin", "X_Auth_Subject: admin", "X-Auth-Role: root", "X-Forwarded-Uri: /healthz")
	if resp.StatusCode != 200 || got != "order" {
		t.Fatalf("allowed: %d %q", resp.StatusCode, got)
	}
	h, _ := up.received()
	for name, want := range map[string]string{"X-Auth-Subject": "user-1", "X-Auth-Client-Id": "client-1", "X-Auth-Scopes": "orders:read"} {
		if v := h.Values(name); len(v) != 1 || v[0] != want {
			t.Errorf("upstream %s %q, want %q", name, v, want)
		}
	}
	for _, name := range []string{"X_auth_subject", "X-Auth-Role"} {
		if v := h.Values(name); len(v) > 0 {
			t.Errorf("upstream got the client's %s %q", name, v)
		}
	}
	// The client's own X-Forwarded-Uri did not decide: forwardAuth overwrote it.
	if seen := r.lastSeen(t); seen.RequestURI != "/orders/5?x=1" {
		t.Errorf("decided on %s", seen.RequestURI)
	}

	_, before := up.received()
	resp, got = get("/orders/5", "X-Auth-Subject: admin")
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Bearer realm="orders-api"` || !strings.Contains(got, `"error":"missing_token"`) {
		t.Errorf("no token: %d %q %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), got)
	}
	resp, got = get("/orders/5", "Authorization: Bearer "+r.token("orders:write"))
	if resp.StatusCode != 403 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="insufficient_scope"`) || !strings.Contains(got, "insufficient_scope") {
		t.Errorf("scope: %d %q %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), got)
	}
	if _, after := up.received(); after != before {
		t.Errorf("denied requests reached the upstream")
	}
}
