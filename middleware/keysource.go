package middleware

import (
	"context"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokengate/tokengate/jwks"
)

// KeySource is where a Gate finds the keys that verify tokens: *jwks.Group, which New
// builds from the issuers' configuration unless WithKeySource gives another. Every
// method is part of the contract, because each carries a guarantee that a Gate would
// otherwise lose without a word: revocation (Removals), readiness (Ready, WaitReady)
// and keys replaced under their kid (Recheck).
type KeySource interface {
	// Key returns the key that verifies token, a token of issuer. Its errors must be
	// (or wrap) jwks's sentinels (jwks.ErrUnknownKey, jwks.ErrKeysUnavailable,
	// jwks.ErrAlgorithm, jwks.ErrInvalidKID) so that denials get their reason.
	Key(ctx context.Context, issuer string, token *jwt.Token) (any, error)

	// Recheck is called when a token's signature does not verify with the key under
	// its kid: the source may fetch the issuer's keys again (within its own rate
	// limit) and reports whether the key under kid changed, in which case the token
	// is verified once more. A source whose keys cannot change returns false.
	Recheck(ctx context.Context, issuer, kid string) bool

	// Removals counts the keys removed or replaced since the source started. The Gate
	// records it with every cached token and verifies a cached token again once it
	// changes, so that a revoked key stops its tokens at once, not at their exp. A
	// source whose keys never change returns 0.
	Removals() uint64

	// Ready reports whether every issuer's keys were loaded at least once.
	Ready() bool

	// WaitReady blocks until Ready or until ctx ends, and returns ctx's error then.
	WaitReady(ctx context.Context) error
}

var _ KeySource = (*jwks.Group)(nil)
