package middleware

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokengate/tokengate/internal/promreg"
	"github.com/tokengate/tokengate/introspect"
)

// Introspection asks the issuer whether a token is active (RFC 7662): for tokens that
// are not JWTs (OpaqueTokens), and for this issuer's JWTs too (Always). Off unless one
// of those is set.
type Introspection struct {
	// Endpoint is the introspection endpoint. Empty: the issuer's metadata names it
	// (introspection_endpoint), read on first use.
	Endpoint string
	// ClientID and ClientSecret authenticate this API to the endpoint
	// (client_secret_basic). The secret is never logged.
	ClientID     string
	ClientSecret []byte
	// OpaqueTokens sends every token that is not a JWS to this issuer's endpoint. One
	// issuer at most.
	OpaqueTokens bool
	// Always introspects this issuer's JWTs as well, after they verify: a revoked token
	// is refused within CacheTTL instead of at its exp, for a call per token per
	// CacheTTL.
	Always bool
	// CacheTTL is how long an answer is reused: at most this, never past the token's
	// exp [introspect.DefaultCacheTTL, 60s]. It bounds how long a revoked token passes.
	CacheTTL time.Duration
	// Timeout bounds a call [introspect.DefaultTimeout, 2s]; then 503.
	Timeout time.Duration
}

func (i Introspection) on() bool { return i.OpaqueTokens || i.Always }

// Introspector introspects the tokens of one issuer, with the cache and metrics of the
// Gate that made it: NewIntrospector. A Gate builds its own unless Options.Introspectors
// gives them (the sidecar keeps them across reloads that way).
type Introspector struct {
	issuer   string
	cfg      introspect.Config
	opts     introspect.Options
	cacheTTL time.Duration

	mu      sync.Mutex
	client  *introspect.Client
	attempt *discovery // the discovery in flight, when the endpoint is not configured
	closed  bool
}

// discovery is one look-up of the introspection endpoint, which concurrent first
// requests share.
type discovery struct {
	done chan struct{}
	err  error
}

var (
	errIntrospectionClosed = errors.New("the introspector is closed")
	errIssuerMismatch      = errors.New("the introspection answer names another issuer")
)

// introspectionRequests is tokengate_introspection_requests_total.
var introspectionRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "tokengate_introspection_requests_total",
	Help: "Calls to an issuer's introspection endpoint, by issuer and result (active, inactive, error); answers from the cache are not counted.",
}, []string{"issuer", "result"})

// NewIntrospector checks an issuer's Introspection and returns its Introspector,
// counting calls on reg (nil: not counted). It contacts nothing: the endpoint is
// discovered, when it is not configured, on the first token.
func NewIntrospector(iss Issuer, reg prometheus.Registerer) (*Introspector, error) {
	in := iss.Introspection
	cfg := introspect.Config{
		Endpoint: in.Endpoint, ClientID: in.ClientID, ClientSecret: in.ClientSecret,
		Timeout: in.Timeout, CacheTTL: in.CacheTTL, InsecureHTTP: iss.InsecureHTTP,
	}
	if err := checkIntrospection(cfg); err != nil {
		return nil, err
	}
	opts := introspect.Options{}
	if reg != nil {
		c, err := promreg.Register(reg, introspectionRequests)
		if err != nil {
			return nil, fmt.Errorf("middleware: registering metrics: %w", err)
		}
		for _, r := range []string{introspect.ResultActive, introspect.ResultInactive, introspect.ResultError} {
			c.WithLabelValues(iss.Issuer, r) // series at zero
		}
		opts.OnCall = func(result string, _ time.Duration) { c.WithLabelValues(iss.Issuer, result).Inc() }
	}
	return &Introspector{issuer: iss.Issuer, cfg: cfg, opts: opts, cacheTTL: cmp.Or(in.CacheTTL, introspect.DefaultCacheTTL)}, nil
}

// checkIntrospection validates cfg as introspect.New does, with a stand-in for an
// endpoint left to discovery.
func checkIntrospection(cfg introspect.Config) error {
	if cfg.Endpoint == "" {
		cfg.Endpoint = "https://discovered.invalid/introspect"
	}
	c, err := introspect.New(cfg, introspect.Options{})
	if err != nil {
		return err
	}
	c.Close()
	return nil
}

// Introspect returns the issuer's answer for token: the result, or an error that is
// introspect.ErrInactive or introspect.ErrUnavailable (errors.Is).
func (in *Introspector) Introspect(ctx context.Context, token string) (*introspect.Result, error) {
	c, err := in.get(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", introspect.ErrUnavailable, err)
	}
	return c.Introspect(ctx, token)
}

// get returns the client, discovering the endpoint first when it is not configured.
// Concurrent first requests share one discovery; a failed one is tried again by the
// next request.
func (in *Introspector) get(ctx context.Context) (*introspect.Client, error) {
	in.mu.Lock()
	if in.closed {
		in.mu.Unlock()
		return nil, errIntrospectionClosed
	}
	if in.client != nil {
		c := in.client
		in.mu.Unlock()
		return c, nil
	}
	a := in.attempt
	if a == nil {
		a = &discovery{done: make(chan struct{})}
		in.attempt = a
		in.mu.Unlock()
		a.err = in.connect(ctx)
		in.mu.Lock()
		in.attempt = nil
		close(a.done)
	}
	in.mu.Unlock()
	select {
	case <-a.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if a.err != nil {
		return nil, a.err
	}
	return in.get(ctx)
}

// connect discovers the endpoint when needed and makes the client.
func (in *Introspector) connect(ctx context.Context) error {
	cfg := in.cfg
	if cfg.Endpoint == "" {
		ctx, cancel := context.WithTimeout(ctx, cmp.Or(cfg.Timeout, introspect.DefaultTimeout))
		defer cancel()
		ep, err := introspect.Discover(ctx, nil, in.issuer)
		if err != nil {
			return err
		}
		cfg.Endpoint = ep
	}
	c, err := introspect.New(cfg, in.opts)
	if err != nil {
		return err
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		c.Close()
		return errIntrospectionClosed
	}
	in.client = c
	return nil
}

// Close ends the calls in flight and refuses new ones.
func (in *Introspector) Close() {
	in.mu.Lock()
	in.closed = true
	c := in.client
	in.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// introspectionDenial is the Error of a failed introspection.
func introspectionDenial(err error) *Error {
	if errors.Is(err, introspect.ErrInactive) {
		return deny(ReasonInactive, err)
	}
	return deny(ReasonIntrospectionUnavailable, err)
}

// claimsOf turns an active introspection answer into claims, checked as a JWT's are
// (issuer, time, audience, cnf, scopes, lifetime; not RFC 9068's typing, which is the
// JWT's), or the denial.
func (v *verifier) claimsOf(res *introspect.Result, p *issuerPolicy, now time.Time, leeway time.Duration) (*Claims, *Error) {
	if res.Issuer != "" && res.Issuer != p.issuer {
		return nil, deny(ReasonIssuer, errIssuerMismatch)
	}
	c := &Claims{
		Issuer: p.issuer, Subject: res.Subject, ClientID: res.ClientID, Audience: res.Audience, ID: res.JTI,
		ExpiresAt: res.ExpiresAt, IssuedAt: res.IssuedAt, NotBefore: res.NotBefore,
		Raw: res.Raw, policy: p, decoded: true,
	}
	switch {
	case !c.ExpiresAt.IsZero() && !now.Before(c.ExpiresAt.Add(leeway)):
		return c, deny(ReasonExpired, errors.New("the introspection answer's exp passed"))
	case !c.NotBefore.IsZero() && now.Add(leeway).Before(c.NotBefore),
		!c.IssuedAt.IsZero() && now.Add(leeway).Before(c.IssuedAt):
		return c, deny(ReasonNotYetValid, errors.New("the introspection answer's nbf or iat is in the future"))
	}
	if err := c.validate(false); err != nil {
		return c, classify(err)
	}
	if e := v.check(c); e != nil {
		return c, e
	}
	return c, nil
}
