package middleware

import (
	"context"
	"net/http"

	"github.com/tokengate/tokengate/internal/rpcwire"
)

// gRPC calls are HTTP/2 requests whose Content-Type is application/grpc…, and Handler
// decides them as any other: the route is the call's path, /package.Service/Method,
// with method POST. Only the answer to a denial differs, because a gRPC client reads
// the call's status from grpc-status, not from the HTTP status or a JSON body
// (docs/grpc.md). This file speaks just those few header fields; the gRPC interceptors
// of package grpcgate, which import grpc-go, build on GRPCStatus and DenialHeader, so
// that a service importing middleware alone gets no gRPC dependency.

// writeGRPCDenial answers a denied gRPC call: HTTP 200, the WWW-Authenticate
// challenges (and DPoP-Nonce, Retry-After) as for any denial, so that a client finds
// them in the call's header metadata, then grpc-status and grpc-message in the
// trailers. The ErrorWriter is not used: a gRPC client reads no body.
func (g *Gate) writeGRPCDenial(w http.ResponseWriter, r *http.Request, d Decision) {
	g.setDenialHeader(w.Header(), d)
	code, msg := GRPCStatus(d)
	rpcwire.WriteStatus(w, r, int(code), msg)
}

// GRPCStatus returns the gRPC status code (numbered as google.golang.org/grpc/codes
// numbers them) and message with which a denied Decision is answered to a gRPC call:
// UNAUTHENTICATED (16) for a 401, PERMISSION_DENIED (7) for a 403, UNAVAILABLE (14) for
// a 503, INVALID_ARGUMENT (3) for a 400 (a token sent in a malformed way, which the
// client must fix, not retry). The message is the denial's fixed description (the same
// as the body's error_description), never the token or anything else the client sent.
// Call it only for a Decision that does not Forward.
func GRPCStatus(d Decision) (code uint32, message string) {
	return uint32(rpcwire.CodeForStatus(d.Status)), responseOf(d).description
}

// DenialHeader returns the header fields that a denial carries besides its status and
// body: the WWW-Authenticate challenges, DPoP-Nonce when nonces are on, Retry-After for
// a 503. It is for code that answers denials in another protocol: the gRPC interceptors
// (package grpcgate) send them as header metadata. The Header is the caller's own.
func (g *Gate) DenialHeader(d Decision) http.Header {
	h := make(http.Header, 3)
	g.setDenialHeader(h, d)
	return h
}

// setDenialHeader sets the header fields of a denial other than its body's.
func (g *Gate) setDenialHeader(h http.Header, d Decision) {
	g.setChallenges(h, d)
	if d.Status == http.StatusServiceUnavailable {
		h.Set("Retry-After", "5")
	}
}

// NewContext returns a copy of ctx that carries d, where ClaimsFrom and DecisionFrom
// find it: for code that decides with Decide and calls the handler itself, such as the
// gRPC interceptors (package grpcgate). Pass only a Decision that Forwards; ClaimsFrom
// returns claims only for an allowed one.
func NewContext(ctx context.Context, d Decision) context.Context {
	return withDecision(ctx, &d)
}
