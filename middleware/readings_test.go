package middleware_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/jwks/jwkstest"
	"github.com/tokengate/tokengate/middleware"
)

// docRoutes are the routes of docs/configuration.md's example: a catch-all "/" that
// accepts any valid token, under which the review (issue 10, finding 2) reached the
// protected handlers of Express and Tomcat.
var docRoutes = []middleware.Route{
	{Match: "GET /healthz", Public: true},
	{Match: "GET /orders/{id}", Scopes: []string{"orders:read"}},
	{Match: "POST /orders", AnyScopes: []string{"orders:write", "orders:admin"}},
	{Match: "GET /events", Scopes: []string{"orders:read"}, WebSocket: true},
	{Match: "/", Scopes: []string{}},
}

// TestPathReadings is the review's finding 2 as a table: the paths that common
// frameworks normalize, sent with a token that has no scope (or orders:read), under
// each upstreamPaths style. A request is decided on every reading its style names.
func TestPathReadings(t *testing.T) {
	type row struct {
		attack, method, target string
		read                   bool // the token has orders:read
		status                 int
		route                  string
	}
	forbidden, ok := http.StatusForbidden, http.StatusOK
	for _, tc := range []struct {
		style middleware.PathStyle
		rows  []row
	}{
		{middleware.PathsStrict, []row{
			{"Express case folding", "GET", "/ORDERS/1", false, forbidden, "GET /orders/{id}"},
			{"Express case folding, with the scope", "GET", "/ORDERS/1", true, ok, "/"},
			{"Express trailing slash", "GET", "/orders/1/", false, forbidden, "GET /orders/{id}"},
			{"Express trailing slash, with the scope", "GET", "/orders/1/", true, ok, "/"},
			{"Express case-folded POST", "POST", "/Orders", false, forbidden, "POST /orders"},
			{"both", "GET", "/Orders/1/", false, forbidden, "GET /orders/{id}"},
			{"werkzeug and ASP.NET upper-case the method", "get", "/orders/1", false, forbidden, "GET /orders/{id}"},
			{"Tomcat path parameter", "GET", "/orders;x/1", true, forbidden, middleware.NoRoute},
			{"Tomcat empty path parameter", "GET", "/orders;/1", true, forbidden, middleware.NoRoute},
			{"encoded semicolon", "GET", "/orders%3Bx/1", true, forbidden, middleware.NoRoute},
			{"CONNECT", "CONNECT", "/orders/1", true, forbidden, middleware.NoRoute},
			{"a fragment in the request target", "GET", "/orders#x", true, forbidden, middleware.NoRoute},
			{"the plain request", "GET", "/orders/1", true, ok, "GET /orders/{id}"},
			{"no false denial: a subtree is not a reading of what is under it", "GET", "/other/1", true, ok, "/"},
			{"a public route read in upper case needs what the catch-all needs", "GET", "/HEALTHZ", false, ok, "/"},
		}},
		{middleware.PathsExact, []row{
			{"case is the API's business", "GET", "/ORDERS/1", false, ok, "/"},
			{"a slash is the API's business", "GET", "/orders/1/", false, ok, "/"},
			{"';' is an ordinary character", "GET", "/orders;x/1", false, ok, "/"},
			{"the plain request", "GET", "/orders/1", false, forbidden, "GET /orders/{id}"},
			{"Starlette upper-cases the method", "get", "/orders/1", false, forbidden, "GET /orders/{id}"},
			{"Express drops a fragment", "GET", "/orders/1#x", true, forbidden, middleware.NoRoute},
		}},
		{middleware.PathsExpress, []row{
			{"case folding", "GET", "/ORDERS/1", false, forbidden, "GET /orders/{id}"},
			{"case folding, with the scope", "GET", "/ORDERS/1", true, ok, "GET /orders/{id}"},
			{"trailing slash", "GET", "/orders/1/", false, forbidden, "GET /orders/{id}"},
			{"case-folded POST", "POST", "/ORDERS", false, forbidden, "POST /orders"},
			{"';' is an ordinary character to Express", "GET", "/orders;x/1", false, ok, "/"},
		}},
		{middleware.PathsServlet, []row{
			{"path parameter", "GET", "/orders;x/1", false, forbidden, "GET /orders/{id}"},
			{"empty path parameter", "GET", "/orders;/1", false, forbidden, "GET /orders/{id}"},
			{"path parameter, with the scope", "GET", "/orders;jsessionid=A1/1", true, ok, "GET /orders/{id}"},
			{"parameter on the last segment", "GET", "/orders/1;x", false, forbidden, "GET /orders/{id}"},
			{"trailing slash (Spring before 6)", "GET", "/orders/1/", false, forbidden, "GET /orders/{id}"},
			{"case is the container's: exact", "GET", "/ORDERS/1", false, ok, "/"},
			{"dot segment before a parameter", "GET", "/x/..;/orders/1", true, forbidden, middleware.NoRoute},
		}},
	} {
		e := newEnv(t, func(c *middleware.Config) {
			c.Routes = docRoutes
			c.PathStyle = tc.style
		})
		none := e.as.MustMint(jwkstest.Claims{"scope": "profile"})
		read := e.as.MustMint(jwkstest.Claims{"scope": "orders:read"})
		for _, r := range tc.rows {
			t.Run(string(tc.style)+"/"+r.attack, func(t *testing.T) {
				tok := none
				if r.read {
					tok = read
				}
				req := httptest.NewRequest("GET", "/", nil)
				req.Method = r.method
				req.URL.Path, req.URL.RawPath = "", ""
				u, err := req.URL.Parse(r.target)
				if err != nil {
					t.Fatal(err)
				}
				req.URL, req.RequestURI = u, r.target
				req.Header.Set("Authorization", "Bearer "+tok)
				d := e.gate.Decide(req)
				if d.Status != r.status || d.Route != r.route {
					t.Fatalf("%s %s: %d %s on %q (%v), want %d on %q", r.method, r.target, d.Status, d.Reason, d.Route, d.Err, r.status, r.route)
				}
				if r.status == forbidden && d.Route != middleware.NoRoute && d.Scope != "orders:read" && d.Scope != "orders:write" {
					t.Fatalf("challenge scope %q", d.Scope)
				}
			})
		}
	}
}

// Routes that only case tells apart are one route to an API that matches in any case.
func TestFoldedRoutesConflict(t *testing.T) {
	cfg := middleware.Config{
		Issuers:   []middleware.Issuer{{Audiences: []string{audience}}},
		Routes:    []middleware.Route{{Match: "GET /Orders/{id}"}, {Match: "GET /orders/{id}", Scopes: []string{"x"}}},
		PathStyle: middleware.PathsExpress,
	}
	cfg.Issuers[0].Issuer = "https://auth.example.com"
	err := middleware.Validate(cfg)
	var fe *middleware.FieldError
	if !errors.As(err, &fe) || fe.Field != "Routes[1].Match" || !strings.Contains(fe.Problem, "any case") {
		t.Fatalf("%v", err)
	}
	cfg.PathStyle = middleware.PathsExact
	if err := middleware.Validate(cfg); err != nil {
		t.Fatalf("exact: %v", err)
	}
	cfg.PathStyle = "rails"
	if err := middleware.Validate(cfg); err == nil || !strings.Contains(err.Error(), `"rails" is not a path style`) {
		t.Fatalf("unknown style: %v", err)
	}
}

// A route with upper case is matched in any case by strict's folded reading.
func TestStrictFoldsUpperCaseRoutes(t *testing.T) {
	e := newEnv(t, func(c *middleware.Config) {
		c.Routes = []middleware.Route{{Match: "GET /Admin/{x}", Scopes: []string{"admin"}}, {Match: "/", Scopes: []string{}}}
	})
	req := httptest.NewRequest("GET", "/admin/1", nil)
	req.Header.Set("Authorization", "Bearer "+e.as.MustMint(jwkstest.Claims{"scope": "profile"}))
	if d := e.gate.Decide(req); d.Status != 403 || d.Route != "GET /Admin/{x}" {
		t.Fatalf("%d on %q", d.Status, d.Route)
	}
}

// Only a WebSocket handshake on a route that allows it keeps its Upgrade; every other
// protocol switch (h2c, finding 1) is removed before the handler.
func TestHandlerDropsUpgrades(t *testing.T) {
	e := newEnv(t, func(c *middleware.Config) { c.Routes = docRoutes })
	tok := "Bearer " + e.as.MustMint(jwkstest.Claims{"scope": "orders:read"})
	var seen http.Header
	h := e.gate.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = r.Header.Clone() }))
	for _, tc := range []struct {
		name, path string
		header     map[string]string
		keep       bool
	}{
		{"h2c", "/healthz", map[string]string{"Connection": "Upgrade, HTTP2-Settings", "Upgrade": "h2c", "Http2-Settings": "AAMAAABk"}, false},
		{"websocket where it is allowed", "/events", map[string]string{"Connection": "keep-alive, Upgrade", "Upgrade": "websocket"}, true},
		{"websocket elsewhere", "/orders/1", map[string]string{"Connection": "Upgrade", "Upgrade": "websocket"}, false},
		{"websocket and more", "/events", map[string]string{"Connection": "Upgrade", "Upgrade": "websocket, h2c"}, false},
		{"websocket without Connection", "/events", map[string]string{"Upgrade": "websocket"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", tc.path, nil)
			req.Header.Set("Authorization", tok)
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			seen = nil
			h.ServeHTTP(httptest.NewRecorder(), req)
			if seen == nil {
				t.Fatal("not forwarded")
			}
			if kept := seen.Get("Upgrade") != ""; kept != tc.keep {
				t.Fatalf("Upgrade kept %v: %v", kept, seen)
			}
			if !tc.keep && (seen.Get("Http2-Settings") != "" || strings.Contains(strings.ToLower(seen.Get("Connection")), "upgrade")) {
				t.Fatalf("left %v", seen)
			}
			if tc.name == "websocket where it is allowed" && seen.Get("Connection") != "keep-alive, Upgrade" {
				t.Fatalf("Connection %q", seen.Get("Connection"))
			}
		})
	}
}

// On a public route a token is optional: a valid one gives the handler its claims,
// anything else is ignored, never trusted.
func TestPublicRouteToken(t *testing.T) {
	e := newEnv(t, nil)
	for name, tc := range map[string]struct {
		header string
		claims bool
	}{
		"valid":    {bearer(e.as.MustMint(jwkstest.Claims{"sub": "alice"})), true},
		"forged":   {bearer(e.as.MustMint(jwkstest.Claims{"sub": "alice"}, jwkstest.WithSigner(jwkstest.MustGenerateKey("x", "RS256")))), false},
		"expired":  {bearer(e.as.MustMint(jwkstest.Claims{"exp": time.Now().Add(-time.Hour).Unix()})), false},
		"garbage":  {"Authorization: Bearer a b", false},
		"no token": {"X-None: 1", false},
	} {
		t.Run(name, func(t *testing.T) {
			w := e.do("GET", "/healthz", tc.header)
			if w.Code != 200 {
				t.Fatal(w.Code)
			}
			e.api.mu.Lock()
			c := e.api.claims
			e.api.mu.Unlock()
			if (c != nil) != tc.claims || c != nil && c.Subject != "alice" {
				t.Fatalf("claims %+v", c)
			}
		})
	}
	if n := e.count(middleware.DecisionAllowed, string(middleware.ReasonOK), "GET /healthz"); n != 5 {
		t.Fatalf("%v allowed decisions on the public route", n)
	}
}

// Finding 3: a denied request with a body is answered at once over a real connection,
// which is then closed: net/http would otherwise wait for up to 256 KiB of body that a
// client may never send.
func TestDeniedBodyIsNotRead(t *testing.T) {
	e := newEnv(t, nil)
	srv := httptest.NewServer(e.h)
	defer srv.Close()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST /orders HTTP/1.1\r\nHost: api\r\nContent-Length: 100000\r\n\r\nx")
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || !resp.Close {
		t.Fatalf("%d, close %v", resp.StatusCode, resp.Close)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("the connection stayed open: %v", err)
	}
}

// AWS Cognito's access tokens carry no aud but client_id, and its ID tokens carry aud:
// with AudienceClaims the first pass and the second never does (issue 11).
func TestAudienceClaims(t *testing.T) {
	const app = "4fr8p2abcdclient"
	e := newEnv(t, func(c *middleware.Config) {
		c.Issuers[0].Audiences = []string{app}
		c.Issuers[0].AudienceClaims = []string{"client_id"}
	})
	for name, tc := range map[string]struct {
		claims jwkstest.Claims
		reason middleware.Reason
	}{
		"access token":                   {jwkstest.Claims{"aud": jwkstest.Absent, "client_id": app, "token_use": "access", "scope": "orders:read"}, middleware.ReasonOK},
		"access token of another client": {jwkstest.Claims{"aud": jwkstest.Absent, "client_id": "other", "scope": "orders:read"}, middleware.ReasonAudience},
		"no client_id":                   {jwkstest.Claims{"aud": jwkstest.Absent, "scope": "orders:read"}, middleware.ReasonAudience},
		"ID token":                       {jwkstest.Claims{"aud": app, "token_use": "id", "scope": "orders:read"}, middleware.ReasonClaims},
	} {
		t.Run(name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/orders/1", nil)
			req.Header.Set("Authorization", "Bearer "+e.as.MustMint(tc.claims))
			if d := e.gate.Decide(req); d.Reason != tc.reason {
				t.Fatalf("%s (%v), want %s", d.Reason, d.Err, tc.reason)
			}
		})
	}
	cfg := middleware.Config{Issuers: []middleware.Issuer{{Audiences: []string{app}, AudienceClaims: []string{"aud"}, TokenType: "at+jwt"}}}
	cfg.Issuers[0].Issuer = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc"
	err := middleware.Validate(cfg)
	for _, want := range []string{"Issuers[0].AudienceClaims: RFC 9068 tokens", `Issuers[0].AudienceClaims[0]: "aud" cannot carry the audience`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("lacks %q: %v", want, err)
		}
	}
}

// A request whose readings match routes with different scopes is challenged with what
// suffices for all of them, each scope once, whichever of them it fails.
func TestChallengeNamesEveryReadingsScopes(t *testing.T) {
	e := newEnv(t, func(c *middleware.Config) {
		c.Routes = []middleware.Route{
			{Match: "/", Scopes: []string{"api"}},
			{Match: "GET /orders/{id}", Scopes: []string{"orders:read"}},
		}
	})
	// The strict style reads GET /ORDERS/1 as sent (first) and in lower case.
	for _, tc := range []struct{ scope, route string }{
		{"api", "GET /orders/{id}"}, // fails the folded reading
		{"orders:read", "/"},        // fails the reading as sent
		{"profile", "/"},
	} {
		req := httptest.NewRequest("GET", "/ORDERS/1", nil)
		req.Header.Set("Authorization", "Bearer "+e.as.MustMint(jwkstest.Claims{"scope": tc.scope}))
		d := e.gate.Decide(req)
		if d.Reason != middleware.ReasonInsufficientScope || d.Route != tc.route || d.Scope != "api orders:read" {
			t.Errorf("scope %s: %s on %q, challenge %q; want insufficient_scope on %q, challenge \"api orders:read\"", tc.scope, d.Reason, d.Route, d.Scope, tc.route)
		}
	}
}
