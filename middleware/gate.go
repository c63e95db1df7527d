package middleware

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokengate/tokengate/jwks"
)

// Gate decides, for every request, whether it may reach the API: it extracts the bearer
// token, verifies it (or finds it in the cache of verified tokens), checks the scopes the
// matched route needs, answers denials the RFC 6750 way and counts every decision.
//
// A Gate that builds its own key sets (no WithKeySource) owns their goroutines: they
// stop when the context given to New is cancelled or Close is called.
type Gate struct {
	cfg      Config
	routes   *routeTable
	verifier *verifier
	cache    *tokenCache
	rejects  *rejectCache
	metrics  *metrics
	log      *slog.Logger
	clock    func() time.Time
	writeErr ErrorWriter
	keys     KeySource
	group    *jwks.Group // owned when New built it
	// removals reads the key source's removal count, when it has one (see KeySource).
	removals func() uint64

	routeCounters   []*counters
	noRouteCounters *counters
	requireCounters sync.Map // pattern → *counters, for Require outside the route table
	tokenAge        map[string]*shardedHistogram
	challengeRealm  string
	requestChecks   []func(*http.Request) error
}

// ErrorWriter writes the response to a denied request: status and body. The Gate has
// set WWW-Authenticate (and Retry-After for 503) already. WriteError is the default.
type ErrorWriter func(w http.ResponseWriter, r *http.Request, d Decision)

// Option configures a Gate.
type Option func(*options)

type options struct {
	logger   *slog.Logger
	keys     KeySource
	writeErr ErrorWriter
	clock    func() time.Time
	checks   []func(*Claims) error
	requests []func(*http.Request) error
}

// WithLogger sets the logger. Denials are logged at Info, allowed requests at Debug;
// no line ever holds a token. Default slog.Default().
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithKeySource replaces the key sets New would build from the issuers' configuration
// (for tests, or to share key sets between Gates). The Gate does not own it.
func WithKeySource(k KeySource) Option { return func(o *options) { o.keys = k } }

// WithErrorWriter replaces how denials are written (status and body).
func WithErrorWriter(w ErrorWriter) Option { return func(o *options) { o.writeErr = w } }

// WithClaimsCheck adds a check of verified claims, run once per token before it is
// cached: an error denies the request with reason claims. The sidecar uses it to refuse
// claims it cannot forward safely in a header.
func WithClaimsCheck(check func(*Claims) error) Option {
	return func(o *options) { o.checks = append(o.checks, check) }
}

// WithRequestCheck adds a check of every request, run before its token is looked at:
// an error denies the request, in shadow mode too. An error that is (or wraps) an
// *Error denies it with that Error's Reason; any other error with malformed_request
// (400 invalid_request). The sidecar uses it to refuse requests it cannot forward as
// they were decided (no Host).
func WithRequestCheck(check func(*http.Request) error) Option {
	return func(o *options) { o.requests = append(o.requests, check) }
}

// WithClock sets the clock of the time claims and the cache. Default time.Now.
func WithClock(now func() time.Time) Option { return func(o *options) { o.clock = now } }

// New validates cfg, reporting every problem at once (each a *FieldError or a
// *jwks.ConfigError naming its key), registers the metrics on reg and, unless
// WithKeySource is given, starts loading the issuers' keys.
func New(ctx context.Context, cfg Config, reg prometheus.Registerer, opts ...Option) (*Gate, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	cfg = cfg.withDefaults()
	routes, err := check(cfg, o.keys == nil)
	if err != nil {
		return nil, err
	}
	keyCfgs := keyConfigs(cfg)
	if reg == nil {
		return nil, errors.New("middleware: a prometheus.Registerer is required (prometheus.NewRegistry() for none)")
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("middleware: registering metrics: %w", err)
	}

	g := &Gate{
		cfg:            cfg,
		routes:         routes,
		metrics:        m,
		log:            o.logger,
		clock:          o.clock,
		writeErr:       o.writeErr,
		keys:           o.keys,
		tokenAge:       map[string]*shardedHistogram{},
		challengeRealm: `Bearer realm="` + cfg.Realm + `"`,
		requestChecks:  o.requests,
	}
	if g.log == nil {
		g.log = slog.Default()
	}
	if g.writeErr == nil {
		g.writeErr = WriteError
	}
	now := g.clock
	if now == nil {
		now = time.Now
	}
	if g.keys == nil {
		g.group, err = jwks.NewGroup(ctx, keyCfgs, jwks.Options{Logger: g.log, Metrics: m.keys, Now: o.clock})
		if err != nil {
			return nil, err
		}
		g.keys = g.group
	}
	if r, ok := g.keys.(interface{ Removals() uint64 }); ok {
		g.removals = r.Removals
	}
	g.verifier = newVerifier(cfg, g.keys, now)
	g.verifier.checks = o.checks
	if !cfg.Tokens.NoCache {
		g.cache = newTokenCache(cfg.Tokens.CacheEntries, cfg.Tokens.CacheBytes, cfg.Tokens.Leeway, cfg.Tokens.KeepClaims)
		g.rejects = newRejectCache(cfg.Tokens.CacheEntries, cfg.Tokens.CacheBytes/8)
	}
	for _, rt := range routes.routes {
		g.routeCounters = append(g.routeCounters, &counters{route: rt.pattern})
		// Series at zero, so that rates exist before the first request.
		m.counter(DecisionAllowed, string(ReasonOK), rt.pattern)
	}
	g.noRouteCounters = &counters{route: NoRoute}
	for _, iss := range cfg.Issuers {
		g.tokenAge[iss.Issuer] = m.tokenAge(iss.Issuer)
	}
	if len(routes.routes) == 0 {
		g.log.Warn("no routes configured: Handler denies every request (no_route); use Require on your own routes")
	}
	return g, nil
}

// Validate checks cfg as New does, reporting every problem at once, without starting
// anything: for a configuration reload or a --check-config.
func Validate(cfg Config) error {
	_, err := check(cfg.withDefaults(), true)
	return err
}

// check validates a configuration with defaults applied and compiles its routes.
func check(cfg Config, keys bool) (*routeTable, error) {
	errs := cfg.validate()
	routes, routeErrs := compileRoutes(cfg.Routes, cfg.PathStyle)
	errs = append(errs, routeErrs...)
	if keys {
		if err := jwks.Validate(keyConfigs(cfg)); err != nil {
			errs = append(errs, err)
		}
	}
	return routes, errors.Join(errs...)
}

func keyConfigs(cfg Config) []jwks.Config {
	out := make([]jwks.Config, len(cfg.Issuers))
	for i, iss := range cfg.Issuers {
		out[i] = iss.Config
	}
	return out
}

// Close stops the goroutines of the key sets the Gate built.
func (g *Gate) Close() {
	if g.group != nil {
		g.group.Close()
	}
}

// Ready reports whether every issuer's keys were loaded at least once.
func (g *Gate) Ready() bool {
	if r, ok := g.keys.(interface{ Ready() bool }); ok {
		return r.Ready()
	}
	return true
}

// KeySets returns the key sets the Gate built, or nil with WithKeySource.
func (g *Gate) KeySets() *jwks.Group { return g.group }

// Decision is the outcome for one request.
type Decision struct {
	// Outcome is DecisionAllowed, DecisionDenied or DecisionShadowDenied (a denial that
	// shadow mode forwards anyway): the decision label.
	Outcome string
	// Reason is the bounded reason: ReasonOK when allowed.
	Reason Reason
	// Status is the HTTP status a denial is answered with; 200 when allowed.
	Status int
	// Err is the denial, an *Error; nil when allowed. Its text is for logs only.
	Err error
	// Route is the matched route's pattern, or NoRoute.
	Route string
	// Public says the route needs no token.
	Public bool
	// Claims are the token's verified claims: set when allowed, and on a denial that
	// came after a good signature (expired, audience, scope...), never otherwise.
	Claims *Claims
	// Scope lists the scopes the route needs, for an insufficient_scope denial.
	Scope string
	// TokenSent says the request carried a token (so the challenge names an error).
	TokenSent bool
	// Cached says the decision came from the verified-token cache, or from the cache of
	// tokens refused shortly before for the same reason.
	Cached bool
	// WebSocket says the request asks to switch to WebSocket (RFC 6455) and every
	// route it matched allows that (Route.WebSocket). Handler removes any other
	// protocol switch (Upgrade) from a request before it goes on.
	WebSocket bool
}

// Allowed reports whether the request is allowed.
func (d Decision) Allowed() bool { return d.Outcome == DecisionAllowed }

// Forward reports whether the request goes on to the API: allowed, or denied in shadow
// mode.
func (d Decision) Forward() bool { return d.Outcome != DecisionDenied }

// Decide decides a request by the route table: docs/middleware.md, from Route to
// Authorize (it counts the decision). It never writes a response; the middleware, the
// sidecar and the check command act on the Decision.
//
// A request is decided on every reading of it that the configuration's PathStyle
// names: it must match a route as the API reads it first (else no_route), and meet the
// policy of every route that any of its readings matches. The decision's route is the
// one whose policy denied it, or the first reading's.
//
// On a public route a token is optional: one that verifies gives the Decision its
// claims; one that does not is ignored (the request stays allowed, with no claims),
// never trusted.
func (g *Gate) Decide(r *http.Request) Decision {
	start := time.Now()
	shp := acquireShard()
	defer releaseShard(shp)
	sh := *shp
	var m matched
	g.routes.match(sh, r, &m)
	var d Decision
	c := g.noRouteCounters
	shadow := g.cfg.Shadow
	if rt := m.primary; rt != nil {
		c = g.routeCounters[rt.index]
	}
	switch e := g.checkRequest(r); {
	case e != nil:
		// A request that cannot be forwarded as it was decided on is refused in shadow
		// mode too: shadow mode forwards policy denials, not these.
		d = denied(e)
		d.Route = NoRoute
		if m.primary != nil {
			d.Route = m.primary.pattern
		}
		shadow = false
	case m.primary == nil:
		d = denied(deny(ReasonNoRoute, m.why))
		d.Route = NoRoute
	default:
		rt := m.primary
		d.Route = rt.pattern
		if m.n == 0 && rt.Public || m.n > 0 && allPublic(&m) {
			d.Public = true
			d.Outcome, d.Reason, d.Status = DecisionAllowed, ReasonOK, http.StatusOK
			g.optionalToken(sh, r, start, &d)
			break
		}
		var deciding *route
		deciding, shadow = g.authorizeRoutes(sh, r, &m, start, &d)
		if deciding != nil {
			c = g.routeCounters[deciding.index]
			d.Route = deciding.pattern
		}
		d.WebSocket = d.Allowed() && g.webSocketAllowed(r, &m)
	}
	if d.Outcome == DecisionDenied && shadow {
		d.Outcome = DecisionShadowDenied
	}
	g.count(sh, c, &d, start)
	return d
}

func allPublic(m *matched) bool {
	if !m.primary.Public {
		return false
	}
	for _, o := range m.others[:m.n] {
		if !o.Public {
			return false
		}
	}
	return true
}

// authorizeRoutes decides a request that matched at least one route that is not
// public: a verified token with the scopes of every such route. It returns the route
// that decided a denial (the first that the token fails; nil when allowed) and whether
// the denial is a shadow one (every route it fails is a shadow route).
func (g *Gate) authorizeRoutes(sh int, r *http.Request, m *matched, start time.Time, d *Decision) (*route, bool) {
	var firstGuarded *route
	shadowAll := true
	for rt := range m.routesSeq() {
		if rt.Public {
			continue
		}
		if firstGuarded == nil {
			firstGuarded = rt
		}
		shadowAll = shadowAll && rt.Shadow
	}
	claims := g.token(sh, r, start, d)
	if claims == nil {
		return firstGuarded, g.cfg.Shadow || shadowAll
	}
	var failing *route
	shadowFail := true
	for rt := range m.routesSeq() {
		if rt.Public || satisfies(claims.Scopes, rt.Scopes, rt.AnyScopes) {
			continue
		}
		if failing == nil {
			failing = rt
		}
		shadowFail = shadowFail && rt.Shadow
	}
	if failing != nil {
		scope := failing.scope
		if m.n > 0 {
			scope = neededScopes(m)
		}
		*d = keep(d, denied(deny(ReasonInsufficientScope, fmt.Errorf("the token's scopes do not include %q", scope))))
		d.TokenSent, d.Claims, d.Scope = true, claims, scope
		return failing, g.cfg.Shadow || shadowFail
	}
	d.Claims = claims
	d.Outcome, d.Reason, d.Status = DecisionAllowed, ReasonOK, http.StatusOK
	g.observeAge(sh, claims, start)
	return nil, false
}

// routesSeq is the matched routes, the primary's first, without allocating.
func (m *matched) routesSeq() func(yield func(*route) bool) {
	return func(yield func(*route) bool) {
		if m.primary != nil && !yield(m.primary) {
			return
		}
		for _, o := range m.others[:m.n] {
			if !yield(o) {
				return
			}
		}
	}
}

// neededScopes is the scope parameter of a challenge for a request that matched
// several routes: what suffices for all of them, each scope once.
func neededScopes(m *matched) string {
	var out []string
	for rt := range m.routesSeq() {
		if rt.Public || rt.scope == "" {
			continue
		}
		for s := range strings.SplitSeq(rt.scope, " ") {
			if !contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return strings.Join(out, " ")
}

// authorize decides one requirement (Require): a verified token with all of all and one
// of anyOf.
func (g *Gate) authorize(sh int, r *http.Request, all, anyOf []string, scope string, start time.Time, d *Decision) {
	claims := g.token(sh, r, start, d)
	if claims == nil {
		return
	}
	d.Claims = claims
	if !satisfies(claims.Scopes, all, anyOf) {
		*d = keep(d, denied(deny(ReasonInsufficientScope, fmt.Errorf("the token's scopes do not include %q", scope))))
		d.TokenSent, d.Claims, d.Scope = true, claims, scope
		return
	}
	d.Outcome, d.Reason, d.Status = DecisionAllowed, ReasonOK, http.StatusOK
	g.observeAge(sh, claims, start)
}

func (g *Gate) observeAge(sh int, claims *Claims, start time.Time) {
	if claims.IssuedAt.IsZero() {
		return
	}
	now := start
	if g.clock != nil {
		now = g.clock()
	}
	if o := g.tokenAge[claims.Issuer]; o != nil {
		o.observe(sh, now.Sub(claims.IssuedAt).Seconds())
	}
}

// optionalToken verifies the token of a request on a public route, if it has one: a
// valid one gives d its claims; anything else leaves d allowed without claims.
func (g *Gate) optionalToken(sh int, r *http.Request, start time.Time, d *Decision) {
	var probe Decision
	if claims := g.token(sh, r, start, &probe); claims != nil {
		d.Claims = claims
	}
	d.TokenSent = probe.TokenSent || probe.Claims != nil
}

// checkRequest runs the request checks of WithRequestCheck.
func (g *Gate) checkRequest(r *http.Request) *Error {
	for _, check := range g.requestChecks {
		if err := check(r); err != nil {
			var e *Error
			if errors.As(err, &e) {
				return e
			}
			return deny(ReasonMalformedRequest, err)
		}
	}
	return nil
}

// token extracts the request's token and returns its verified claims, from the cache
// or by verifying it. On failure it writes the denial into d (keeping its route) and
// returns nil.
func (g *Gate) token(sh int, r *http.Request, start time.Time, d *Decision) *Claims {
	now := start
	if g.clock != nil {
		now = g.clock()
	}
	token, e := extract(r, g.cfg.Tokens.Cookie, g.cfg.Tokens.Query)
	if e != nil {
		*d = keep(d, denied(e))
		d.TokenSent = true
		return nil
	}
	if token == "" {
		*d = keep(d, denied(deny(ReasonMissingToken, nil)))
		return nil
	}
	d.TokenSent = true

	var removals uint64
	if g.removals != nil {
		// Read before verifying: a key removed during the verification makes the
		// entry stale at once rather than never.
		removals = g.removals()
	}
	if g.cache != nil {
		cl, expired := g.cache.get(token, now, removals)
		switch {
		case expired:
			g.metrics.hit.inc(sh)
			*d = keep(d, denied(deny(ReasonExpired, errors.New("the cached token expired"))))
			d.TokenSent = true
			return nil
		case cl != nil:
			g.metrics.hit.inc(sh)
			d.Cached = true
			return cl
		default:
			g.metrics.miss.inc(sh)
		}
	}
	if e := checkSyntax(token); e != nil {
		*d = keep(d, denied(e))
		d.TokenSent = true
		return nil
	}
	var key [32]byte
	if g.rejects != nil {
		key = sha256.Sum256([]byte(token))
		if e := g.rejects.get(key, now, removals); e != nil {
			*d = keep(d, denied(e))
			d.TokenSent, d.Cached = true, true
			return nil
		}
	}
	cl, e := g.verifier.verify(r.Context(), token)
	if e != nil {
		if g.rejects != nil && cacheable(e.Reason) {
			g.rejects.put(key, e, now, removals)
		}
		*d = keep(d, denied(e))
		d.TokenSent, d.Claims = true, cl
		return nil
	}
	if g.cache != nil {
		cl = g.cache.put(token, cl, removals, now)
	}
	return cl
}

// keep carries the route fields of d into a new denial.
func keep(d *Decision, n Decision) Decision {
	n.Route, n.Public = d.Route, d.Public
	return n
}

func denied(e *Error) Decision {
	return Decision{Outcome: DecisionDenied, Reason: e.Reason, Status: responses[e.Reason].status, Err: e}
}

func satisfies(scopes, all, anyOf []string) bool {
	for _, need := range all {
		if !contains(scopes, need) {
			return false
		}
	}
	if len(anyOf) == 0 {
		return true
	}
	for _, s := range anyOf {
		if contains(scopes, s) {
			return true
		}
	}
	return false
}

func (g *Gate) count(sh int, c *counters, d *Decision, start time.Time) {
	i := 1
	switch d.Outcome {
	case DecisionAllowed:
		i = 0
	case DecisionShadowDenied:
		i = 2
	}
	g.metrics.count(sh, c, i, d.Reason, time.Since(start))
}

// Handler enforces the route table in front of next. An allowed request reaches next
// with its claims in the context (ClaimsFrom) and its Decision (DecisionFrom); a denied
// one never does, and gets the RFC 6750 answer; in shadow mode it reaches next without
// claims. Every request carries an X-Request-Id on to next, the client's when it is
// well formed, else one Handler made; a denial answers with it, and its log line names
// it. A request asking to switch protocols (Upgrade) reaches next without that ask
// unless it is a WebSocket handshake on routes that allow it (Decision.WebSocket): a
// switch to h2c would open a tunnel whose requests nobody decides on.
func (g *Gate) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ensureRequestID(w, r)
		d := g.Decide(r)
		g.logDecision(r, d)
		if !d.Forward() {
			g.respond(w, r, d)
			return
		}
		if !d.WebSocket {
			dropUpgrade(r.Header)
		}
		r = r.WithContext(context.WithValue(r.Context(), decisionKey{}, &d))
		next.ServeHTTP(w, r)
	})
}

// Require returns a middleware for a service that routes itself: the request needs a
// valid token with every one of scopes. Behind Handler it checks the claims Handler
// verified; on its own it verifies the token first. Its decisions are counted under the
// pattern that ServeMux matched (r.Pattern). It panics if a scope is not a valid scope
// token (RFC 6749 §3.3), at wiring time, like ServeMux.Handle.
func (g *Gate) Require(scopes ...string) func(http.Handler) http.Handler {
	return g.require(scopes, nil)
}

// RequireAny is Require with at least one of scopes.
func (g *Gate) RequireAny(scopes ...string) func(http.Handler) http.Handler {
	if len(scopes) == 0 {
		panic("middleware: RequireAny needs at least one scope")
	}
	return g.require(nil, scopes)
}

func (g *Gate) require(all, anyOf []string) func(http.Handler) http.Handler {
	for _, s := range append(append([]string(nil), all...), anyOf...) {
		if !validScope(s) {
			panic(fmt.Sprintf("middleware: %q is not a valid scope token", s))
		}
	}
	needed := append([]string(nil), all...)
	if len(anyOf) > 0 {
		needed = append(needed, anyOf[0])
	}
	scope := strings.Join(needed, " ")
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ensureRequestID(w, r)
			start := time.Now()
			shp := acquireShard()
			sh := *shp
			releaseShard(shp)
			pattern := r.Pattern
			if pattern == "" {
				pattern = NoRoute
			}
			var d Decision
			d.Route = pattern
			if claims, ok := ClaimsFrom(r.Context()); ok {
				// Handler counted this request already; count only a denial here.
				if satisfies(claims.Scopes, all, anyOf) {
					next.ServeHTTP(w, r)
					return
				}
				d = keep(&d, denied(deny(ReasonInsufficientScope, fmt.Errorf("the token's scopes do not include %q", scope))))
				d.TokenSent, d.Claims, d.Scope = true, claims, scope
			} else {
				g.authorize(sh, r, all, anyOf, scope, start, &d)
			}
			if d.Outcome == DecisionDenied && g.cfg.Shadow {
				d.Outcome = DecisionShadowDenied
			}
			g.count(sh, g.requireCountersFor(pattern), &d, start)
			g.logDecision(r, d)
			switch {
			case d.Allowed():
				if _, ok := ClaimsFrom(r.Context()); !ok {
					r = r.WithContext(WithClaims(r.Context(), d.Claims))
				}
				next.ServeHTTP(w, r)
			case d.Forward():
				next.ServeHTTP(w, r)
			default:
				g.respond(w, r, d)
			}
		})
	}
}

func (g *Gate) requireCountersFor(pattern string) *counters {
	if c, ok := g.requireCounters.Load(pattern); ok {
		return c.(*counters)
	}
	c, _ := g.requireCounters.LoadOrStore(pattern, &counters{route: pattern})
	return c.(*counters)
}

// logDecision writes one line per denial (Info) and per allowed request (Debug), with
// what an operator needs and nothing a client sent verbatim: never a token, and the
// subject only as a hash.
func (g *Gate) logDecision(r *http.Request, d Decision) {
	level := slog.LevelInfo
	if d.Allowed() {
		level = slog.LevelDebug
	}
	ctx := r.Context()
	if !g.log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("decision", d.Outcome),
		slog.String("reason", string(d.Reason)),
		slog.String("route", d.Route),
		slog.String("method", truncate(r.Method, 32)),
		// The path without its query (where tokens and personal data travel), cut
		// short: a client chooses it.
		slog.String("path", truncate(r.URL.Path, 256)),
		slog.String("client", r.RemoteAddr),
	}
	if id := r.Header.Get(RequestIDHeader); id != "" {
		attrs = append(attrs, slog.String("request_id", id))
	}
	var e *Error
	if errors.As(d.Err, &e) && e.Issuer != "" && d.Claims == nil {
		attrs = append(attrs, slog.String("issuer", e.Issuer))
	}
	if d.Claims != nil {
		attrs = append(attrs, slog.String("issuer", d.Claims.Issuer), slog.String("subject_hash", hashSubject(d.Claims.Subject)))
		if d.Claims.ClientID != "" {
			attrs = append(attrs, slog.String("client_id", truncate(d.Claims.ClientID, 128)))
		}
	}
	if e != nil && e.KeyID != "" {
		attrs = append(attrs, slog.String("kid", truncate(e.KeyID, 64)))
	}
	switch {
	case d.Reason == ReasonNoRoute && e != nil && e.Err != nil:
		// Why nothing matched: an encoded slash, a ';', a fragment, CONNECT.
		attrs = append(attrs, slog.String("error", truncate(e.Err.Error(), 256)))
	case d.Err != nil && d.Reason != ReasonMissingToken && d.Reason != ReasonNoRoute:
		attrs = append(attrs, slog.String("error", truncate(d.Err.Error(), 256)))
	}
	if d.Cached {
		attrs = append(attrs, slog.Bool("cached", true))
	}
	g.log.LogAttrs(ctx, level, "request "+d.Outcome, attrs...)
}

// hashSubject identifies a subject across log lines without writing it down.
func hashSubject(sub string) string {
	sum := sha256.Sum256([]byte(sub))
	return hex.EncodeToString(sum[:8])
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
