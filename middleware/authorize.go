package middleware

import (
	"fmt"
	"slices"
	"strings"
)

// scopeNeed is what a route (or a Require) needs of a verified token: every scope of
// all and, when anyOf is not empty, one of anyOf.
type scopeNeed struct {
	all, anyOf []string
	// challenge is the scope parameter of its insufficient_scope challenge: what
	// suffices, every scope of all and the first of anyOf.
	challenge string
}

func newScopeNeed(all, anyOf []string) scopeNeed {
	n := scopeNeed{all: all, anyOf: anyOf}
	suffices := slices.Clone(all)
	if len(anyOf) > 0 {
		suffices = append(suffices, anyOf[0])
	}
	n.challenge = scopeParam(suffices)
	return n
}

// metBy reports whether scopes meet the need: exact matches only.
func (n *scopeNeed) metBy(scopes []string) bool {
	for _, need := range n.all {
		if !slices.Contains(scopes, need) {
			return false
		}
	}
	if len(n.anyOf) == 0 {
		return true
	}
	for _, s := range n.anyOf {
		if slices.Contains(scopes, s) {
			return true
		}
	}
	return false
}

// scopeParam is the scope parameter of an insufficient_scope challenge (RFC 6750 §3),
// built here and nowhere else: the scopes, space-separated, each once.
func scopeParam(scopes []string) string {
	var out []string
	for _, s := range scopes {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return strings.Join(out, " ")
}

// insufficientScope is the denial of a token that lacks what scope names.
func insufficientScope(scope string) *Error {
	return deny(ReasonInsufficientScope, fmt.Errorf("the token's scopes do not include %q", scope))
}

// authorize is the request path's third step for one need (Require): the verified
// claims meet it, or the request is denied insufficient_scope.
func authorize(claims *Claims, need *scopeNeed) *Error {
	if need.metBy(claims.Scopes) {
		return nil
	}
	return insufficientScope(need.challenge)
}

// authorizeRoutes is the request path's third step for the route table: verified
// claims against every route a request matched (docs/middleware.md, Authorize). It
// returns the first route whose need the claims do not meet (nil when they meet all),
// the challenge's scope, which names what suffices for all of the routes, and whether
// every failing route is a shadow route.
func authorizeRoutes(claims *Claims, m *matched) (failing *route, scope string, shadow bool) {
	shadow = true
	for rt := range m.routesSeq() {
		if rt.Public || rt.need.metBy(claims.Scopes) {
			continue
		}
		if failing == nil {
			failing = rt
		}
		shadow = shadow && rt.Shadow
	}
	if failing == nil {
		return nil, "", false
	}
	if m.n == 0 {
		return failing, failing.need.challenge, shadow
	}
	var all []string
	for rt := range m.routesSeq() {
		if !rt.Public && rt.need.challenge != "" {
			all = append(all, strings.Split(rt.need.challenge, " ")...)
		}
	}
	return failing, scopeParam(all), shadow
}
