package introspect

import (
	"errors"
)

// The classes of a failed introspection. Every error Introspect returns is an *Error
// that matches exactly one of them with errors.Is.
var (
	// ErrInactive: the authorization server says the token is not active (RFC 7662
	// §2.2 active false: revoked, expired, unknown, or not for this client), now or
	// within NegativeTTL. The caller refuses the token: 401 invalid_token, reason
	// inactive.
	ErrInactive = errors.New("introspect: the token is not active")
	// ErrUnavailable: no usable answer from the endpoint: down, slower than Timeout,
	// a status other than 200 (a redirect among them, never followed), a body that is
	// not a JSON object, larger than MaxResponseBytes, or whose active member is
	// missing or not a boolean; or the caller's context ended first. The token may be
	// fine: the caller answers 503 introspection_unavailable, never 401 and never
	// allows the request.
	ErrUnavailable = errors.New("introspect: the introspection endpoint is unavailable")
)

// ErrNoEndpoint is wrapped by Discover's errors when a metadata document was read but
// gives no introspection endpoint to use: it names another issuer, has no
// introspection_endpoint, or names one that breaks the scheme rule. Retrying will
// not help; configure Config.Endpoint instead.
var ErrNoEndpoint = errors.New("introspect: no usable introspection_endpoint in the issuer's metadata")

// Error is a failed introspection: its class (ErrInactive or ErrUnavailable) and the
// cause, for logs. Neither the token nor the client secret is ever part of it; the
// endpoint's URL may be.
type Error struct {
	class error
	Err   error
}

func (e *Error) Error() string { return e.class.Error() + ": " + e.Err.Error() }

// Unwrap returns the cause and the class.
func (e *Error) Unwrap() []error { return []error{e.Err, e.class} }

// ConfigError names a Config field that is wrong. New returns every one it finds,
// joined with errors.Join.
type ConfigError struct{ Field, Problem string }

func (e *ConfigError) Error() string { return "introspect: " + e.Field + ": " + e.Problem }
