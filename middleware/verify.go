package middleware

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokengate/tokengate/jwks"
)

// issuerPolicy is what a token of one issuer must satisfy beyond its signature.
type issuerPolicy struct {
	issuer         string
	audiences      []string
	audienceClaims []string
	atJWT          bool
	scopeClaim     string
	dpop           DPoPMode
	// introspector asks the issuer about its tokens (Introspection.on), with always
	// its JWTs too; nil when off.
	introspector *Introspector
	always       bool
	// rules are Issuer.Rules: every request with this issuer's token on a route that
	// needs one must meet them.
	rules []Rule
	// checks are Issuer.Checks: every token of this issuer must pass them once.
	checks []ClaimsCheck

	maxLifetime time.Duration
	now         func() time.Time
}

// verifier turns a token string into verified claims: docs/middleware.md, Verify.
type verifier struct {
	parser   *jwt.Parser
	issuers  map[string]*issuerPolicy
	keys     KeySource
	maxBytes int
	algs     map[string]bool // union of the issuers' allowlists
	checks   []func(*Claims) error
}

func newVerifier(cfg Config, keys KeySource, now func() time.Time) *verifier {
	v := &verifier{
		issuers:  map[string]*issuerPolicy{},
		keys:     keys,
		maxBytes: cfg.Tokens.MaxBytes,
		algs:     map[string]bool{},
	}
	var union []string
	for _, iss := range cfg.Issuers {
		p := &issuerPolicy{
			issuer: iss.Issuer, audiences: withResource(iss.Audiences, cfg.Resource.Identifier), audienceClaims: iss.AudienceClaims,
			atJWT: iss.TokenType == "at+jwt", scopeClaim: iss.ScopeClaim, dpop: cmp.Or(iss.DPoP, DPoPOff),
			maxLifetime: cfg.Tokens.MaxLifetime, now: now, rules: iss.Rules, checks: iss.Checks,
		}
		algs := iss.Algorithms
		if algs == nil {
			algs = jwks.DefaultAlgorithms()
		}
		// The parser checks the union; each issuer's own allowlist is checked by its key
		// set (jwks.ErrAlgorithm).
		for _, a := range algs {
			if !v.algs[a] {
				v.algs[a] = true
				union = append(union, a)
			}
		}
		v.issuers[iss.Issuer] = p
	}
	v.parser = jwt.NewParser(
		jwt.WithValidMethods(union),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Tokens.Leeway),
		jwt.WithStrictDecoding(),
		jwt.WithTimeFunc(now),
	)
	return v
}

// Errors of the checks that golang-jwt does not make.
var (
	errTooLong        = errors.New("the token is longer than tokens.maxBytes")
	errSegments       = errors.New("the token is not three base64url segments")
	errHeader         = errors.New("the header is not a JSON object of unique members")
	errUnsupportedHdr = errors.New("the header uses a JWS extension tokengate does not support (crit, b64, cty, zip, enc)")
	errAlgHeader      = errors.New("the header's alg is missing or not accepted")
	errUnknownIssuer  = errors.New("iss is not a configured issuer")
	errType           = errors.New("typ does not say this is an access token")
	errLifetime       = errors.New("exp − iat is longer than tokens.maxLifetime")
	errAudOfOtherKind = errors.New("the issuer's access tokens carry no aud (audienceClaims): one with aud is another kind of token, such as an ID token")
)

// verify checks a token and returns its claims. On a denial after the signature check
// (expired, audience, claims...) the claims come back too, for the check command's
// explanation; they are never used to allow anything.
func (v *verifier) verify(ctx context.Context, token string) (*Claims, *Error) {
	if len(token) > v.maxBytes {
		return nil, deny(ReasonMalformedToken, errTooLong)
	}
	if !threeSegments(token) {
		// An unsecured JWS (alg none, RFC 7515 §A.5) has an empty signature: an attack
		// on the algorithm, counted as one (reason algorithm, the label SREs watch),
		// not as a malformed token.
		if h, rest, ok := strings.Cut(token, "."); ok && strings.Count(rest, ".") == 1 && strings.HasSuffix(rest, ".") && h != "" && len(rest) > 1 {
			if e := v.checkHeader(h); e != nil && e.Reason == ReasonAlgorithm {
				return nil, e
			}
		}
		return nil, deny(ReasonMalformedToken, errSegments)
	}
	if err := v.checkHeader(token[:strings.IndexByte(token, '.')]); err != nil {
		return nil, err
	}

	var claims *Claims
	var issuer, kid string
	keyfunc := func(t *jwt.Token) (any, error) {
		if !claims.decoded {
			// encoding/json does not call UnmarshalJSON for a null payload.
			return nil, errNotAnObject
		}
		p, ok := v.issuers[claims.Issuer]
		if !ok {
			return nil, errUnknownIssuer
		}
		claims.policy = p
		issuer = p.issuer
		kid, _ = t.Header["kid"].(string)
		if err := checkType(t.Header["typ"], p.atJWT); err != nil {
			return nil, err
		}
		return v.keys.Key(ctx, p.issuer, t)
	}
	claims = &Claims{}
	_, err := v.parser.ParseWithClaims(token, claims, keyfunc)
	if errors.Is(err, jwt.ErrTokenSignatureInvalid) && kid != "" {
		// The key under this kid may have been replaced (an issuer that made a new key
		// and kept its kid): the key source fetches the keys again, within its
		// unknown-kid budget, and says whether that key changed. Then, and only then,
		// the token is verified once more.
		if v.keys.Recheck(ctx, issuer, kid) {
			claims, issuer, kid = &Claims{}, "", ""
			_, err = v.parser.ParseWithClaims(token, claims, keyfunc)
		}
	}
	if err != nil {
		e := classify(err)
		e.Issuer, e.KeyID = issuer, kid
		// Claim errors come only after a good signature: the claims are the issuer's.
		if errors.Is(err, jwt.ErrTokenInvalidClaims) {
			return claims, e
		}
		return nil, e
	}
	if e := v.check(claims); e != nil {
		e.Issuer, e.KeyID = issuer, kid
		return claims, e
	}
	return claims, nil
}

// check runs the checks of verified claims: the issuer's own (Issuer.Checks), then
// the Gate's (Options.ClaimsChecks). A failure is a denial with reason claims.
func (v *verifier) check(c *Claims) *Error {
	if c.policy != nil {
		for _, ch := range c.policy.checks {
			if err := ch.CheckClaims(c); err != nil {
				return deny(ReasonClaims, err)
			}
		}
	}
	for _, check := range v.checks {
		if err := check(c); err != nil {
			return deny(ReasonClaims, err)
		}
	}
	return nil
}

// Validate runs after golang-jwt has checked the signature, exp, nbf and iat: the
// checks that depend on the issuer.
func (c *Claims) Validate() error { return c.validate(true) }

// validate makes the checks that depend on the issuer; RFC 9068's required claims only
// for a JWT (jwt), not for an introspection answer.
func (c *Claims) validate(jwt bool) error {
	if !c.decoded {
		return errNotAnObject
	}
	p := c.policy
	if p == nil {
		return errUnknownIssuer
	}
	var errs []error
	switch {
	case len(p.audienceClaims) == 0:
		if !anyIn(c.Audience, p.audiences) {
			errs = append(errs, errAudience)
		}
	case c.Raw["aud"] != nil:
		errs = append(errs, fmt.Errorf("%w: %w", errClaims, errAudOfOtherKind))
	default:
		found := false
		for _, name := range p.audienceClaims {
			if vals, err := stringsClaim(c.Raw, name); err == nil && anyIn(vals, p.audiences) {
				found = true
				break
			}
		}
		if !found {
			errs = append(errs, errAudience)
		}
	}
	if jwt && p.atJWT {
		// RFC 9068 §2.2: iss exp aud sub client_id iat jti are required.
		for _, name := range []string{"sub", "client_id", "iat", "jti", "aud"} {
			if _, ok := c.Raw[name]; !ok {
				errs = append(errs, fmt.Errorf("%w: %s is required by RFC 9068", errClaims, name))
			}
		}
	}
	if raw, ok := c.Raw["cnf"]; ok {
		cnf, err := parseConfirmation(raw, p.dpop)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: %w", errClaims, err))
		}
		c.Confirmation = cnf
	}
	if p.maxLifetime > 0 {
		start := c.IssuedAt
		if start.IsZero() {
			start = p.now()
		}
		if c.ExpiresAt.Sub(start) > p.maxLifetime {
			errs = append(errs, fmt.Errorf("%w: %w", errClaims, errLifetime))
		}
	}
	if err := c.scopesFrom(p.scopeClaim); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// withResource is an issuer's audiences and the resource identifier, which every
// issuer's tokens may name (RFC 8707).
func withResource(audiences []string, identifier string) []string {
	if identifier == "" || slices.Contains(audiences, identifier) {
		return audiences
	}
	return append(slices.Clone(audiences), identifier)
}

func anyIn(have, want []string) bool {
	for _, h := range have {
		for _, w := range want {
			if h == w {
				return true
			}
		}
	}
	return false
}

// threeSegments reports whether token is three non-empty base64url segments: the
// compact JWS form, before anything is decoded (docs/standards.md S8, X2, X28, X29; a
// JWE has five).
func threeSegments(token string) bool {
	dots, run := 0, 0
	for i := 0; i < len(token); i++ {
		c := token[i]
		switch {
		case c == '.':
			if run == 0 {
				return false
			}
			dots++
			run = 0
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			run++
		default:
			return false
		}
	}
	return dots == 2 && run > 0
}

// checkHeader checks what golang-jwt does not (docs/standards.md S5, S7, S9, P3,
// X10–X12, X26): the header is valid UTF-8, a JSON object whose member names are unique
// (also under case folding), names an accepted alg, and uses no JWS extension: crit (we
// understand none), b64 (RFC 7797), cty (nested JWTs), zip and enc (JWE).
func (v *verifier) checkHeader(seg string) *Error {
	var buf [384]byte
	if base64.RawURLEncoding.DecodedLen(len(seg)) > len(buf) {
		return deny(ReasonMalformedToken, fmt.Errorf("%w: the header is too long", errHeader))
	}
	n, err := base64.RawURLEncoding.Strict().Decode(buf[:], []byte(seg))
	if err != nil {
		return deny(ReasonMalformedToken, fmt.Errorf("%w: %v", errHeader, err))
	}
	hdr := buf[:n]
	if !utf8.Valid(hdr) {
		return deny(ReasonMalformedToken, errHeader)
	}
	var scratch [16]member
	members, ok := scanObject(scratch[:0], hdr, len(scratch))
	if !ok {
		return deny(ReasonMalformedToken, errHeader)
	}
	if !uniqueNames(members) {
		return deny(ReasonMalformedToken, fmt.Errorf("%w: duplicate member", errHeader))
	}
	alg := ""
	for _, m := range members {
		switch m.name {
		case "crit", "b64", "cty", "zip", "enc":
			return deny(ReasonMalformedToken, errUnsupportedHdr)
		case "alg":
			alg, _ = unquote(m.value)
		}
	}
	if !v.algs[alg] {
		return deny(ReasonAlgorithm, errAlgHeader)
	}
	return nil
}

// checkType applies typ (RFC 8725 §3.11, RFC 9068 §2.1, docs/standards.md S6, A1, X32).
// typ is a media type: case-insensitive, "application/" optional. With RFC 9068 typing
// required it must be at+jwt; otherwise any typ is accepted except one that names
// another kind of JWT (an ID token's "JWT" is accepted, as many servers use it for
// access tokens too).
func checkType(typ any, required bool) error {
	if typ == nil {
		if required {
			return fmt.Errorf("%w: typ is missing; at+jwt is required", errType)
		}
		return nil
	}
	s, ok := typ.(string)
	if !ok {
		return fmt.Errorf("%w: typ is not a string", errType)
	}
	t := strings.ToLower(s)
	t = strings.TrimPrefix(t, "application/")
	switch {
	case t == "at+jwt":
		return nil
	case required:
		return fmt.Errorf("%w: typ must be at+jwt", errType)
	case t == "jwt":
		return nil
	}
	return fmt.Errorf("%w: typ names another kind of JWT", errType)
}

// classify maps a parse error to its reason. golang-jwt joins several claim errors;
// the reason that tells a client most wins: a token for another API or with bad claims
// will not be fixed by a refresh, an expired one will.
func classify(err error) *Error {
	r := ReasonMalformedToken
	switch {
	case errors.Is(err, jwks.ErrKeysUnavailable):
		r = ReasonKeysUnavailable
	case errors.Is(err, errUnknownIssuer), errors.Is(err, jwks.ErrUnknownIssuer):
		r = ReasonIssuer
	case errors.Is(err, errType):
		r = ReasonClaims
	case errors.Is(err, jwks.ErrAlgorithm):
		r = ReasonAlgorithm
	case errors.Is(err, jwks.ErrUnknownKey):
		r = ReasonUnknownKey
	case errors.Is(err, jwks.ErrInvalidKID):
		r = ReasonMalformedToken
	case errors.Is(err, errClaims):
		// Before ErrTokenMalformed: golang-jwt reports a claim of the wrong type as a
		// decoding error.
		r = ReasonClaims
	case errors.Is(err, errNotAnObject), errors.Is(err, jwt.ErrTokenMalformed):
		r = ReasonMalformedToken
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		r = ReasonSignature
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		// An alg golang-jwt does not know; checkHeader lets none through.
		r = ReasonAlgorithm
	case errors.Is(err, errAudience):
		r = ReasonAudience
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		r = ReasonClaims
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		r = ReasonNotYetValid
	case errors.Is(err, jwt.ErrTokenExpired):
		r = ReasonExpired
	}
	return deny(r, err)
}
