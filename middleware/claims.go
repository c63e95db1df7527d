package middleware

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/golang-jwt/jwt/v5"
)

// Claims are the verified claims of an access token. A handler reads them with
// ClaimsFrom. They are shared between the requests that present the same token (the
// verified-token cache), so treat them as read-only.
type Claims struct {
	Issuer    string    // iss, one of the configured issuers
	Subject   string    // sub
	ClientID  string    // client_id
	Audience  []string  // aud, as a list even when the token sent a string
	Scopes    []string  // from the issuer's scope claim: scope, scp or scopes
	ID        string    // jti
	ExpiresAt time.Time // exp
	IssuedAt  time.Time // iat; zero when absent
	NotBefore time.Time // nbf; zero when absent

	// Confirmation is the key or certificate the token is bound to (cnf, RFC 7800):
	// empty for a bearer token. The Gate checks it on every request.
	Confirmation Confirmation

	// Raw holds every member of the payload as sent, for claims tokengate does not
	// interpret (groups, roles, tenant...).
	Raw map[string]json.RawMessage

	exp, iat, nbf *jwt.NumericDate
	policy        *issuerPolicy // set by the key look-up once iss is known
	decoded       bool
	// mapped is Map's result (a *map[string]any), made once per Claims: the Claims of
	// a cached token are shared, so rules decode its claims once, not per request.
	mapped unsafe.Pointer
}

// Map returns the claims kept in Raw decoded from JSON (numbers as float64, objects
// as map[string]any, arrays as []any), for rule languages such as CEL. It is decoded
// once per Claims and shared: treat it as read-only. A member that does not decode
// (none does: Raw was checked as JSON) is left out.
func (c *Claims) Map() map[string]any {
	if p := atomic.LoadPointer(&c.mapped); p != nil {
		return *(*map[string]any)(p)
	}
	m := make(map[string]any, len(c.Raw))
	for name, raw := range c.Raw {
		var v any
		if json.Unmarshal(raw, &v) == nil {
			m[name] = v
		}
	}
	// Two requests may decode at once; either result is the same, and one wins.
	atomic.CompareAndSwapPointer(&c.mapped, nil, unsafe.Pointer(&m))
	return *(*map[string]any)(atomic.LoadPointer(&c.mapped))
}

// HasScope reports whether the token carries scope s (exact match).
func (c *Claims) HasScope(s string) bool { return slices.Contains(c.Scopes, s) }

// StringClaim decodes the claim name when it is a JSON string, for claims tokengate
// does not interpret ("tenant", "azp"); false when it is absent or not a string.
func (c *Claims) StringClaim(name string) (string, bool) {
	raw, ok := c.Raw[name]
	if !ok {
		return "", false
	}
	return unquote(raw)
}

// errClaims marks a claim that is missing, of the wrong type or out of range: reason
// "claims" (or "malformed_token" when the payload is not a JSON object at all).
var (
	errClaims       = errors.New("invalid claims")
	errNotAnObject  = errors.New("the payload is not a JSON object")
	errAudience     = errors.New("no audience of the token is accepted")
	errDuplicate    = errors.New("duplicate member names")
	maxNumericDate  = 1e11 // year 5138: anything later is not a time but an attack
	registeredTimes = []string{"exp", "nbf", "iat"}
)

// UnmarshalJSON decodes a payload strictly (RFC 7519 §4; docs/standards.md J1–J8, X18,
// X19, X26): valid UTF-8, a JSON object, member names unique even under case folding
// (so no other parser can read a different claim than this one), registered claims of
// their registered JSON types: NumericDates are JSON numbers, never strings.
func (c *Claims) UnmarshalJSON(data []byte) error {
	if !utf8.Valid(data) {
		return fmt.Errorf("%w: not valid UTF-8", errNotAnObject)
	}
	if !json.Valid(data) {
		return errNotAnObject
	}
	members, ok := scanObject(make([]member, 0, 16), data, 0)
	if !ok {
		return errNotAnObject
	}
	if !uniqueNames(members) {
		return fmt.Errorf("%w: %w in the payload", errClaims, errDuplicate)
	}
	raw := make(map[string]json.RawMessage, len(members))
	for _, m := range members {
		raw[m.name] = m.value
	}
	c.Raw = raw
	var err error
	if c.Issuer, err = stringClaim(raw, "iss"); err != nil {
		return err
	}
	if c.Subject, err = stringClaim(raw, "sub"); err != nil {
		return err
	}
	if c.ClientID, err = stringClaim(raw, "client_id"); err != nil {
		return err
	}
	if c.ID, err = stringClaim(raw, "jti"); err != nil {
		return err
	}
	if c.Audience, err = stringsClaim(raw, "aud"); err != nil {
		return err
	}
	for _, name := range registeredTimes {
		d, err := numericDate(raw, name)
		if err != nil {
			return err
		}
		switch name {
		case "exp":
			c.exp = d
		case "nbf":
			c.nbf = d
		case "iat":
			c.iat = d
		}
	}
	if c.exp != nil {
		c.ExpiresAt = c.exp.Time
	}
	if c.iat != nil {
		c.IssuedAt = c.iat.Time
	}
	if c.nbf != nil {
		c.NotBefore = c.nbf.Time
	}
	c.decoded = true
	return nil
}

func stringClaim(raw map[string]json.RawMessage, name string) (string, error) {
	v, ok := raw[name]
	if !ok {
		return "", nil
	}
	s, ok := unquote(v)
	if !ok {
		return "", fmt.Errorf("%w: %s is not a string", errClaims, name)
	}
	return s, nil
}

// stringsClaim reads a claim that is a string or an array of strings (aud, RFC 7519
// §4.1.3): a string is a list of one.
func stringsClaim(raw map[string]json.RawMessage, name string) ([]string, error) {
	v, ok := raw[name]
	if !ok {
		return nil, nil
	}
	if bytes.HasPrefix(v, []byte{'"'}) {
		s, ok := unquote(v)
		if !ok {
			return nil, fmt.Errorf("%w: %s is not a string", errClaims, name)
		}
		return []string{s}, nil
	}
	if bytes.HasPrefix(v, []byte{'['}) {
		var list []json.RawMessage
		if err := json.Unmarshal(v, &list); err != nil {
			return nil, fmt.Errorf("%w: %s is not an array of strings", errClaims, name)
		}
		out := make([]string, 0, len(list))
		for _, item := range list {
			s, ok := unquote(item)
			if !ok {
				return nil, fmt.Errorf("%w: %s holds a value that is not a string", errClaims, name)
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: %s is neither a string nor an array of strings", errClaims, name)
}

// numericDate reads a NumericDate: a JSON number (fractions allowed), never a string,
// a boolean or null, within a sane range.
func numericDate(raw map[string]json.RawMessage, name string) (*jwt.NumericDate, error) {
	v, ok := raw[name]
	if !ok {
		return nil, nil
	}
	if len(v) == 0 || (v[0] != '-' && (v[0] < '0' || v[0] > '9')) {
		return nil, fmt.Errorf("%w: %s is not a JSON number", errClaims, name)
	}
	// A JSON number is also a valid strconv float, and json.Unmarshal validated it.
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil || math.IsNaN(f) || f < 0 || f >= maxNumericDate {
		return nil, fmt.Errorf("%w: %s is out of range", errClaims, name)
	}
	// Whole seconds: golang-jwt keeps NumericDates to jwt.TimePrecision (a second)
	// anyway. A fraction dropped makes exp a little earlier, never later.
	return jwt.NewNumericDate(time.Unix(int64(f), 0)), nil
}

// scopesFrom reads the scopes from the issuer's scope claim, or the first of scope, scp
// and scopes that is present.
//
// Every scope must be a scope-token (RFC 6749 §3.3: printable ASCII without space,
// quote or backslash), whether the claim is a string or an array: a string is split at
// the space character (0x20) alone, never at other white space, so
// "foo\u00a0orders:read" is one (invalid) item, not two. A token with an invalid item
// is refused (reason claims) rather than trimmed: an item such as "read admin" in an
// array would reach an API as two scopes in the space-separated X-Auth-Scopes header,
// one of which tokengate itself refused; and an issuer that sends it is broken or
// hostile, which an operator needs to hear about.
func (c *Claims) scopesFrom(claim string) error {
	names := []string{"scope", "scp", "scopes"}
	if claim != "" {
		names = []string{claim}
	}
	for _, n := range names {
		if _, ok := c.Raw[n]; ok {
			s, err := scopesClaim(c.Raw, n)
			c.Scopes = s
			return err
		}
	}
	return nil
}

// errScopeToken marks a scope claim item that is not a scope-token.
var errScopeToken = errors.New("holds an item that is not a scope-token (RFC 6749 §3.3)")

// scopesClaim reads a scope claim: a string of scope-tokens separated by spaces, or an
// array of scope-tokens. Runs of spaces, and spaces at either end, are tolerated.
func scopesClaim(raw map[string]json.RawMessage, name string) ([]string, error) {
	v := raw[name]
	if bytes.HasPrefix(v, []byte{'"'}) {
		s, ok := unquote(v)
		if !ok {
			return nil, fmt.Errorf("%w: %s is not a string", errClaims, name)
		}
		out := make([]string, 0, strings.Count(s, " ")+1)
		for item := range strings.SplitSeq(s, " ") {
			if item == "" {
				continue
			}
			if !validScope(item) {
				return nil, fmt.Errorf("%w: %s %w", errClaims, name, errScopeToken)
			}
			out = append(out, item)
		}
		return out, nil
	}
	items, err := stringsClaim(raw, name)
	if err != nil {
		return nil, err
	}
	for _, item := range items {
		if !validScope(item) {
			return nil, fmt.Errorf("%w: %s %w", errClaims, name, errScopeToken)
		}
	}
	return items, nil
}

// The jwt.Claims interface, through which golang-jwt checks exp, nbf and iat with the
// leeway.

func (c *Claims) GetExpirationTime() (*jwt.NumericDate, error) { return c.exp, nil }
func (c *Claims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.iat, nil }
func (c *Claims) GetNotBefore() (*jwt.NumericDate, error)      { return c.nbf, nil }
func (c *Claims) GetIssuer() (string, error)                   { return c.Issuer, nil }
func (c *Claims) GetSubject() (string, error)                  { return c.Subject, nil }
func (c *Claims) GetAudience() (jwt.ClaimStrings, error)       { return c.Audience, nil }

// compact returns a copy of c for the verified-token cache that keeps, of Raw, only
// the members keep names (all of them when keep is nil), copied out of the decoded
// payload so that the payload itself can be freed.
func (c *Claims) compact(keep []string) *Claims {
	cp := *c
	cp.mapped = nil
	if keep == nil {
		return &cp
	}
	n := 0
	for _, name := range keep {
		n += len(c.Raw[name])
	}
	buf := make([]byte, 0, n)
	cp.Raw = make(map[string]json.RawMessage, len(keep))
	for _, name := range keep {
		if v, ok := c.Raw[name]; ok {
			start := len(buf)
			buf = append(buf, v...)
			cp.Raw[name] = buf[start:len(buf):len(buf)]
		}
	}
	return &cp
}

// size is what c's contents cost in memory beyond the Claims struct: its strings, the
// slices that hold them, and Raw's names and values with a map slot each.
func (c *Claims) size() int64 {
	const slot = 16 // a string or slice header
	n := len(c.Issuer) + len(c.Subject) + len(c.ClientID) + len(c.ID) + len(c.Confirmation.JKT) + len(c.Confirmation.X5TS256)
	for _, a := range c.Audience {
		n += len(a) + slot
	}
	for _, s := range c.Scopes {
		n += len(s) + slot
	}
	for k, v := range c.Raw {
		n += len(k) + len(v) + 3*slot
	}
	return int64(n)
}
