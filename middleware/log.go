package middleware

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"

	"github.com/tokengate/tokengate/internal/clip"
)

// LogDecision writes the log line Handler writes for d: one per denial (Info) and per
// allowed request (Debug), with what an operator needs and nothing a client sent
// verbatim: never a token, and the subject only as a hash. It is for code that decides
// with Decide and answers itself (the gateway decision endpoints, gRPC interceptors).
func (g *Gate) LogDecision(r *http.Request, d Decision) {
	level := slog.LevelInfo
	if d.Allowed() {
		level = slog.LevelDebug
	}
	ctx := r.Context()
	if !g.log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("decision", d.Outcome.String()),
		slog.String("reason", string(d.Reason)),
		slog.String("route", d.Route),
		slog.String("method", clip.String(r.Method, 32)),
		// The path without its query (where tokens and personal data travel), cut
		// short: a client chooses it.
		slog.String("path", clip.String(r.URL.Path, 256)),
		slog.String("client", r.RemoteAddr),
	}
	if id := r.Header.Get(RequestIDHeader); id != "" {
		attrs = append(attrs, slog.String("request_id", id))
	}
	var e *Error
	if errors.As(d.Err, &e) && e.Issuer != "" && d.Claims == nil {
		attrs = append(attrs, slog.String("issuer", e.Issuer))
	}
	if d.Claims != nil {
		attrs = append(attrs, slog.String("issuer", d.Claims.Issuer), slog.String("subject_hash", hashSubject(d.Claims.Subject)))
		if d.Claims.ClientID != "" {
			attrs = append(attrs, slog.String("client_id", clip.String(d.Claims.ClientID, 128)))
		}
	}
	if e != nil && e.Rule != "" {
		// The rule's name goes in the log line, never in a metric label.
		attrs = append(attrs, slog.String("rule", clip.String(e.Rule, 64)))
	}
	if e != nil && e.KeyID != "" {
		attrs = append(attrs, slog.String("kid", clip.String(e.KeyID, 64)))
	}
	switch {
	case d.Reason == ReasonNoRoute && e != nil && e.Err != nil:
		// Why nothing matched: an encoded slash, a ';', a fragment, CONNECT.
		attrs = append(attrs, slog.String("error", clip.String(e.Err.Error(), 256)))
	case d.Err != nil && d.Reason != ReasonMissingToken && d.Reason != ReasonNoRoute:
		attrs = append(attrs, slog.String("error", clip.String(d.Err.Error(), 256)))
	}
	if d.Cached {
		attrs = append(attrs, slog.Bool("cached", true))
	}
	g.log.LogAttrs(ctx, level, "request "+d.Outcome.String(), attrs...)
}

// hashSubject identifies a subject across log lines without writing it down.
func hashSubject(sub string) string {
	sum := sha256.Sum256([]byte(sub))
	return hex.EncodeToString(sum[:8])
}
