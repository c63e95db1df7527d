package middleware

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokengate/tokengate/dpop"
	"github.com/tokengate/tokengate/internal/joined"
	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/replay"
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

	routeCounters   []*counters // by route index
	noRouteCounters *counters
	requireCounters requireCounters
	tokenAge        map[string]*shardedHistogram
	challengeRealm  string
	requestChecks   []func(*http.Request) error

	// dpop checks DPoP proofs; nil when no issuer accepts DPoP-bound tokens.
	dpop *dpop.Verifier
	// replay records single uses (DPoP proof jtis, single-use tokens), counted; nil
	// when nothing needs it.
	replay replay.Store
	// dpopChallenge is the DPoP challenge: dpopRealm, then algs; bearerChallenge says
	// whether a Bearer challenge goes with it (not when every issuer requires DPoP).
	dpopRealm, dpopChallenge string
	bearerChallenge          bool

	// metadata is the protected-resource metadata served at metadataPath; nil without
	// Config.Resource.
	metadata     []byte
	metadataPath string

	// opaque is the policy of the issuer that takes opaque tokens, nil for none;
	// introspectors are the Introspectors the Gate made, and closes.
	opaque        *issuerPolicy
	introspectors []*Introspector

	// hasRules says some issuer or route has rules (Issuer.Rules, Route.Rules).
	hasRules bool
}

// New validates cfg, reporting every problem at once (each a *FieldError or a
// *jwks.ConfigError naming its Go field, such as Issuers[0].Audiences), registers the
// metrics and, unless opts.KeySource is given, starts loading the issuers' keys.
func New(ctx context.Context, cfg Config, opts Options) (*Gate, error) {
	cfg = cfg.withDefaults()
	routes, err := check(cfg, opts.KeySource == nil)
	if err != nil {
		return nil, err
	}
	reg := opts.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("middleware: registering metrics: %w", err)
	}

	g := &Gate{
		cfg:             cfg,
		routes:          routes,
		metrics:         m,
		log:             opts.Logger,
		clock:           opts.Now,
		writeErr:        opts.ErrorWriter,
		keys:            opts.KeySource,
		tokenAge:        map[string]*shardedHistogram{},
		challengeRealm:  `Bearer realm="` + cfg.Realm + `"` + resourceParam(cfg.Resource),
		requestChecks:   opts.RequestChecks,
		bearerChallenge: true,
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
		g.group, err = jwks.NewGroup(ctx, keyConfigs(cfg), jwks.Options{Logger: g.log, Metrics: m.keys, Now: opts.Now})
		if err != nil {
			return nil, err
		}
		g.keys = g.group
	}
	if err := g.senderConstraints(cfg, opts, reg); err != nil {
		g.Close()
		return nil, err
	}
	if cfg.Resource.Identifier != "" {
		var algs []string
		if g.dpop != nil {
			algs = g.dpop.Algorithms()
		}
		g.metadata, g.metadataPath = metadataDocument(cfg, algs), cfg.Resource.path()
	}
	g.verifier = newVerifier(cfg, g.keys, now)
	g.verifier.checks = opts.ClaimsChecks
	if err := g.introspection(cfg, opts, reg); err != nil {
		g.Close()
		return nil, err
	}
	if !cfg.Tokens.NoCache {
		g.cache = newTokenCache(cfg.Tokens.CacheEntries, cfg.Tokens.CacheBytes, cfg.Tokens.Leeway, cfg.Tokens.KeepClaims)
		g.rejects = newRejectCache(cfg.Tokens.CacheEntries, cfg.Tokens.CacheBytes/8)
	}
	for _, rt := range routes.routes {
		g.routeCounters = append(g.routeCounters, &counters{route: rt.pattern})
		// Series at zero, so that rates exist before the first request.
		m.counter(DecisionAllowed, ReasonOK, rt.pattern)
	}
	g.noRouteCounters = &counters{route: NoRoute}
	for _, iss := range cfg.Issuers {
		g.tokenAge[iss.Issuer] = m.tokenAge(iss.Issuer)
		g.hasRules = g.hasRules || len(iss.Rules) > 0
	}
	for _, rt := range cfg.Routes {
		g.hasRules = g.hasRules || len(rt.Rules) > 0
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
		errs = append(errs, issuerErrors(jwks.Validate(keyConfigs(cfg)))...)
	}
	if cfg.dpopOn() {
		if _, err := dpop.New(dpopConfig(cfg), dpop.Options{}); err != nil {
			errs = append(errs, dpopErrors(err)...)
		}
	}
	return routes, errors.Join(errs...)
}

// resourceParam is the resource_metadata parameter of every challenge (RFC 9728 §5.1),
// "" without a resource.
func resourceParam(r Resource) string {
	if r.Identifier == "" {
		return ""
	}
	return `, resource_metadata="` + r.metadataURL() + `"`
}

// dpopConfig is the proof checker's configuration.
func dpopConfig(cfg Config) dpop.Config {
	return dpop.Config{
		ExternalURL: cfg.ExternalURL,
		Algorithms:  cfg.Tokens.DPoP.Algorithms,
		MaxAge:      cfg.Tokens.DPoP.MaxAge,
		// A proof may come from the future as far as a token may (DESIGN, precise
		// points); dpop's zero is its default, its negative none.
		Leeway:      cmp.Or(cfg.Tokens.Leeway, -1),
		NonceSecret: cfg.Tokens.DPoP.NonceSecret,
	}
}

// dpopErrors names dpop's problems by their path in Config.
func dpopErrors(err error) []error {
	fields := map[string]string{
		"ExternalURL": "ExternalURL", "Algorithms": "Tokens.DPoP.Algorithms", "MaxAge": "Tokens.DPoP.MaxAge",
		"Leeway": "Tokens.Leeway", "NonceSecret": "Tokens.DPoP.NonceSecret",
	}
	var out []error
	for _, e := range joined.Flatten(err) {
		var ce *dpop.ConfigError
		if errors.As(e, &ce) {
			out = append(out, &FieldError{Field: cmp.Or(fields[ce.Field], "Tokens.DPoP."+ce.Field), Problem: ce.Problem})
			continue
		}
		out = append(out, e)
	}
	return out
}

// senderConstraints sets up what DPoP-bound and single-use tokens need: the replay
// store, counted, and the proof checker.
func (g *Gate) senderConstraints(cfg Config, opts Options, reg prometheus.Registerer) error {
	dpopOn := cfg.dpopOn()
	if !dpopOn && !cfg.singleUse() {
		return nil
	}
	store := opts.Replay
	if store == nil {
		store = replay.NewMemory(0, opts.Now)
	}
	m, err := replay.NewMetrics(reg)
	if err != nil {
		return fmt.Errorf("middleware: registering metrics: %w", err)
	}
	g.replay = m.Instrument(store)
	if !dpopOn {
		return nil
	}
	g.dpop, err = dpop.New(dpopConfig(cfg), dpop.Options{Replay: g.replay, Now: opts.Now})
	if err != nil {
		return errors.Join(dpopErrors(err)...)
	}
	g.dpopRealm = `DPoP realm="` + cfg.Realm + `"` + resourceParam(cfg.Resource)
	g.dpopChallenge = g.dpopRealm + `, algs="` + strings.Join(g.dpop.Algorithms(), " ") + `"`
	g.bearerChallenge = false
	for _, iss := range cfg.Issuers {
		if iss.DPoP != DPoPRequired {
			g.bearerChallenge = true
		}
	}
	return nil
}

// issuerErrors names jwks's problems by their path in Config: jwks calls a field of its
// i-th configuration "[i].JWKSURI", which is Issuers[i].JWKSURI here.
func issuerErrors(err error) []error {
	errs := joined.Flatten(err)
	for _, e := range errs {
		var ce *jwks.ConfigError
		if errors.As(e, &ce) {
			ce.Field = "Issuers" + ce.Field
		}
	}
	return errs
}

func keyConfigs(cfg Config) []jwks.Config {
	out := make([]jwks.Config, len(cfg.Issuers))
	for i, iss := range cfg.Issuers {
		out[i] = iss.Config
	}
	return out
}

// introspection gives the policies of issuers with Introspection on their
// Introspector: the one Options.Introspectors holds for the issuer, or one of the
// Gate's own.
func (g *Gate) introspection(cfg Config, opts Options, reg prometheus.Registerer) error {
	for _, iss := range cfg.Issuers {
		if !iss.Introspection.on() {
			continue
		}
		in := opts.Introspectors[iss.Issuer]
		if in == nil {
			var err error
			if in, err = NewIntrospector(iss, reg); err != nil {
				return err
			}
			g.introspectors = append(g.introspectors, in)
		}
		p := g.verifier.issuers[iss.Issuer]
		p.introspector, p.always = in, iss.Introspection.Always
		if iss.Introspection.OpaqueTokens {
			g.opaque = p
		}
	}
	return nil
}

// Close stops the goroutines of the key sets and the Introspectors the Gate built.
func (g *Gate) Close() {
	if g.group != nil {
		g.group.Close()
	}
	for _, in := range g.introspectors {
		in.Close()
	}
}

// Ready reports whether every issuer's keys were loaded at least once: until then a
// request with a token is answered 503 keys_unavailable. A readiness probe's answer.
func (g *Gate) Ready() bool { return g.keys.Ready() }

// WaitReady blocks until Ready, or until ctx ends, and returns ctx's error then: for a
// service that should not take traffic before it can verify tokens.
func (g *Gate) WaitReady(ctx context.Context) error { return g.keys.WaitReady(ctx) }

// KeySets returns the key sets the Gate built, for their status and metrics; nil with
// WithKeySource, whose source the caller holds already.
func (g *Gate) KeySets() *jwks.Group { return g.group }
