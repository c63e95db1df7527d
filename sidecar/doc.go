// Package sidecar is tokengate's reverse proxy: the main job of `tokengate sidecar`,
// injected into Kubernetes pods in front of an API in any language. It runs a
// configuration file that package policy loaded, decides every request with package
// middleware, forwards only what it allowed to the upstream (the API, on the pod's
// loopback), serves /metrics, /healthz and /readyz on an admin listener, and reloads the
// file when it changes (policy.FileWatch).
//
// # Usage
//
//	loaded, err := policy.LoadFile("tokengate.yaml", policy.ForProxy, policy.Overrides{})
//	if err != nil { ... } // every problem of the file at once, each with its key and line
//	sc, err := sidecar.New(loaded, sidecar.Options{ConfigPath: "tokengate.yaml"})
//	if err != nil { ... }
//	err = sc.Run(ctx) // until ctx is cancelled; then drains requests in flight
//
// # What the upstream receives
//
// The forwarded request is the one that was decided on, in a form no common upstream
// reads differently, or it is refused (docs/configuration.md, "What the upstream
// receives"):
//
//   - identity headers (forward.claims, forward.values) only from verified claims,
//     every client-sent spelling of them removed; claims percent-encoded so that lists
//     are unambiguous (policy.Identity);
//   - a bearer token only when it was verified (removeAuthorization drops those too);
//   - no protocol switch but a WebSocket handshake on a route with websocket: true; the
//     tunnel closes when idle (limits.tunnelIdle) and soon after either side ends;
//   - no method, URL or address override headers (forward.stripHeaders);
//   - an access_token query parameter removed byte for byte;
//   - no request without a host, and no CONNECT, in shadow mode too.
//
// A denied request's body is never read: the answer comes at once and the connection
// closes. An allowed request's body may pause at most limits.bodyIdle.
//
// # gRPC
//
// The traffic listener speaks HTTP/1.1 and h2c (HTTP/2 over TLS with tls:). With
// upstream: h2c://host:port the proxy speaks HTTP/2 with prior knowledge to the API, so
// that gRPC's trailers and bidirectional streams pass intact; a gRPC call is exempt from
// limits.bodyIdle and from Options.UpstreamTimeout, bounded instead by its deadline
// (grpc-timeout, kept by the proxy as well as the upstream: DEADLINE_EXCEEDED) and its
// client, and a call the upstream did not answer ends UNAVAILABLE (h2c.go,
// docs/grpc.md).
//
// # Configuration
//
// Package policy reads the YAML file strictly: unknown keys are errors, and every
// problem comes back at once as *policy.Problem values sorted by line.
// docs/configuration.md documents every key; a test keeps it complete.
package sidecar
