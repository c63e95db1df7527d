package middleware_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/e2etest"
	"github.com/tokengate/tokengate/internal/testclock"
	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/jwks/jwkstest"
	"github.com/tokengate/tokengate/middleware"
)

func TestCache(t *testing.T) {
	clk := testclock.New(time.Now())
	e := newEnvWith(t, nil, middleware.Options{Now: clk.Now})
	tok := e.as.MustMint(jwkstest.Claims{"scope": "orders:read", "exp": clk.Now().Add(time.Minute).Unix()})
	hits := func() float64 {
		return metricValue(e.reg, "tokengate_token_cache_requests_total", map[string]string{"result": "hit"})
	}
	misses := func() float64 {
		return metricValue(e.reg, "tokengate_token_cache_requests_total", map[string]string{"result": "miss"})
	}

	for range 3 {
		if code := e.do("GET", "/orders/1", bearer(tok)).Code; code != 200 {
			t.Fatal(code)
		}
	}
	if hits() != 2 || misses() != 1 {
		t.Fatalf("hits %v misses %v, want 2 and 1", hits(), misses())
	}
	// The scopes are checked on every hit: a cached token does not pass a route it
	// could not pass the first time.
	if code := e.do("DELETE", "/orders/1", bearer(tok)).Code; code != 403 {
		t.Fatalf("cached token on a route needing more scopes: %d", code)
	}
	// Time claims are checked on every hit: past exp + leeway the entry is gone.
	clk.Advance(time.Minute + middleware.DefaultLeeway)
	resp := e.do("GET", "/orders/1", bearer(tok))
	if resp.Code != 401 || !strings.Contains(resp.Header().Get("WWW-Authenticate"), "expired") {
		t.Fatalf("expired cached token: %d %q", resp.Code, resp.Header().Get("WWW-Authenticate"))
	}
	if e.count(middleware.DecisionDenied, string(middleware.ReasonExpired), "GET /orders/{id}") != 1 {
		t.Fatal("expired hit not counted as expired")
	}
	// A failed verification is never cached.
	bad := e.as.MustMint(jwkstest.Claims{"aud": "x"})
	e.do("GET", "/orders/1", bearer(bad))
	e.do("GET", "/orders/1", bearer(bad))
	if hits() != 4 {
		t.Fatalf("a rejected token came from the cache: hits %v", hits())
	}
}

func TestCacheForgetsRevokedKeys(t *testing.T) {
	// X49 with the cache on: a token verified before its key was revoked is refused
	// after the refresh that drops the key, not when it expires.
	e := newEnv(t, nil)
	tok := e.as.MustMint(jwkstest.Claims{"scope": "orders:read"}, jwkstest.WithKey("rsa-1"))
	other := e.as.MustMint(jwkstest.Claims{"scope": "orders:read"}, jwkstest.WithKey("ec-1"))
	for range 2 {
		for _, tk := range []string{tok, other} {
			if code := e.do("GET", "/orders/1", bearer(tk)).Code; code != 200 {
				t.Fatal(code)
			}
		}
	}
	e.as.Publish("rsa-1", false)
	set, _ := e.gate.KeySets().Set(e.as.Issuer)
	if err := set.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	resp := e.do("GET", "/orders/1", bearer(tok))
	if resp.Code != 401 || !strings.Contains(resp.Header().Get("WWW-Authenticate"), "invalid_token") {
		t.Fatalf("a cached token of a revoked key: %d %q", resp.Code, resp.Header().Get("WWW-Authenticate"))
	}
	if e.count(middleware.DecisionDenied, string(middleware.ReasonUnknownKey), "GET /orders/{id}") != 1 {
		t.Fatal("not denied as unknown_key")
	}
	// Tokens of the keys that stay are verified again once, then cached again.
	if code := e.do("GET", "/orders/1", bearer(other)).Code; code != 200 {
		t.Fatalf("a token of a key that stayed: %d", code)
	}
}

func TestCacheOffAndBounded(t *testing.T) {
	e := newEnv(t, func(c *middleware.Config) { c.Tokens.NoCache = true })
	tok := e.as.MustMint(jwkstest.Claims{"scope": "orders:read"})
	for range 3 {
		if code := e.do("GET", "/orders/1", bearer(tok)).Code; code != 200 {
			t.Fatal(code)
		}
	}
	if n := metricValue(e.reg, "tokengate_token_cache_requests_total", map[string]string{"result": "miss"}); n != 0 {
		t.Fatalf("cache off but %v misses counted", n)
	}

	b := newEnv(t, func(c *middleware.Config) { c.Tokens.CacheEntries = 40 })
	for range 500 {
		if code := b.do("GET", "/orders/1", bearer(b.as.MustMint(jwkstest.Claims{"scope": "orders:read"}))).Code; code != 200 {
			t.Fatal(code)
		}
	}
	if n := middleware.CacheLen(b.gate); n > 64 {
		t.Fatalf("cache holds %d entries, bound 40 (rounded up per shard)", n)
	}
}

func TestShadowMode(t *testing.T) {
	t.Run("per route", func(t *testing.T) {
		e := newEnv(t, nil)
		resp := e.do("GET", "/shadow/x", bearer(e.as.MustMint(nil)))
		if resp.Code != 200 || e.api.calls.Load() != 1 {
			t.Fatalf("shadow route: %d, calls %d", resp.Code, e.api.calls.Load())
		}
		if e.api.claims != nil {
			t.Fatal("a shadow-denied request reached the API with claims")
		}
		if e.count(middleware.DecisionShadowDenied, string(middleware.ReasonInsufficientScope), "/shadow/") != 1 {
			t.Fatal("not counted as shadow_denied")
		}
		// Other routes still enforce.
		if code := e.do("GET", "/orders/1").Code; code != 401 {
			t.Fatalf("enforcing route: %d", code)
		}
	})
	t.Run("global", func(t *testing.T) {
		e := newEnv(t, func(c *middleware.Config) { c.Shadow = true })
		for _, target := range []string{"/orders/1", "/nowhere"} {
			if code := e.do("GET", target).Code; code != 200 {
				t.Fatalf("%s in shadow mode: %d", target, code)
			}
		}
		if e.count(middleware.DecisionShadowDenied, string(middleware.ReasonMissingToken), "GET /orders/{id}") != 1 ||
			e.count(middleware.DecisionShadowDenied, string(middleware.ReasonNoRoute), middleware.NoRoute) != 1 {
			t.Fatal("shadow denials not counted")
		}
	})
}

func TestClaimsReachTheHandler(t *testing.T) {
	e := newEnv(t, nil)
	exp := time.Now().Add(4 * time.Minute).Truncate(time.Second)
	tok := e.as.MustMint(jwkstest.Claims{"sub": "alice", "client_id": "shop", "scope": "orders:read orders:write", "exp": exp.Unix(), "tenant": "t1"})
	if code := e.do("GET", "/orders/7", bearer(tok)).Code; code != 200 {
		t.Fatal(code)
	}
	c := e.api.claims
	if c == nil || c.Subject != "alice" || c.ClientID != "shop" || !c.HasScope("orders:write") || c.HasScope("orders") ||
		c.Audience[0] != audience || !c.ExpiresAt.Equal(exp) || c.Issuer != e.as.Issuer {
		t.Fatalf("claims %+v", c)
	}
	if tenant, ok := c.StringClaim("tenant"); !ok || tenant != "t1" {
		t.Fatalf("raw claim tenant = %q %v", tenant, ok)
	}
	if _, ok := middleware.ClaimsFrom(context.Background()); ok {
		t.Fatal("claims in an empty context")
	}
}

func TestRFC9068Typing(t *testing.T) {
	e := newEnv(t, func(c *middleware.Config) { c.Issuers[0].TokenType = "at+jwt" })
	read := jwkstest.Claims{"scope": "orders:read"}
	if code := e.do("GET", "/orders/1", bearer(e.as.MustMint(read))).Code; code != 200 {
		t.Fatalf("typed token: %d", code)
	}
	for name, tok := range map[string]string{
		"typ missing (A1)":                    e.as.MustMint(read, jwkstest.WithHeader(jwkstest.Claims{"typ": jwkstest.Absent})),
		"typ JWT (S6)":                        e.as.MustMint(read, jwkstest.WithHeader(jwkstest.Claims{"typ": "JWT"})),
		"ID token substitution (X32, P10)":    e.as.MustMint(jwkstest.Claims{"aud": "c1", "nonce": "n"}, jwkstest.WithHeader(jwkstest.Claims{"typ": "JWT"})),
		"without sub (A3)":                    e.as.MustMint(jwkstest.Claims{"scope": "orders:read", "sub": jwkstest.Absent}),
		"without client_id (A3)":              e.as.MustMint(jwkstest.Claims{"scope": "orders:read", "client_id": jwkstest.Absent}),
		"without iat (A3)":                    e.as.MustMint(jwkstest.Claims{"scope": "orders:read", "iat": jwkstest.Absent}),
		"without jti (A3, J8)":                e.as.MustMint(jwkstest.Claims{"scope": "orders:read", "jti": jwkstest.Absent}),
		"without exp (A3)":                    e.as.MustMint(jwkstest.Claims{"scope": "orders:read", "exp": jwkstest.Absent}),
		"typ of a DPoP proof (RFC 8725 3.11)": e.as.MustMint(read, jwkstest.WithHeader(jwkstest.Claims{"typ": "dpop+jwt"})),
	} {
		t.Run(name, func(t *testing.T) {
			resp := e.do("GET", "/orders/1", bearer(tok))
			if resp.Code != 401 {
				t.Fatalf("%d", resp.Code)
			}
		})
	}
	if n := e.count(middleware.DecisionDenied, string(middleware.ReasonClaims), "GET /orders/{id}"); n != 9 {
		t.Fatalf("%v claims denials, want 9", n)
	}
}

func TestTokenSources(t *testing.T) {
	t.Run("query ignored by default (B5, X35)", func(t *testing.T) {
		e := newEnv(t, nil)
		tok := e.as.MustMint(jwkstest.Claims{"scope": "orders:read"})
		if code := e.do("GET", "/orders/1?access_token="+tok).Code; code != 401 {
			t.Fatalf("query token alone: %d", code)
		}
		if code := e.do("GET", "/orders/1?access_token=junk", bearer(tok)).Code; code != 200 {
			t.Fatalf("header with a query token: %d", code)
		}
		req := httptest.NewRequest("POST", "/orders", strings.NewReader("access_token="+tok))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, req)
		if w.Code != 401 {
			t.Fatalf("form body token (B6): %d", w.Code)
		}
	})
	t.Run("configured cookie and query", func(t *testing.T) {
		e := newEnv(t, func(c *middleware.Config) { c.Tokens.Cookie = "at"; c.Tokens.Query = "access_token" })
		tok := e.as.MustMint(jwkstest.Claims{"scope": "orders:read"})
		for name, tc := range map[string]struct {
			target  string
			headers []string
			code    int
		}{
			"cookie":              {"/orders/1", []string{"Cookie: at=" + tok}, 200},
			"query":               {"/orders/1?access_token=" + tok, nil, 200},
			"cookie and header":   {"/orders/1", []string{"Cookie: at=" + tok, bearer(tok)}, 400},
			"query and header":    {"/orders/1?access_token=" + tok, []string{bearer(tok)}, 400},
			"two query values":    {"/orders/1?access_token=" + tok + "&access_token=" + tok, nil, 400},
			"two cookies":         {"/orders/1", []string{"Cookie: at=" + tok + "; at=" + tok}, 400},
			"cookie not b64token": {"/orders/1", []string{"Cookie: at=a,b"}, 400},
		} {
			t.Run(name, func(t *testing.T) {
				if code := e.do("GET", tc.target, tc.headers...).Code; code != tc.code {
					t.Fatalf("%d, want %d", code, tc.code)
				}
			})
		}
	})
}

func TestChallengeNeverEchoesInput(t *testing.T) {
	// B14: the kid, the token and library errors never reach the challenge.
	e := newEnv(t, nil)
	for _, tok := range []string{
		e.as.MustMint(nil, jwkstest.WithHeader(jwkstest.Claims{"kid": `a"b\c`})),
		e.as.MustMint(jwkstest.Claims{"iss": `evil", error="none`}),
	} {
		resp := e.do("GET", "/orders/1", bearer(tok))
		c := resp.Header().Get("WWW-Authenticate")
		inner := strings.NewReplacer(`="`, "", `", `, "", `"`, "").Replace(strings.TrimPrefix(c, "Bearer "))
		if strings.ContainsAny(strings.ReplaceAll(inner, `"`, ""), `"\`) || strings.Contains(c, "evil") || strings.Contains(c, tok[:20]) {
			t.Fatalf("challenge %q", c)
		}
		if bytes.Contains(resp.Body.Bytes(), []byte(tok[:20])) || bytes.Contains(resp.Body.Bytes(), []byte("evil")) {
			t.Fatalf("body %s", resp.Body)
		}
	}
}

func TestCustomErrorWriter(t *testing.T) {
	var seen middleware.Decision
	e := newEnvWith(t, nil, middleware.Options{ErrorWriter: func(w http.ResponseWriter, r *http.Request, d middleware.Decision) {
		seen = d
		w.WriteHeader(d.Status)
		_, _ = io.WriteString(w, "custom")
	}})
	resp := e.do("GET", "/orders/1", bearer(e.as.MustMint(jwkstest.Claims{"scope": "x"})))
	if resp.Code != 403 || resp.Body.String() != "custom" || seen.Reason != middleware.ReasonInsufficientScope || seen.Scope != "orders:read" {
		t.Fatalf("%d %q %+v", resp.Code, resp.Body, seen)
	}
	if !strings.Contains(resp.Header().Get("WWW-Authenticate"), `scope="orders:read"`) {
		t.Fatal("the challenge is not set for a custom writer")
	}
}

func TestRequire(t *testing.T) {
	e := newEnv(t, func(c *middleware.Config) { c.Routes = nil })
	mux := http.NewServeMux()
	mux.Handle("POST /orders", e.gate.Require("orders:write")(e.api))
	mux.Handle("GET /orders/{id}", e.gate.RequireAny("orders:read", "orders:admin")(e.api))
	write := e.as.MustMint(jwkstest.Claims{"scope": "orders:write"})
	admin := e.as.MustMint(jwkstest.Claims{"scope": "orders:admin"})
	for _, tc := range []struct {
		method, path, tok string
		code              int
	}{
		{"POST", "/orders", write, 200},
		{"POST", "/orders", admin, 403},
		{"POST", "/orders", "", 401},
		{"GET", "/orders/1", admin, 200},
		{"GET", "/orders/1", write, 403},
	} {
		req := httptest.NewRequest(tc.method, tc.path, nil)
		if tc.tok != "" {
			req.Header.Set("Authorization", "Bearer "+tc.tok)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		if w.Code != tc.code {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, w.Code, tc.code)
		}
	}
	if e.count(middleware.DecisionAllowed, "ok", "POST /orders") != 1 || e.count(middleware.DecisionDenied, "insufficient_scope", "GET /orders/{id}") != 1 {
		t.Fatal("Require's decisions are not counted under ServeMux's pattern")
	}

	t.Run("behind Handler", func(t *testing.T) {
		e := newEnv(t, nil)
		h := e.gate.Handler(e.gate.Require("orders:admin")(e.api))
		req := httptest.NewRequest("GET", "/orders/1", nil)
		req.Header.Set("Authorization", "Bearer "+e.as.MustMint(jwkstest.Claims{"scope": "orders:read"}))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 403 || e.api.calls.Load() != 0 || !strings.Contains(w.Header().Get("WWW-Authenticate"), `scope="orders:admin"`) {
			t.Fatalf("%d %q", w.Code, w.Header().Get("WWW-Authenticate"))
		}
	})
	t.Run("invalid scope panics at wiring time", func(t *testing.T) {
		defer func() {
			if recover() == nil {
				t.Fatal("no panic")
			}
		}()
		e.gate.Require(`bad"scope`)
	})
}

func TestMultipleIssuers(t *testing.T) {
	a, err := jwkstest.NewServer(jwkstest.WithAudience(audience))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := jwkstest.NewServer(jwkstest.WithAudience("https://b.example"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	e := newEnvFor(t, a, func(c *middleware.Config) {
		c.Issuers = append(c.Issuers, middleware.Issuer{
			Config: jwks.Config{Issuer: b.Issuer, Algorithms: []string{"ES256"}}, Audiences: []string{"https://b.example"}, ScopeClaim: "perms",
		})
	}, middleware.Options{})
	for name, tc := range map[string]struct {
		tok  string
		code int
	}{
		"A":                          {a.MustMint(jwkstest.Claims{"scope": "orders:read"}), 200},
		"B with its own audience":    {b.MustMint(jwkstest.Claims{"perms": []string{"orders:read"}}, jwkstest.WithKey("ec-1")), 200},
		"B with A's audience":        {b.MustMint(jwkstest.Claims{"perms": "orders:read", "aud": audience}, jwkstest.WithKey("ec-1")), 401},
		"B reads only its claim":     {b.MustMint(jwkstest.Claims{"scope": "orders:read"}, jwkstest.WithKey("ec-1")), 403},
		"B with RS256 (not allowed)": {b.MustMint(jwkstest.Claims{"perms": "orders:read"}), 401},
		"iss A signed by B (X13)":    {b.MustMint(jwkstest.Claims{"iss": a.Issuer, "scope": "orders:read", "aud": audience}), 401},
	} {
		t.Run(name, func(t *testing.T) {
			if code := e.do("GET", "/orders/1", bearer(tc.tok)).Code; code != tc.code {
				t.Fatalf("%d, want %d", code, tc.code)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	as, err := jwkstest.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer as.Close()
	base := func() middleware.Config {
		return middleware.Config{
			Issuers: []middleware.Issuer{{Config: jwks.Config{Issuer: as.Issuer}, Audiences: []string{audience}}},
			Routes:  []middleware.Route{{Match: "/"}},
		}
	}
	for _, tc := range []struct {
		name  string
		mut   func(*middleware.Config)
		field string
	}{
		{"no issuers", func(c *middleware.Config) { c.Issuers = nil }, "Issuers"},
		{"empty audiences (X34)", func(c *middleware.Config) { c.Issuers[0].Audiences = nil }, "Issuers[0].Audiences"},
		{"blank audience", func(c *middleware.Config) { c.Issuers[0].Audiences = []string{" "} }, "Issuers[0].Audiences[0]"},
		{"empty algorithms (X34)", func(c *middleware.Config) { c.Issuers[0].Algorithms = []string{} }, "Issuers[0].Algorithms"},
		{"HS256", func(c *middleware.Config) { c.Issuers[0].Algorithms = []string{"HS256"} }, "Issuers[0].Algorithms"},
		{"plain http issuer", func(c *middleware.Config) { c.Issuers[0].Issuer = "http://auth.example.com" }, "Issuers[0].Issuer"},
		{"bad token type", func(c *middleware.Config) { c.Issuers[0].TokenType = "JWT" }, "Issuers[0].TokenType"},
		{"realm with a quote", func(c *middleware.Config) { c.Realm = `a"b` }, "Realm"},
		{"leeway of an hour", func(c *middleware.Config) { c.Tokens.Leeway = time.Hour }, "Tokens.Leeway"},
		{"bad pattern", func(c *middleware.Config) { c.Routes = []middleware.Route{{Match: "GET /a/{x"}} }, "Routes[0].Match"},
		{"empty pattern", func(c *middleware.Config) { c.Routes = []middleware.Route{{Match: ""}} }, "Routes[0].Match"},
		{"conflicting patterns", func(c *middleware.Config) { c.Routes = []middleware.Route{{Match: "GET /a"}, {Match: "GET /a"}} }, "Routes[1].Match"},
		{"public with scopes", func(c *middleware.Config) {
			c.Routes = []middleware.Route{{Match: "/", Public: true, Scopes: []string{"a"}}}
		}, "Routes[0].Public"},
		{"scope with a space", func(c *middleware.Config) { c.Routes = []middleware.Route{{Match: "/", Scopes: []string{"a b"}}} }, "Routes[0].Scopes[0]"},
		{"any-scope with a quote", func(c *middleware.Config) { c.Routes = []middleware.Route{{Match: "/", AnyScopes: []string{`a"`}}} }, "Routes[0].AnyScopes[0]"},
		{"bad cookie name", func(c *middleware.Config) { c.Tokens.Cookie = "a b" }, "Tokens.Cookie"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base()
			tc.mut(&cfg)
			_, err := middleware.New(context.Background(), cfg, middleware.Options{})
			if err == nil {
				t.Fatal("accepted")
			}
			var fe *middleware.FieldError
			var ce *jwks.ConfigError
			switch {
			case errors.As(err, &fe):
				if fe.Field != tc.field {
					t.Fatalf("error %q names %s, want %s", err, fe.Field, tc.field)
				}
			case errors.As(err, &ce):
				if ce.Field != tc.field {
					t.Fatalf("error %q names %s, want %s", err, ce.Field, tc.field)
				}
			default:
				t.Fatalf("%T is neither a FieldError nor a jwks.ConfigError", err)
			}
			if strings.Contains(err.Error(), "registered at") {
				t.Fatalf("error %q names a source location of ServeMux", err)
			}
		})
	}
	t.Run("every problem at once", func(t *testing.T) {
		cfg := base()
		cfg.Realm = `"`
		cfg.Issuers[0].Audiences = nil
		cfg.Issuers[0].Algorithms = []string{"none"}
		cfg.Routes = []middleware.Route{{Match: "GET /{"}}
		_, err := middleware.New(context.Background(), cfg, middleware.Options{})
		for _, f := range []string{"Realm:", "Issuers[0].Audiences:", "Issuers[0].Algorithms:", "Routes[0].Match:"} {
			if err == nil || !strings.Contains(err.Error(), f) {
				t.Errorf("%v lacks %s", err, f)
			}
		}
	})
}

func TestReloadOnTheSameRegistry(t *testing.T) {
	e := newEnv(t, nil)
	cfg := middleware.Config{
		Issuers: []middleware.Issuer{{Config: jwks.Config{Issuer: e.as.Issuer}, Audiences: []string{audience}}},
		Routes:  []middleware.Route{{Match: "/"}},
	}
	g2, err := middleware.New(context.Background(), cfg, middleware.Options{Registerer: e.reg, Logger: quiet})
	if err != nil {
		t.Fatalf("a second Gate on the same registry: %v", err)
	}
	g2.Close()
}

func TestLogs(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewJSONHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := newEnvWith(t, nil, middleware.Options{Logger: logger})
	ok := e.as.MustMint(jwkstest.Claims{"scope": "orders:read", "sub": "alice"})
	bad := e.as.MustMint(jwkstest.Claims{"aud": "x", "sub": "alice"})
	e.do("GET", "/orders/1", bearer(ok))
	e.do("GET", "/orders/1", bearer(e.as.MustMint(jwkstest.Claims{"scope": "orders:read", "sub": "bob", "client_id": jwkstest.Absent})))
	e.do("GET", "/orders/1", bearer(bad))
	e.do("GET", "/orders/1", "Authorization: Bearer "+strings.Repeat("a", 20)+"."+"b")
	unknown := e.as.MustMint(jwkstest.Claims{"scope": "orders:read"}, jwkstest.WithHeader(jwkstest.Claims{"kid": "k-\"gone\""}))
	e.do("GET", "/orders/1", bearer(unknown))
	e.do("GET", "/orders/1;x?access_token=secret-in-query", "X-Request-Id: req-7")
	w := e.do("GET", "/orders/2", "X-Request-Id: bad id\"")
	if id := w.Header().Get("X-Request-Id"); len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		t.Errorf("a malformed request id was answered as %q, want a new one", id)
	}
	mu.Lock()
	logs := buf.String()
	mu.Unlock()
	for _, want := range []string{
		`"level":"DEBUG","msg":"request allowed","decision":"allowed","reason":"ok","route":"GET /orders/{id}"`,
		`"subject_hash":"` + hashOf("alice") + `","client_id":"client-1"`,
		`"level":"INFO","msg":"request denied","decision":"denied","reason":"audience"`,
		`"subject_hash":"`,
		`"reason":"unknown_key","route":"GET /orders/{id}","method":"GET","path":"/orders/1","client":"192.0.2.1:1234","request_id":"`,
		`"issuer":"` + e.as.Issuer + `","kid":"k-\"gone\""`,
		// The why of no_route; the path without its query; a client's well-formed
		// request id kept, a malformed one replaced.
		`"reason":"no_route","route":"none","method":"GET","path":"/orders/1;x","client":"192.0.2.1:1234","request_id":"req-7","error":"the path holds ';'`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, hashOf("bob")) && strings.Contains(line, "client_id") {
			t.Errorf("a token without client_id logged one: %s", line)
		}
	}
	if !strings.Contains(logs, hashOf("bob")) {
		t.Error("no line for the token without client_id")
	}
	for _, secret := range []string{ok, bad, unknown, "eyJ", "alice", strings.Repeat("a", 20), "secret-in-query", "bad id"} {
		if strings.Contains(logs, secret) {
			t.Fatalf("logs hold %q (B16)", secret[:min(len(secret), 20)])
		}
	}
}

// A Gate without routes says so once, at start: Handler would deny everything.
func TestNoRoutesWarning(t *testing.T) {
	for _, tc := range []struct {
		routes []middleware.Route
		warns  bool
	}{{nil, true}, {[]middleware.Route{{Match: "/"}}, false}} {
		var buf e2etest.LockedBuffer
		logger := slog.New(slog.NewTextHandler(&buf, nil))
		newEnvWith(t, func(c *middleware.Config) { c.Routes = tc.routes }, middleware.Options{Logger: logger})
		if got := strings.Contains(buf.String(), "no routes configured"); got != tc.warns {
			t.Errorf("%d routes: warned %v:\n%s", len(tc.routes), got, buf.String())
		}
	}
}

// hashOf is the subject hash of the logs, computed here on its own.
func hashOf(sub string) string {
	sum := sha256.Sum256([]byte(sub))
	return hex.EncodeToString(sum[:8])
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestOverRealHTTP(t *testing.T) {
	e := newEnv(t, nil)
	srv := httptest.NewServer(e.h)
	defer srv.Close()
	tok := e.as.MustMint(jwkstest.Claims{"scope": "orders:read"})
	for _, tc := range []struct {
		method string
		tok    string
		code   int
	}{{"GET", tok, 200}, {"HEAD", tok, 200}, {"GET", "", 401}, {"HEAD", "", 401}} {
		req, _ := http.NewRequest(tc.method, srv.URL+"/orders/9", nil)
		if tc.tok != "" {
			req.Header.Set("authorization", "bearer "+tc.tok)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("%s with token %v: %d", tc.method, tc.tok != "", resp.StatusCode)
		}
	}
}

func TestRejectionCache(t *testing.T) {
	clk := testclock.New(time.Now())
	e := newEnvWith(t, nil, middleware.Options{Now: clk.Now})
	decide := func(tok string) middleware.Decision {
		req := httptest.NewRequest("GET", "/orders/1", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		return e.gate.Decide(req)
	}
	// A forged token is refused again from the cache, with the same reason.
	forged := e.as.MustMint(jwkstest.Claims{"scope": "orders:read"}, jwkstest.WithSigner(jwkstest.MustGenerateKey("rsa-1", "RS256")))
	if d := decide(forged); d.Reason != middleware.ReasonSignature || d.Cached {
		t.Fatalf("first: %+v", d)
	}
	if d := decide(forged); d.Reason != middleware.ReasonSignature || !d.Cached {
		t.Fatalf("second: %+v", d)
	}
	// ...for a while only.
	clk.Advance(2 * time.Minute)
	if d := decide(forged); d.Cached {
		t.Fatal("a rejection outlived its minute")
	}

	// An unknown kid is not remembered: once the key is published the token works.
	k := jwkstest.MustGenerateKey("later", "RS256")
	e.as.AddKey(k, false)
	tok := e.as.MustMint(jwkstest.Claims{"scope": "orders:read", "iat": clk.Now().Unix(), "exp": clk.Now().Add(time.Hour).Unix()}, jwkstest.WithKey("later"))
	if d := decide(tok); d.Reason != middleware.ReasonUnknownKey {
		t.Fatalf("unpublished key: %+v", d)
	}
	e.as.Publish("later", true)
	clk.Advance(jwks.DefaultUnknownKIDEvery + time.Second) // past the unknown-kid rate limit
	if d := decide(tok); !d.Allowed() {
		t.Fatalf("after publication: %+v", d.Err)
	}

	// A token not valid yet is not remembered either.
	early := e.as.MustMint(jwkstest.Claims{"scope": "orders:read", "nbf": clk.Now().Add(time.Minute).Unix(), "exp": clk.Now().Add(time.Hour).Unix()})
	if d := decide(early); d.Reason != middleware.ReasonNotYetValid {
		t.Fatal(d.Reason)
	}
	clk.Advance(2 * time.Minute)
	if d := decide(early); !d.Allowed() {
		t.Fatalf("once valid: %v", d.Err)
	}
}

// An issuer that replaces a key under the same kid (issue 11): the first token of the
// new key costs one fetch (trigger signature) and is allowed; a forged token under a
// known kid costs at most the unknown-kid budget, never a fetch each.
func TestKeyReplacedUnderTheSameKID(t *testing.T) {
	e := newEnv(t, func(c *middleware.Config) {
		c.Issuers[0].Refresh.UnknownKIDEvery = time.Hour // one refetch in this test's budget
	})
	read := jwkstest.Claims{"scope": "orders:read"}
	old := e.as.MustMint(read)
	if code := e.do("GET", "/orders/1", bearer(old)).Code; code != 200 {
		t.Fatal(code)
	}
	kid := e.as.SigningKey().KID
	fetches := e.as.JWKSFetches()
	e.as.ReplaceKey(jwkstest.MustGenerateKey(kid, e.as.SigningKey().Alg))
	if code := e.do("GET", "/orders/1", bearer(e.as.MustMint(read))).Code; code != 200 {
		t.Fatalf("the first token of the replaced key: %d", code)
	}
	if n := e.as.JWKSFetches() - fetches; n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}
	if n := metricValue(e.reg, "tokengate_jwks_refreshes_total", map[string]string{"issuer": e.as.Issuer, "trigger": "signature", "result": "updated"}); n != 1 {
		t.Fatalf("%v refreshes with trigger signature", n)
	}
	// The old key's tokens are gone with it, cached or not.
	if code := e.do("GET", "/orders/1", bearer(old)).Code; code != 401 {
		t.Fatalf("a token of the replaced key: %d", code)
	}
	// Forgeries under the known kid: refused, and the budget (one per hour here) is
	// spent, so none of them fetches.
	fetches = e.as.JWKSFetches()
	attacker := jwkstest.MustGenerateKey(kid, "RS256")
	for i := range 20 {
		forged := e.as.MustMint(jwkstest.Claims{"scope": "orders:read", "jti": fmt.Sprint(i)}, jwkstest.WithSigner(attacker))
		if code := e.do("GET", "/orders/1", bearer(forged)).Code; code != 401 {
			t.Fatalf("forgery %d: %d", i, code)
		}
	}
	if n := e.as.JWKSFetches() - fetches; n != 0 {
		t.Fatalf("20 forgeries cost %d fetches", n)
	}
}
