package middleware

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokengate/tokengate/replay"
)

// ErrorWriter writes the response to a denied request: status and body. The Gate has
// set WWW-Authenticate (and Retry-After for 503) already. WriteError is the default.
type ErrorWriter func(w http.ResponseWriter, r *http.Request, d Decision)

// Options are a Gate's collaborators. The zero value works; jwks.Options and
// sidecar.Options follow the same pattern.
type Options struct {
	// Registerer receives the Gate's metrics (docs/metrics.md) and those of the key
	// sets it builds. nil registers them on a registry of the Gate's own, which
	// nothing serves: pass the registry your /metrics serves (or
	// prometheus.DefaultRegisterer). A registry that holds them already, from an
	// earlier Gate, lends them, so that a reload keeps its counts.
	Registerer prometheus.Registerer

	// Logger receives one line per denial (Info) and per allowed request (Debug); no
	// line ever holds a token. Default slog.Default().
	Logger *slog.Logger

	// KeySource replaces the key sets New would build from the issuers' configuration
	// (to share key sets between Gates, as the sidecar does across reloads). The Gate
	// does not own it: Close leaves it running.
	KeySource KeySource

	// ErrorWriter replaces how denials are written (status and body). Default
	// WriteError.
	ErrorWriter ErrorWriter

	// Now is the clock of the time claims, the caches and the key sets. Default
	// time.Now.
	Now func() time.Time

	// ClaimsChecks check verified claims, once per token before it is cached: an error
	// denies the request with reason claims. The sidecar refuses claims it cannot
	// forward safely in a header this way.
	ClaimsChecks []func(*Claims) error

	// RequestChecks check every request before its token is looked at: an error
	// denies the request, in shadow mode too. An error that is (or wraps) an *Error
	// denies it with that Error's Reason; any other error with malformed_request (400
	// invalid_request). The sidecar refuses requests it cannot forward as they were
	// decided (no Host) this way.
	RequestChecks []func(*http.Request) error

	// Replay records single uses: the jtis of DPoP proofs and of single-use tokens
	// (Route.SingleUse). nil is an in-memory store, right for one replica only; give
	// replicas one shared store (replay/redisstore). A store that cannot answer gets
	// the request refused (503 replay_store_unavailable), never let through. Keep the
	// same store across Gates (a configuration reload), or used tokens are forgotten.
	Replay replay.Store

	// Introspectors, by issuer, replace those New would build for issuers with
	// Introspection on (NewIntrospector); the Gate does not close them. A sidecar keeps
	// them, and their caches, across configuration reloads this way.
	Introspectors map[string]*Introspector
}
