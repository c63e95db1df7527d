package sidecar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokengate/tokengate/internal/headername"
	"github.com/tokengate/tokengate/internal/rpcwire"
	"github.com/tokengate/tokengate/middleware"
	"github.com/tokengate/tokengate/policy"
)

// upstreamDialTimeout bounds connecting to the upstream. The response-header timeout
// (Options.UpstreamTimeout) bounds a hung API; a slow body is streamed for as long as it
// takes.
const upstreamDialTimeout = 5 * time.Second

// newTransport is the upstream transport of a busy sidecar. Go's default keeps two idle
// connections per host, so under more than a couple of concurrent clients most requests
// open a new upstream connection; this one keeps enough for hundreds. It never uses an
// HTTP proxy from the environment (the upstream is on loopback) and never decompresses:
// a proxy passes bodies as they are.
func newTransport(headerTimeout time.Duration) *http.Transport {
	dialer := &net.Dialer{Timeout: upstreamDialTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		DialContext:           dialer.DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   512,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: headerTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
}

// proxy forwards allowed requests (docs/configuration.md, What the upstream receives).
type proxy struct {
	rp         *httputil.ReverseProxy
	upstream   *url.URL
	id         *policy.Identity
	strip      map[string]bool // normalized names of forward.stripHeaders
	removeAuth bool
	cookie     string // token cookie, removed with the token
	query      string // token query parameter, or "" for none configured
	limits     policy.Limits
	tunnels    *tunnels
	log        *slog.Logger
	metrics    *sidecarMetrics
}

func newProxy(l *policy.Loaded, transport http.RoundTripper, tuns *tunnels, log *slog.Logger, m *sidecarMetrics) *proxy {
	p := &proxy{
		upstream:   l.Upstream,
		id:         l.Identity(),
		strip:      map[string]bool{},
		removeAuth: l.Forward.RemoveAuthorization,
		cookie:     l.Gate.Tokens.Cookie,
		query:      l.Gate.Tokens.Query,
		limits:     l.Limits,
		tunnels:    tuns,
		log:        log,
		metrics:    m,
	}
	for _, h := range l.Forward.StripHeaders {
		p.strip[headername.Key(h)] = true
	}
	p.rp = &httputil.ReverseProxy{
		BufferPool:     copyBuffers,
		Rewrite:        p.rewrite,
		Transport:      transport,
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.errorHandler,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if l.Upstream.Scheme == schemeH2C {
		// h2c.go: HTTP/2 with prior knowledge to an http URL. FlushInterval stays 0:
		// ReverseProxy flushes every write of a response of unknown length (every
		// gRPC response with messages) by itself, whereas -1 would also flush the
		// header of a Trailers-Only response (a gRPC error, END_STREAM on its
		// HEADERS, ContentLength 0) before the handler ends, from a timer that races
		// the end of the response: the client would get a header, then an empty end
		// of stream, and no grpc-status ("server closed the stream without sending
		// trailers").
		p.upstream = h2cURL(l.Upstream)
	}
	return p
}

// ServeHTTP forwards a request that the Gate let through. Its body, if it has one, may
// pause for at most limits.bodyIdle between reads; a WebSocket handshake that the Gate
// allowed becomes a tunnel with an idle limit.
//
// A gRPC call's body is exempt from bodyIdle: it is a stream of messages that may
// pause for as long as the call lives (a client stream that sends when it has
// something to say), and the call is bounded by its deadline and by its client, whose
// cancellation or lost connection ends it upstream too (docs/grpc.md). The deadline
// (grpc-timeout) goes to the upstream, which enforces it, and the proxy keeps it too:
// when it passes first here, the upstream's stream is reset and the call ends
// DEADLINE_EXCEEDED, as the client's own clock says, never UNAVAILABLE, which a
// client may retry.
func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if rpcwire.IsRequest(r) {
		if d, ok := rpcwire.Timeout(r); ok {
			ctx, cancel := context.WithTimeout(r.Context(), d)
			defer cancel()
			r = r.WithContext(ctx)
		}
	}
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 && p.limits.BodyIdle > 0 && !rpcwire.IsRequest(r) {
		b := &idleBody{ReadCloser: r.Body, rc: http.NewResponseController(w), idle: p.limits.BodyIdle}
		r = r.WithContext(context.WithValue(r.Context(), idleKey{}, b))
		r.Body = b
	}
	if d, ok := middleware.DecisionFrom(r.Context()); ok && d.WebSocket {
		t := p.tunnels.open(p.limits.TunnelIdle)
		defer p.tunnels.done(t)
		r = r.WithContext(context.WithValue(r.Context(), tunnelKey{}, t))
		w = &tunnelWriter{ResponseWriter: w, t: t}
	}
	p.rp.ServeHTTP(w, r)
}

// copyBuffers lends ReverseProxy its 32 KiB copy buffers: without a pool it allocates
// one per response, which at a few thousand requests a second keeps the garbage
// collector busy.
var copyBuffers = &bufferPool{pool: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}

type bufferPool struct{ pool sync.Pool }

func (b *bufferPool) Get() []byte  { return *b.pool.Get().(*[]byte) }
func (b *bufferPool) Put(p []byte) { b.pool.Put(&p) }

// rewrite builds the upstream request. It runs after ReverseProxy has removed the
// hop-by-hop headers, including any a client named in Connection, so a client cannot
// make the identity headers set here vanish (the reason Director is deprecated;
// docs/standards.md X41).
//
// The upstream receives a token only when tokengate verified it: identity headers are
// set from verified claims alone, and a token that was not verified (a public route
// reached with a forged, expired or malformed one) is removed, whatever
// removeAuthorization says, so that an upstream may trust that a bearer token it sees
// passed tokengate. A shadow-mode denial is the exception: shadow mode must not change
// what the upstream receives, which still decides on its own while the policy is rolled
// out; it gets no identity headers.
func (p *proxy) rewrite(pr *httputil.ProxyRequest) {
	pr.SetURL(p.upstream)
	pr.Out.Host = pr.In.Host // the API sees the host its clients asked for
	// X-Forwarded-* are set by tokengate alone: ReverseProxy dropped the client's
	// before Rewrite, and Forwarded is dropped here.
	pr.SetXForwarded()
	pr.Out.Header.Del("Forwarded")
	for name := range pr.Out.Header {
		if p.strip[headername.Key(name)] {
			delete(pr.Out.Header, name)
		}
	}

	p.id.StripInbound(pr.Out.Header)
	d, _ := middleware.DecisionFrom(pr.In.Context())
	verified := d.Allowed() && d.Claims != nil
	if verified {
		p.id.Set(pr.Out.Header, d.Claims)
	}
	dropToken := p.removeAuth || !verified && d.Outcome != middleware.DecisionShadowDenied
	if dropToken {
		if p.removeAuth {
			pr.Out.Header.Del("Authorization")
		} else if bearerHeader(pr.Out.Header) {
			pr.Out.Header.Del("Authorization")
		}
		if p.cookie != "" {
			removeCookie(pr.Out, p.cookie)
		}
	}
	// A token in the query string is ignored unless configured (OAuth 2.1 §5.1), and
	// never passed on to the API's logs (docs/standards.md B5).
	switch {
	case p.query == "":
		pr.Out.URL.RawQuery = removeQuery(pr.Out.URL.RawQuery, "access_token")
	case dropToken:
		pr.Out.URL.RawQuery = removeQuery(pr.Out.URL.RawQuery, p.query)
	}
}

// bearerHeader reports whether the request's Authorization names the Bearer scheme.
// Another scheme (Basic, for the API's own login) is the API's business.
func bearerHeader(h http.Header) bool {
	for _, v := range h["Authorization"] {
		scheme, _, _ := strings.Cut(strings.TrimSpace(v), " ")
		if strings.EqualFold(scheme, "Bearer") {
			return true
		}
	}
	return false
}

// removeQuery removes the parameters named name from a raw query, byte for byte: the
// rest keeps its order and its encoding, which the API may care about (a signature
// over the query, repeated keys). A key is compared as the API decodes it
// (access%5Ftoken is access_token).
func removeQuery(raw, name string) string {
	if raw == "" {
		return raw
	}
	var b strings.Builder
	removed := false
	for part := range strings.SplitSeq(raw, "&") {
		key, _, _ := strings.Cut(part, "=")
		if k, err := url.QueryUnescape(key); err == nil && k == name || key == name {
			removed = true
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(part)
	}
	if !removed {
		return raw
	}
	return b.String()
}

func removeCookie(r *http.Request, name string) {
	cookies := r.Cookies()
	r.Header.Del("Cookie")
	for _, c := range cookies {
		if c.Name != name {
			r.AddCookie(c)
		}
	}
}

func (p *proxy) modifyResponse(resp *http.Response) error {
	p.metrics.upstream(statusClass(resp.StatusCode))
	return nil
}

// errorHandler answers a request the upstream did not: 504 when it timed out, 502
// otherwise, as small JSON. The error is logged without the request's headers.
func (p *proxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	if b, ok := r.Context().Value(idleKey{}).(*idleBody); ok && b.timedOut.Load() || errors.Is(err, errBodyIdle) {
		// The client stopped sending its body: its fault, not the upstream's.
		p.log.Info("request body idle, request cut", "method", r.Method, "idle", p.limits.BodyIdle.String())
		w.Header().Set("Connection", "close")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusRequestTimeout)
		_, _ = w.Write([]byte(`{"error":"request_timeout","error_description":"the request body stopped arriving"}` + "\n"))
		return
	}
	p.metrics.upstream("error")
	status, code := http.StatusBadGateway, "bad_gateway"
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		status, code = http.StatusGatewayTimeout, "gateway_timeout"
	}
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client went away; nobody reads the answer.
		status = 499
	}
	p.log.Warn("upstream request failed", "method", r.Method, "status", status, "error", err)
	if status == 499 {
		return
	}
	if rpcwire.IsRequest(r) {
		// A gRPC client reads the status from grpc-status: DEADLINE_EXCEEDED when the
		// call's own deadline passed, else UNAVAILABLE, which it may retry. By the
		// clock, not by err: the upstream, which keeps the same deadline, may reset
		// the stream before the proxy's own context says so.
		if dl, ok := r.Context().Deadline(); ok && !time.Now().Before(dl) {
			rpcwire.WriteStatus(w, r, rpcwire.DeadlineExceeded, "the call's deadline (grpc-timeout) passed before the API behind tokengate answered")
			return
		}
		rpcwire.WriteStatus(w, r, rpcwire.CodeForStatus(status), "the API behind tokengate did not answer")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(`{"error":"` + code + `","error_description":"the API behind tokengate did not answer"}` + "\n"))
}

// idleKey is the context key of a request's idleBody, for errorHandler (ReverseProxy
// hands it a copy of the request whose body wraps the idleBody).
type idleKey struct{}

// errBodyIdle is the error of a request body that sent nothing for limits.bodyIdle.
var errBodyIdle = errors.New("the request body sent nothing for too long")

// idleBody bounds the pauses of a request body: before each read the connection's read
// deadline is set limits.bodyIdle ahead (net/http has no such limit of its own once the
// headers are read), and cleared at the end of the body so that it does not cut what
// comes after.
type idleBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	idle time.Duration
	// timedOut tells errorHandler why the upstream request failed: the server cancels
	// the request's context on the read error, and the transport reports that instead.
	timedOut atomic.Bool
}

func (b *idleBody) Read(p []byte) (int, error) {
	_ = b.rc.SetReadDeadline(time.Now().Add(b.idle))
	n, err := b.ReadCloser.Read(p)
	var ne net.Error
	switch {
	case err == io.EOF:
		_ = b.rc.SetReadDeadline(time.Time{})
	case errors.As(err, &ne) && ne.Timeout():
		b.timedOut.Store(true)
		err = fmt.Errorf("%w: %w", errBodyIdle, err)
	}
	return n, err
}

func statusClass(code int) string {
	switch {
	case code < 200:
		return "1xx"
	case code < 300:
		return "2xx"
	case code < 400:
		return "3xx"
	case code < 500:
		return "4xx"
	}
	return "5xx"
}
