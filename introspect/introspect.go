package introspect

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/tokengate/tokengate/internal/schemerule"
)

// Defaults of a zero Config field.
const (
	DefaultTimeout          = 2 * time.Second
	DefaultCacheTTL         = 60 * time.Second
	DefaultNegativeTTL      = 10 * time.Second
	DefaultMaxEntries       = 10000
	DefaultTokenTypeHint    = "access_token"
	DefaultMaxResponseBytes = 64 << 10
	// MaxTokenBytes bounds the token sent to the endpoint (the middleware's largest
	// Tokens.MaxBytes): a longer one is inactive without a call.
	MaxTokenBytes = 64 << 10
)

// The result label of Options.OnCall, as the middleware's
// tokengate_introspection_requests_total counts them.
const (
	ResultActive   = "active"
	ResultInactive = "inactive"
	ResultError    = "error"
)

// Config says where and how tokens are introspected. The zero value of every field
// but Endpoint, ClientID and ClientSecret means its default. Its String method leaves
// the secret out, so that logging a Config never writes it.
type Config struct {
	// Endpoint is the introspection endpoint (RFC 7662 §2). It must be https, or
	// http to a loopback host, or http anywhere with InsecureHTTP; it must not carry
	// credentials or a fragment. Required: when the issuer's metadata names it, find
	// it with Discover first.
	Endpoint string
	// ClientID and ClientSecret authenticate this resource server to the endpoint
	// with client_secret_basic (RFC 6749 §2.3.1). The secret is as the caller read it
	// from its file (with the trailing newline already cut); it is never logged and
	// never part of an error. Both required.
	ClientID     string
	ClientSecret []byte
	// Timeout bounds each call, from dial to the last byte of the answer. This
	// defaults to DefaultTimeout (2s).
	Timeout time.Duration
	// CacheTTL is how long an active result is reused: at most this long, and never
	// past the result's exp. It bounds how long a revoked token stays allowed. This
	// defaults to DefaultCacheTTL (60s); negative turns the cache of active results
	// off (one call per request).
	CacheTTL time.Duration
	// NegativeTTL is how long an inactive result is reused. This defaults to
	// DefaultNegativeTTL (10s); negative turns it off.
	NegativeTTL time.Duration
	// MaxEntries bounds the cache (active and inactive results together). This
	// defaults to DefaultMaxEntries (10000). An entry holds the token's SHA-256 and
	// the decoded answer, so the cache's size is about MaxEntries times the size of
	// the endpoint's typical answer.
	MaxEntries int
	// TokenTypeHint is sent as token_type_hint (RFC 7662 §2.1). This defaults to
	// DefaultTokenTypeHint ("access_token").
	TokenTypeHint string
	// MaxResponseBytes caps an answer's body; a larger one is ErrUnavailable. This
	// defaults to DefaultMaxResponseBytes (64 KiB).
	MaxResponseBytes int64
	// InsecureHTTP allows plain http to a host that is not loopback, as
	// jwks.Config.InsecureHTTP does for the issuer. Never for production: the token
	// and the client secret travel in clear.
	InsecureHTTP bool
}

// String describes c without its secret.
func (c Config) String() string {
	secret := "none"
	if len(c.ClientSecret) > 0 {
		secret = "[redacted]"
	}
	return fmt.Sprintf("{Endpoint:%s ClientID:%s ClientSecret:%s Timeout:%s CacheTTL:%s NegativeTTL:%s MaxEntries:%d TokenTypeHint:%s MaxResponseBytes:%d InsecureHTTP:%t}",
		c.Endpoint, c.ClientID, secret, c.Timeout, c.CacheTTL, c.NegativeTTL, c.MaxEntries, c.TokenTypeHint, c.MaxResponseBytes, c.InsecureHTTP)
}

// GoString is String, for %#v.
func (c Config) GoString() string { return c.String() }

// LogValue is String, for log/slog (whose JSON handler would otherwise write the
// secret's bytes).
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

// Options are a Client's collaborators.
type Options struct {
	// Client makes the calls. Nil builds one with its own transport (never
	// http.DefaultClient), TLS 1.2 at least, every phase bounded by Timeout. A given
	// client is used through a copy that refuses redirects: an endpoint that answers
	// 3xx is unavailable, the token and the credentials go nowhere else.
	Client *http.Client
	// RootCAs, when Client is nil, are the roots trusted for the endpoint's
	// certificate (an authorization server behind a private CA); nil is the system's.
	RootCAs *x509.CertPool
	// Now is the clock of the cache; nil is time.Now.
	Now func() time.Time
	// OnCall, when set, is called once after each call to the endpoint (never for an
	// answer from the cache) with its result, ResultActive, ResultInactive or
	// ResultError, and how long it took: the middleware counts
	// tokengate_introspection_requests_total{issuer,result} with it. It runs on the
	// goroutine that made the call, before the callers waiting for it return, and
	// must be quick and safe for concurrent use.
	OnCall func(result string, d time.Duration)
}

// Result is an active token's introspection answer (RFC 7662 §2.2). It is not
// validated beyond that shape: an exp in the past, another audience, a missing scope
// are returned as they are, and the caller checks them as it checks a JWT's claims.
// Results are shared between the callers of one token and the cache: treat them as
// read-only.
type Result struct {
	Active    bool   // always true: an inactive answer is ErrInactive
	Issuer    string // iss
	Subject   string // sub
	ClientID  string // client_id
	Scope     string // scope, space-separated (see Scopes)
	TokenType string // token_type
	JTI       string // jti
	// Audience is aud, as a list even when the answer sent a string.
	Audience []string
	// ExpiresAt, IssuedAt and NotBefore are exp, iat and nbf; zero when absent.
	ExpiresAt, IssuedAt, NotBefore time.Time
	// Raw holds every member of the answer as sent, for claims tokengate does not
	// interpret (cnf, username, groups...).
	Raw map[string]json.RawMessage
}

// Scopes splits Scope at spaces.
func (r *Result) Scopes() []string { return strings.Fields(r.Scope) }

// Client introspects tokens at one endpoint and caches the answers. It is safe for
// concurrent use. Each call to the endpoint runs on a goroutine of its own, so that
// every caller waiting for it can give up on its own context; the goroutine ends with
// the call, within Timeout, or at Close.
type Client struct {
	endpoint    string
	auth        *basicAuth // a pointer, so that printing a Client never prints it
	hint        string
	timeout     time.Duration
	cacheTTL    time.Duration
	negativeTTL time.Duration
	maxBytes    int64
	http        *http.Client
	ownHTTP     bool
	now         func() time.Time
	onCall      func(string, time.Duration)
	cache       *cache

	closing context.Context // cancelled by Close
	close   context.CancelFunc
	calls   sync.WaitGroup

	mu       sync.Mutex
	inflight map[[32]byte]*flight
	closed   bool
}

type basicAuth struct{ header string }

// flight is one call to the endpoint, which every concurrent caller with the same
// token waits for.
type flight struct {
	done chan struct{}
	res  *Result
	err  error
}

// New checks cfg, every problem at once (each a *ConfigError, joined), and returns a
// Client. Close it to stop calls in flight.
func New(cfg Config, opts Options) (*Client, error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &ConfigError{Field: field, Problem: fmt.Sprintf(format, args...)})
	}
	if cfg.Endpoint == "" {
		bad("Endpoint", "is required: the issuer's introspection_endpoint (see Discover)")
	} else if err := checkURL(cfg.Endpoint, cfg.InsecureHTTP); err != nil {
		bad("Endpoint", "%v", err)
	}
	if cfg.ClientID == "" {
		bad("ClientID", "is required: the endpoint authenticates this resource server")
	}
	if len(cfg.ClientSecret) == 0 {
		bad("ClientSecret", "is required (client_secret_basic); it is empty")
	}
	if strings.ContainsAny(cfg.TokenTypeHint, "\x00\r\n") {
		bad("TokenTypeHint", "must not contain control characters")
	}
	for _, d := range []struct {
		field string
		v     int64
	}{{"Timeout", int64(cfg.Timeout)}, {"MaxEntries", int64(cfg.MaxEntries)}, {"MaxResponseBytes", cfg.MaxResponseBytes}} {
		if d.v < 0 {
			bad(d.field, "must not be negative")
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	c := &Client{
		endpoint:    cfg.Endpoint,
		auth:        &basicAuth{header: "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(cfg.ClientID)+":"+url.QueryEscape(string(cfg.ClientSecret))))},
		hint:        cfg.TokenTypeHint,
		timeout:     cfg.Timeout,
		cacheTTL:    cfg.CacheTTL,
		negativeTTL: cfg.NegativeTTL,
		maxBytes:    cfg.MaxResponseBytes,
		now:         opts.Now,
		onCall:      opts.OnCall,
		inflight:    map[[32]byte]*flight{},
	}
	if c.hint == "" {
		c.hint = DefaultTokenTypeHint
	}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	if c.cacheTTL == 0 {
		c.cacheTTL = DefaultCacheTTL
	}
	if c.negativeTTL == 0 {
		c.negativeTTL = DefaultNegativeTTL
	}
	if c.maxBytes == 0 {
		c.maxBytes = DefaultMaxResponseBytes
	}
	maxEntries := cfg.MaxEntries
	if maxEntries == 0 {
		maxEntries = DefaultMaxEntries
	}
	c.cache = newCache(maxEntries)
	if c.now == nil {
		c.now = time.Now
	}
	if opts.Client == nil {
		c.http, c.ownHTTP = newHTTPClient(c.timeout, opts.RootCAs), true
	} else {
		hc := *opts.Client
		hc.CheckRedirect = refuseRedirect
		c.http = &hc
	}
	c.closing, c.close = context.WithCancel(context.Background())
	return c, nil
}

// Close cancels the calls in flight (their callers get ErrUnavailable) and waits for
// their goroutines to end. Afterwards Introspect answers from the cache only, and
// ErrUnavailable for anything else.
func (c *Client) Close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.close()
	c.calls.Wait()
	if c.ownHTTP {
		c.http.CloseIdleConnections()
	}
}

// Errors that need no allocation.
var (
	errInactive       = &Error{class: ErrInactive, Err: errors.New("active is false")}
	errInactiveCached = &Error{class: ErrInactive, Err: errors.New("active is false (cached)")}
	errEmptyToken     = &Error{class: ErrInactive, Err: errors.New("the token is empty")}
	errLongToken      = &Error{class: ErrInactive, Err: fmt.Errorf("the token is longer than %d bytes", MaxTokenBytes)}
	errClosed         = &Error{class: ErrUnavailable, Err: errors.New("the introspection client is closed")}
)

// Introspect returns the endpoint's answer for token: a Result when it is active, an
// *Error matching ErrInactive when it is not, or ErrUnavailable when there is no
// usable answer (never a reason to allow or to refuse the token as such).
//
// An answer is cached under the token's SHA-256, never the token: an active one for
// CacheTTL and never past its exp, an inactive one for NegativeTTL; errors are not
// cached. Concurrent calls for one token share one call to the endpoint, which is
// bounded by Timeout whatever ctx says; each caller stops waiting when its own ctx
// ends (ErrUnavailable wrapping ctx's error), and the call still fills the cache.
func (c *Client) Introspect(ctx context.Context, token string) (*Result, error) {
	switch {
	case token == "":
		return nil, errEmptyToken
	case len(token) > MaxTokenBytes:
		return nil, errLongToken
	}
	key := hashToken(token)
	if e, ok := c.cache.get(key, c.now()); ok {
		return e.answer()
	}
	if err := ctx.Err(); err != nil {
		return nil, &Error{class: ErrUnavailable, Err: fmt.Errorf("not asked: %w", err)}
	}

	c.mu.Lock()
	if e, ok := c.cache.get(key, c.now()); ok { // a call that just ended
		c.mu.Unlock()
		return e.answer()
	}
	if c.closed {
		c.mu.Unlock()
		return nil, errClosed
	}
	f, ok := c.inflight[key]
	if !ok {
		f = &flight{done: make(chan struct{})}
		c.inflight[key] = f
		c.calls.Add(1)
		// The call keeps ctx's values (a trace) but not its end: other callers may
		// be waiting for it.
		go c.fly(context.WithoutCancel(ctx), key, token, f)
	}
	c.mu.Unlock()

	select {
	case <-f.done:
		return f.res, f.err
	case <-ctx.Done():
		return nil, &Error{class: ErrUnavailable, Err: fmt.Errorf("gave up waiting for the endpoint: %w", ctx.Err())}
	}
}

// hashToken is the SHA-256 of token. A token of up to 512 bytes (any opaque token,
// most JWTs) is copied to the stack first: converted directly, a string longer than 32
// bytes is copied to the heap, an allocation on every cache hit.
func hashToken(token string) [32]byte {
	var buf [512]byte
	if len(token) <= len(buf) {
		return sha256.Sum256(append(buf[:0], token...))
	}
	return sha256.Sum256([]byte(token))
}

// fly makes the call of f, reports it, caches its answer and wakes its waiters.
func (c *Client) fly(ctx context.Context, key [32]byte, token string, f *flight) {
	defer c.calls.Done()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	stop := context.AfterFunc(c.closing, cancel)
	defer stop()

	start := time.Now()
	res, err := c.call(ctx, token)
	if err != nil && !errors.Is(err, ErrInactive) && c.closing.Err() != nil {
		err = errClosed // cut short by Close
	}
	result := ResultActive
	switch {
	case errors.Is(err, ErrInactive):
		result = ResultInactive
	case err != nil:
		result = ResultError
	}
	if c.onCall != nil {
		c.onCall(result, time.Since(start))
	}

	now := c.now()
	switch {
	case result == ResultActive && c.cacheTTL > 0:
		until := now.Add(c.cacheTTL)
		if !res.ExpiresAt.IsZero() && res.ExpiresAt.Before(until) {
			until = res.ExpiresAt
		}
		c.cache.put(key, &entry{res: res, until: until}, now)
	case result == ResultInactive && c.negativeTTL > 0:
		c.cache.put(key, &entry{until: now.Add(c.negativeTTL)}, now)
	}

	f.res, f.err = res, err
	c.mu.Lock()
	delete(c.inflight, key)
	c.mu.Unlock()
	close(f.done)
}

// call asks the endpoint about token once.
func (c *Client) call(ctx context.Context, token string) (*Result, error) {
	body := "token=" + url.QueryEscape(token) + "&token_type_hint=" + url.QueryEscape(c.hint)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, strings.NewReader(body))
	if err != nil {
		return nil, unavailable("%w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", c.auth.header)
	req.Header.Set("User-Agent", "tokengate")
	resp, err := c.http.Do(req)
	if err != nil {
		// A *url.Error: the method, the endpoint and the transport's error; the
		// request's body and headers are never part of it.
		return nil, unavailable("%w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// Drain a little so the connection can be reused, never the whole body.
		_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
		hint := ""
		switch {
		case resp.StatusCode == http.StatusUnauthorized:
			hint = " (the endpoint refused the client credentials)"
		case resp.StatusCode >= 300 && resp.StatusCode < 400:
			hint = " (redirects are not followed)"
		}
		return nil, unavailable("POST %s: status %d%s", c.endpoint, resp.StatusCode, hint)
	}
	if resp.ContentLength > c.maxBytes {
		return nil, unavailable("POST %s: a body of %d bytes is over the cap of %d", c.endpoint, resp.ContentLength, c.maxBytes)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBytes+1))
	if err != nil {
		return nil, unavailable("POST %s: reading the body: %w", c.endpoint, err)
	}
	if int64(len(data)) > c.maxBytes {
		return nil, unavailable("POST %s: the body is over the cap of %d bytes", c.endpoint, c.maxBytes)
	}
	res, err := parse(data)
	if err != nil {
		return nil, unavailable("POST %s: %w", c.endpoint, err)
	}
	if res == nil {
		return nil, errInactive
	}
	return res, nil
}

func unavailable(format string, args ...any) *Error {
	return &Error{class: ErrUnavailable, Err: fmt.Errorf(format, args...)}
}

// newHTTPClient builds the client New uses when Options has none: its own transport,
// certificate verification always, TLS 1.2 at least, every phase bounded, no
// redirects.
func newHTTPClient(timeout time.Duration, roots *x509.CertPool) *http.Client {
	dialer := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                  http.ProxyFromEnvironment,
			DialContext:            dialer.DialContext,
			TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots},
			TLSHandshakeTimeout:    timeout,
			ResponseHeaderTimeout:  timeout,
			MaxResponseHeaderBytes: 64 << 10,
			MaxIdleConns:           64,
			MaxIdleConnsPerHost:    64, // a burst of distinct tokens makes parallel calls
			IdleConnTimeout:        90 * time.Second,
			ForceAttemptHTTP2:      true,
		},
		Timeout:       timeout,
		CheckRedirect: refuseRedirect,
	}
}

// refuseRedirect hands a 3xx back to the caller, which counts it as unavailable: the
// token and the credentials are for the configured endpoint only.
func refuseRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// checkURL applies jwks's scheme rule (docs/keys.md): https, or http to a loopback
// host, or http anywhere when insecureHTTP is set; no credentials, no fragment.
func checkURL(raw string, insecureHTTP bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("is not a URL: %w", err)
	}
	switch {
	case u.Host == "" || !u.IsAbs():
		return fmt.Errorf("%q is not an absolute URL with a host", raw)
	case u.User != nil:
		return errors.New("must not carry credentials (set ClientID and ClientSecret)")
	case u.Fragment != "" || strings.HasSuffix(raw, "#"):
		return fmt.Errorf("%q must not have a fragment", raw)
	}
	return schemerule.Check(raw, u, insecureHTTP)
}
