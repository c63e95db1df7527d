package rules_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/jwks/jwkstest"
	"github.com/tokengate/tokengate/middleware"
	"github.com/tokengate/tokengate/rules"
)

// BenchmarkRule is what a rule adds to a cached decision (goal: at most 1 µs): the
// token's claims decoded already (Claims.Map is memoized per token), a typical
// request's header.
func BenchmarkRule(b *testing.B) {
	c := claimsOf(b, `{"iss": "https://auth.example.com", "sub": "alice", "aud": "https://orders.example.com",
		"exp": 1800000000, "iat": 1700000000, "jti": "a1b2c3", "client_id": "orders-web",
		"scope": "orders:read orders:write", "tid": "contoso", "groups": ["users", "team-orders", "admins"]}`)
	c.Map() // as on a cache hit
	r := httptest.NewRequest("GET", "https://orders.example.com/orders/42", nil)
	for _, h := range [][2]string{
		{"Authorization", "Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln"},
		{"Accept", "application/json"},
		{"Accept-Encoding", "gzip, deflate, br"},
		{"User-Agent", "orders-web/1.4 (+https://orders.example.com)"},
		{"X-Request-Id", "7f8c2b1e-4d5a-4e7b-9c3d-2a1b0c9d8e7f"},
		{"X-Forwarded-For", "203.0.113.7"},
		{"X-Tenant", "contoso"},
	} {
		r.Header.Set(h[0], h[1])
	}
	for _, bc := range []struct{ name, expr string }{
		{"claim", `claims.tid == "contoso"`},
		{"header", `request.headers["x-tenant"] == claims.tid`},
		{"group", `"admins" in claims.groups`},
		{"method", `request.method in ["GET", "HEAD"] || "admins" in claims.groups`},
	} {
		rule := compileOne(b, bc.expr)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if ok, err := rule.Allow(r, c); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
		})
	}
}

// BenchmarkCompile is the cost of loading one rule (the environment is shared).
func BenchmarkCompile(b *testing.B) {
	specs := []rules.Spec{{Name: "tenant", Expr: `request.headers["x-tenant"] == claims.tid && "admins" in claims.groups`}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := rules.Compile(specs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecide is a cached decision with two rules (one on a claim, one comparing a
// header with a claim) against the same decision without rules, in the same run: what
// rules add to a request (docs/performance.md#rules).
func BenchmarkDecide(b *testing.B) {
	as, err := jwkstest.NewServer(jwkstest.WithAudience("https://orders.example.com"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(as.Close)
	two, err := rules.Compile([]rules.Spec{
		{Name: "tenant", Expr: `claims.tid == "contoso"`},
		{Name: "own-account", Expr: `request.headers["x-account"] == claims.sub`},
	})
	if err != nil {
		b.Fatal(err)
	}
	tok := as.MustMint(jwkstest.Claims{"sub": "alice", "tid": "contoso", "scope": "orders:read"})
	for _, bc := range []struct {
		name  string
		rules []middleware.Rule
	}{{"no_rules", nil}, {"two_rules", two}} {
		gate, err := middleware.New(context.Background(), middleware.Config{
			Issuers: []middleware.Issuer{{Config: jwks.Config{Issuer: as.Issuer}, Audiences: []string{"https://orders.example.com"}}},
			Routes:  []middleware.Route{{Match: "GET /orders/{id}", Scopes: []string{"orders:read"}, Rules: bc.rules}},
		}, middleware.Options{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := gate.WaitReady(ctx); err != nil {
			b.Fatal(err)
		}
		cancel()
		r := httptest.NewRequest("GET", "/orders/42", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		r.Header.Set("X-Account", "alice")
		if d := gate.Decide(r); !d.Allowed() {
			b.Fatalf("%s: %v", bc.name, d.Err)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if d := gate.Decide(r); !d.Allowed() {
					b.Fatal(d.Err)
				}
			}
		})
		gate.Close()
	}
}
