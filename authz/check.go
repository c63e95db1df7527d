package authz

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/tokengate/tokengate/internal/clip"
	"github.com/tokengate/tokengate/middleware"
)

// Bounds of what a gateway forwards: a method longer than any registered one, or a URI
// longer than any server's request line, is not a request an API would serve.
const (
	maxMethod = 64
	maxURI    = 16 << 10
	maxBody   = 64 << 10 // of a denial's body, as the Gate's ErrorWriter wrote it
)

// question is one request a gateway asks about, in the protocol's terms: the original
// method, URI (path and query, as the client sent it) and host, and the client's
// headers without the protocol's own.
type question struct {
	method, uri, host string
	// header becomes the Decide request's header: the caller's own, which check
	// strips of identity headers.
	header http.Header
	// names are the header names of the check request as the gateway sent them, for
	// the names of spoofed identity headers (Envoy removes them).
	names  iter.Seq[string]
	remote string
}

// answer is what the Server answers a question: the Decision and, for a denial, the
// Gate's answer as WriteDenial wrote it.
type answer struct {
	// err is a question the Server could not ask (a missing or malformed forwarded
	// method or URI: 400; no configuration loaded: 503); Decision is then unset.
	err *checkError
	// gone is the context's error when the gateway stopped waiting before the answer.
	gone error
	d    middleware.Decision
	// status, header and body are the answer to pass on: the identity headers of an
	// allowed request, or a denial's status, challenges and body.
	status int
	header http.Header
	body   []byte
	// remove lists identity header names, in lower case, that the upstream request must
	// not carry: those not set in header, and every spoofed spelling the client sent.
	remove []string
}

// checkError is a check request the Server answers without deciding: counted as
// decision "error" and never allowed.
type checkError struct {
	status int
	code   string // the JSON body's error
	msg    string // its error_description: fixed text, never what the client sent
	err    error  // for the log line
}

var errNoGate = &checkError{status: http.StatusServiceUnavailable, code: "unavailable", msg: "no configuration is loaded", err: errors.New("no configuration is loaded")}

func badRequest(msg string, err error) *checkError {
	return &checkError{status: http.StatusBadRequest, code: "invalid_request", msg: msg, err: err}
}

// body is the JSON body of the answer to e.
func (e *checkError) body() []byte {
	return []byte(`{"error":"` + e.code + `","error_description":"` + e.msg + `"}` + "\n")
}

// check decides q with the current Snapshot, counts it under p and logs it.
func (s *Server) check(ctx context.Context, p protocol, q *question) answer {
	snap := s.current()
	if snap.Gate == nil {
		return s.failed(p, q, errNoGate)
	}
	r, err := q.request(ctx)
	if err != nil {
		return s.failed(p, q, err)
	}
	spoofed := strip(snap.Identity, q.header, q.names)
	d := snap.Gate.Decide(r)
	snap.Gate.LogDecision(r, d)
	if err := ctx.Err(); err != nil {
		// The gateway gave up (a gRPC deadline, a closed connection): it answered its
		// client already, and no one reads this answer.
		s.metrics.count(p, decisionError)
		return answer{gone: err, status: http.StatusServiceUnavailable, header: http.Header{}}
	}
	s.metrics.count(p, d.Outcome.String())

	a := answer{d: d}
	if !d.Forward() {
		rec := recorder{header: make(http.Header, 6)}
		snap.Gate.WriteDenial(&rec, r, d)
		a.status, a.header, a.body = rec.status, rec.header, rec.body.Bytes()
		if a.status < http.StatusBadRequest {
			// An ErrorWriter that wrote no error status: a gateway would let a 2xx
			// through, so the denial stays one.
			a.status = http.StatusForbidden
		}
		return a
	}
	a.status, a.header = http.StatusOK, make(http.Header, len(snap.IdentityHeaders))
	// Identity headers come from verified claims alone: not for a shadow-mode denial,
	// nor for a public route reached without a valid token (as the sidecar forwards).
	if snap.Identity != nil && d.Allowed() && d.Claims != nil {
		snap.Identity.Set(a.header, d.Claims)
	}
	a.remove = removals(snap.IdentityHeaders, spoofed, a.header)
	return a
}

// failed counts and logs a question the Server could not ask the Gate.
func (s *Server) failed(p protocol, q *question, e *checkError) answer {
	s.metrics.count(p, decisionError)
	s.log.Info("authz: check request refused", "protocol", p.String(), "status", e.status,
		"error", clip.String(e.err.Error(), 256), "client", q.remote)
	h := http.Header{"Content-Type": {"application/json"}, "Cache-Control": {"no-store"}}
	if e.status == http.StatusServiceUnavailable {
		h.Set("Retry-After", "5")
	}
	return answer{err: e, status: e.status, header: h, body: e.body()}
}

// request rebuilds the request the gateway asks about from the protocol's inputs
// alone, in the form net/http's server would have given it to the Gate. A missing or
// malformed method or URI is an error: never a guess, never an allow.
func (q *question) request(ctx context.Context) (*http.Request, *checkError) {
	if q.method == "" {
		return nil, badRequest("the gateway did not forward the request's method", errors.New("no forwarded method, or more than one"))
	}
	if len(q.method) > maxMethod || !validMethod(q.method) {
		return nil, badRequest("the forwarded method is malformed", fmt.Errorf("forwarded method %q is not a token", clip.String(q.method, 64)))
	}
	if q.uri == "" {
		return nil, badRequest("the gateway did not forward the request's URI", errors.New("no forwarded URI, or more than one"))
	}
	if len(q.uri) > maxURI || q.uri[0] != '/' || !validURI(q.uri) {
		return nil, badRequest("the forwarded URI is malformed", fmt.Errorf("forwarded URI %q is not an origin-form request target", clip.String(q.uri, 128)))
	}
	u, err := url.ParseRequestURI(q.uri)
	if err != nil {
		return nil, badRequest("the forwarded URI is malformed", fmt.Errorf("forwarded URI: %w", err))
	}
	if !httpguts.ValidHostHeader(q.host) {
		return nil, badRequest("the forwarded host is malformed", fmt.Errorf("forwarded host %q is not a host", clip.String(q.host, 128)))
	}
	r := &http.Request{
		Method:     q.method,
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     q.header,
		Body:       http.NoBody,
		Host:       q.host,
		RemoteAddr: q.remote,
		RequestURI: q.uri,
	}
	return r.WithContext(ctx), nil
}

// validMethod reports whether m is an RFC 9110 token.
func validMethod(m string) bool {
	for i := 0; i < len(m); i++ {
		if !httpguts.IsTokenRune(rune(m[i])) {
			return false
		}
	}
	return true
}

// validURI reports whether u holds no byte a request line cannot: controls, space, DEL.
func validURI(u string) bool {
	for i := 0; i < len(u); i++ {
		if b := u[i]; b <= ' ' || b == 0x7f {
			return false
		}
	}
	return true
}

// strip removes the identity headers a client sent from h, and returns their names as
// the gateway spelt them: those of names (the check request's header names, where h
// came from) that h no longer holds and that id would strip on their own. Nothing is
// allocated when the client sent none, the common case.
func strip(id Identity, h http.Header, names iter.Seq[string]) []string {
	if id == nil {
		return nil
	}
	n := len(h)
	id.StripInbound(h)
	if len(h) == n {
		return nil
	}
	var gone []string
	for name := range names {
		if _, kept := h[textproto.CanonicalMIMEHeaderKey(name)]; kept {
			continue
		}
		// Gone from h: an identity header, or a header of the protocol's own.
		probe := http.Header{name: nil}
		if id.StripInbound(probe); len(probe) == 0 && !slices.Contains(gone, name) {
			gone = append(gone, name)
		}
	}
	return gone
}

// removals are the lower-case header names the upstream request must lose: every
// identity header name that set does not hold, and every spoofed name.
func removals(names, spoofed []string, set http.Header) []string {
	out := make([]string, 0, len(names)+len(spoofed))
	for _, list := range [][]string{names, spoofed} {
		for _, n := range list {
			if _, ok := set[http.CanonicalHeaderKey(n)]; ok {
				continue // overwritten by the answer: removing it would lose the value
			}
			if l := strings.ToLower(n); !slices.Contains(out, l) {
				out = append(out, l)
			}
		}
	}
	return out
}

// hopHeaders are the headers of one connection (RFC 9110 §7.6.1), and those of the
// check request's own framing: never part of the request decided on.
var hopHeaders = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding",
	"Upgrade", "Content-Length", "Expect",
}

// clientHeaders copies the client's headers from a check request's header src: all but
// hop-by-hop ones (removeHop) and those drop says are the protocol's own. Values are
// shared, not copied: nothing changes them.
func clientHeaders(src http.Header, drop func(name string) bool) http.Header {
	h := make(http.Header, len(src))
	for name, vals := range src {
		if drop != nil && drop(name) {
			continue
		}
		h[name] = vals
	}
	removeHop(h)
	return h
}

// removeHop deletes the hop-by-hop headers from h, and those its Connection names.
func removeHop(h http.Header) {
	for _, c := range h["Connection"] {
		for name := range strings.SplitSeq(c, ",") {
			if name = strings.TrimSpace(name); name != "" {
				delete(h, http.CanonicalHeaderKey(name))
			}
		}
	}
	for _, name := range hopHeaders {
		delete(h, name)
	}
}

// recorder keeps what Gate.WriteDenial writes, its body capped at maxBody.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if room := maxBody - r.body.Len(); len(p) > room {
		r.body.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return r.body.Write(p)
}
