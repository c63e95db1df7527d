package sidecar

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"

	"github.com/tokengate/tokengate/middleware"
)

// Upstream timeouts. The response-header timeout bounds a hung API; a slow body is
// streamed for as long as it takes.
const (
	upstreamDialTimeout   = 5 * time.Second
	upstreamHeaderTimeout = 60 * time.Second
)

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

// proxy forwards allowed requests to the upstream (DESIGN.md request path, step 5).
type proxy struct {
	rp         *httputil.ReverseProxy
	upstream   *url.URL
	id         *identity
	removeAuth bool
	cookie     string // token cookie, removed with removeAuthorization
	query      string // token query parameter, or "" for none configured
	log        *slog.Logger
	metrics    *sidecarMetrics
}

func newProxy(l *Loaded, transport http.RoundTripper, log *slog.Logger, m *sidecarMetrics) *proxy {
	p := &proxy{
		upstream:   l.Upstream,
		id:         newIdentity(l.Forward.Claims),
		removeAuth: l.Forward.RemoveAuthorization,
		cookie:     l.Gate.Tokens.Cookie,
		query:      l.Gate.Tokens.Query,
		log:        log,
		metrics:    m,
	}
	p.rp = &httputil.ReverseProxy{
		BufferPool:     copyBuffers,
		Rewrite:        p.rewrite,
		Transport:      transport,
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.errorHandler,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return p
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.rp.ServeHTTP(w, r) }

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
// STANDARDS X41).
func (p *proxy) rewrite(pr *httputil.ProxyRequest) {
	pr.SetURL(p.upstream)
	pr.Out.Host = pr.In.Host // the API sees the host its clients asked for
	// X-Forwarded-* are set by tokengate alone: ReverseProxy dropped the client's
	// before Rewrite, and Forwarded is dropped here.
	pr.SetXForwarded()
	pr.Out.Header.Del("Forwarded")

	p.id.stripInbound(pr.Out.Header)
	if c, ok := middleware.ClaimsFrom(pr.In.Context()); ok {
		p.id.set(pr.Out.Header, c)
	}
	if p.removeAuth {
		pr.Out.Header.Del("Authorization")
		if p.cookie != "" {
			removeCookie(pr.Out, p.cookie)
		}
	}
	// A token in the query string is ignored unless configured (OAuth 2.1 §5.1), and
	// never passed on to the API's logs (STANDARDS B5).
	strip := "access_token"
	if p.query != "" {
		strip = ""
		if p.removeAuth {
			strip = p.query
		}
	}
	if strip != "" {
		removeQuery(pr.Out.URL, strip)
	}
}

func removeQuery(u *url.URL, name string) {
	if u.RawQuery == "" {
		return
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil || !q.Has(name) {
		return
	}
	q.Del(name)
	u.RawQuery = q.Encode()
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
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(`{"error":"` + code + `","error_description":"the API behind tokengate did not answer"}` + "\n"))
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
