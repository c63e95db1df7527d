package middleware_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokengate/tokengate/dpop/dpoptest"
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

// BenchmarkDPoP measures a decision with a DPoP proof, every request a fresh proof (made
// before the timer starts): "cached-dpop" finds the token in the cache and checks the
// proof, "uncached-dpop" verifies both; the bearer "cached" and "uncached-ES256" of the
// same run are the baselines (docs/performance.md#dpop).
func BenchmarkDPoP(b *testing.B) {
	dpopOn := func(c *middleware.Config) {
		c.ExternalURL = externalURL
		c.Issuers[0].DPoP = middleware.DPoPAllowed
	}
	e := newEnv(b, dpopOn)
	nocache := newEnvFor(b, e.as, func(c *middleware.Config) { dpopOn(c); c.Tokens.NoCache = true }, middleware.Options{})
	client := dpoptest.MustNewClient("ES256")
	tok := e.as.MustMint(jwkstest.Claims{"scope": "orders:read", "cnf": map[string]any{"jkt": client.JKT()}}, jwkstest.WithKey("ec-1"))
	bearerTok := e.as.MustMint(jwkstest.Claims{"scope": "orders:read"}, jwkstest.WithKey("ec-1"))
	proofs := func(n int) []*http.Request {
		reqs := make([]*http.Request, n)
		for i := range reqs {
			reqs[i] = httptest.NewRequest("GET", "/orders/42", nil)
			reqs[i].Header.Set("Authorization", "DPoP "+tok)
			reqs[i].Header.Set("DPoP", client.MustProof("GET", externalURL+"/orders/42", tok, nil, nil))
		}
		return reqs
	}
	e.gate.Decide(proofs(1)[0])
	e.gate.Decide(benchRequest(bearerTok))
	for _, tc := range []struct {
		name string
		g    *middleware.Gate
	}{{"cached-dpop", e.gate}, {"uncached-dpop-ES256", nocache.gate}} {
		b.Run(tc.name, func(b *testing.B) {
			reqs := proofs(b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if d := tc.g.Decide(reqs[i]); !d.Allowed() {
					b.Fatal(d.Err)
				}
			}
		})
	}
	for _, tc := range []struct {
		name string
		g    *middleware.Gate
	}{{"cached", e.gate}, {"uncached-ES256", nocache.gate}} {
		b.Run(tc.name, func(b *testing.B) {
			req := benchRequest(bearerTok)
			b.ReportAllocs()
			for b.Loop() {
				if d := tc.g.Decide(req); !d.Allowed() {
					b.Fatal(d.Err)
				}
			}
		})
	}
}

// BenchmarkIntrospection measures decisions on opaque tokens: "cached-opaque" finds the
// introspected token in the verified-token cache, "miss-opaque" introspects every time
// (both caches off: one call to jwkstest on loopback per request); the JWT decisions of
// the same run, cached and uncached (ES256), are the baselines
// (docs/performance.md#introspection).
func BenchmarkIntrospection(b *testing.B) {
	as, err := jwkstest.NewServer(jwkstest.WithAudience(audience))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(as.Close)
	as.AddClient(jwkstest.Client{ID: "orders-api", Secret: "s3cret"})
	on := func(ttl time.Duration, noCache bool) func(*middleware.Config) {
		return func(c *middleware.Config) {
			c.Issuers[0].Introspection = middleware.Introspection{ClientID: "orders-api", ClientSecret: []byte("s3cret"), OpaqueTokens: true, CacheTTL: ttl}
			c.Tokens.NoCache = noCache
		}
	}
	cached := newEnvFor(b, as, on(time.Minute, false), middleware.Options{})
	miss := newEnvFor(b, as, on(-1, true), middleware.Options{})
	opaque := as.MintOpaque(jwkstest.Claims{"scope": "orders:read"})
	jwt := as.MustMint(jwkstest.Claims{"scope": "orders:read"}, jwkstest.WithKey("ec-1"))
	for _, tc := range []struct {
		name, tok string
		g         *middleware.Gate
	}{
		{"cached-jwt", jwt, cached.gate}, {"cached-opaque", opaque, cached.gate},
		{"uncached-jwt-ES256", jwt, miss.gate}, {"miss-opaque", opaque, miss.gate},
	} {
		b.Run(tc.name, func(b *testing.B) {
			req := benchRequest(tc.tok)
			tc.g.Decide(req)
			b.ReportAllocs()
			for b.Loop() {
				if d := tc.g.Decide(req); !d.Allowed() {
					b.Fatal(d.Err)
				}
			}
		})
	}
}
