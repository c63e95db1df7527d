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
)

// reasons is every reason, in docs/metrics.md's order.
var reasons = [...]Reason{
	ReasonOK, ReasonMissingToken, ReasonMalformedRequest, ReasonMalformedToken, ReasonAlgorithm,
	ReasonIssuer, ReasonUnknownKey, ReasonSignature, ReasonExpired, ReasonNotYetValid,
	ReasonAudience, ReasonClaims, ReasonInsufficientScope, ReasonNoRoute, ReasonKeysUnavailable,
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
	case ReasonOK:
		return nil
	}
	return ErrInvalidToken
}

func deny(reason Reason, err error) *Error { return &Error{Reason: reason, Err: err} }
