package sidecar

import (
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/tokengate/tokengate/internal/rpcwire"
)

// schemeH2C is the scheme of an upstream spoken to in HTTP/2 without TLS, with prior
// knowledge (RFC 9113 §3.3): a gRPC API (docs/grpc.md).
const schemeH2C = "h2c"

// h2cTransport carries requests to an h2c upstream. gRPC needs HTTP/2 end to end:
// trailers (grpc-status), and request and response bodies that flow at the same time
// (bidirectional streams). Every request goes on a multiplexed HTTP/2 connection,
// except a WebSocket handshake, which goes to upgrade (HTTP/1.1 on a connection of its
// own, as an h2c server that also speaks HTTP/1.1 accepts).
//
// gRPC calls and other requests use two pools, which differ only in the wait for the
// response headers. A gRPC server sends its headers with its first message, which may
// come long after the call started (a stream that waits for its client, a long unary
// call), so a gRPC call waits as long as its deadline says (grpc-timeout, which the
// upstream and the proxy enforce, and the client's cancellation, which reaches the
// upstream as RST_STREAM); a call without a deadline waits, as its client asked. Other requests
// keep Options.UpstreamTimeout.
//
// No HTTP/2 PING health checks are sent: grpc-go servers close a connection that pings
// more often than every five minutes while they are silent (keepalive enforcement,
// GOAWAY too_many_pings), which would cut every stream on it; an upstream on loopback
// that dies resets its connections anyway.
type h2cTransport struct {
	calls, other *http.Transport
	upgrade      http.RoundTripper
}

func newH2CTransport(headerTimeout time.Duration, upgrade http.RoundTripper) *h2cTransport {
	return &h2cTransport{calls: newH2CPool(0), other: newH2CPool(headerTimeout), upgrade: upgrade}
}

// newH2CPool is an HTTP/2-only transport to http:// URLs (the proxy rewrites h2c to
// http). Like newTransport it never uses an HTTP proxy from the environment and never
// decompresses.
func newH2CPool(headerTimeout time.Duration) *http.Transport {
	dialer := &net.Dialer{Timeout: upstreamDialTimeout, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		DialContext:           dialer.DialContext,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: headerTimeout,
		DisableCompression:    true,
		Protocols:             new(http.Protocols),
	}
	t.Protocols.SetUnencryptedHTTP2(true)
	return t
}

func (t *h2cTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	switch {
	case req.Context().Value(tunnelKey{}) != nil:
		return t.upgrade.RoundTrip(req)
	case rpcwire.IsRequest(req):
		return t.calls.RoundTrip(req)
	}
	return t.other.RoundTrip(req)
}

// CloseIdleConnections closes the idle connections of both pools.
func (t *h2cTransport) CloseIdleConnections() {
	t.calls.CloseIdleConnections()
	t.other.CloseIdleConnections()
}

// h2cURL is the URL the proxy sends an h2c upstream's requests to: the same with the
// scheme http, which an HTTP/2-only transport speaks with prior knowledge.
func h2cURL(u *url.URL) *url.URL {
	out := *u
	out.Scheme = "http"
	return &out
}
