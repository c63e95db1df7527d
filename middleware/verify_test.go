package middleware_test

import (
	"encoding/base64"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/jwks/jwkstest"
	"github.com/tokengate/tokengate/middleware"
)

// decide runs one request with a bearer token through a Gate.
func (e *env) decide(tok string) middleware.Decision {
	req := httptest.NewRequest("GET", "/orders/1", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	return e.gate.Decide(req)
}

// The limits of verification at their edges: the last value accepted, the first
// refused.
func TestVerifyEdges(t *testing.T) {
	t.Run("token length: exactly Tokens.MaxBytes", func(t *testing.T) {
		as, err := jwkstest.NewServer(jwkstest.WithAudience(audience))
		if err != nil {
			t.Fatal(err)
		}
		defer as.Close()
		tok := as.MustMint(jwkstest.Claims{"scope": "orders:read"})
		for _, tc := range []struct {
			max  int
			want middleware.Reason
		}{{len(tok), middleware.ReasonOK}, {len(tok) - 1, middleware.ReasonMalformedToken}} {
			e := newEnvFor(t, as, func(c *middleware.Config) { c.Tokens.MaxBytes = tc.max }, middleware.Options{})
			if d := e.decide(tok); d.Reason != tc.want {
				t.Errorf("MaxBytes %d, a token of %d bytes: %s (%v), want %s", tc.max, len(tok), d.Reason, d.Err, tc.want)
			}
		}
	})
	t.Run("lifetime: exactly Tokens.MaxLifetime", func(t *testing.T) {
		e := newEnv(t, func(c *middleware.Config) { c.Tokens.MaxLifetime = time.Hour })
		now := time.Now()
		for _, tc := range []struct {
			life time.Duration
			want middleware.Reason
		}{{time.Hour, middleware.ReasonOK}, {time.Hour + time.Second, middleware.ReasonClaims}} {
			tok := e.as.MustMint(jwkstest.Claims{"scope": "orders:read", "iat": now.Unix(), "exp": now.Add(tc.life).Unix()})
			if d := e.decide(tok); d.Reason != tc.want {
				t.Errorf("lifetime %s under a maximum of 1h: %s (%v), want %s", tc.life, d.Reason, d.Err, tc.want)
			}
		}
	})
	t.Run("header: exactly 384 bytes decoded", func(t *testing.T) {
		e := newEnv(t, nil)
		// Pad the header with a member until it decodes to n bytes.
		mint := func(n int) string {
			pad := ""
			for range 400 {
				tok := e.as.MustMint(jwkstest.Claims{"scope": "orders:read"}, jwkstest.WithHeader(jwkstest.Claims{"x": pad}))
				hdr, err := base64.RawURLEncoding.DecodeString(tok[:strings.IndexByte(tok, '.')])
				if err != nil {
					t.Fatal(err)
				}
				if len(hdr) == n {
					return tok
				}
				pad += "a"
			}
			t.Fatalf("no header of %d bytes", n)
			return ""
		}
		if d := e.decide(mint(384)); d.Reason != middleware.ReasonOK {
			t.Errorf("a header of 384 bytes: %s (%v)", d.Reason, d.Err)
		}
		if d := e.decide(mint(385)); d.Reason != middleware.ReasonMalformedToken {
			t.Errorf("a header of 385 bytes: %s (%v)", d.Reason, d.Err)
		}
	})
	t.Run("alg none needs a payload to count as an attack on the algorithm", func(t *testing.T) {
		e := newEnv(t, nil)
		none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`))
		payload := base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"x"}`))
		for tok, want := range map[string]middleware.Reason{
			none + "." + payload + ".": middleware.ReasonAlgorithm,
			none + "..":                middleware.ReasonMalformedToken,
			none + ".":                 middleware.ReasonMalformedToken,
		} {
			if d := e.decide(tok); d.Reason != want {
				t.Errorf("%q: %s, want %s", tok, d.Reason, want)
			}
		}
	})
}
