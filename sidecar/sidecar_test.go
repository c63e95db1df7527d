package sidecar_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/tokengate/tokengate/internal/e2etest"
	"github.com/tokengate/tokengate/internal/upstreamtest"
	"github.com/tokengate/tokengate/jwks/jwkstest"
	"github.com/tokengate/tokengate/policy"
	"github.com/tokengate/tokengate/sidecar"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const audience = "https://orders.example.com"

// baseConfig is a configuration with %[1]s for the issuer and %[2]s for the upstream.
const baseConfig = `
upstream: %[2]q
realm: orders-api
issuers:
  - issuer: %[1]q
    audiences: [%[3]q]
routes:
  - match: "GET /healthz"
    public: true
  - match: "GET /orders/{id}"
    scopes: [orders:read]
  - match: "POST /orders"
    scopes: [orders:write]
  - match: "/ws"
    websocket: true
  - match: "/ws/push"
    websocket: true
  - match: "/stream"
  - match: "/upload"
`

// harness runs a sidecar in process, in front of an upstream, with an authorization
// server, on loopback ports.
type harness struct {
	as      *jwkstest.Server
	up      *upstreamtest.Server
	sc      *sidecar.Sidecar
	url     string
	admin   string
	cfgPath string
	cancel  context.CancelFunc
	done    chan error
	logs    *e2etest.LockedBuffer
	// template is the configuration, baseConfig unless startWith says otherwise.
	template string
}

func start(t testing.TB, extra string, opts ...func(*sidecar.Options)) *harness {
	t.Helper()
	return startWith(t, baseConfig, extra, opts...)
}

// startWith is start with another configuration template (with baseConfig's verbs).
func startWith(t testing.TB, template, extra string, opts ...func(*sidecar.Options)) *harness {
	t.Helper()
	as, err := jwkstest.NewServer(jwkstest.WithAudience(audience))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(as.Close)
	h := &harness{as: as, up: upstreamtest.Start(t), logs: &e2etest.LockedBuffer{}, template: template}
	h.cfgPath = filepath.Join(t.TempDir(), "tokengate.yaml")
	h.writeConfig(t, extra)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	adminLn, _ := net.Listen("tcp", "127.0.0.1:0")
	loaded, err := policy.LoadFile(h.cfgPath, policy.ForProxy, policy.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	o := sidecar.Options{
		Logger:      slog.New(slog.NewJSONHandler(h.logs, nil)),
		ConfigPath:  h.cfgPath,
		ReloadEvery: 20 * time.Millisecond,
		Listener:    ln, AdminListener: adminLn,
		DrainTimeout: 5 * time.Second,
	}
	for _, f := range opts {
		f(&o)
	}
	if h.sc, err = sidecar.New(loaded, o); err != nil {
		t.Fatal(err)
	}
	h.url, h.admin = "http://"+ln.Addr().String(), "http://"+adminLn.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- h.sc.Run(ctx) }()
	t.Cleanup(h.stop)
	eventually(t, "readiness", func() bool { ok, _ := h.sc.Ready(); return ok })
	return h
}

func (h *harness) writeConfig(t testing.TB, extra string) {
	t.Helper()
	cfg := fmt.Sprintf(h.template, h.as.Issuer, h.up.URL, audience) + extra
	tmp := h.cfgPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, h.cfgPath); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) stop() {
	h.cancel()
	select {
	case <-h.done:
	case <-time.After(20 * time.Second):
		panic("sidecar did not stop")
	}
}

func (h *harness) do(t *testing.T, method, path, token string, headers ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, h.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for _, hv := range headers {
		name, value, _ := strings.Cut(hv, ": ")
		req.Header.Add(name, value)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// dialWebSocket opens a WebSocket through the sidecar with a bearer token.
func (h *harness) dialWebSocket(t *testing.T, ctx context.Context, path, token string) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.Dial(ctx, strings.Replace(h.url, "http", "ws", 1)+path, &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"Bearer " + token}},
	})
	if err != nil {
		t.Fatalf("dial %s: %v (%v)", path, err, resp)
	}
	return c
}

func (h *harness) read() string {
	return h.as.MustMint(jwkstest.Claims{"sub": "u1", "client_id": "c1", "scope": "orders:read"})
}

// eventually waits for cond, for as long as a busy 2-core machine may need.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	e2etest.Eventually(t, 10*time.Second, what, cond)
}

func TestAllowedRequestCarriesClaimHeaders(t *testing.T) {
	h := start(t, "")
	resp, body := h.do(t, "GET", "/orders/7?x=1", h.read())
	if resp.StatusCode != 200 || body != "upstream saw GET /orders/7" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	got := h.up.Last()
	for name, want := range map[string]string{"X-Auth-Subject": "u1", "X-Auth-Client-Id": "c1", "X-Auth-Scopes": "orders:read"} {
		if v := got.Header.Values(name); len(v) != 1 || v[0] != want {
			t.Errorf("%s = %q, want exactly %q", name, v, want)
		}
	}
	if got.Header.Get("Authorization") == "" {
		t.Error("Authorization removed although removeAuthorization is false")
	}
	if got.Header.Get("X-Forwarded-For") != "127.0.0.1" || got.Header.Get("X-Forwarded-Proto") != "http" {
		t.Errorf("X-Forwarded-*: %v", got.Header)
	}
	if got.Query != "x=1" {
		t.Errorf("query %q", got.Query)
	}
}

func TestDeniedRequestsNeverReachTheUpstream(t *testing.T) {
	h := start(t, "")
	as := h.as
	for name, tc := range map[string]struct {
		path, token string
		headers     []string
		status      int
	}{
		"no token":                  {"/orders/1", "", nil, 401},
		"malformed":                 {"/orders/1", "", []string{"Authorization: Bearer a b"}, 400},
		"two headers":               {"/orders/1", h.read(), []string{"Authorization: Bearer x"}, 400},
		"garbage token":             {"/orders/1", "abc", nil, 401},
		"alg none":                  {"/orders/1", jwkstest.Encode([]byte(`{"alg":"none"}`)) + "." + jwkstest.Encode([]byte(`{}`)) + ".c2ln", nil, 401},
		"unknown issuer":            {"/orders/1", as.MustMint(jwkstest.Claims{"iss": "https://evil.example", "scope": "orders:read"}), nil, 401},
		"unknown kid":               {"/orders/1", as.MustMint(jwkstest.Claims{"scope": "orders:read"}, jwkstest.WithHeader(jwkstest.Claims{"kid": "x"})), nil, 401},
		"bad signature":             {"/orders/1", as.MustMint(jwkstest.Claims{"scope": "orders:read"}, jwkstest.WithSigner(jwkstest.MustGenerateKey("rsa-1", "RS256"))), nil, 401},
		"expired":                   {"/orders/1", as.MustMint(jwkstest.Claims{"scope": "orders:read", "exp": time.Now().Add(-time.Hour).Unix()}), nil, 401},
		"not yet valid":             {"/orders/1", as.MustMint(jwkstest.Claims{"scope": "orders:read", "nbf": time.Now().Add(time.Hour).Unix()}), nil, 401},
		"audience":                  {"/orders/1", as.MustMint(jwkstest.Claims{"scope": "orders:read", "aud": "x"}), nil, 401},
		"claims":                    {"/orders/1", as.MustMint(jwkstest.Claims{"scope": "orders:read", "exp": "soon"}), nil, 401},
		"scope":                     {"/orders/1", as.MustMint(jwkstest.Claims{"scope": "orders:write"}), nil, 403},
		"no route":                  {"/admin", h.read(), nil, 403},
		"algorithm":                 {"/orders/1", as.MustMint(jwkstest.Claims{"scope": "orders:read"}, jwkstest.WithAlg("PS256")), nil, 401},
		"control in a claim header": {"/orders/1", as.MustMint(jwkstest.Claims{"scope": "orders:read", "sub": "a\r\nX-Admin: 1"}), nil, 401},
	} {
		t.Run(name, func(t *testing.T) {
			before := h.up.Count()
			resp, body := h.do(t, "GET", tc.path, tc.token, tc.headers...)
			if resp.StatusCode != tc.status {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			if h.up.Count() != before {
				t.Fatal("a denied request reached the upstream")
			}
			if resp.Header.Get("WWW-Authenticate") == "" {
				t.Fatal("no challenge")
			}
		})
	}
}

func TestSpoofedIdentityHeaders(t *testing.T) {
	// X40, X41: every spelling a client might use is removed; the upstream sees exactly
	// the verified value.
	h := start(t, "")
	resp, _ := h.do(t, "GET", "/orders/1", h.read(),
		"X-Auth-Subject: admin", "x-auth-subject: admin2", "X_Auth_Subject: admin3", "X-AUTH_SUBJECT: admin4",
		"X-Auth-Role: admin", "x_auth_groups: root",
		"Connection: X-Auth-Subject, X-Auth-Client-Id",
		"X-Forwarded-For: 10.0.0.1", "Forwarded: for=10.0.0.1", "X-Forwarded-Host: evil.example")
	if resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	got := h.up.Last()
	for name, values := range got.Header {
		n := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
		if strings.HasPrefix(n, "x-auth-") {
			if want := map[string]string{"x-auth-subject": "u1", "x-auth-client-id": "c1", "x-auth-scopes": "orders:read"}[n]; len(values) != 1 || values[0] != want {
				t.Errorf("upstream got %s: %q", name, values)
			}
		}
	}
	if v := got.Header.Values("X-Auth-Subject"); len(v) != 1 || v[0] != "u1" {
		t.Fatalf("X-Auth-Subject %q", v)
	}
	if got.Header.Get("X-Forwarded-For") != "127.0.0.1" || got.Header.Get("Forwarded") != "" || got.Header.Get("X-Forwarded-Host") == "evil.example" {
		t.Fatalf("forwarding headers trusted from the client: %v", got.Header)
	}
	// A spoofed header on a public route is removed too.
	h.do(t, "GET", "/healthz", "", "X-Auth-Subject: admin")
	if v := h.up.Last().Header.Get("X-Auth-Subject"); v != "" {
		t.Fatalf("public route forwarded X-Auth-Subject %q", v)
	}
}

func TestTokenInQueryIsStripped(t *testing.T) {
	h := start(t, "")
	h.do(t, "GET", "/orders/1?access_token=secret&x=1", h.read())
	if q := h.up.Last().Query; strings.Contains(q, "secret") || q != "x=1" {
		t.Fatalf("upstream query %q", q)
	}
}

func TestRemoveAuthorization(t *testing.T) {
	h := start(t, "forward:\n  removeAuthorization: true\n  claims: {sub: X-User}\n")
	h.do(t, "GET", "/orders/1", h.read(), "X-Auth-Subject: spoof")
	got := h.up.Last()
	if got.Header.Get("Authorization") != "" || got.Header.Get("X-User") != "u1" || got.Header.Get("X-Auth-Subject") != "" {
		t.Fatalf("headers %v", got.Header)
	}
}

func TestLargeBodyAndStreaming(t *testing.T) {
	h := start(t, "")
	body := bytes.Repeat([]byte("0123456789abcdef"), 20<<20/16) // 20 MiB
	sum := sha256.Sum256(body)
	req, _ := http.NewRequest("POST", h.url+"/upload", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+h.read())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := h.up.Last(); resp.StatusCode != 200 || got.BodyLen != int64(len(body)) || got.BodySHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("20 MiB upload: %d, upstream got %d bytes", resp.StatusCode, got.BodyLen)
	}

	// The first chunk of a slow response arrives before the upstream has finished.
	req, _ = http.NewRequest("GET", h.url+"/stream", nil)
	req.Header.Set("Authorization", "Bearer "+h.read())
	start := time.Now()
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, len("chunk 0\n"))
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "chunk 0\n" {
		t.Fatalf("first chunk %q %v", first, err)
	}
	if d := time.Since(start); d > 400*time.Millisecond {
		t.Fatalf("first chunk after %s: the response was buffered", d)
	}
	rest, _ := io.ReadAll(resp.Body)
	if !strings.HasSuffix(string(rest), "chunk 4\n") {
		t.Fatalf("rest %q", rest)
	}
}

func TestWebSocket(t *testing.T) {
	h := start(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := h.dialWebSocket(t, ctx, "/ws", h.read())
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	_, msg, err := c.Read(ctx)
	if err != nil || string(msg) != "echo: hello" {
		t.Fatalf("%q %v", msg, err)
	}
	c.Close(websocket.StatusNormalClosure, "")

	// Without a token the upgrade is refused before the upstream.
	_, resp, err := websocket.Dial(ctx, strings.Replace(h.url, "http", "ws", 1)+"/ws", nil)
	if err == nil || resp == nil || resp.StatusCode != 401 {
		t.Fatalf("unauthenticated upgrade: %v %v", err, resp)
	}
}

func TestUpstreamFailures(t *testing.T) {
	t.Run("down: 502", func(t *testing.T) {
		h := start(t, "")
		h.up.Close()
		resp, body := h.do(t, "GET", "/orders/1", h.read())
		if resp.StatusCode != 502 || !strings.Contains(body, `"error":"bad_gateway"`) || strings.Contains(body, "eyJ") {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
	t.Run("slow: 504", func(t *testing.T) {
		h := start(t, "  - match: \"/slow\"\n", func(o *sidecar.Options) { o.UpstreamTimeout = 100 * time.Millisecond })
		resp, body := h.do(t, "GET", "/slow", h.read())
		if resp.StatusCode != 504 || !strings.Contains(body, "gateway_timeout") {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
}

func TestH2C(t *testing.T) {
	h := start(t, "")
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	client := &http.Client{Transport: &http.Transport{Protocols: p}}
	req, _ := http.NewRequest("GET", h.url+"/orders/1", nil)
	req.Header.Set("Authorization", "Bearer "+h.read())
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	client.CloseIdleConnections()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Fatalf("%d over %s", resp.StatusCode, resp.Proto)
	}
}

func TestReload(t *testing.T) {
	h := start(t, "")
	tok := h.as.MustMint(jwkstest.Claims{"scope": "orders:read"})
	if resp, _ := h.do(t, "GET", "/extra", tok); resp.StatusCode != 403 {
		t.Fatal("no route before the reload")
	}
	fetches := h.as.JWKSFetches()
	h.writeConfig(t, "  - match: \"GET /extra\"\n")
	eventually(t, "the new route", func() bool { resp, _ := h.do(t, "GET", "/extra", tok); return resp.StatusCode == 200 })
	if h.as.JWKSFetches() != fetches {
		t.Fatal("a reload that kept the issuer fetched its keys again")
	}
	exposition := func() string {
		resp, err := http.Get(h.admin + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	metric := func(result string) bool {
		return strings.Contains(exposition(), `tokengate_config_reloads_total{result="`+result+`"} 1`)
	}
	if !metric("success") || !strings.Contains(exposition(), "tokengate_config_last_reload_successful 1") {
		t.Fatal("successful reload not counted")
	}

	// An invalid file is refused; the running configuration stays.
	if err := os.WriteFile(h.cfgPath, []byte("issuers: [\n  audience: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the refusal", func() bool { return metric("error") })
	if resp, _ := h.do(t, "GET", "/extra", tok); resp.StatusCode != 200 {
		t.Fatal("the running configuration was lost")
	}
	if !strings.Contains(h.logs.String(), "configuration refused") {
		t.Fatal("refusal not logged")
	}
	// The refusal lasts as long as the file holds it, and ends with a good file.
	if !strings.Contains(exposition(), "tokengate_config_last_reload_successful 0") {
		t.Fatal("the refused file is not shown as such")
	}
	h.writeConfig(t, "  - match: \"GET /extra\"\n  - match: \"GET /more\"\n")
	eventually(t, "the fixed file", func() bool { return strings.Contains(exposition(), "tokengate_config_last_reload_successful 1") })
}

func TestAdminEndpointsAndDrain(t *testing.T) {
	h := start(t, "  - match: \"/slow\"\n")
	for path, want := range map[string]string{"/healthz": `"alive"`, "/readyz": `"ready":true`} {
		resp, err := http.Get(h.admin + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
		}
	}
	// A request in flight when the sidecar is told to stop is answered.
	result := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("GET", h.url+"/slow", nil)
		req.Header.Set("Authorization", "Bearer "+h.read())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			result <- -1
			return
		}
		resp.Body.Close()
		result <- resp.StatusCode
	}()
	time.Sleep(100 * time.Millisecond)
	h.cancel()
	if code := <-result; code != 200 {
		t.Fatalf("request in flight during shutdown: %d", code)
	}
	if err := <-h.done; err != nil {
		t.Fatal(err)
	}
	h.done <- nil // for the cleanup
}
