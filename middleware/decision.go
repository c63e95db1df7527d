package middleware

import (
	"context"
	"fmt"
	"net/http"
)

// Outcome is what a Decision does with a request: the decision label of
// tokengate_decisions_total. Its zero value is DecisionDenied, so that a Decision
// nobody filled in never lets a request through.
type Outcome uint8

// The outcomes.
const (
	// DecisionDenied: the request is answered with the denial and never forwarded.
	DecisionDenied Outcome = iota
	// DecisionAllowed: the request goes on to the API.
	DecisionAllowed
	// DecisionShadowDenied: a denial that shadow mode forwards anyway, without claims.
	DecisionShadowDenied

	numOutcomes
)

var outcomeNames = [numOutcomes]string{DecisionDenied: "denied", DecisionAllowed: "allowed", DecisionShadowDenied: "shadow_denied"}

// String returns the decision label: "allowed", "denied" or "shadow_denied".
func (o Outcome) String() string {
	if o < numOutcomes {
		return outcomeNames[o]
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

// MarshalText writes the decision label, so that JSON logs and output say "denied".
func (o Outcome) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// NoRoute is the route label of a request that no route matched.
const NoRoute = "none"

// Decision is the outcome for one request.
type Decision struct {
	// Outcome is DecisionAllowed, DecisionDenied or DecisionShadowDenied.
	Outcome Outcome
	// Reason is the bounded reason: ReasonOK when allowed.
	Reason Reason
	// Status is the HTTP status a denial is answered with; 200 when allowed.
	Status int
	// Err is the denial, an *Error; nil when allowed. Its text is for logs only.
	Err error
	// Route is the matched route's pattern, or NoRoute.
	Route string
	// Public says the route needs no token.
	Public bool
	// Claims are the token's verified claims: set when allowed, and on a denial that
	// came after a good signature (expired, audience, scope...), never otherwise.
	Claims *Claims
	// Scope lists the scopes the route needs, for an insufficient_scope denial, and for
	// a 401 of a Gate with a Resource (RFC 9728 clients, MCP's, ask for them at once).
	Scope string
	// TokenSent says the request carried a token (so the challenge names an error).
	TokenSent bool
	// DPoP says the token came with the DPoP scheme (RFC 9449 §7.1), so the error is
	// named in the DPoP challenge.
	DPoP bool
	// Cached says the decision came from the verified-token cache, or from the cache of
	// tokens refused shortly before for the same reason.
	Cached bool
	// WebSocket says the request asks to switch to WebSocket (RFC 6455) and every
	// route it matched allows that (Route.WebSocket). Handler removes any other
	// protocol switch (Upgrade) from a request before it goes on.
	WebSocket bool
}

// Allowed reports whether the request is allowed.
func (d Decision) Allowed() bool { return d.Outcome == DecisionAllowed }

// Forward reports whether the request goes on to the API: allowed, or denied in shadow
// mode.
func (d Decision) Forward() bool {
	return d.Outcome == DecisionAllowed || d.Outcome == DecisionShadowDenied
}

// allowed is the Decision of an allowed request on route.
func allowed(route string) Decision {
	return Decision{Outcome: DecisionAllowed, Reason: ReasonOK, Status: http.StatusOK, Route: route}
}

// denial is the Decision of a request denied with e on route.
func denial(e *Error, route string) Decision {
	return Decision{Outcome: DecisionDenied, Reason: e.Reason, Status: responses[e.Reason].status, Err: e, Route: route}
}

// shadowed turns a denial into a shadow denial when shadow holds.
func (d *Decision) shadowed(shadow bool) {
	if shadow && d.Outcome == DecisionDenied {
		d.Outcome = DecisionShadowDenied
	}
}

// decisionKey is the context key of the *Decision that Handler (or WithClaims) put
// there.
type decisionKey struct{}

// ClaimsFrom returns the verified claims that Handler or Require put in the request's
// context, or false when there are none: a shadow-mode denial, or a public route
// reached without a valid token. Always check ok:
//
//	claims, ok := middleware.ClaimsFrom(r.Context())
//	if !ok {
//		// anonymous: a public route, or shadow mode
//	}
func ClaimsFrom(ctx context.Context) (*Claims, bool) {
	d, _ := ctx.Value(decisionKey{}).(*Decision)
	if d == nil || !d.Allowed() || d.Claims == nil {
		return nil, false
	}
	return d.Claims, true
}

// DecisionFrom returns the Decision by which Handler let the request through: allowed
// (with or without claims, on a public route) or shadow_denied.
func DecisionFrom(ctx context.Context) (Decision, bool) {
	d, _ := ctx.Value(decisionKey{}).(*Decision)
	if d == nil {
		return Decision{}, false
	}
	return *d, true
}

// WithClaims returns a context that carries c as an allowed request's claims, for
// tests of handlers that read claims.
func WithClaims(ctx context.Context, c *Claims) context.Context {
	d := allowed("")
	d.Claims = c
	return withDecision(ctx, &d)
}

func withDecision(ctx context.Context, d *Decision) context.Context {
	return context.WithValue(ctx, decisionKey{}, d)
}
