package middleware

import (
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Handler enforces the route table in front of next. An allowed request reaches next
// with its claims in the context (ClaimsFrom) and its Decision (DecisionFrom); a denied
// one never does, and gets the RFC 6750 answer; in shadow mode it reaches next without
// claims. Every request carries an X-Request-Id on to next, the client's when it is
// well formed, else one Handler made; a denial answers with it, and its log line names
// it. A request asking to switch protocols (Upgrade) reaches next without that ask
// unless it is a WebSocket handshake on routes that allow it (Decision.WebSocket): a
// switch to h2c would open a tunnel whose requests nobody decides on. With
// Config.Resource, Handler answers its metadata path itself (MetadataHandler).
func (g *Gate) Handler(next http.Handler) http.Handler {
	metadata := g.MetadataHandler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.metadata != nil && r.URL.Path == g.metadataPath {
			// Public, and never the API's to answer (RFC 9728 §3).
			metadata.ServeHTTP(w, r)
			return
		}
		ensureRequestID(w, r)
		d := g.Decide(r)
		g.LogDecision(r, d)
		if !d.Forward() {
			g.respond(w, r, d)
			return
		}
		if !d.WebSocket {
			dropUpgrade(r.Header)
		}
		next.ServeHTTP(w, r.WithContext(withDecision(r.Context(), &d)))
	})
}

// Require returns a middleware for a service that routes itself: the request needs a
// valid token with every one of scopes. Behind Handler it checks the claims Handler
// verified; on its own it verifies the token first. Its decisions are counted under the
// pattern that ServeMux matched (r.Pattern). It panics if a scope is not a valid scope
// token (RFC 6749 §3.3), at wiring time, like ServeMux.Handle.
func (g *Gate) Require(scopes ...string) func(http.Handler) http.Handler {
	return g.require(scopes, nil)
}

// RequireAny is Require with at least one of scopes.
func (g *Gate) RequireAny(scopes ...string) func(http.Handler) http.Handler {
	if len(scopes) == 0 {
		panic("middleware: RequireAny needs at least one scope")
	}
	return g.require(nil, scopes)
}

func (g *Gate) require(all, anyOf []string) func(http.Handler) http.Handler {
	for _, list := range [][]string{all, anyOf} {
		for _, s := range list {
			if !validScope(s) {
				panic(fmt.Sprintf("middleware: %q is not a valid scope token", s))
			}
		}
	}
	need := newScopeNeed(all, anyOf)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ensureRequestID(w, r)
			if claims, ok := ClaimsFrom(r.Context()); ok && need.metBy(claims.Scopes) {
				// Handler decided and counted this request already.
				next.ServeHTTP(w, r)
				return
			}
			start := time.Now()
			shp := acquireShard()
			sh := *shp
			releaseShard(shp)
			pattern := r.Pattern
			if pattern == "" {
				pattern = NoRoute
			}
			d := g.decideNeed(sh, r, need, pattern, start)
			g.metrics.count(sh, g.requireCounters.get(pattern), d.Outcome, d.Reason, time.Since(start))
			g.LogDecision(r, d)
			switch {
			case d.Allowed():
				if _, ok := ClaimsFrom(r.Context()); !ok {
					r = r.WithContext(WithClaims(r.Context(), d.Claims))
				}
				next.ServeHTTP(w, r)
			case d.Forward():
				next.ServeHTTP(w, r)
			default:
				g.respond(w, r, d)
			}
		})
	}
}

// decideNeed decides one need (Require): the claims Handler verified, or a token
// verified here, authorized against need.
func (g *Gate) decideNeed(sh int, r *http.Request, need scopeNeed, pattern string, start time.Time) Decision {
	now := g.now(start)
	claims, ok := ClaimsFrom(r.Context())
	cached, isDPoP := false, false
	if !ok {
		a := g.authenticate(sh, r, now)
		if !a.verified() {
			d := denial(a.err, pattern)
			d.TokenSent, d.Claims, d.Cached, d.DPoP = a.sent, a.claims, a.cached, a.dpop
			if g.metadata != nil && d.Status == http.StatusUnauthorized {
				d.Scope = need.challenge
			}
			d.shadowed(g.cfg.Shadow)
			return d
		}
		claims, cached, isDPoP = a.claims, a.cached, a.dpop
	}
	if e := authorize(claims, &need); e != nil {
		d := denial(e, pattern)
		d.TokenSent, d.Claims, d.Cached, d.DPoP, d.Scope = true, claims, cached, isDPoP, need.challenge
		d.shadowed(g.cfg.Shadow)
		return d
	}
	d := allowed(pattern)
	d.TokenSent, d.Claims, d.Cached, d.DPoP = true, claims, cached, isDPoP
	g.observeAge(sh, claims, now)
	return d
}

// requireCounters holds the decision counters of Require, by the ServeMux pattern that
// matched: patterns outside the route table, known only as requests arrive.
type requireCounters struct{ m sync.Map } // pattern → *counters

func (rc *requireCounters) get(pattern string) *counters {
	if c, ok := rc.m.Load(pattern); ok {
		return c.(*counters)
	}
	c, _ := rc.m.LoadOrStore(pattern, &counters{route: pattern})
	return c.(*counters)
}
