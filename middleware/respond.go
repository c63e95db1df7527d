package middleware

import (
	"net/http"
	"time"

	"github.com/tokengate/tokengate/internal/rpcwire"
)

// challenge builds the WWW-Authenticate value of a denial (RFC 6750 §3), in the one
// place where it is built: the realm always; error and error_description only when the
// request carried a token (§3.1) and the reason has an RFC 6750 code; scope for
// insufficient_scope. Every value is configured or fixed text, checked at start-up to
// need no escaping: never the token, a kid or a library's error string
// (docs/standards.md B13, B14).
func (g *Gate) challenge(d Decision) string { return g.challengeRealm + errorParams(d) }

// errorParams are a challenge's error parameters, after its realm: "" or
// `, error="…", error_description="…"[, scope="…"]`.
func errorParams(d Decision) string {
	resp := responseOf(d)
	if !d.TokenSent || resp.code == "" {
		if d.Scope != "" {
			// A 401 of a Gate with a Resource names the route's scopes, so that a
			// client (MCP's) asks for them at once.
			return `, scope="` + d.Scope + `"`
		}
		return ""
	}
	// One concatenation is one allocation.
	if d.Scope != "" {
		return `, error="` + resp.code + `", error_description="` + resp.description + `", scope="` + d.Scope + `"`
	}
	return `, error="` + resp.code + `", error_description="` + resp.description + `"`
}

// setChallenges sets the WWW-Authenticate header fields of a denial: the Bearer
// challenge alone, or, where DPoP is on, a DPoP challenge with the algorithms proofs
// may use beside it (RFC 9449 §7.1), one field each. The error is named in the
// challenge of the scheme the token came with (DPoP for a proof's own errors), and the
// scheme the client used comes first. With nonces on, a fresh DPoP-Nonce goes with
// every denial, so that a client need not fail once to learn it (RFC 9449 §8.2).
func (g *Gate) setChallenges(h http.Header, d Decision) {
	if g.dpop == nil {
		h.Set("WWW-Authenticate", g.challenge(d))
		return
	}
	bearer, dp := g.challengeRealm, g.dpopChallenge
	params := errorParams(d)
	e, _ := d.Err.(*Error)
	if d.DPoP || !g.bearerChallenge || (e != nil && e.proof) {
		dp = g.dpopChallenge[:len(g.dpopRealm)] + params + g.dpopChallenge[len(g.dpopRealm):]
	} else {
		bearer += params
	}
	vals := make([]string, 0, 2)
	if !d.DPoP && g.bearerChallenge {
		vals = append(vals, bearer)
	}
	vals = append(vals, dp)
	if d.DPoP && g.bearerChallenge {
		vals = append(vals, bearer)
	}
	h["Www-Authenticate"] = vals
	if nonce := g.dpop.Nonce(); nonce != "" {
		h.Set("DPoP-Nonce", nonce)
	}
}

// respond answers a denial: the challenge and, for 503, Retry-After, then the error
// writer for status and body.
//
// A denied request's body is never read. Over HTTP/1 net/http would read up to 256 KiB
// of it before answering, so that the connection can carry another request, with no
// time limit: a client that declares a body and sends nothing holds a goroutine and its
// buffers for as long as it likes, without a token. So a denied request with a body is
// answered at once and its connection closed: Connection: close, and a read deadline
// in the past ends any read of the body (http.ResponseController).
func (g *Gate) respond(w http.ResponseWriter, r *http.Request, d Decision) {
	h := w.Header()
	if id := r.Header.Get(RequestIDHeader); id != "" {
		h.Set(RequestIDHeader, id)
	}
	if r.ProtoMajor == 1 && r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
		h.Set("Connection", "close")
		_ = http.NewResponseController(w).SetReadDeadline(time.Now())
	}
	if rpcwire.IsRequest(r) {
		g.writeGRPCDenial(w, r, d) // grpc.go: grpc-status, not a JSON body
		return
	}
	g.WriteDenial(w, r, d)
}

// WriteDenial answers a denied Decision as Handler does: its status, the
// WWW-Authenticate challenges (and DPoP-Nonce), Retry-After for a 503, and the
// ErrorWriter's body. It is for code that answers on another server's behalf, such as
// the gateway decision endpoints (package authz), whose gateway passes the answer on
// to the client. Call it only for a Decision that does not Forward.
func (g *Gate) WriteDenial(w http.ResponseWriter, r *http.Request, d Decision) {
	g.setDenialHeader(w.Header(), d)
	g.writeErr(w, r, d)
}

// WriteError is the default ErrorWriter: the status and a small JSON body
// {"error": ..., "error_description": ...}, whose error is the RFC 6750 code, or the
// reason where RFC 6750 has none (missing_token, no_route, keys_unavailable).
func WriteError(w http.ResponseWriter, _ *http.Request, d Decision) {
	resp := responseOf(d)
	code := resp.code
	switch {
	case d.Reason == ReasonRule:
		code = "access_denied"
	case code == "":
		code = string(d.Reason)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(d.Status)
	// Both values are fixed ASCII without quotes or backslashes: no encoder needed.
	_, _ = w.Write([]byte(`{"error":"` + code + `","error_description":"` + resp.description + `"}` + "\n"))
}
