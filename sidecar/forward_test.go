package sidecar_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokengate/tokengate/internal/upstreamtest"
	"github.com/tokengate/tokengate/jwks/jwkstest"
	"github.com/tokengate/tokengate/sidecar"
)

// The forwarded request is the one that was decided on, in a form no common upstream
// reads differently, or it is refused. Each test names the finding of the security
// review (issue 10) it closes; e2e/upstreams proves the same against real servers.

// rawExchange writes raw bytes on a new connection and returns what came back until
// the server closed the connection or timeout passed, and whether it closed.
func rawExchange(t *testing.T, addr, raw string, timeout time.Duration) (string, bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	got, err := io.ReadAll(c)
	var ne net.Error
	timedOut := errors.As(err, &ne) && ne.Timeout()
	return string(got), !timedOut
}

func hostOf(u string) string { return strings.TrimPrefix(u, "http://") }

// Finding 1, h2c upgrade smuggling: an Upgrade other than WebSocket on a route that
// allows it never reaches the upstream; the request goes on as a plain one.
func TestUpgradeOtherThanWebSocketIsRemoved(t *testing.T) {
	h := start(t, "")
	for name, hdrs := range map[string][]string{
		"h2c on a public route":           {"Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA"},
		"h2c, lower case":                 {"connection: upgrade, http2-settings", "upgrade: H2C", "http2-settings: AAMAAABk"},
		"websocket and h2c":               {"Connection: Upgrade", "Upgrade: websocket, h2c"},
		"an unknown protocol":             {"Connection: Upgrade", "Upgrade: TLS/1.2"},
		"HTTP2-Settings alone":            {"HTTP2-Settings: AAMAAABk", "Connection: HTTP2-Settings"},
		"websocket on a route without it": {"Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="},
	} {
		t.Run(name, func(t *testing.T) {
			before := h.up.Count()
			resp, _ := h.do(t, "GET", "/healthz", "", hdrs...)
			if resp.StatusCode != 200 || h.up.Count() != before+1 {
				t.Fatalf("%d; reached the upstream %d times", resp.StatusCode, h.up.Count()-before)
			}
			got := h.up.Last().Header
			if got.Get("Upgrade") != "" || got.Get("HTTP2-Settings") != "" || strings.Contains(strings.ToLower(got.Get("Connection")), "upgrade") {
				t.Fatalf("the upstream got the switch: %v", got)
			}
		})
	}
	// The same on a route with a token, and the request is the plain request.
	resp, _ := h.do(t, "GET", "/orders/1", h.read(), "Connection: Upgrade", "Upgrade: h2c", "HTTP2-Settings: AAMAAABk")
	if resp.StatusCode != 200 || h.up.Last().Header.Get("Upgrade") != "" || h.up.Last().Path != "/orders/1" {
		t.Fatalf("%d %+v", resp.StatusCode, h.up.Last())
	}
}

// Finding 7: a WebSocket tunnel whose client left is closed soon after, even when the
// upstream never writes again; an idle one is closed after limits.tunnelIdle.
func TestWebSocketTunnelsEnd(t *testing.T) {
	h := start(t, "limits: {tunnelIdle: 1s}\n")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dial := func() *websocket.Conn {
		c := h.dialWebSocket(t, ctx, upstreamtest.PushPath, h.read())
		if _, msg, err := c.Read(ctx); err != nil || string(msg) != "hello" {
			t.Fatalf("%q %v", msg, err)
		}
		return c
	}
	waitEnded := func(what string, within time.Duration) time.Duration {
		start := time.Now()
		select {
		case <-h.up.PushEnded():
			return time.Since(start)
		case <-time.After(within):
			t.Fatalf("%s: the upstream still holds the tunnel after %s", what, within)
		}
		return 0
	}

	// The client closes normally; the upstream, which never reads, is let go within
	// the linger (2 s, here the 1 s idle limit) rather than at its next write.
	c := dial()
	c.Close(websocket.StatusNormalClosure, "bye")
	took := waitEnded("after the client closed", 5*time.Second)
	t.Logf("upstream end closed %s after the client's close", took)

	// Idle both ways: closed after tunnelIdle, both ends.
	c = dial()
	start := time.Now()
	waitEnded("idle", 10*time.Second)
	if idle := time.Since(start); idle < 900*time.Millisecond {
		t.Fatalf("closed after %s, before the idle limit", idle)
	}
	if _, _, err := c.Read(ctx); err == nil {
		t.Fatal("the client end is still open")
	}
	c.CloseNow()
	if n := h.up.Pushes(); n != 0 {
		t.Fatalf("%d push connections still open", n)
	}
}

// An echo tunnel in use is not idle, however long it lasts.
func TestWebSocketBusyTunnelIsNotIdle(t *testing.T) {
	h := start(t, "limits: {tunnelIdle: 300ms}\n")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := h.dialWebSocket(t, ctx, "/ws", h.read())
	defer c.CloseNow()
	deadline := time.Now().Add(1200 * time.Millisecond) // four idle limits
	for i := 0; time.Now().Before(deadline) && i < 1000; i++ {
		if err := c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		if _, msg, err := c.Read(ctx); err != nil || string(msg) != "echo: ping" {
			t.Fatalf("read %d: %q %v", i, msg, err)
		}
		time.Sleep(50 * time.Millisecond) // traffic every 50 ms, well inside the limit
	}
	c.Close(websocket.StatusNormalClosure, "")
}

// Finding 3: a denied request with a body is answered at once and its connection
// closed, however little of the body was sent.
func TestDeniedSlowBodyIsAnsweredAtOnce(t *testing.T) {
	h := start(t, "")
	before := h.up.Count()
	begin := time.Now()
	got, closed := rawExchange(t, hostOf(h.url), "POST /orders HTTP/1.1\r\nHost: api\r\nContent-Length: 100000\r\n\r\nx", 10*time.Second)
	took := time.Since(begin)
	if !strings.HasPrefix(got, "HTTP/1.1 401 ") || !strings.Contains(got, "Connection: close") {
		t.Fatalf("got %q", got)
	}
	if !closed {
		t.Fatal("the connection stayed open")
	}
	if h.up.Count() != before {
		t.Fatal("reached the upstream")
	}
	t.Logf("answered and closed in %s", took)
	// A denied request without a body keeps its connection (a client may retry on it).
	got, closed = rawExchange(t, hostOf(h.url), "GET /orders/1 HTTP/1.1\r\nHost: api\r\n\r\n", 300*time.Millisecond)
	if !strings.HasPrefix(got, "HTTP/1.1 401 ") || closed {
		t.Fatalf("a bodyless denial: closed %v, %q", closed, got)
	}
}

// Finding 3: an allowed request whose body stops arriving is cut after
// limits.bodyIdle with 408, and the upstream sees a request that did not complete.
func TestAllowedSlowBodyIsCut(t *testing.T) {
	h := start(t, "limits: {bodyIdle: 300ms}\n")
	begin := time.Now()
	got, closed := rawExchange(t, hostOf(h.url), "POST /upload HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer "+h.read()+
		"\r\nContent-Length: 100000\r\n\r\nx", 10*time.Second)
	took := time.Since(begin)
	if !strings.HasPrefix(got, "HTTP/1.1 408 ") || !closed {
		t.Fatalf("closed %v, got %q", closed, got)
	}
	if took < 250*time.Millisecond {
		t.Fatalf("cut after %s, before the idle limit", took)
	}
	eventually(t, "the upstream to see the cut request", func() bool { return h.up.Count() > 0 })
	if n := h.up.Last().BodyLen; n >= 100000 {
		t.Fatalf("the upstream read %d bytes", n)
	}
	// A body that keeps coming, slower than the limit in all but no pause longer, passes.
	c, err := net.Dial("tcp", hostOf(h.url))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer "+h.read()+"\r\nContent-Length: 8\r\n\r\n")
	for i := range 8 {
		time.Sleep(100 * time.Millisecond)
		if _, err := c.Write([]byte{byte('0' + i)}); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	resp.Body.Close()
	if n := h.up.Last().BodyLen; n != 8 {
		t.Fatalf("upstream read %d bytes", n)
	}
}

// Finding 5: list claims reach the upstream so that one item and two never read alike.
func TestClaimHeadersAreUnambiguous(t *testing.T) {
	h := start(t, "forward:\n  claims: {sub: X-Auth-Subject, groups: X-Auth-Groups, scope: X-Auth-Scopes}\n")
	for _, tc := range []struct {
		groups any
		want   string
	}{
		{[]string{"eng,admins"}, "eng%2Cadmins"},
		{[]string{"eng", "admins"}, "eng,admins"},
		{"eng,admins", "eng%2Cadmins"},
		{[]any{"a", 1, map[string]int{"x": 1, "y": 2}}, `a,1,{"x":1%2C"y":2}`},
		{[]string{"100%", "Zoë"}, "100%25,Zo%C3%AB"},
	} {
		tok := h.as.MustMint(jwkstest.Claims{"sub": "CN=alice,O=corp", "scope": "orders:read", "groups": tc.groups})
		if resp, body := h.do(t, "GET", "/orders/1", tok); resp.StatusCode != 200 {
			t.Fatalf("%v: %d %s", tc.groups, resp.StatusCode, body)
		}
		got := h.up.Last().Header
		if v := got.Values("X-Auth-Groups"); len(v) != 1 || v[0] != tc.want {
			t.Errorf("groups %v: upstream got %q, want %q", tc.groups, v, tc.want)
		}
		if v := got.Get("X-Auth-Subject"); v != "CN=alice%2CO=corp" {
			t.Errorf("subject %q", v)
		}
	}
	// Finding 5 and 6: a scope item the scope check would not match is never forwarded
	// as scopes: the token is refused.
	for _, scope := range []any{[]string{"read admin"}, "foo\u00a0orders:read", "foo\u2003orders:read", "a\u0085orders:read", "x\u3000orders:read", "a\torders:read"} {
		before := h.up.Count()
		resp, _ := h.do(t, "GET", "/orders/1", h.as.MustMint(jwkstest.Claims{"scope": scope}))
		if resp.StatusCode != 401 || h.up.Count() != before {
			t.Errorf("scope %q: %d, reached %d", scope, resp.StatusCode, h.up.Count()-before)
		}
	}
}

// Finding 8: headers that frameworks act on never reach the upstream, in any spelling;
// the list is configurable.
func TestRoutingOverrideHeadersAreStripped(t *testing.T) {
	h := start(t, "")
	resp, _ := h.do(t, "POST", "/orders", h.as.MustMint(jwkstest.Claims{"scope": "orders:write"}),
		"X-HTTP-Method-Override: DELETE", "x_http_method_override: DELETE", "X-HTTP-Method: DELETE", "X-Method-Override: DELETE",
		"X-Original-URL: /admin", "X-Rewrite-URL: /admin", "X-Real-IP: 10.0.0.1", "X-Client-IP: 10.0.0.1",
		"X-Forwarded-Port: 443", "X-Forwarded-Prefix: /admin", "True-Client-IP: 10.0.0.1", "X-Kept: yes")
	if resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	got := h.up.Last().Header
	for name := range got {
		n := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
		for _, banned := range []string{"x-http-method", "x-method-override", "x-original-url", "x-rewrite-url", "x-real-ip", "x-client-ip", "x-forwarded-port", "x-forwarded-prefix", "true-client-ip"} {
			if strings.HasPrefix(n, banned) {
				t.Errorf("the upstream got %s: %q", name, got[name])
			}
		}
	}
	if got.Get("X-Kept") != "yes" {
		t.Error("an ordinary header was removed")
	}

	h2 := start(t, "forward:\n  stripHeaders: [X-Tenant]\n")
	h2.do(t, "GET", "/orders/1", h2.read(), "X-Tenant: other", "X-Real-IP: 10.0.0.1")
	if got := h2.up.Last().Header; got.Get("X-Tenant") != "" || got.Get("X-Real-IP") != "10.0.0.1" {
		t.Fatalf("a configured list: %v", got)
	}
}

// Finding 8: removing access_token leaves the rest of the query byte for byte.
func TestQueryTokenRemovedByteForByte(t *testing.T) {
	h := start(t, "")
	for query, want := range map[string]string{
		"b=2&access_token=x&a=%2F&b=1": "b=2&a=%2F&b=1",
		"access%5Ftoken=x&z=%41&c":     "z=%41&c",
		// Go's ReverseProxy re-encodes a query that Go cannot parse (';' is no
		// separator since Go 1.17), dropping what it cannot read, so that the
		// upstream never reads parameters that tokengate did not see.
		"a=1;b=2&access_token=x&c=3":      "c=3",
		"x=1&access_token=a&access_token": "x=1",
		"q=a+b&Access_Token=kept":         "q=a+b&Access_Token=kept",
		"no=token":                        "no=token",
	} {
		h.do(t, "GET", "/orders/1?"+query, h.read())
		if got := h.up.Last().Query; got != want {
			t.Errorf("%q: upstream query %q, want %q", query, got, want)
		}
	}
}

// Finding 8: a request without a host is refused, never forwarded with the upstream's
// own address as its host.
func TestRequestWithoutHostIsRefused(t *testing.T) {
	h := start(t, "")
	before := h.up.Count()
	got, _ := rawExchange(t, hostOf(h.url), "GET /healthz HTTP/1.0\r\n\r\n", 5*time.Second)
	if !strings.HasPrefix(got, "HTTP/1.0 400 ") || !strings.Contains(got, "invalid_request") {
		t.Fatalf("got %q", got)
	}
	if h.up.Count() != before {
		t.Fatal("reached the upstream")
	}
	got, _ = rawExchange(t, hostOf(h.url), "GET /healthz HTTP/1.0\r\nHost: api\r\n\r\n", 5*time.Second)
	if !strings.HasPrefix(got, "HTTP/1.0 200 ") || h.up.Last().Header.Get("X-Forwarded-Host") != "api" {
		t.Fatalf("with a host: %q", got)
	}
}

// Finding 8: the upstream receives a bearer token only when tokengate verified it;
// shadow mode forwards what the client sent.
func TestUnverifiedTokensAreNotForwarded(t *testing.T) {
	h := start(t, "  - match: \"GET /shadowed\"\n    scopes: [never]\n    shadow: true\n")
	forged := h.as.MustMint(jwkstest.Claims{"sub": "admin", "scope": "orders:read"}, jwkstest.WithSigner(jwkstest.MustGenerateKey("evil", "RS256")))
	for name, tc := range map[string]struct {
		path, header string
		token, ids   bool
	}{
		"forged on a public route":      {"/healthz", "Bearer " + forged, false, false},
		"expired on a public route":     {"/healthz", "Bearer " + h.as.MustMint(jwkstest.Claims{"exp": time.Now().Add(-time.Hour).Unix()}), false, false},
		"garbage on a public route":     {"/healthz", "Bearer not.a.token", false, false},
		"valid on a public route":       {"/healthz", "Bearer " + h.read(), true, true},
		"Basic on a public route":       {"/healthz", "Basic dTpw", true, false},
		"shadow-denied keeps its token": {"/shadowed", "Bearer " + h.read(), true, false},
	} {
		t.Run(name, func(t *testing.T) {
			resp, _ := h.do(t, "GET", tc.path, "", "Authorization: "+tc.header, "X-Auth-Subject: spoof")
			if resp.StatusCode != 200 {
				t.Fatal(resp.StatusCode)
			}
			got := h.up.Last().Header
			if has := got.Get("Authorization") != ""; has != tc.token {
				t.Errorf("Authorization forwarded: %v, want %v", has, tc.token)
			}
			if sub := got.Get("X-Auth-Subject"); (sub == "u1") != tc.ids || sub == "spoof" || sub == "admin" {
				t.Errorf("X-Auth-Subject %q", sub)
			}
		})
	}
}

// websocketKey is a fresh Sec-WebSocket-Key.
func websocketKey() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// A WebSocket handshake that the route allows but the upstream refuses is answered with
// the upstream's refusal, and no tunnel is left behind.
func TestWebSocketRefusedByUpstream(t *testing.T) {
	h := start(t, "  - match: \"/plain\"\n    websocket: true\n")
	resp, _ := h.do(t, "GET", "/plain", h.read(), "Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: "+websocketKey())
	if resp.StatusCode != 200 || h.up.Last().Header.Get("Upgrade") != "websocket" {
		t.Fatalf("%d %v", resp.StatusCode, h.up.Last().Header)
	}
}

// Shadow mode forwards policy denials, never a request that cannot be forwarded as it
// was decided on: no host, CONNECT.
func TestShadowModeStillRefusesTheUnforwardable(t *testing.T) {
	h := start(t, "mode: shadow\n")
	before := h.up.Count()
	for raw, want := range map[string]string{
		"GET /orders/1 HTTP/1.0\r\n\r\n":                      "HTTP/1.0 400 ",
		"CONNECT api:443 HTTP/1.1\r\nHost: api:443\r\n\r\n":   "HTTP/1.1 403 ",
		"CONNECT /orders/1 HTTP/1.1\r\nHost: api:443\r\n\r\n": "HTTP/1.1 403 ",
		"GET /orders/1 HTTP/1.1\r\nHost: api\r\n\r\n":         "HTTP/1.1 200 ", // shadow_denied: no token, forwarded
	} {
		if got, _ := rawExchange(t, hostOf(h.url), raw, 300*time.Millisecond); !strings.HasPrefix(got, want) {
			t.Errorf("%q: got %q", raw, got)
		}
	}
	if n := h.up.Count() - before; n != 1 {
		t.Fatalf("%d requests reached the upstream, want the one shadow denial", n)
	}
}

// Every request reaches the upstream with a request id: the client's when it is well
// formed, else a new one; a denial answers with it (issue 11).
func TestRequestID(t *testing.T) {
	h := start(t, "")
	h.do(t, "GET", "/orders/1", h.read(), "X-Request-Id: 6f1c2a9e-1b7d-4c3e-9a55-0b4c1d2e3f40")
	if got := h.up.Last().Header.Values("X-Request-Id"); len(got) != 1 || got[0] != "6f1c2a9e-1b7d-4c3e-9a55-0b4c1d2e3f40" {
		t.Fatalf("a well-formed id became %q", got)
	}
	for _, bad := range []string{"", "two words", strings.Repeat("x", 200), "a\"b"} {
		var hdrs []string
		if bad != "" {
			hdrs = append(hdrs, "X-Request-Id: "+bad)
		}
		h.do(t, "GET", "/orders/1", h.read(), hdrs...)
		if got := h.up.Last().Header.Values("X-Request-Id"); len(got) != 1 || len(got[0]) != 32 {
			t.Errorf("%q became %q, want one new id", bad, got)
		}
	}
	resp, _ := h.do(t, "GET", "/orders/1", "", "X-Request-Id: abc-1")
	if resp.StatusCode != 401 || resp.Header.Get("X-Request-Id") != "abc-1" {
		t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get("X-Request-Id"))
	}
}

// The sidecar's whole registry (decisions, key sets, reloads, upstream, build, Go and
// process) passes client_golang's lint: names, units, help texts.
func TestMetricsLint(t *testing.T) {
	reg := sidecar.NewRegistry("test")
	h := start(t, "", func(o *sidecar.Options) { o.Registry = reg })
	h.do(t, "GET", "/orders/1", h.read())
	problems, err := testutil.GatherAndLint(reg)
	if err != nil || len(problems) > 0 {
		t.Fatalf("%v %v", err, problems)
	}
}
