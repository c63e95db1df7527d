package middleware

import (
	"log/slog"
	"net/http"
	"time"
)

// ErrorWriter writes the response to a denied request: status and body. The Gate has
// set WWW-Authenticate (and Retry-After for 503) already. WriteError is the default.
type ErrorWriter func(w http.ResponseWriter, r *http.Request, d Decision)

// Option configures a Gate.
type Option func(*options)

type options struct {
	logger   *slog.Logger
	keys     KeySource
	writeErr ErrorWriter
	clock    func() time.Time
	checks   []func(*Claims) error
	requests []func(*http.Request) error
}

// WithLogger sets the logger. Denials are logged at Info, allowed requests at Debug;
// no line ever holds a token. Default slog.Default().
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithKeySource replaces the key sets New would build from the issuers' configuration
// (for tests, or to share key sets between Gates). The Gate does not own it.
func WithKeySource(k KeySource) Option { return func(o *options) { o.keys = k } }

// WithErrorWriter replaces how denials are written (status and body).
func WithErrorWriter(w ErrorWriter) Option { return func(o *options) { o.writeErr = w } }

// WithClaimsCheck adds a check of verified claims, run once per token before it is
// cached: an error denies the request with reason claims. The sidecar uses it to refuse
// claims it cannot forward safely in a header.
func WithClaimsCheck(check func(*Claims) error) Option {
	return func(o *options) { o.checks = append(o.checks, check) }
}

// WithRequestCheck adds a check of every request, run before its token is looked at:
// an error denies the request, in shadow mode too. An error that is (or wraps) an
// *Error denies it with that Error's Reason; any other error with malformed_request
// (400 invalid_request). The sidecar uses it to refuse requests it cannot forward as
// they were decided (no Host).
func WithRequestCheck(check func(*http.Request) error) Option {
	return func(o *options) { o.requests = append(o.requests, check) }
}

// WithClock sets the clock of the time claims and the cache. Default time.Now.
func WithClock(now func() time.Time) Option { return func(o *options) { o.clock = now } }
