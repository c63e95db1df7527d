package authz

import (
	"bytes"
	"maps"
	"net/http"
	"strings"
)

// Header names the answers use.
const (
	// BodyHeader carries, in the nginx endpoint's denials, the denial's body (the
	// small JSON), because nginx drops the body of an auth_request answer: the
	// documented configuration returns it with `return 401 $tokengate_body`.
	BodyHeader = "Tokengate-Body"
	// EnvoyHeadersToRemove lists, in an allowed answer to Envoy's HTTP service, the
	// request headers Envoy must remove before the upstream (Envoy's
	// x-envoy-auth-headers-to-remove; OkHttpResponse.headers_to_remove over gRPC).
	EnvoyHeadersToRemove = "X-Envoy-Auth-Headers-To-Remove"
)

// traefikHeaders are the headers Traefik's forwardAuth sets on its request to the
// decision service (pkg/middlewares/auth/forward.go): the protocol's, never the
// client's, and never part of the request decided on.
var traefikHeaders = map[string]bool{
	"X-Forwarded-Method": true, "X-Forwarded-Uri": true, "X-Forwarded-Host": true,
	"X-Forwarded-Proto": true, "X-Forwarded-Port": true, "X-Forwarded-Server": true,
	"X-Forwarded-For": true, "X-Forwarded-Prefix": true, "X-Real-Ip": true,
}

// serveNginx answers an auth_request subrequest. nginx sends the original request's
// headers; the method and URI come from the headers its configuration sets
// (NginxMethodHeader, NginxURIHeader), the host from the subrequest's Host
// (proxy_set_header Host $host).
//
// nginx honours 2xx, 401 and 403 of a subrequest and turns any other status into a 500
// of its own: a 400 or a 503 of the Gate still denies, and the documented error_page
// restores its status from $upstream_status (docs/gateways.md).
func (s *Server) serveNginx(w http.ResponseWriter, r *http.Request) {
	methodH, uriH := s.opts.NginxMethodHeader, s.opts.NginxURIHeader
	q := question{
		method: single(r.Header, methodH),
		uri:    single(r.Header, uriH),
		host:   r.Host,
		remote: r.RemoteAddr,
		names:  maps.Keys(r.Header),
		header: clientHeaders(r.Header, func(name string) bool {
			return name == methodH || name == uriH || hasPrefixFold(name, "X-Original-")
		}),
	}
	a := s.check(r.Context(), protoNginx, &q)
	if a.status != http.StatusOK {
		// nginx 1.22 reads one field of a name ($upstream_http_www_authenticate): the
		// challenges go in one, comma-separated (RFC 9110 §11.6.1).
		if vals := a.header["Www-Authenticate"]; len(vals) > 1 {
			a.header["Www-Authenticate"] = []string{strings.Join(vals, ", ")}
		}
		if b := bytes.TrimRight(a.body, "\n"); len(b) > 0 && headerSafe(b) {
			a.header[BodyHeader] = []string{string(b)}
		}
	}
	write(w, a, nil)
}

// serveTraefik answers a forwardAuth request: Traefik sends GET with the client's
// headers and the original request in X-Forwarded-Method, -Uri, -Host and -Proto.
// Traefik lets a 2xx through, copying the headers named in authResponseHeaders to the
// upstream request, and returns any other answer, status, headers and body, to the
// client as it is.
func (s *Server) serveTraefik(w http.ResponseWriter, r *http.Request) {
	q := question{
		method: single(r.Header, "X-Forwarded-Method"),
		uri:    single(r.Header, "X-Forwarded-Uri"),
		host:   single(r.Header, "X-Forwarded-Host"),
		remote: r.RemoteAddr,
		names:  maps.Keys(r.Header),
		header: clientHeaders(r.Header, func(name string) bool { return traefikHeaders[name] }),
	}
	// X-Forwarded-Proto is not read: the Gate checks DPoP proofs against its
	// externalURL, never against a scheme a header claims.
	write(w, s.check(r.Context(), protoTraefik, &q), nil)
}

// serveEnvoy answers Envoy's ext_authz HTTP service: the check request has the
// original method, the original path and query after PathEnvoy, the original Host, and
// the headers allowed_headers lets through (Authorization always). Envoy lets 200
// through, with the headers allowed_upstream_headers names, removes those in
// x-envoy-auth-headers-to-remove, and passes any other 4xx to the client with its
// headers and body; a 5xx is an error, answered with status_on_error.
func (s *Server) serveEnvoy(w http.ResponseWriter, r *http.Request, uri string) {
	q := question{
		method: r.Method,
		uri:    uri,
		host:   r.Host,
		remote: r.RemoteAddr,
		names:  maps.Keys(r.Header),
		header: clientHeaders(r.Header, nil),
	}
	a := s.check(r.Context(), protoEnvoyHTTP, &q)
	write(w, a, func(h http.Header) {
		if len(a.remove) > 0 {
			h.Set(EnvoyHeadersToRemove, strings.Join(a.remove, ","))
		}
	})
}

// write sends a: its headers (extra adds to an allowed answer's), status and body.
func write(w http.ResponseWriter, a answer, extra func(http.Header)) {
	h := w.Header()
	for name, vals := range a.header {
		h[name] = vals
	}
	if a.status == http.StatusOK {
		h.Set("Cache-Control", "no-store")
		if extra != nil {
			extra(h)
		}
	}
	w.WriteHeader(a.status)
	if len(a.body) > 0 {
		_, _ = w.Write(a.body)
	}
}

// single is the one value of a header, or "" when there is none or more than one: two
// forwarded URIs are no URI.
func single(h http.Header, name string) string {
	if vals := h[name]; len(vals) == 1 {
		return vals[0]
	}
	return ""
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// headerSafe reports whether b may be a header value: visible ASCII and space.
func headerSafe(b []byte) bool {
	for _, c := range b {
		if c < ' ' || c > '~' {
			return false
		}
	}
	return true
}
