package middleware_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/jwks/jwkstest"
	"github.com/tokengate/tokengate/middleware"
)

func benchRequest(tok string) *http.Request {
	req := httptest.NewRequest("GET", "/orders/42", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	return req
}

// TestCachedDecisionAllocations holds the cached path to at most 3 allocations: the
// same valid token again, route matched, scopes checked, decision counted.
func TestCachedDecisionAllocations(t *testing.T) {
	e := newEnv(t, nil)
	req := benchRequest(e.as.MustMint(jwkstest.Claims{"scope": "orders:read"}))
	if d := e.gate.Decide(req); !d.Allowed() {
		t.Fatal(d.Err)
	}
	n := testing.AllocsPerRun(1000, func() {
		if d := e.gate.Decide(req); !d.Cached {
			t.Fatal("not cached")
		}
	})
	if n > 3 {
		t.Fatalf("%v allocations per cached decision, want at most 3", n)
	}
}

// BenchmarkDecision measures Decide for the same request. "cached" finds the token in
// the cache; "uncached-*" verifies it every time (cache off); "jwt-parse-*" is the
// baseline measured in the same run: golang-jwt's own Parse with a static key and
// MapClaims, the least any verifier does.
func BenchmarkDecision(b *testing.B) {
	e := newEnv(b, nil)
	nocache := newEnvFor(b, e.as, func(c *middleware.Config) { c.Tokens.NoCache = true }, middleware.Options{})
	read := jwkstest.Claims{"scope": "orders:read"}

	b.Run("cached", func(b *testing.B) {
		req := benchRequest(e.as.MustMint(read))
		e.gate.Decide(req)
		b.ReportAllocs()
		for b.Loop() {
			if d := e.gate.Decide(req); !d.Allowed() {
				b.Fatal(d.Err)
			}
		}
	})
	b.Run("cached-parallel", func(b *testing.B) {
		tok := e.as.MustMint(read)
		e.gate.Decide(benchRequest(tok))
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			req := benchRequest(tok)
			for pb.Next() {
				if d := e.gate.Decide(req); !d.Allowed() {
					b.Error(d.Err)
					return
				}
			}
		})
	})
	for _, k := range []struct{ kid, alg string }{{"rsa-1", "RS256"}, {"ec-1", "ES256"}, {"ed-1", "EdDSA"}} {
		tok := e.as.MustMint(read, jwkstest.WithKey(k.kid))
		key, _ := e.as.KeyByID(k.kid)
		b.Run("uncached-"+k.alg, func(b *testing.B) {
			req := benchRequest(tok)
			b.ReportAllocs()
			for b.Loop() {
				if d := nocache.gate.Decide(req); !d.Allowed() {
					b.Fatal(d.Err)
				}
			}
		})
		b.Run("jwt-parse-"+k.alg, func(b *testing.B) {
			parser := jwt.NewParser(jwt.WithValidMethods(jwks.DefaultAlgorithms()))
			pub := key.Public()
			keyfunc := func(*jwt.Token) (any, error) { return pub, nil }
			b.ReportAllocs()
			for b.Loop() {
				if _, err := parser.Parse(tok, keyfunc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
