// Package rpcwire holds the little of gRPC over HTTP/2 that tokengate speaks without
// importing grpc-go (PROTOCOL-HTTP2.md in github.com/grpc/grpc): telling a gRPC call
// by its Content-Type, and ending one with a status. middleware answers denied calls
// with it, the sidecar the calls its upstream did not answer; a Go service that imports
// middleware gets no gRPC dependency from either.
package rpcwire

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Status codes, numbered as google.golang.org/grpc/codes numbers them.
const (
	Unknown          = 2
	InvalidArgument  = 3
	DeadlineExceeded = 4
	PermissionDenied = 7
	Unavailable      = 14
	Unauthenticated  = 16
)

// ContentType is the Content-Type of a gRPC response.
const ContentType = "application/grpc"

// IsRequest reports whether r is a gRPC call: its Content-Type is application/grpc,
// alone or followed by "+" (a message codec, application/grpc+proto) or ";"
// (parameters), in any case. application/grpc-web is not: gRPC-Web clients read an
// HTTP status, and trailers in the body.
func IsRequest(r *http.Request) bool {
	ct := r.Header["Content-Type"]
	if len(ct) != 1 {
		return false
	}
	v := ct[0]
	if len(v) < len(ContentType) || !strings.EqualFold(v[:len(ContentType)], ContentType) {
		return false
	}
	return len(v) == len(ContentType) || v[len(ContentType)] == '+' || v[len(ContentType)] == ';'
}

// Timeout is the call's deadline as its grpc-timeout header says (PROTOCOL-HTTP2.md:
// 1 to 8 digits and a unit, H M S m u n), counted from when the call arrived; false
// when the call has none, more than one, or a malformed one, which the server then
// judges.
func Timeout(r *http.Request) (time.Duration, bool) {
	v := r.Header["Grpc-Timeout"]
	if len(v) != 1 || len(v[0]) < 2 || len(v[0]) > 9 {
		return 0, false
	}
	digits, unit := v[0][:len(v[0])-1], v[0][len(v[0])-1]
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n < 0 || digits[0] == '+' || digits[0] == '-' {
		return 0, false
	}
	var u time.Duration
	switch unit {
	case 'H':
		u = time.Hour
	case 'M':
		u = time.Minute
	case 'S':
		u = time.Second
	case 'm':
		u = time.Millisecond
	case 'u':
		u = time.Microsecond
	case 'n':
		u = time.Nanosecond
	default:
		return 0, false
	}
	if n > math.MaxInt64/int64(u) {
		return 0, false // longer than time.Duration holds (about 292 years): no deadline to keep
	}
	return time.Duration(n) * u, true
}

// WriteStatus ends a gRPC call with code and message, before any message was sent:
// HTTP status 200, Content-Type application/grpc, and grpc-status and grpc-message in
// the trailers, so that the header fields already in w's Header (a WWW-Authenticate
// challenge) reach a client as header metadata, as from a grpc-go server that called
// SetHeader. Over HTTP/1, which has no trailers without a body, they go in the header.
// message is percent-encoded here (EncodeMessage).
func WriteStatus(w http.ResponseWriter, r *http.Request, code int, message string) {
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Del("Content-Length")
	prefix := http.TrailerPrefix
	if r.ProtoMajor < 2 {
		prefix = ""
		setStatus(h, "", code, message)
	}
	w.WriteHeader(http.StatusOK)
	if prefix != "" {
		setStatus(h, prefix, code, message)
	}
}

func setStatus(h http.Header, prefix string, code int, message string) {
	h[prefix+"Grpc-Status"] = []string{strconv.Itoa(code)}
	if message != "" {
		h[prefix+"Grpc-Message"] = []string{EncodeMessage(message)}
	}
}

// EncodeMessage percent-encodes a grpc-message value (PROTOCOL-HTTP2.md, Responses):
// every byte outside printable ASCII, and '%' itself, becomes %XX; a message that needs
// none is returned as it is.
func EncodeMessage(s string) string {
	i := 0
	for i < len(s) && plain(s[i]) {
		i++
	}
	if i == len(s) {
		return s
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) + 16)
	b.WriteString(s[:i])
	for ; i < len(s); i++ {
		c := s[i]
		if plain(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
	return b.String()
}

func plain(c byte) bool { return c >= ' ' && c <= '~' && c != '%' }

// CodeForStatus is the gRPC code of an HTTP status that tokengate answers with
// (docs/grpc.md): 401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 503 UNAVAILABLE as gRPC's
// own HTTP mapping says (doc/http-grpc-status-mapping.md); 400, a token sent in a
// malformed way, INVALID_ARGUMENT, which the client must fix rather than retry or
// refresh (the mapping's INTERNAL is for a proxy's protocol failure, and
// UNAUTHENTICATED would send the client to get a new token that fails the same way);
// 502 and 504, an upstream that did not answer (its connection failed), UNAVAILABLE as
// in the mapping, which a client may retry (a call whose own deadline passed is
// DEADLINE_EXCEEDED, which the caller knows from the call, not from a status); any
// other UNKNOWN.
func CodeForStatus(status int) int {
	switch status {
	case http.StatusBadRequest:
		return InvalidArgument
	case http.StatusUnauthorized:
		return Unauthenticated
	case http.StatusForbidden:
		return PermissionDenied
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout, http.StatusTooManyRequests:
		return Unavailable
	}
	return Unknown
}
