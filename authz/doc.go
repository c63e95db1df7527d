// Package authz is tokengate's decision service for gateways, `tokengate authz`: a
// gateway in front of an API asks it whether a request may pass, and passes on its
// answer. Each protocol is a thin adapter onto middleware.Gate.Decide, so a gateway
// gets the same decisions, RFC 6750 answers, metrics and log lines as the sidecar:
//
//   - nginx auth_request, at PathNginx: the original method and URI in
//     X-Original-Method and X-Original-URI (configurable);
//   - Traefik forwardAuth, at PathTraefik: X-Forwarded-Method, -Uri, -Host (-Proto is
//     not needed: DPoP proofs are checked against the configured externalURL);
//   - Envoy ext_authz over HTTP, at PathEnvoy followed by the original path;
//   - Envoy ext_authz over gRPC (envoy.service.auth.v3.Authorization, with the types of
//     github.com/envoyproxy/go-control-plane), over h2c on the same port, beside the
//     standard gRPC health service: Run hands each connection that opens with the
//     HTTP/2 preface to grpc-go's own transport, every other one to the HTTP/1.1
//     endpoints.
//
// docs/gateways.md has each gateway's configuration.
//
// # Never public
//
// The endpoints trust the method, URI and host the gateway forwards: whoever can reach
// them can ask about any request, and learn what a token may do. Serve them on a
// loopback or private address that only the gateway reaches, never on a port clients
// can reach, and configure the gateway so that it sets those headers itself
// (proxy_set_header in nginx; trustForwardHeader false in Traefik).
//
// # Answers
//
// Allowed (or a shadow-mode denial): 200, with the identity headers (Snapshot.Identity)
// of a verified token for the gateway to add to the upstream request. Envoy is also told
// to remove every other identity header name and every spelling of one the client sent
// (OkHttpResponse.headers_to_remove, or x-envoy-auth-headers-to-remove over HTTP); for
// nginx and Traefik the documented configuration overwrites them.
//
// Denied: the Gate's answer, for the gateway to pass to the client: its status (401,
// 403, 400, 503), every WWW-Authenticate challenge, DPoP-Nonce, Retry-After, and the
// JSON body. Over gRPC the CheckResponse's status is UNAUTHENTICATED, PERMISSION_DENIED,
// INVALID_ARGUMENT or UNAVAILABLE, and its DeniedHttpResponse carries the rest. nginx
// drops an auth_request answer's body and turns any status but 2xx, 401 and 403 into
// 500, still a denial; the body travels in BodyHeader, and the documented error_page
// restores the status.
//
// A check request without a usable method or URI (missing, repeated or malformed) is
// answered 400, counted as decision "error" and logged: never allowed. So is every
// request while no configuration is loaded, with 503.
//
// # Usage
//
//	var current atomic.Pointer[authz.Snapshot] // swapped on each configuration reload
//	current.Store(&authz.Snapshot{Gate: gate, Identity: identity, IdentityHeaders: names})
//	srv, err := authz.New(func() authz.Snapshot { return *current.Load() },
//		authz.Options{Registerer: reg, Logger: logger})
//	if err != nil { ... }
//	ln, err := net.Listen("tcp", "127.0.0.1:9191")
//	if err != nil { ... }
//	err = srv.Run(ctx, ln) // until ctx is cancelled; then drains check requests in flight
//
// # Metrics
//
// tokengate_authz_requests_total{protocol, decision} counts check requests, protocol
// nginx, traefik, envoy_http or envoy_grpc, decision allowed, denied, shadow_denied or
// error; every series exists from the start. The Gate counts its decisions as it does
// for the sidecar (tokengate_decisions_total).
package authz
