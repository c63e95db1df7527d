package rules

import (
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/google/cel-go/common/types"

	"github.com/tokengate/tokengate/middleware"
)

// empty is the claims variable of a Claims without any.
var empty = map[string]any{}

// claimsMap is the claims variable: the verified claims decoded once per Claims
// (middleware.Claims.Map), so a cached token's claims are decoded once, not per
// request.
func claimsMap(c *middleware.Claims) map[string]any {
	if m := c.Map(); m != nil {
		return m
	}
	return empty
}

// Value is a compiled CEL expression of type string, for a value computed from the
// claims and the request, such as a header for the upstream:
//
//	claims.groups.join(",")
//
// It is safe for concurrent use.
type Value struct{ c *compiled }

// CompileValue compiles and type-checks an expression of type string. Its name is
// checked as a rule's is (an upstream header name fits); a problem is an *Error with
// Index -1.
func CompileValue(spec Spec, opts ...Option) (*Value, error) {
	if err := checkName(-1, spec.Name); err != nil {
		return nil, err
	}
	c, errs := compile(-1, spec, types.StringType, newSettings(opts))
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &Value{c}, nil
}

// Name is the value's name.
func (v *Value) Name() string { return v.c.name }

// Expr is the value's expression, as written.
func (v *Value) Expr() string { return v.c.expr }

// Claims names the claims the value reads (see Rule.Claims).
func (v *Value) Claims() (names []string, all bool) {
	return slices.Clone(v.c.use.claims), v.c.use.allClaims
}

// Eval computes the value. It fails, like a rule, on a missing claim or one of
// another type, and on the cost limit; and when the result cannot be sent in an
// HTTP header (a control character other than tab): the caller then leaves the
// header out rather than send a part of it. r may be nil for a value compiled
// ClaimsOnly.
func (v *Value) Eval(r *http.Request, c *middleware.Claims) (string, error) {
	out, err := v.c.eval(r, c)
	if err != nil {
		return "", err
	}
	s, ok := out.(types.String)
	if !ok {
		return "", fmt.Errorf("rules: %s: the result is a %s, not a string", v.c.name, out.Type().TypeName())
	}
	if !validHeaderValue(string(s)) {
		return "", fmt.Errorf("rules: %s: %w", v.c.name, errHeaderValue)
	}
	return string(s), nil
}

var errHeaderValue = errors.New("the result holds a control character: it cannot be sent in a header")

// validHeaderValue reports whether s can be a header's value (RFC 9110 §5.5): no
// control characters but horizontal tab.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
