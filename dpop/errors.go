package dpop

import (
	"errors"
	"fmt"
)

// The classes of a failed verification. Every error Verify returns is an *Error that
// matches exactly one of them with errors.Is.
var (
	// ErrInvalidProof: the proof is missing, malformed, or fails a check (RFC 9449
	// error invalid_dpop_proof).
	ErrInvalidProof = errors.New("invalid DPoP proof")
	// ErrUseNonce: the server requires a nonce and the proof has none, or a stale one
	// (use_dpop_nonce); answer with Verifier.Nonce in a DPoP-Nonce header.
	ErrUseNonce = errors.New("DPoP proof needs a server nonce")
	// ErrReplay: the proof's jti was used before.
	ErrReplay = errors.New("DPoP proof used again")
	// ErrStoreUnavailable: the replay store could not answer; the request must be
	// refused (503), never let through.
	ErrStoreUnavailable = errors.New("DPoP replay store unavailable")
)

// Error is a failed verification: its class (one of the sentinels) and the cause, for
// logs. The cause may quote the proof's claims; never echo it to a client.
type Error struct {
	class error
	Err   error
}

func (e *Error) Error() string { return e.class.Error() + ": " + e.Err.Error() }

// Unwrap returns the cause and the class.
func (e *Error) Unwrap() []error { return []error{e.Err, e.class} }

func invalid(format string, args ...any) *Error {
	return &Error{class: ErrInvalidProof, Err: fmt.Errorf(format, args...)}
}
