package jwks

import (
	"errors"
	"fmt"
)

// Errors a key look-up returns. Callers test them with errors.Is; each maps to one
// reason of docs/middleware.md's responses. None of them carries a value from the token,
// so they are safe to log, but they are never meant for a response body.
var (
	// ErrUnknownKey: the issuer's key set has no key for the token's kid, even after the
	// refresh that an unknown kid may trigger, or the token has no kid and the set does
	// not hold exactly one key that fits its algorithm.
	ErrUnknownKey = errors.New("jwks: no key for the token's kid")

	// ErrKeysUnavailable: the issuer's keys have never been loaded (the authorization
	// server has not answered yet). A resource server answers 503, not 401: the token
	// may be fine.
	ErrKeysUnavailable = errors.New("jwks: the issuer's keys are not loaded yet")

	// ErrAlgorithm: the token's alg is not in the issuer's allowlist, or it does not fit
	// the key that its kid names (key type, curve, or the key's own alg).
	ErrAlgorithm = errors.New("jwks: algorithm not allowed for this issuer or key")

	// ErrInvalidKID: the token's kid header is not a string of 1 to 256 printable
	// characters. Such a kid is never looked up and never triggers a fetch.
	ErrInvalidKID = errors.New("jwks: malformed kid header")

	// ErrUnknownIssuer: Group.Key was asked for an issuer it does not hold.
	ErrUnknownIssuer = errors.New("jwks: unknown issuer")

	// ErrClosed: the key set was closed.
	ErrClosed = errors.New("jwks: key set closed")
)

// ErrFetch is wrapped by every error that loading a key set can end in: discovery,
// transport, status, size and content problems. The last good keys stay in use.
var ErrFetch = errors.New("jwks: fetching keys failed")

// ConfigError names a configuration field that is wrong, with the problem. Field is the
// field's Go path in Config (for example "Algorithms" or "Refresh.Min"); NewGroup and
// Validate put the index of the entry in their list in front ("[1].Refresh.Min"), and
// a caller that embeds Config translates the path into its own names (the sidecar into
// the file's keys and lines). Issuer is the issuer being configured. New returns every
// ConfigError it finds, joined with errors.Join.
type ConfigError struct {
	Issuer  string
	Field   string
	Problem string
}

func (e *ConfigError) Error() string {
	msg := e.Problem
	if e.Field != "" {
		msg = e.Field + ": " + msg
	}
	if e.Issuer != "" {
		msg = fmt.Sprintf("issuer %q: %s", e.Issuer, msg)
	}
	return msg
}
