package middleware

import (
	"errors"
	"net/http"
	"slices"

	"github.com/tokengate/tokengate/jwks"
)

// Reason is why a request was allowed or denied: one of the bounded set below, which is
// also the reason label of tokengate_decisions_total (docs/metrics.md).
type Reason string

// The reasons, one per row of docs/middleware.md's responses.
const (
	ReasonOK                Reason = "ok"
	ReasonMissingToken      Reason = "missing_token"
	ReasonMalformedRequest  Reason = "malformed_request"
	ReasonMalformedToken    Reason = "malformed_token"
	ReasonAlgorithm         Reason = "algorithm"
	ReasonIssuer            Reason = "issuer"
	ReasonUnknownKey        Reason = "unknown_key"
	ReasonSignature         Reason = "signature"
	ReasonExpired           Reason = "expired"
	ReasonNotYetValid       Reason = "not_yet_valid"
	ReasonAudience          Reason = "audience"
	ReasonClaims            Reason = "claims"
	ReasonInsufficientScope Reason = "insufficient_scope"
	ReasonNoRoute           Reason = "no_route"
	ReasonKeysUnavailable   Reason = "keys_unavailable"

	// Sender-constrained and single-use tokens (docs/sender-constrained.md).

	// ReasonDPoPProof: the DPoP proof is missing, malformed or fails a check.
	ReasonDPoPProof Reason = "dpop_proof"
	// ReasonDPoPNonce: the proof needs a server nonce (a DPoP-Nonce header says which).
	ReasonDPoPNonce Reason = "dpop_nonce"
	// ReasonBinding: a bound token without its proof or certificate, a DPoP-bound
	// token sent as Bearer, or a bearer token where DPoP is required.
	ReasonBinding Reason = "binding"
	// ReasonReplay: a single-use token, or a DPoP proof, used again.
	ReasonReplay Reason = "replay"
	// ReasonReplayStoreUnavailable: the replay store did not answer in time; the
	// request is refused, never let through.
	ReasonReplayStoreUnavailable Reason = "replay_store_unavailable"

	// Introspected tokens (RFC 7662).

	// ReasonInactive: the introspection endpoint says the token is not active
	// (revoked, expired, unknown).
	ReasonInactive Reason = "inactive"
	// ReasonIntrospectionUnavailable: the introspection endpoint did not answer, or not
	// as RFC 7662 says; the request is refused, never let through.
	ReasonIntrospectionUnavailable Reason = "introspection_unavailable"

	// ReasonRule: a rule (Issuer.Rules, Route.Rules) is false, or could not be
	// evaluated. 403, body error access_denied.
	ReasonRule Reason = "rule"
)

// reasons is every reason, in docs/metrics.md's order.
var reasons = [...]Reason{
	ReasonOK, ReasonMissingToken, ReasonMalformedRequest, ReasonMalformedToken, ReasonAlgorithm,
	ReasonIssuer, ReasonUnknownKey, ReasonSignature, ReasonExpired, ReasonNotYetValid,
	ReasonAudience, ReasonClaims, ReasonInsufficientScope, ReasonNoRoute, ReasonKeysUnavailable,
	ReasonDPoPProof, ReasonDPoPNonce, ReasonBinding, ReasonReplay, ReasonReplayStoreUnavailable,
	ReasonInactive, ReasonIntrospectionUnavailable, ReasonRule,
}

// Reasons returns every reason, in docs/metrics.md's order: the values the reason label
// takes. The slice is the caller's own.
func Reasons() []Reason { return slices.Clone(reasons[:]) }

// reasonIndex is r's place in reasons; a reason outside them (none is made) counts as
// the first.
func reasonIndex(r Reason) int {
	for i, x := range reasons {
		if x == r {
			return i
		}
	}
	return 0
}

// response is how a reason is answered: the one table from which every rejection is
// built. Descriptions are fixed texts: never the token, a kid, a claim value or a
// library's error string (RFC 6750 §3 limits their characters, and they reach clients).
type response struct {
	status      int
	code        string // RFC 6750 error code; "" for none
	description string
}

var responses = map[Reason]response{
	ReasonOK:                {http.StatusOK, "", ""},
	ReasonMissingToken:      {http.StatusUnauthorized, "", "a bearer access token is required"},
	ReasonMalformedRequest:  {http.StatusBadRequest, "invalid_request", "the request carries a malformed or duplicated access token"},
	ReasonMalformedToken:    {http.StatusUnauthorized, "invalid_token", "the access token is malformed"},
	ReasonAlgorithm:         {http.StatusUnauthorized, "invalid_token", "the access token is signed with an algorithm that is not accepted"},
	ReasonIssuer:            {http.StatusUnauthorized, "invalid_token", "the access token comes from an issuer that is not trusted"},
	ReasonUnknownKey:        {http.StatusUnauthorized, "invalid_token", "the access token is signed with an unknown key"},
	ReasonSignature:         {http.StatusUnauthorized, "invalid_token", "the access token signature is invalid"},
	ReasonExpired:           {http.StatusUnauthorized, "invalid_token", "the access token expired"},
	ReasonNotYetValid:       {http.StatusUnauthorized, "invalid_token", "the access token is not valid yet"},
	ReasonAudience:          {http.StatusUnauthorized, "invalid_token", "the access token is not meant for this API"},
	ReasonClaims:            {http.StatusUnauthorized, "invalid_token", "the access token lacks a required claim or has an invalid one"},
	ReasonInsufficientScope: {http.StatusForbidden, "insufficient_scope", "the access token lacks a scope this route requires"},
	ReasonNoRoute:           {http.StatusForbidden, "", "no route allows this request"},
	ReasonKeysUnavailable:   {http.StatusServiceUnavailable, "", "the keys to check the access token are not available yet"},

	ReasonDPoPProof:              {http.StatusUnauthorized, "invalid_dpop_proof", "the DPoP proof is missing, malformed or invalid"},
	ReasonDPoPNonce:              {http.StatusUnauthorized, "use_dpop_nonce", "a DPoP proof with the server nonce is required"},
	ReasonBinding:                {http.StatusUnauthorized, "invalid_token", "the access token is bound to a key or certificate that the request does not prove"},
	ReasonReplay:                 {http.StatusUnauthorized, "invalid_token", "the access token was used before"},
	ReasonReplayStoreUnavailable: {http.StatusServiceUnavailable, "", "the store of used tokens is not available"},

	ReasonInactive:                 {http.StatusUnauthorized, "invalid_token", "the access token is not active"},
	ReasonIntrospectionUnavailable: {http.StatusServiceUnavailable, "", "the authorization server cannot say whether the access token is active"},

	// RFC 6750 has no code for it, so the challenge names none; the body says
	// access_denied (RFC 6749 §4.1.2.1's word for a refusal by policy).
	ReasonRule: {http.StatusForbidden, "", "a rule of this API does not allow the request"},
}

// proofReplay answers a DPoP proof used again: reason replay, but the error is the
// proof's (RFC 9449 §7.1).
var proofReplay = response{http.StatusUnauthorized, "invalid_dpop_proof", "the DPoP proof was used before"}

// responseOf is how d is answered.
func responseOf(d Decision) response {
	if d.Reason == ReasonReplay {
		if e, ok := d.Err.(*Error); ok && e.proof {
			return proofReplay
		}
	}
	return responses[d.Reason]
}

// Sentinel errors. Every denial's error matches exactly one of them with errors.Is, and
// is an *Error carrying the precise Reason.
var (
	// ErrNoToken: the request carries no bearer token (401 without an error code).
	ErrNoToken = errors.New("no bearer token")
	// ErrInvalidRequest: the token is sent in a malformed way (400 invalid_request).
	ErrInvalidRequest = errors.New("malformed token request")
	// ErrInvalidToken: the token is not valid (401 invalid_token).
	ErrInvalidToken = errors.New("invalid token")
	// ErrInsufficientScope: a valid token lacks a required scope (403).
	ErrInsufficientScope = errors.New("insufficient scope")
	// ErrNoRoute: no route allows the request (403).
	ErrNoRoute = errors.New("no route allows the request")
	// ErrKeysUnavailable: the issuer's keys were never loaded (503). It is
	// jwks.ErrKeysUnavailable, so one errors.Is test holds for both packages.
	ErrKeysUnavailable = jwks.ErrKeysUnavailable
	// ErrInvalidDPoPProof: the DPoP proof is missing, invalid, used before, or lacks
	// the server nonce (401 invalid_dpop_proof or use_dpop_nonce).
	ErrInvalidDPoPProof = errors.New("invalid DPoP proof")
	// ErrReplayStoreUnavailable: the replay store could not answer (503).
	ErrReplayStoreUnavailable = errors.New("replay store unavailable")
	// ErrIntrospectionUnavailable: the introspection endpoint could not answer (503).
	ErrIntrospectionUnavailable = errors.New("introspection unavailable")
	// ErrRuleFailed: a rule is false or could not be evaluated (403). The *Error's
	// Rule names it.
	ErrRuleFailed = errors.New("a rule does not allow the request")
)

// Error is a denial: the bounded Reason, and the cause for logs and the check command.
// Its cause may hold details a client must not see; only the reason's fixed description
// reaches a response.
type Error struct {
	Reason Reason
	Err    error
	// Issuer and KeyID are the configured issuer and the kid the token named, when
	// verification got that far; unverified, for logs only.
	Issuer, KeyID string
	// Rule names the rule that denied the request (reason rule).
	Rule string
	// proof says the denial is about the DPoP proof rather than the token.
	proof bool
}

func (e *Error) Error() string {
	if e.Err == nil {
		return string(e.Reason)
	}
	return string(e.Reason) + ": " + e.Err.Error()
}

// Unwrap returns the cause and the sentinel of the reason's class.
func (e *Error) Unwrap() []error { return []error{e.Err, e.sentinel()} }

func (e *Error) sentinel() error {
	switch e.Reason {
	case ReasonMissingToken:
		return ErrNoToken
	case ReasonMalformedRequest:
		return ErrInvalidRequest
	case ReasonInsufficientScope:
		return ErrInsufficientScope
	case ReasonNoRoute:
		return ErrNoRoute
	case ReasonKeysUnavailable:
		return ErrKeysUnavailable
	case ReasonDPoPProof, ReasonDPoPNonce:
		return ErrInvalidDPoPProof
	case ReasonReplay:
		if e.proof {
			return ErrInvalidDPoPProof
		}
	case ReasonReplayStoreUnavailable:
		return ErrReplayStoreUnavailable
	case ReasonIntrospectionUnavailable:
		return ErrIntrospectionUnavailable
	case ReasonRule:
		return ErrRuleFailed
	case ReasonOK:
		return nil
	}
	return ErrInvalidToken
}

func deny(reason Reason, err error) *Error { return &Error{Reason: reason, Err: err} }
