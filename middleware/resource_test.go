package middleware_test

import (
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/joined"
	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/jwks/jwkstest"
	"github.com/tokengate/tokengate/middleware"
)

const resourceID = "https://api.example.com/mcp"

func resourceEnv(t *testing.T, mut func(*middleware.Config)) *env {
	t.Helper()
	return newEnv(t, func(c *middleware.Config) {
		c.Resource = middleware.Resource{Identifier: resourceID, Name: "Orders MCP", Documentation: "https://docs.example.com/mcp"}
		c.Issuers[0].Audiences = nil // the identifier is the audience
		if mut != nil {
			mut(c)
		}
	})
}

// TestMetadataDocument: RFC 9728 §2 and §3 (M2–M5, M9): at the well-known path with
// the resource's path appended, without a token, JSON with the configured identifier
// whatever Host the request names, the issuers, every scope of the routes, the bearer
// methods, and the DPoP algorithms where DPoP is on.
func TestMetadataDocument(t *testing.T) {
	e := resourceEnv(t, func(c *middleware.Config) {
		c.ExternalURL = "https://api.example.com/mcp"
		c.Issuers[0].DPoP = middleware.DPoPRequired
	})
	if p := e.gate.MetadataPath(); p != "/.well-known/oauth-protected-resource/mcp" {
		t.Fatalf("MetadataPath %q", p)
	}
	w := e.do("GET", "/.well-known/oauth-protected-resource/mcp", "Host: evil.example", "X-Forwarded-Host: evil.example")
	if w.Code != 200 || e.api.calls.Load() != 0 {
		t.Fatalf("status %d, API calls %d", w.Code, e.api.calls.Load())
	}
	for name, want := range map[string]string{
		"Content-Type": "application/json", "Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*",
	} {
		if got := w.Header().Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	var doc map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"resource":                          resourceID,
		"authorization_servers":             []any{e.as.Issuer},
		"scopes_supported":                  []any{"never", "orders:admin", "orders:read", "orders:write"},
		"bearer_methods_supported":          []any{"header"},
		"resource_name":                     "Orders MCP",
		"resource_documentation":            "https://docs.example.com/mcp",
		"dpop_signing_alg_values_supported": []any{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"},
		"dpop_bound_access_tokens_required": true,
	}
	got, _ := json.Marshal(doc)
	exp, _ := json.Marshal(want)
	if string(got) != string(exp) {
		t.Errorf("metadata\n%s\nwant\n%s", got, exp)
	}
	if w := e.do("HEAD", "/.well-known/oauth-protected-resource/mcp"); w.Code != 200 {
		t.Errorf("HEAD: %d", w.Code)
	}
	if w := e.do("POST", "/.well-known/oauth-protected-resource/mcp"); w.Code != 405 || w.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %d %q", w.Code, w.Header().Get("Allow"))
	}
	// A minimal document: no name, no DPoP, the query method.
	m := newEnv(t, func(c *middleware.Config) {
		c.Resource = middleware.Resource{Identifier: "https://orders.example.com/"}
		c.Tokens.Query = "access_token"
		c.Routes = []middleware.Route{{Match: "/", Scopes: []string{}}}
	})
	w = m.do("GET", "/.well-known/oauth-protected-resource")
	if body := strings.TrimSpace(w.Body.String()); w.Code != 200 || body != `{"resource":"https://orders.example.com/","authorization_servers":["`+m.as.Issuer+`"],"bearer_methods_supported":["header","query"]}` {
		t.Errorf("minimal metadata: %d %s", w.Code, body)
	}
}

// TestResourceMetadataInEveryChallenge: RFC 9728 §5.1 (M6): every challenge, of every
// denial and both schemes, names the metadata URL.
func TestResourceMetadataInEveryChallenge(t *testing.T) {
	e := resourceEnv(t, func(c *middleware.Config) {
		c.ExternalURL = "https://api.example.com"
		c.Issuers[0].DPoP = middleware.DPoPAllowed
	})
	param := `resource_metadata="https://api.example.com/.well-known/oauth-protected-resource/mcp"`
	expired := e.as.MustMint(jwkstest.Claims{"aud": resourceID, "exp": time.Now().Add(-time.Hour).Unix(), "iat": time.Now().Add(-2 * time.Hour).Unix()})
	for name, tc := range map[string]struct {
		method, path string
		headers      []string
		status       int
	}{
		"no token":           {"GET", "/orders/1", nil, 401},
		"expired":            {"GET", "/orders/1", []string{bearer(expired)}, 401},
		"insufficient scope": {"DELETE", "/orders/1", []string{bearer(e.as.MustMint(jwkstest.Claims{"aud": resourceID, "scope": "orders:read"}))}, 403},
		"no route":           {"PUT", "/nowhere", nil, 403},
	} {
		t.Run(name, func(t *testing.T) {
			w := e.do(tc.method, tc.path, tc.headers...)
			got := w.Header().Values("WWW-Authenticate")
			if w.Code != tc.status || len(got) != 2 {
				t.Fatalf("status %d, challenges %q", w.Code, got)
			}
			for _, c := range got {
				if !strings.Contains(c, param) {
					t.Errorf("challenge %q lacks %s", c, param)
				}
			}
			// A 401 names what the route needs, so that a client asks for it at once.
			if tc.status == 401 && !strings.Contains(got[0], `scope="orders:read"`) {
				t.Errorf("the 401's first challenge %q names no scope", got[0])
			}
		})
	}
}

// TestResourceIsAnAudience (M8, RFC 8707): a token for the resource identifier is
// accepted, compared exactly; one for another resource is refused (audience).
func TestResourceIsAnAudience(t *testing.T) {
	e := resourceEnv(t, nil)
	for aud, want := range map[string]int{
		resourceID:                      200,
		resourceID + "/":                401,
		"https://API.example.com/mcp":   401,
		"https://api.example.com/other": 401,
	} {
		tok := e.as.MustMint(jwkstest.Claims{"aud": aud, "scope": "orders:read"})
		if w := e.do("GET", "/orders/1", bearer(tok)); w.Code != want {
			t.Errorf("aud %q: %d, want %d", aud, w.Code, want)
		}
	}
	if n := e.count(middleware.DecisionDenied, "audience", "GET /orders/{id}"); n != 3 {
		t.Errorf("audience denials %v, want 3", n)
	}
	// The issuer's own audiences stay accepted beside the identifier.
	both := resourceEnv(t, func(c *middleware.Config) { c.Issuers[0].Audiences = []string{audience} })
	for _, aud := range []string{audience, resourceID} {
		if w := both.do("GET", "/orders/1", bearer(both.as.MustMint(jwkstest.Claims{"aud": aud, "scope": "orders:read"}))); w.Code != 200 {
			t.Errorf("aud %q beside the issuer's audiences: %d", aud, w.Code)
		}
	}
}

// TestNoResource: without Config.Resource nothing is served and no challenge names one.
func TestNoResource(t *testing.T) {
	e := newEnv(t, nil)
	if e.gate.MetadataPath() != "" {
		t.Errorf("MetadataPath %q", e.gate.MetadataPath())
	}
	w := httptest.NewRecorder()
	e.gate.MetadataHandler().ServeHTTP(w, httptest.NewRequest("GET", middleware.WellKnownMetadataPath, nil))
	if w.Code != 404 {
		t.Errorf("MetadataHandler: %d", w.Code)
	}
	if w := e.do("GET", middleware.WellKnownMetadataPath); w.Code != 403 || strings.Contains(w.Header().Get("WWW-Authenticate"), "resource_metadata") {
		t.Errorf("the well-known path without a resource: %d %q", w.Code, w.Header().Get("WWW-Authenticate"))
	}
}

// TestResourceConfig (M1): what is wrong is named by its field.
func TestResourceConfig(t *testing.T) {
	for _, tc := range []struct {
		r     middleware.Resource
		field string
	}{
		{middleware.Resource{Name: "x"}, "Resource.Identifier"},
		{middleware.Resource{Identifier: "orders"}, "Resource.Identifier"},
		{middleware.Resource{Identifier: "http://orders.example.com"}, "Resource.Identifier"},
		{middleware.Resource{Identifier: "https://orders.example.com/?v=1"}, "Resource.Identifier"},
		{middleware.Resource{Identifier: "https://orders.example.com/#x"}, "Resource.Identifier"},
		{middleware.Resource{Identifier: "https://orders.example.com", Path: "well-known"}, "Resource.Path"},
		{middleware.Resource{Identifier: "https://orders.example.com", Documentation: "docs"}, "Resource.Documentation"},
	} {
		cfg := middleware.Config{
			Issuers:  []middleware.Issuer{{Config: jwks.Config{Issuer: "https://as.example.com"}}},
			Routes:   []middleware.Route{{Match: "/"}},
			Resource: tc.r,
		}
		err := middleware.Validate(cfg)
		found := false
		for _, e := range joined.Flatten(err) {
			var fe *middleware.FieldError
			found = found || errors.As(e, &fe) && fe.Field == tc.field
		}
		if !found {
			t.Errorf("%+v: %v, want an error naming %s", tc.r, err, tc.field)
		}
	}
	ok := middleware.Config{
		Issuers:  []middleware.Issuer{{Config: jwks.Config{Issuer: "https://as.example.com"}}},
		Routes:   []middleware.Route{{Match: "/"}},
		Resource: middleware.Resource{Identifier: "http://127.0.0.1:8000"},
	}
	if err := middleware.Validate(ok); err != nil {
		t.Errorf("a loopback http identifier, no audiences: %v", err)
	}
}

// TestRequireNamesScopesWithResource: Require's 401, like Handler's, names the scopes
// it needs when a resource is set.
func TestRequireNamesScopesWithResource(t *testing.T) {
	e := resourceEnv(t, nil)
	h := e.gate.Require("orders:read")(e.api)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/orders/1", nil))
	if got := w.Header().Get("WWW-Authenticate"); w.Code != 401 || !strings.Contains(got, `scope="orders:read"`) || !strings.Contains(got, "resource_metadata=") {
		t.Errorf("Require without a token: %d %q", w.Code, got)
	}
	plain := newEnv(t, nil)
	w = httptest.NewRecorder()
	plain.gate.Require("orders:read")(plain.api).ServeHTTP(w, httptest.NewRequest("GET", "/orders/1", nil))
	if got := w.Header().Get("WWW-Authenticate"); got != `Bearer realm="orders-api"` {
		t.Errorf("Require without a resource: %q", got)
	}
}
