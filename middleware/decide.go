package middleware

import (
	"errors"
	"net/http"
	"time"
)

// Decide decides a request by the route table: docs/middleware.md, from Route to
// Authorize (it counts the decision). It never writes a response; the middleware, the
// sidecar and the check command act on the Decision.
//
// A request is decided on every reading of it that the configuration's PathStyle
// names: it must match a route as the API reads it first (else no_route), and meet the
// policy of every route that any of its readings matches. The decision's route is the
// one whose policy denied it, or the first reading's.
//
// On a public route a token is optional: one that verifies gives the Decision its
// claims; one that does not is ignored (the request stays allowed, with no claims),
// never trusted.
func (g *Gate) Decide(r *http.Request) Decision {
	start := time.Now()
	shp := acquireShard()
	defer releaseShard(shp)
	sh := *shp
	var m matched
	g.routes.match(sh, r, &m)
	d, decidedBy := g.decide(sh, r, &m, start)
	c := g.noRouteCounters
	if decidedBy != nil {
		c = g.routeCounters[decidedBy.index]
	}
	g.metrics.count(sh, c, d.Outcome, d.Reason, time.Since(start))
	return d
}

// decide is Decide without the counting: it returns the Decision and the route that
// made it (nil for no route).
func (g *Gate) decide(sh int, r *http.Request, m *matched, start time.Time) (Decision, *route) {
	rt := m.primary
	if e := g.checkRequest(r); e != nil {
		// A request that cannot be forwarded as it was decided on is refused in shadow
		// mode too: shadow mode forwards policy denials, not these.
		if rt == nil {
			return denial(e, NoRoute), nil
		}
		return denial(e, rt.pattern), rt
	}
	if rt == nil {
		d := denial(deny(ReasonNoRoute, m.why), NoRoute)
		d.shadowed(g.cfg.Shadow)
		return d, nil
	}
	now := g.now(start)

	if m.allPublic() {
		d := allowed(rt.pattern)
		d.Public = true
		a := g.authenticate(sh, r, now)
		if a.verified() {
			d.Claims = a.claims
		}
		d.TokenSent, d.DPoP = a.sent, a.dpop
		return d, rt
	}

	// The routes that need a token: the first decides a denial of the token itself,
	// which is a shadow one only if every such route is a shadow route.
	var guarded *route
	shadowAll := true
	for o := range m.routesSeq() {
		if o.Public {
			continue
		}
		if guarded == nil {
			guarded = o
		}
		shadowAll = shadowAll && o.Shadow
	}
	a := g.authenticate(sh, r, now)
	if !a.verified() {
		d := denial(a.err, guarded.pattern)
		d.TokenSent, d.Claims, d.Cached, d.DPoP = a.sent, a.claims, a.cached, a.dpop
		if g.metadata != nil && d.Status == http.StatusUnauthorized {
			d.Scope = guarded.need.challenge // RFC 9728 clients (MCP) read it from the 401
		}
		d.shadowed(g.cfg.Shadow || shadowAll)
		return d, guarded
	}

	if failing, scope, shadow := authorizeRoutes(a.claims, m); failing != nil {
		d := denial(insufficientScope(scope), failing.pattern)
		d.TokenSent, d.Claims, d.Cached, d.DPoP, d.Scope = true, a.claims, a.cached, a.dpop, scope
		d.shadowed(g.cfg.Shadow || shadow)
		return d, failing
	}

	if g.hasRules {
		if failing, e, shadow := g.checkRules(r, a.claims, m, guarded, shadowAll); e != nil {
			d := denial(e, failing.pattern)
			d.TokenSent, d.Claims, d.Cached, d.DPoP = true, a.claims, a.cached, a.dpop
			d.shadowed(g.cfg.Shadow || shadow)
			return d, failing
		}
	}

	// Last, once the request is otherwise allowed: a denied request does not use up
	// a single-use token.
	if once := m.singleUse(); once != nil {
		if e := g.useOnce(r.Context(), a.claims); e != nil {
			d := denial(e, once.pattern)
			d.TokenSent, d.Claims, d.Cached, d.DPoP = true, a.claims, a.cached, a.dpop
			d.shadowed(g.cfg.Shadow || once.Shadow)
			return d, once
		}
	}

	d := allowed(rt.pattern)
	d.TokenSent, d.Claims, d.Cached, d.DPoP = true, a.claims, a.cached, a.dpop
	d.WebSocket = g.webSocketAllowed(r, m)
	g.observeAge(sh, a.claims, now)
	return d, rt
}

// now is the time the Gate checks tokens at: its clock's, or the request's start.
func (g *Gate) now(start time.Time) time.Time {
	if g.clock != nil {
		return g.clock()
	}
	return start
}

// checkRequest runs the request checks of WithRequestCheck.
func (g *Gate) checkRequest(r *http.Request) *Error {
	for _, check := range g.requestChecks {
		if err := check(r); err != nil {
			var e *Error
			if errors.As(err, &e) {
				return e
			}
			return deny(ReasonMalformedRequest, err)
		}
	}
	return nil
}

// observeAge records the age of an accepted token (tokengate_token_age_seconds).
func (g *Gate) observeAge(sh int, claims *Claims, now time.Time) {
	if claims.IssuedAt.IsZero() {
		return
	}
	if h := g.tokenAge[claims.Issuer]; h != nil {
		h.observe(sh, now.Sub(claims.IssuedAt).Seconds())
	}
}
