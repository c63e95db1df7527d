package middleware_test

import (
	"errors"
	"testing"
	"time"

	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/middleware"
)

// Each bound of Tokens, at its edge: the last value accepted, the first refused.
func TestConfigBounds(t *testing.T) {
	base := func() middleware.Config {
		return middleware.Config{
			Issuers: []middleware.Issuer{{Config: jwks.Config{Issuer: "https://auth.example.com"}, Audiences: []string{audience}}},
			Routes:  []middleware.Route{{Match: "/"}},
		}
	}
	for _, tc := range []struct {
		name  string
		mut   func(*middleware.Tokens)
		field string // "" when valid
	}{
		{"leeway at the maximum", func(t *middleware.Tokens) { t.Leeway = middleware.MaxLeeway }, ""},
		{"leeway beyond it", func(t *middleware.Tokens) { t.Leeway = middleware.MaxLeeway + time.Nanosecond }, "Tokens.Leeway"},
		{"no leeway", func(t *middleware.Tokens) { t.Leeway = -1 }, ""},
		{"max lifetime zero", func(t *middleware.Tokens) { t.MaxLifetime = 0 }, ""},
		{"max lifetime negative", func(t *middleware.Tokens) { t.MaxLifetime = -time.Nanosecond }, "Tokens.MaxLifetime"},
		{"max bytes 64 KiB", func(t *middleware.Tokens) { t.MaxBytes = 64 << 10 }, ""},
		{"max bytes beyond", func(t *middleware.Tokens) { t.MaxBytes = 64<<10 + 1 }, "Tokens.MaxBytes"},
		{"max bytes negative", func(t *middleware.Tokens) { t.MaxBytes = -1 }, "Tokens.MaxBytes"},
		{"cache entries default", func(t *middleware.Tokens) { t.CacheEntries = 0 }, ""},
		{"cache entries negative", func(t *middleware.Tokens) { t.CacheEntries = -1 }, "Tokens.CacheEntries"},
		{"cache bytes default", func(t *middleware.Tokens) { t.CacheBytes = 0 }, ""},
		{"cache bytes negative", func(t *middleware.Tokens) { t.CacheBytes = -1 }, "Tokens.CacheBytes"},
		{"query parameter", func(t *middleware.Tokens) { t.Query = "access_token" }, ""},
		{"query parameter with a space", func(t *middleware.Tokens) { t.Query = "access_token " }, "Tokens.Query"},
		{"cookie", func(t *middleware.Tokens) { t.Cookie = "at" }, ""},
		{"cookie with a semicolon", func(t *middleware.Tokens) { t.Cookie = "a;b" }, "Tokens.Cookie"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base()
			tc.mut(&cfg.Tokens)
			err := middleware.Validate(cfg)
			var fe *middleware.FieldError
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.field != "" && !errors.As(err, &fe):
				t.Fatalf("accepted (%v)", err)
			case tc.field != "" && fe.Field != tc.field:
				t.Fatalf("names %s, want %s: %v", fe.Field, tc.field, err)
			}
		})
	}
}
