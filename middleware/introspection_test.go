package middleware_test

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/e2etest"
	"github.com/tokengate/tokengate/internal/joined"
	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/jwks/jwkstest"
	"github.com/tokengate/tokengate/middleware"
)

// introspectionEnv is an env whose issuer introspects: opaque tokens, and with always
// its JWTs too, with cacheTTL; its endpoint is found through the issuer's metadata.
func introspectionEnv(t *testing.T, always bool, cacheTTL time.Duration, mut func(*middleware.Config)) *env {
	t.Helper()
	as, err := jwkstest.NewServer(jwkstest.WithAudience(audience))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(as.Close)
	as.AddClient(jwkstest.Client{ID: "orders-api", Secret: "s3cret:%"})
	return newEnvFor(t, as, func(c *middleware.Config) {
		c.Issuers[0].Introspection = middleware.Introspection{
			ClientID: "orders-api", ClientSecret: []byte("s3cret:%"),
			OpaqueTokens: true, Always: always, CacheTTL: cacheTTL, Timeout: 300 * time.Millisecond,
		}
		if mut != nil {
			mut(c)
		}
	}, middleware.Options{})
}

func introspections(e *env, result string) float64 {
	return metricValue(e.reg, "tokengate_introspection_requests_total", map[string]string{"issuer": e.as.Issuer, "result": result})
}

// TestOpaqueTokens: an opaque token is introspected at the issuer that takes them, and
// its answer is held to what a JWT's claims are: scopes, audience, time; an inactive
// one is refused; the answer is cached, one call per token.
func TestOpaqueTokens(t *testing.T) {
	e := introspectionEnv(t, false, 0, nil)
	read := e.as.MintOpaque(jwkstest.Claims{"scope": "orders:read", "sub": "alice"})
	for range 3 {
		if w := e.do("GET", "/orders/1", bearer(read)); w.Code != 200 {
			t.Fatalf("an active opaque token: %d %q", w.Code, w.Header().Get("WWW-Authenticate"))
		}
	}
	e.api.mu.Lock()
	sub := e.api.claims.Subject
	e.api.mu.Unlock()
	if sub != "alice" || e.as.IntrospectionCalls() != 1 || introspections(e, "active") != 1 {
		t.Errorf("subject %q, %d calls (counted %v), want alice and 1", sub, e.as.IntrospectionCalls(), introspections(e, "active"))
	}
	for _, tc := range []struct {
		name   string
		claims jwkstest.Claims
		method string
		reason middleware.Reason
		status int
	}{
		{"without the scope", jwkstest.Claims{"scope": "orders:read"}, "DELETE", middleware.ReasonInsufficientScope, 403},
		{"for another API", jwkstest.Claims{"scope": "orders:read", "aud": "https://other.example.com"}, "GET", middleware.ReasonAudience, 401},
		{"expired", jwkstest.Claims{"scope": "orders:read", "exp": time.Now().Add(-time.Hour).Unix(), "iat": time.Now().Add(-2 * time.Hour).Unix()}, "GET", middleware.ReasonInactive, 401},
		{"of another issuer", jwkstest.Claims{"scope": "orders:read", "iss": "https://evil.example.com"}, "GET", middleware.ReasonIssuer, 401},
		{"with a binding it cannot check", jwkstest.Claims{"scope": "orders:read", "cnf": map[string]any{"jwk": map[string]any{}}}, "GET", middleware.ReasonClaims, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := e.do(tc.method, "/orders/1", bearer(e.as.MintOpaque(tc.claims)))
			route := tc.method + " /orders/{id}"
			if w.Code != tc.status || e.count(middleware.DecisionDenied, string(tc.reason), route) == 0 {
				t.Errorf("status %d, want %d %s", w.Code, tc.status, tc.reason)
			}
		})
	}
	unknown := "an-opaque-token-nobody-issued"
	if w := e.do("GET", "/orders/1", bearer(unknown)); w.Code != 401 || !strings.Contains(w.Header().Get("WWW-Authenticate"), `error_description="the access token is not active"`) {
		t.Errorf("an unknown opaque token: %d %q", w.Code, w.Header().Get("WWW-Authenticate"))
	}
}

// TestRevokedOpaqueToken: a revoked token passes until its cached answer's cacheTTL
// ends, then is refused (inactive), measured on the Gate's clock.
func TestRevokedOpaqueToken(t *testing.T) {
	e := introspectionEnv(t, false, 2*time.Second, nil)
	tok := e.as.MintOpaque(jwkstest.Claims{"scope": "orders:read"})
	if w := e.do("GET", "/orders/1", bearer(tok)); w.Code != 200 {
		t.Fatalf("before revocation: %d", w.Code)
	}
	revoked := time.Now()
	e.as.Revoke(tok)
	if w := e.do("GET", "/orders/1", bearer(tok)); w.Code != 200 {
		t.Fatalf("within the cacheTTL: %d", w.Code)
	}
	e2etest.Eventually(t, 10*time.Second, "the revoked token refused", func() bool { return e.do("GET", "/orders/1", bearer(tok)).Code == 401 })
	if refused := time.Since(revoked); refused < 1500*time.Millisecond {
		t.Fatalf("revoked token refused after %v, want after about the 2 s cacheTTL", refused)
	}
	if n := e.count(middleware.DecisionDenied, "inactive", "GET /orders/{id}"); n != 1 {
		t.Errorf("inactive denials %v", n)
	}
}

// TestIntrospectionAlways: the issuer's JWTs are introspected too after they verify,
// so a revoked JWT is refused before its exp; the answer is cached with the token.
func TestIntrospectionAlways(t *testing.T) {
	e := introspectionEnv(t, true, time.Second, nil)
	tok := e.as.MustMint(jwkstest.Claims{"scope": "orders:read"})
	for range 3 {
		if w := e.do("GET", "/orders/1", bearer(tok)); w.Code != 200 {
			t.Fatalf("a JWT introspected: %d", w.Code)
		}
	}
	if e.as.IntrospectionCalls() != 1 {
		t.Errorf("%d calls for one token within its cacheTTL, want 1", e.as.IntrospectionCalls())
	}
	e.as.Revoke(tok)
	e2etest.Eventually(t, 10*time.Second, "the revoked JWT refused", func() bool { return e.do("GET", "/orders/1", bearer(tok)).Code == 401 })
	if n := e.count(middleware.DecisionDenied, "inactive", "GET /orders/{id}"); n == 0 {
		t.Error("no inactive denial counted")
	}
}

// TestIntrospectionFaults: an endpoint that does not answer as RFC 7662 says is 503
// introspection_unavailable with Retry-After, never 401 and never allowed, and the
// error is counted; once it answers again, the token passes.
func TestIntrospectionFaults(t *testing.T) {
	e := introspectionEnv(t, false, 0, nil)
	for _, f := range []jwkstest.IntrospectionFault{
		jwkstest.IntrospectionSlow, jwkstest.IntrospectionDown, jwkstest.IntrospectionGarbage,
		jwkstest.IntrospectionOversized, jwkstest.IntrospectionMissingActive,
	} {
		t.Run(f.String(), func(t *testing.T) {
			e.as.SetIntrospectionFault(f)
			before := introspections(e, "error")
			start := time.Now()
			w := e.do("GET", "/orders/1", bearer(e.as.MintOpaque(jwkstest.Claims{"scope": "orders:read"})))
			took := time.Since(start)
			if w.Code != 503 || w.Header().Get("Retry-After") == "" || took > 5*time.Second {
				t.Errorf("status %d, Retry-After %q, after %v", w.Code, w.Header().Get("Retry-After"), took)
			}
			if introspections(e, "error") != before+1 {
				t.Errorf("errors counted %v → %v", before, introspections(e, "error"))
			}
		})
	}
	if e.api.calls.Load() != 0 || e.count(middleware.DecisionDenied, "introspection_unavailable", "GET /orders/{id}") != 5 {
		t.Errorf("API calls %d, introspection_unavailable %v", e.api.calls.Load(), e.count(middleware.DecisionDenied, "introspection_unavailable", "GET /orders/{id}"))
	}
	e.as.SetIntrospectionFault(jwkstest.IntrospectionNormal)
	if w := e.do("GET", "/orders/1", bearer(e.as.MintOpaque(jwkstest.Claims{"scope": "orders:read"}))); w.Code != 200 {
		t.Errorf("after the faults: %d", w.Code)
	}
}

// TestIntrospectionOneCallPerToken: concurrent requests for one token make one call.
func TestIntrospectionOneCallPerToken(t *testing.T) {
	e := introspectionEnv(t, false, 0, nil)
	tok := e.as.MintOpaque(jwkstest.Claims{"scope": "orders:read"})
	var wg sync.WaitGroup
	var ok atomic.Int64
	for range 100 {
		wg.Go(func() {
			if e.do("GET", "/orders/1", bearer(tok)).Code == 200 {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 100 || e.as.IntrospectionCalls() != 1 {
		t.Errorf("%d allowed, %d calls; want 100 and 1", ok.Load(), e.as.IntrospectionCalls())
	}
}

// TestIntrospectionConfig: what is wrong is named by its field.
func TestIntrospectionConfig(t *testing.T) {
	on := middleware.Introspection{ClientID: "api", ClientSecret: []byte("s"), OpaqueTokens: true}
	for _, tc := range []struct {
		name  string
		mut   func(*middleware.Config)
		field string
	}{
		{"two issuers take opaque tokens", func(c *middleware.Config) {
			c.Issuers = append(c.Issuers, middleware.Issuer{Config: jwks.Config{Issuer: "https://b.example.com"}, Audiences: []string{audience}, Introspection: on})
		}, "Issuers[1].Introspection.OpaqueTokens"},
		{"no client", func(c *middleware.Config) { c.Issuers[0].Introspection.ClientID = "" }, "Issuers[0].Introspection.ClientID"},
		{"no secret", func(c *middleware.Config) { c.Issuers[0].Introspection.ClientSecret = nil }, "Issuers[0].Introspection.ClientSecret"},
		{"an http endpoint", func(c *middleware.Config) { c.Issuers[0].Introspection.Endpoint = "http://as.example.com/introspect" }, "Issuers[0].Introspection.Endpoint"},
		{"configured but off", func(c *middleware.Config) { c.Issuers[0].Introspection.OpaqueTokens = false }, "Issuers[0].Introspection.OpaqueTokens"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := middleware.Config{
				Issuers: []middleware.Issuer{{Config: jwks.Config{Issuer: "https://a.example.com"}, Audiences: []string{audience}, Introspection: on}},
				Routes:  []middleware.Route{{Match: "/"}},
			}
			tc.mut(&cfg)
			err := middleware.Validate(cfg)
			found := false
			for _, e := range joined.Flatten(err) {
				var fe *middleware.FieldError
				found = found || errors.As(e, &fe) && fe.Field == tc.field
			}
			if !found {
				t.Errorf("%v, want an error naming %s", err, tc.field)
			}
			if err != nil && strings.Contains(err.Error(), `"s"`) {
				t.Errorf("the secret is in the error: %v", err)
			}
		})
	}
}

// TestIntrospectionCallsUnderLoad: at 1000 requests a second for two seconds, spread
// over 100 distinct opaque tokens, the endpoint is called once per token within the
// cacheTTL (docs/performance.md#introspection). The pace is a ticker's, bounded in
// count and time; only the count of calls is asserted.
func TestIntrospectionCallsUnderLoad(t *testing.T) {
	e := introspectionEnv(t, false, time.Minute, nil)
	tokens := make([]string, 100)
	for i := range tokens {
		tokens[i] = e.as.MintOpaque(jwkstest.Claims{"scope": "orders:read"})
	}
	const requests = 2000
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	var wg sync.WaitGroup
	var ok atomic.Int64
	start := time.Now()
	for i := 0; i < requests; i++ {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("only %d requests sent in 30 s", i)
		}
		tok := tokens[i%len(tokens)]
		wg.Go(func() {
			if e.do("GET", "/orders/1", bearer(tok)).Code == 200 {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	t.Logf("%d requests in %v (%.0f/s) over %d tokens: %d allowed, %d introspection calls",
		requests, took.Round(time.Millisecond), requests/took.Seconds(), len(tokens), ok.Load(), e.as.IntrospectionCalls())
	if ok.Load() != requests || e.as.IntrospectionCalls() != len(tokens) {
		t.Errorf("%d allowed, %d calls; want %d and one per token (%d)", ok.Load(), e.as.IntrospectionCalls(), requests, len(tokens))
	}
}

// TestOpaqueTokenOfMaxBytes: tokens.maxBytes bounds an opaque token inclusively, as it
// does a JWT: one of exactly that length is introspected.
func TestOpaqueTokenOfMaxBytes(t *testing.T) {
	as, err := jwkstest.NewServer(jwkstest.WithAudience(audience))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(as.Close)
	as.AddClient(jwkstest.Client{ID: "orders-api", Secret: "s3cret"})
	tok := as.MintOpaque(jwkstest.Claims{"scope": "orders:read"})
	e := newEnvFor(t, as, func(c *middleware.Config) {
		c.Issuers[0].Introspection = middleware.Introspection{ClientID: "orders-api", ClientSecret: []byte("s3cret"), OpaqueTokens: true}
		c.Tokens.MaxBytes = len(tok)
	}, middleware.Options{})
	if w := e.do("GET", "/orders/1", bearer(tok)); w.Code != 200 {
		t.Errorf("an opaque token of exactly tokens.maxBytes: %d", w.Code)
	}
}

// TestIssuerChecksOnOpaqueTokens: an issuer's own checks (Issuer.Checks) hold its
// opaque tokens to them as they hold its JWTs: a refused answer is 401, reason claims,
// and never reaches the API.
func TestIssuerChecksOnOpaqueTokens(t *testing.T) {
	e := introspectionEnv(t, false, 0, func(c *middleware.Config) {
		c.Issuers[0].Checks = []middleware.ClaimsCheck{middleware.ClaimsCheckFunc(func(c *middleware.Claims) error {
			if !strings.HasPrefix(c.Subject, "system:serviceaccount:") {
				return errors.New("not a workload")
			}
			return nil
		})}
	})
	if w := e.do("GET", "/orders/1", bearer(e.as.MintOpaque(jwkstest.Claims{"scope": "orders:read", "sub": "system:serviceaccount:payments:billing"}))); w.Code != 200 {
		t.Fatalf("an answer the check accepts: %d %q", w.Code, w.Header().Get("WWW-Authenticate"))
	}
	before := e.api.calls.Load()
	w := e.do("GET", "/orders/1", bearer(e.as.MintOpaque(jwkstest.Claims{"scope": "orders:read", "sub": "alice"})))
	if w.Code != 401 || !strings.Contains(w.Header().Get("WWW-Authenticate"), `error="invalid_token"`) || e.count(middleware.DecisionDenied, "claims", "GET /orders/{id}") != 1 {
		t.Errorf("an answer the check refuses: %d %q", w.Code, w.Header().Get("WWW-Authenticate"))
	}
	if e.api.calls.Load() != before {
		t.Error("a refused opaque token reached the API")
	}
}
