package middleware

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/tokengate/tokengate/internal/joined"
	"github.com/tokengate/tokengate/introspect"
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

	// ExternalURL is how clients address this API: scheme, authority and any path
	// prefix a proxy in front strips. A DPoP proof's htu is checked against it and the
	// request's path, never against Host or X-Forwarded-* (RFC 9449 §4.3). Required
	// when an issuer's DPoP is not DPoPOff.
	ExternalURL string

	// Resource, when its Identifier is set, publishes protected-resource metadata
	// (RFC 9728) at Resource.Path, names it in every challenge (resource_metadata), and
	// accepts tokens for the identifier from every issuer.
	Resource Resource
}

// DPoPMode is an issuer's policy for DPoP-bound tokens (RFC 9449).
type DPoPMode string

// The DPoP modes.
const (
	// DPoPOff: the issuer's tokens are bearer tokens; one bound to a key (cnf.jkt) is
	// refused (claims), and so is the DPoP scheme.
	DPoPOff DPoPMode = "off"
	// DPoPAllowed: bearer tokens, and DPoP-bound tokens with a proof on every request.
	DPoPAllowed DPoPMode = "allowed"
	// DPoPRequired: DPoP-bound tokens only; a bearer token is refused (binding).
	DPoPRequired DPoPMode = "required"
)

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

	// DPoP is the issuer's policy for DPoP-bound tokens. Empty is DPoPOff.
	DPoP DPoPMode

	// Introspection asks the issuer about tokens (RFC 7662): opaque ones, or its JWTs
	// too. Off by default.
	Introspection Introspection

	// Rules must all hold for every request with this issuer's tokens, on routes
	// that need a token (package rules compiles CEL expressions into Rules).
	Rules []Rule

	// Checks hold every token of this issuer to what the issuer vouches for beyond
	// the registered claims, such as a Kubernetes cluster's workload identity
	// (serviceaccount.RequireWorkload). Each runs once per token, after the signature
	// and the registered claims verified and before the token is cached, on the whole
	// payload (Tokens.KeepClaims does not apply yet); an error denies the token with
	// 401 invalid_token, reason claims. A Rule, by contrast, runs on every request and
	// denies with 403.
	Checks []ClaimsCheck
}

// ClaimsCheck checks the verified claims of an issuer's tokens (Issuer.Checks).
type ClaimsCheck interface {
	// CheckClaims returns why the token whose claims are c is refused, nil when it is
	// not. The error goes to the denial's log line: it must not quote a claim that
	// identifies someone (the Gate logs a subject only as a hash).
	CheckClaims(c *Claims) error
}

// ClaimsCheckFunc adapts a function to a ClaimsCheck.
type ClaimsCheckFunc func(c *Claims) error

// CheckClaims returns f(c).
func (f ClaimsCheckFunc) CheckClaims(c *Claims) error { return f(c) }

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

	// DPoP says how DPoP proofs are checked, for issuers whose DPoP is not DPoPOff.
	DPoP DPoPProofs

	// ClientCertificateHeader, when set, names the header in which a trusted front
	// proxy passes the client certificate's hash, in Envoy's X-Forwarded-Client-Cert
	// form (Hash=<hex SHA-256 of the DER>): certificate-bound tokens (cnf.x5t#S256,
	// RFC 8705) are checked against it instead of the request's own TLS connection.
	// Set it only behind a proxy that replaces the header on every request.
	ClientCertificateHeader string
}

// DPoPProofs says how DPoP proofs are checked (RFC 9449 §4.3).
type DPoPProofs struct {
	// MaxAge is how old a proof's iat may be. Default dpop.DefaultMaxAge (60s).
	MaxAge time.Duration
	// Algorithms proofs may be signed with. Default jwks.DefaultAlgorithms().
	Algorithms []string
	// NonceSecret turns server nonces on (DPoP-Nonce): at least 32 random bytes,
	// the same for every replica, which then agree on nonces without sharing state.
	NonceSecret []byte
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
	// SingleUse accepts each token once on this route: its jti (required) is recorded
	// in the replay store until the token expires, keyed by issuer and jti, and a
	// second use is refused (replay). A use on another route does not consume it.
	SingleUse bool
	// Rules must all hold, after the scopes, for a request this route matches.
	Rules []Rule
}

// Rule is a condition a request must meet beyond its scopes, checked once the token
// is verified and its scopes suffice: per issuer (Issuer.Rules) and per route
// (Route.Rules). A false rule, or an error, denies the request with 403, reason
// "rule": a rule that cannot be evaluated never lets a request through.
type Rule interface {
	// Name names the rule in log lines and in the check command's explanation; never
	// in a metric label.
	Name() string
	// Allow reports whether the request r, sent with a token whose verified claims
	// are c, meets the rule.
	Allow(r *http.Request, c *Claims) (bool, error)
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
		if len(iss.Audiences) == 0 && c.Resource.Identifier == "" {
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
		switch iss.DPoP {
		case "", DPoPOff, DPoPAllowed, DPoPRequired:
		default:
			bad(f+"DPoP", "%q: use off, allowed or required", iss.DPoP)
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
	if t.Cookie != "" && !isToken(t.Cookie) {
		bad("Tokens.Cookie", "%q is not a valid cookie name", t.Cookie)
	}
	if t.Query != "" && strings.TrimSpace(t.Query) != t.Query {
		bad("Tokens.Query", "%q has spaces", t.Query)
	}
	if h := t.ClientCertificateHeader; h != "" && !isToken(h) {
		bad("Tokens.ClientCertificateHeader", "%q is not a valid header name", h)
	}
	c.Resource.validate(bad)
	opaque := -1
	for i, iss := range c.Issuers {
		f := fmt.Sprintf("Issuers[%d].Introspection.", i)
		in := iss.Introspection
		switch {
		case in.OpaqueTokens && opaque >= 0:
			bad(f+"OpaqueTokens", "is set for Issuers[%d] too: an opaque token names no issuer, so one issuer at most takes them", opaque)
		case in.OpaqueTokens:
			opaque = i
		}
		if !in.on() {
			if in.Endpoint != "" || in.ClientID != "" || len(in.ClientSecret) > 0 {
				bad(f+"OpaqueTokens", "is false and so is Always: introspection is configured but never used")
			}
			continue
		}
		for _, e := range joined.Flatten(checkIntrospection(introspect.Config{
			Endpoint: in.Endpoint, ClientID: in.ClientID, ClientSecret: in.ClientSecret,
			Timeout: in.Timeout, CacheTTL: in.CacheTTL, InsecureHTTP: iss.InsecureHTTP,
		})) {
			var ce *introspect.ConfigError
			if errors.As(e, &ce) {
				bad(f+ce.Field, "%s", ce.Problem)
			} else {
				bad(f+"Endpoint", "%v", e)
			}
		}
	}
	for i, iss := range c.Issuers {
		checkRules(fmt.Sprintf("Issuers[%d].Rules", i), iss.Rules, bad)
		for j, ch := range iss.Checks {
			if ch == nil {
				bad(fmt.Sprintf("Issuers[%d].Checks[%d]", i, j), "is nil")
			}
		}
	}
	for i, rt := range c.Routes {
		if rt.SingleUse && rt.Public {
			bad(fmt.Sprintf("Routes[%d].SingleUse", i), "a public route needs no token, so there is none to use once")
		}
		if len(rt.Rules) > 0 && rt.Public {
			bad(fmt.Sprintf("Routes[%d].Rules", i), "a public route needs no token, so its rules would have no claims to check")
		}
		checkRules(fmt.Sprintf("Routes[%d].Rules", i), rt.Rules, bad)
	}
	return errs
}

// checkRules refuses a nil rule and a rule without a name: a denial names its rule in
// the log line.
func checkRules(field string, rules []Rule, bad func(field, format string, args ...any)) {
	for j, r := range rules {
		switch {
		case r == nil:
			bad(fmt.Sprintf("%s[%d]", field, j), "is nil")
		case r.Name() == "":
			bad(fmt.Sprintf("%s[%d]", field, j), "has no name")
		}
	}
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

// dpopOn reports whether some issuer accepts DPoP-bound tokens.
func (c Config) dpopOn() bool {
	for _, iss := range c.Issuers {
		if iss.DPoP != "" && iss.DPoP != DPoPOff {
			return true
		}
	}
	return false
}

// singleUse reports whether some route is single-use.
func (c Config) singleUse() bool {
	for _, rt := range c.Routes {
		if rt.SingleUse {
			return true
		}
	}
	return false
}

// isToken reports whether s is an RFC 9110 §5.6.2 token: a header field name, or a
// cookie name (RFC 6265 §4.1.1).
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return s != ""
}
