// Package middleware checks OAuth 2.0 bearer access tokens (JWTs) in front of an API:
// the core of tokengate that the Go middleware, the sidecar and the check command share.
//
// A request is allowed only when it carries exactly one bearer token that was signed by
// a trusted issuer (with a key from that issuer's JWKS, see package jwks), is meant for
// this API (aud), is valid in time (exp required; nbf and iat checked with a leeway), and
// carries the scopes its route needs. Everything else is denied the RFC 6750 way, and
// every decision is counted in Prometheus by a bounded reason.
//
// # Usage
//
//	gate, err := middleware.New(ctx, middleware.Config{
//		Issuers: []middleware.Issuer{{
//			Config:    jwks.Config{Issuer: "https://auth.example.com/realms/shop"},
//			Audiences: []string{"https://orders.example.com"},
//		}},
//		Routes: []middleware.Route{
//			{Match: "GET /healthz", Public: true},
//			{Match: "GET /orders/{id}", Scopes: []string{"orders:read"}},
//			{Match: "POST /orders", AnyScopes: []string{"orders:write", "orders:admin"}},
//		},
//	}, middleware.Options{Registerer: prometheus.DefaultRegisterer})
//	if err != nil { ... } // every configuration problem, each naming its key
//	defer gate.Close()
//	http.ListenAndServe(addr, gate.Handler(mux))
//
// Handlers read the verified claims with ClaimsFrom, and check its ok: there are none on
// a public route reached without a valid token, or for a shadow-mode denial. A service
// that routes itself can use Require("orders:write") on each handler instead of a route
// table.
//
// # The request path
//
//  1. Route: the most specific Go 1.22 ServeMux pattern, for every reading of the
//     request that Config.PathStyle says the API may make (in another case, without
//     its trailing slash, without ";parameters", the method in upper case): the request
//     must meet the policy of each. No match: 403 no_route (fail closed), as for an
//     encoded slash, a dot segment, a fragment or CONNECT. A public route needs no
//     token; one that verifies gives the handler its claims anyway.
//  2. Extract: one Authorization header with the Bearer scheme (any case), one or more
//     spaces, a b64token; optionally a configured cookie or query parameter. Two
//     headers, two sources, a malformed value: 400 invalid_request. No token (or another
//     scheme): 401 with a challenge without error code.
//  3. Cache: a token verified before is found by its whole string; its time claims are
//     checked again on every hit. Bounded by entries and by bytes.
//  4. Verify: size cap, three base64url segments, a header of unique members without
//     crit/b64/cty/zip/enc, an accepted alg; the issuer chosen by exact iss; its key by
//     kid (jwks); strict claims (valid UTF-8, an object, no duplicate or case-variant
//     names, NumericDates as numbers); exp required; audience any-of; optional RFC 9068
//     typing; maximum lifetime; sender-constrained (cnf) tokens refused.
//  5. Authorize: all of Scopes and one of AnyScopes, from scope, scp or scopes (or the
//     issuer's ScopeClaim), exact match. Missing: 403 insufficient_scope naming them.
//
// # Responses
//
// Every denial carries WWW-Authenticate with the realm; error and error_description
// (fixed texts, never the token) when a token was sent; a small JSON body; the
// request's X-Request-Id. 503 with Retry-After when an issuer's keys were never loaded.
// A denied request's body is never read: over HTTP/1 its connection is closed. A gRPC
// call (Content-Type application/grpc…) is answered the gRPC way instead: HTTP 200, the
// same challenge, grpc-status 16, 7, 14 or 3 and a grpc-message (docs/grpc.md; the
// interceptors for Go gRPC servers are in package grpcgate). The reasons and their statuses are
// in docs/metrics.md's table and in Reasons.
//
// # Metrics
//
// tokengate_decisions_total{decision,reason,route}, tokengate_decision_duration_seconds,
// tokengate_token_cache_requests_total{result}, tokengate_token_age_seconds{issuer} and
// the jwks metrics, registered on Options.Registerer (never the global one on its own:
// without a Registerer they go to a registry nothing serves); New on a registry that
// has them already reuses them.
//
// # Readiness
//
// Until every issuer's keys were loaded once, a request with a token is answered 503
// keys_unavailable. Gate.Ready is a readiness probe's answer; Gate.WaitReady blocks
// until then, for a service that should not take traffic before.
//
// # Key sources
//
// New builds one jwks.Set per issuer unless Options.KeySource gives another source.
// KeySource is the whole contract: keys by kid, a recheck of a kid whose key may have
// been replaced, a count of removed keys (which stops cached tokens of a revoked key at
// once) and readiness. *jwks.Group meets it.
package middleware
