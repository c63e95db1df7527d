package middleware

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"strings"
	"time"
)

// authn is what authenticate found out about a request's token.
type authn struct {
	// claims are the verified claims; on a denial they are set only when it came after
	// a good signature (expired, audience...), for the Decision's explanation, and they
	// never allow anything.
	claims *Claims
	// err is the denial; nil when the token verified.
	err *Error
	// sent says the request carried a token (or tried to: a malformed header counts).
	sent bool
	// cached says the answer came from the verified-token cache or the refused-token
	// cache.
	cached bool
	// dpop says the token came with the DPoP scheme.
	dpop bool
}

// verified reports whether the token verified.
func (a authn) verified() bool { return a.err == nil }

// authenticate is the request path's second step (docs/middleware.md, Extract, Cache,
// Verify): it extracts the request's bearer token and returns its verified claims, from
// the verified-token cache or by verifying it, or the denial. A token refused shortly
// before for a reason it will be refused for again is answered from the refused-token
// cache. A verified token, cached or not, is then held to what it is bound to (bind):
// that proof is new on every request.
func (g *Gate) authenticate(sh int, r *http.Request, now time.Time) authn {
	token, isDPoP, e := extract(r, g.cfg.Tokens.Cookie, g.cfg.Tokens.Query, g.dpop != nil)
	switch {
	case e != nil:
		return authn{err: e, sent: true, dpop: isDPoP}
	case token == "":
		return authn{err: deny(ReasonMissingToken, nil)}
	}
	a := g.verifyToken(sh, r, token, now)
	a.dpop = isDPoP
	if a.verified() && (isDPoP || a.claims.Confirmation.Bound() || g.dpop != nil) {
		a.err = g.bind(r, token, isDPoP, a.claims)
	}
	return a
}

// verifyToken returns a token's verified claims, from the verified-token cache or by
// verifying it, or the denial, from the refused-token cache or not.
func (g *Gate) verifyToken(sh int, r *http.Request, token string, now time.Time) authn {

	var removals uint64
	if g.keys != nil {
		// Read before verifying: a key removed during the verification makes the entry
		// stale at once rather than never.
		removals = g.keys.Removals()
	}
	if g.cache != nil {
		cl, expired := g.cache.get(token, now, removals)
		switch {
		case expired:
			g.metrics.hit.inc(sh)
			return authn{err: deny(ReasonExpired, errCachedExpired), sent: true, cached: true}
		case cl != nil:
			g.metrics.hit.inc(sh)
			return authn{claims: cl, sent: true, cached: true}
		}
		g.metrics.miss.inc(sh)
	}
	if e := checkSyntax(token); e != nil {
		return authn{err: e, sent: true}
	}
	var key [32]byte
	if g.rejects != nil {
		key = sha256.Sum256([]byte(token))
		if e := g.rejects.get(key, now, removals); e != nil {
			return authn{err: e, sent: true, cached: true}
		}
	}
	cl, e, until := g.verify(r.Context(), token, now)
	if e != nil {
		if g.rejects != nil && cacheable(e.Reason) {
			g.rejects.put(key, e, now, removals)
		}
		return authn{claims: cl, err: e, sent: true}
	}
	if g.cache != nil {
		cl = g.cache.putUntil(token, cl, removals, now, until)
	}
	return authn{claims: cl, sent: true}
}

// verify verifies a token: a JWS with the issuer's keys (and, for an issuer that says
// Always, at its introspection endpoint too), anything else at the endpoint of the
// issuer that takes opaque tokens. until, when not zero, is when the answer must be
// asked for again: an introspected answer's cacheTTL.
func (g *Gate) verify(ctx context.Context, token string, now time.Time) (cl *Claims, e *Error, until time.Time) {
	if p := g.opaque; p != nil && strings.Count(token, ".") != 2 && len(token) <= g.cfg.Tokens.MaxBytes {
		res, err := p.introspector.Introspect(ctx, token)
		if err != nil {
			e = introspectionDenial(err)
			e.Issuer = p.issuer
			return nil, e, until
		}
		cl, e = g.verifier.claimsOf(res, p, now, g.cfg.Tokens.Leeway)
		return cl, e, now.Add(p.introspector.cacheTTL)
	}
	cl, e = g.verifier.verify(ctx, token)
	if e != nil || cl.policy == nil || !cl.policy.always {
		return cl, e, until
	}
	if _, err := cl.policy.introspector.Introspect(ctx, token); err != nil {
		e = introspectionDenial(err)
		e.Issuer = cl.policy.issuer
		return cl, e, until
	}
	return cl, nil, now.Add(cl.policy.introspector.cacheTTL)
}

var errCachedExpired = errors.New("the cached token expired")
