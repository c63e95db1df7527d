package middleware

import (
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"net/http"
)

// RequestIDHeader carries a request's id from the client (or from Handler) to the API,
// into the decision's log line and onto a denial's answer, so that one request can be
// followed across the client, tokengate and the API.
const RequestIDHeader = "X-Request-Id"

// maxRequestID bounds a client's request id: it reaches logs.
const maxRequestID = 128

// validRequestID reports whether id is a request id tokengate passes on as it is: 1 to
// 128 characters of the sets UUIDs, hex, base64 and W3C trace ids are written in. Any
// other value (spaces, quotes, control characters, a second header) is replaced, never
// logged.
func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestID {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '_', c == '.', c == ':', c == '+', c == '/', c == '=':
		default:
			return false
		}
	}
	return true
}

// ensureRequestID keeps the client's X-Request-Id when it is one well-formed value, and
// otherwise sets a new one (128 random bits in hex) on the request, so that the API and
// the log line see the same id; a denial echoes it to the client. The ids need to be
// unique, not secret: math/rand/v2's generator (ChaCha8, seeded by the runtime) costs
// nanoseconds where crypto/rand costs a system call.
func ensureRequestID(w http.ResponseWriter, r *http.Request) {
	if vals := r.Header[RequestIDHeader]; len(vals) == 1 && validRequestID(vals[0]) {
		return
	}
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	r.Header[RequestIDHeader] = []string{hex.EncodeToString(b[:])}
}
