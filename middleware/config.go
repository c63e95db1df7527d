package middleware

import (
	"fmt"
	"strings"
	"time"

	"github.com/tokengate/tokengate/jwks"
)

// Defaults of Tokens. A zero field means its default.
const (
	DefaultLeeway       = 30 * time.Second
	DefaultMaxBytes     = 8192
	DefaultCacheEntries = 10000
	// DefaultCacheBytes bounds the verified-token cache's memory: with the refused-token
	// cache's eighth of it, it fits a 64 MiB container with room to spare
	// (docs/operations.md shows the arithmetic).
	DefaultCacheBytes = 8 << 20
	// MaxLeeway bounds the clock skew an operator may allow: more is not skew.
	MaxLeeway = 5 * time.Minute
)

// Config is the whole policy of a Gate: who may issue tokens, how tokens are read, and
// what each route needs. The zero value of every optional field means its default.
type Config struct {
	// Realm is the realm of every WWW-Authenticate challenge. Default "tokengate".
	Realm string

	// Issuers are the trusted authorization servers; at least one.
	Issuers []Issuer

	// Tokens says how tokens are read and how much clock skew is tolerated.
	Tokens Tokens

	// Routes are the policy, in Go 1.22 ServeMux pattern syntax; the most specific
	// pattern wins, and a request that no route matches is denied (no_route). Handler
	// needs them; Require works without.
	Routes []Route

	// Shadow forwards every request that would be denied, counting it as shadow_denied
	// and logging it: a safe way to roll a policy out. Default false (enforce).
	Shadow bool

	// PathStyle is how the API behind the Gate reads methods and paths, so that the
	// Gate decides on every reading of a request. Default PathsStrict.
	PathStyle PathStyle
}

// Issuer is one trusted authorization server: where its keys come from (the embedded
// jwks.Config) and what its tokens must say.
type Issuer struct {
	jwks.Config

	// Audiences are the identifiers of this API: a token's aud must hold one of them.
	// Required: an empty list would accept tokens meant for any API (docs/standards.md X33).
	Audiences []string

	// TokenType, when "at+jwt", requires RFC 9068 typing (typ at+jwt or
	// application/at+jwt) and its required claims (iss exp aud sub client_id iat jti).
	// Empty accepts any typ that does not name another kind of JWT.
	TokenType string

	// ScopeClaim is the claim that holds scopes. Empty reads scope, then scp, then
	// scopes; each may be a space-separated string or an array of strings.
	ScopeClaim string

	// AudienceClaims, for an issuer whose access tokens carry no aud (AWS Cognito's
	// carry client_id), are the claims read for the audience instead, each a string
	// or an array of strings that must hold one of Audiences. A token of such an
	// issuer that has an aud is refused (claims): from Cognito that is an ID token,
	// which must never pass as an access token. Empty: aud, as RFC 9068 requires.
	AudienceClaims []string
}

// Tokens says how tokens are read.
type Tokens struct {
	// Leeway is the clock skew allowed on exp, nbf and iat. Zero means DefaultLeeway;
	// a negative value means none. At most MaxLeeway.
	Leeway time.Duration
	// MaxLifetime rejects tokens whose exp − iat is longer. Zero: no limit.
	MaxLifetime time.Duration
	// MaxBytes: longer tokens are malformed, refused before anything is decoded.
	// Default DefaultMaxBytes.
	MaxBytes int
	// Cookie, when set, also accepts the token from this cookie. Off by default.
	Cookie string
	// Query, when set, also accepts the token from this query parameter. Off by
	// default: tokens in URLs end up in logs (RFC 6750 §5.3).
	Query string
	// CacheEntries bounds the verified-token cache's entries. Default
	// DefaultCacheEntries.
	CacheEntries int
	// CacheBytes bounds its memory: each entry is charged for its token, the claims it
	// keeps and a fixed overhead. Default DefaultCacheBytes. The cache of refused
	// tokens gets an eighth of it.
	CacheBytes int64
	// KeepClaims names the claims that stay in Claims.Raw after verification, besides
	// the registered ones that Claims has as fields. nil keeps every claim; a short
	// list lets the cache hold more tokens in the same bytes (the sidecar keeps only
	// the claims it forwards).
	KeepClaims []string
	// NoCache turns the verified-token cache off.
	NoCache bool
}

// Route is the policy of the requests its pattern matches.
type Route struct {
	// Match is a Go 1.22 ServeMux pattern: "[METHOD ][HOST]/PATH", with {wildcards}.
	Match string
	// Public routes need no token.
	Public bool
	// Scopes must all be in the token.
	Scopes []string
	// AnyScopes: at least one must be in the token.
	AnyScopes []string
	// Shadow forwards this route's denials anyway, counting and logging them.
	Shadow bool
	// WebSocket lets an allowed WebSocket handshake through with its Upgrade; on other
	// routes Handler removes every protocol switch a request asks for.
	WebSocket bool
}

// FieldError names a configuration field that is wrong. Field is its Go path in Config
// ("Issuers[0].Audiences", "Routes[2].Match", "Tokens.CacheEntries"); a problem names
// other fields the same way. The sidecar's configuration layer translates both into the
// file's keys and lines.
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

func (c Config) withDefaults() Config {
	if c.Realm == "" {
		c.Realm = "tokengate"
	}
	switch {
	case c.Tokens.Leeway == 0:
		c.Tokens.Leeway = DefaultLeeway
	case c.Tokens.Leeway < 0:
		c.Tokens.Leeway = 0
	}
	if c.Tokens.MaxBytes == 0 {
		c.Tokens.MaxBytes = DefaultMaxBytes
	}
	if c.PathStyle == "" {
		c.PathStyle = PathsStrict
	}
	if c.Tokens.CacheEntries == 0 {
		c.Tokens.CacheEntries = DefaultCacheEntries
	}
	if c.Tokens.CacheBytes == 0 {
		c.Tokens.CacheBytes = DefaultCacheBytes
	}
	return c
}

// validate checks everything but the issuers' key configuration (which jwks checks) and
// the routes (which compileRoutes checks), reporting every problem at once.
func (c Config) validate() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
	}
	if err := validPathStyle(c.PathStyle); err != nil {
		bad("PathStyle", "%v", err)
	}
	if !quotable(c.Realm) {
		bad("Realm", "%q cannot be sent in a WWW-Authenticate header (no quotes, backslashes or control characters)", c.Realm)
	}
	for i, iss := range c.Issuers {
		f := fmt.Sprintf("Issuers[%d].", i)
		if len(iss.Audiences) == 0 {
			bad(f+"Audiences", "is empty: a token for any API would be accepted; list this API's identifiers")
		}
		for j, a := range iss.Audiences {
			if strings.TrimSpace(a) == "" {
				bad(fmt.Sprintf("%sAudiences[%d]", f, j), "is empty")
			}
		}
		switch iss.TokenType {
		case "", "at+jwt":
		default:
			bad(f+"TokenType", "%q: use \"at+jwt\" (RFC 9068) or leave it empty", iss.TokenType)
		}
		if iss.TokenType == "at+jwt" && len(iss.AudienceClaims) > 0 {
			bad(f+"AudienceClaims", "RFC 9068 tokens (TokenType at+jwt) carry aud; AudienceClaims is for issuers whose tokens have none")
		}
		for j, c := range iss.AudienceClaims {
			switch c {
			case "", "aud", "iss", "sub", "exp", "nbf", "iat", "jti", "scope", "scp", "scopes":
				bad(fmt.Sprintf("%sAudienceClaims[%d]", f, j), "%q cannot carry the audience: name the claim that does, such as client_id", c)
			}
		}
	}
	t := c.Tokens
	if t.Leeway > MaxLeeway {
		bad("Tokens.Leeway", "%s is more than %s: that is not clock skew", t.Leeway, MaxLeeway)
	}
	if t.MaxLifetime < 0 {
		bad("Tokens.MaxLifetime", "must not be negative")
	}
	if t.MaxBytes < 0 || t.MaxBytes > 64<<10 {
		bad("Tokens.MaxBytes", "%d is outside 1 to 65536", t.MaxBytes)
	}
	if t.CacheEntries < 0 {
		bad("Tokens.CacheEntries", "must not be negative")
	}
	if t.CacheBytes < 0 {
		bad("Tokens.CacheBytes", "must not be negative")
	}
	if t.Cookie != "" && !validCookieName(t.Cookie) {
		bad("Tokens.Cookie", "%q is not a valid cookie name", t.Cookie)
	}
	if t.Query != "" && strings.TrimSpace(t.Query) != t.Query {
		bad("Tokens.Query", "%q has spaces", t.Query)
	}
	return errs
}

// quotable reports whether s can be a quoted-string parameter value without escapes:
// printable ASCII without '"' and '\' (RFC 6750 §3 for error_description and scope).
func quotable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// validScope reports whether s is a scope-token (RFC 6749 §3.3): %x21 / %x23-5B /
// %x5D-7E, at least one.
func validScope(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

func validCookieName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return s != ""
}
