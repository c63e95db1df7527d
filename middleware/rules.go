package middleware

import (
	"errors"
	"fmt"
	"net/http"
)

// ErrRuleIsFalse is the cause of a rule denial whose rule was false, as opposed to one
// that could not be evaluated (whose cause is the evaluation's error): errors.Is tells
// them apart, for an explanation such as the check command's.
var ErrRuleIsFalse = errors.New("is false")

// checkRules runs the rules a verified request with enough scopes must meet: its
// issuer's (Issuer.Rules), then those of every matched route that needs a token
// (Route.Rules), in order. It returns the route the first false rule denies on (for
// an issuer's rule, the first guarded route), the denial, and whether that denial is
// a shadow one; nil when every rule holds.
func (g *Gate) checkRules(r *http.Request, c *Claims, m *matched, guarded *route, shadowAll bool) (*route, *Error, bool) {
	if p := g.verifier.issuers[c.Issuer]; p != nil {
		for _, rule := range p.rules {
			if e := evalRule(rule, r, c); e != nil {
				return guarded, e, shadowAll
			}
		}
	}
	for rt := range m.routesSeq() {
		if rt.Public {
			continue
		}
		for _, rule := range rt.Rules {
			if e := evalRule(rule, r, c); e != nil {
				return rt, e, rt.Shadow
			}
		}
	}
	return nil, nil, false
}

// evalRule is one rule's verdict: nil when it holds; a denial naming it when it is
// false or fails, so that a rule that cannot be evaluated never lets a request through.
func evalRule(rule Rule, r *http.Request, c *Claims) *Error {
	ok, err := rule.Allow(r, c)
	switch {
	case err != nil:
		return &Error{Reason: ReasonRule, Rule: rule.Name(), Err: fmt.Errorf("rule %q could not be evaluated: %w", rule.Name(), err)}
	case !ok:
		return &Error{Reason: ReasonRule, Rule: rule.Name(), Err: fmt.Errorf("rule %q %w", rule.Name(), ErrRuleIsFalse)}
	}
	return nil
}
