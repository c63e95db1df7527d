package jwks

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/tokengate/tokengate/internal/clip"
)

// Options are the collaborators of a Set that are not per-issuer configuration. The zero
// value works.
type Options struct {
	// Logger receives refresh failures, skipped keys and warnings. It defaults to
	// slog.Default(). No line ever holds a token.
	Logger *slog.Logger

	// Metrics counts refreshes and keys. nil counts nothing. Build it once with
	// NewMetrics and pass the same value to every Set.
	Metrics *Metrics

	// Now is the clock of the unknown-kid rate limit, the negative cache and the
	// timestamps. It defaults to time.Now.
	Now func() time.Time
}

// Set is the key set of one trusted issuer: fetched from its JWKS (or a file), cached,
// refreshed in the background, and looked up on the request path without a lock or an
// allocation for a known kid.
//
// A Set owns one background goroutine, plus at most one fetch goroutine at a time; both
// stop when the context given to New is cancelled or Close is called.
type Set struct {
	cfg     Config
	allowed algSet
	client  *http.Client
	bearer  *bearerTransport // nil without BearerTokenFile
	log     *slog.Logger
	metrics *Metrics
	now     func() time.Time

	st      *storage
	kf      keyfunc.Keyfunc
	lookups sync.Pool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	limiter *rate.Limiter
	neg     negCache

	ready     atomic.Bool
	readyOnce sync.Once
	readyCh   chan struct{}

	mu       sync.Mutex // guards the fields below
	inflight *fetch
	closed   bool
	jwksURI  string // discovered or configured
	etag     string
	bodySum  [sha256.Size]byte
	file     fileStamp
	maxAge   time.Duration
	hasAge   bool
	lastOK   time.Time
	lastErr  error
}

// fetch is one load of the key set in flight; callers that need it share it.
type fetch struct {
	done chan struct{}
	err  error
}

// fileStamp tells whether a key file changed since it was last read.
type fileStamp struct {
	mod  time.Time
	size int64
}

// lookup carries what one key look-up needs through keyfunc without allocating: a
// context that forwards to the request's context, and the keyfunc closure built over it
// once. Lookups are pooled; each is used by one request at a time.
type lookup struct {
	ctx forwardContext
	kf  jwt.Keyfunc
}

// forwardContext is a context.Context whose target is swapped per request.
type forwardContext struct{ context.Context }

// New validates cfg and starts loading the issuer's keys in the background. It returns
// at once: use WaitReady to wait for the first load, Ready to ask. Every problem in cfg
// comes back at once, each a *ConfigError naming its field. The Set's goroutines stop
// when ctx is cancelled or Close is called.
func New(ctx context.Context, cfg Config, opts Options) (*Set, error) {
	cfg = cfg.withDefaults()
	allowed, roots, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	return newSet(ctx, cfg, allowed, roots, opts)
}

// newSet starts a Set from a validated configuration.
func newSet(ctx context.Context, cfg Config, allowed algSet, roots *x509.CertPool, opts Options) (*Set, error) {
	s := &Set{
		cfg:     cfg,
		allowed: allowed,
		log:     opts.Logger,
		metrics: opts.Metrics,
		now:     opts.Now,
		st:      newStorage(),
		limiter: rate.NewLimiter(rate.Every(cfg.Refresh.UnknownKIDEvery), 1),
		neg:     negCache{ttl: cfg.Refresh.UnknownKIDEvery, max: 4096},
		readyCh: make(chan struct{}),
		jwksURI: cfg.JWKSURI,
	}
	base := newTransport(cfg.HTTPTimeout, roots)
	var transport http.RoundTripper = base
	if cfg.BearerTokenFile != "" {
		// Issuer's origin only when discovery runs there: with JWKSURI nothing is
		// fetched from it, and an issuer may be a public host (a managed cluster's).
		origins := []string{cfg.JWKSURI, cfg.IssuerCheckURL}
		if cfg.JWKSURI == "" {
			origins = append(origins, cfg.Issuer)
		}
		s.bearer = newBearerTransport(base, cfg.BearerTokenFile, origins...)
		transport = s.bearer
	}
	s.client = newHTTPClient(cfg.HTTPTimeout, transport)
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("issuer", cfg.Issuer)
	if s.now == nil {
		s.now = time.Now
	}
	s.st.onMiss = s.onMiss
	var err error
	s.kf, err = keyfunc.New(keyfunc.Options{Ctx: ctx, Storage: s.st})
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	s.lookups.New = func() any {
		l := &lookup{}
		l.kf = s.kf.KeyfuncCtx(&l.ctx)
		return l
	}
	if cfg.InsecureHTTP {
		s.log.Warn("insecureHTTP is set: keys may be fetched over plain http, where anyone on the path can replace them; never use this in production")
	}
	s.metrics.init(cfg.Issuer)

	s.ctx, s.cancel = context.WithCancel(ctx)
	s.wg.Add(1)
	go s.run()
	return s, nil
}

// Issuer is the issuer this set belongs to.
func (s *Set) Issuer() string { return s.cfg.Issuer }

// Ready reports whether keys were loaded at least once. It stays true while later
// fetches fail, because the last good keys stay in use.
func (s *Set) Ready() bool { return s.ready.Load() }

// WaitReady blocks until the first load succeeded, ctx is done, or the Set is closed.
func (s *Set) WaitReady(ctx context.Context) error {
	// Keys already loaded win over a ctx that is already done (a select would pick
	// either at random, and call a loaded issuer unavailable).
	select {
	case <-s.readyCh:
		return nil
	default:
	}
	select {
	case <-s.readyCh:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		last := s.lastErr
		s.mu.Unlock()
		if last != nil {
			return fmt.Errorf("%w: %w (last attempt: %w)", ErrKeysUnavailable, ctx.Err(), last)
		}
		return fmt.Errorf("%w: %w", ErrKeysUnavailable, ctx.Err())
	case <-s.ctx.Done():
		return ErrClosed
	}
}

// Key returns the key that verifies token, for use as (or inside) a jwt.Keyfunc. ctx is
// the request's context: it bounds the wait for a refresh that an unknown kid triggers,
// together with Refresh.UnknownKIDWait.
//
// The token's alg must be in the issuer's allowlist and fit the key: its type, its
// curve and its own alg. A token with a kid gets the key with that kid, looked up through
// keyfunc; a token without one gets the only key of the set that fits its alg, or none.
// Errors: ErrAlgorithm, ErrInvalidKID, ErrUnknownKey, ErrKeysUnavailable.
func (s *Set) Key(ctx context.Context, token *jwt.Token) (any, error) {
	alg := algBit(token.Method.Alg())
	if alg == 0 || !s.allowed.has(alg) {
		return nil, ErrAlgorithm
	}
	rawKID, hasKID := token.Header["kid"]
	if !hasKID {
		if key := s.st.load().onlyKeyFor(alg); key != nil {
			return key, nil
		}
		if !s.Ready() {
			return nil, ErrKeysUnavailable
		}
		return nil, ErrUnknownKey
	}
	kid, ok := rawKID.(string)
	if !ok || !validKID(kid) {
		return nil, ErrInvalidKID
	}

	if ctx == nil {
		ctx = context.Background()
	}
	l := s.lookups.Get().(*lookup)
	l.ctx.Context = ctx
	key, err := l.kf(token)
	l.ctx.Context = nil
	s.lookups.Put(l)

	switch {
	case err == nil:
	case errors.Is(err, ErrUnknownKey), errors.Is(err, ErrKeysUnavailable), errors.Is(err, ErrClosed):
		return nil, err
	case errors.Is(err, keyfunc.ErrKeyfunc):
		// keyfunc refuses a key whose own alg differs from the token's.
		return nil, fmt.Errorf("%w: %w", ErrAlgorithm, err)
	default:
		return nil, err
	}
	if !keyAlgs(key).has(alg) {
		return nil, ErrAlgorithm
	}
	return key, nil
}

// Keyfunc returns a jwt.Keyfunc that calls Key with ctx.
func (s *Set) Keyfunc(ctx context.Context) jwt.Keyfunc {
	return func(token *jwt.Token) (any, error) { return s.Key(ctx, token) }
}

// Removals counts the refreshes that took a key away from the set: removed by the
// issuer (revoked) or replaced under its kid. A cache of verified tokens compares it
// with the count when it verified a token, so that nothing a revoked key verified stays
// allowed. Adding keys does not count.
func (s *Set) Removals() uint64 { return s.st.removals.Load() }

// KeyIDs lists the kids of the keys the set holds now, in the order the issuer
// published them, for diagnostics (the check command names them when a token's kid is
// unknown). Keys without a kid are left out. The keys themselves stay inside the set: a
// key can only enter it through a fetch and its checks.
func (s *Set) KeyIDs() []string {
	var kids []string
	for _, k := range s.st.load().all {
		if kid := k.Marshal().KID; kid != "" {
			kids = append(kids, kid)
		}
	}
	return kids
}

// Refresh fetches the keys now, sharing a fetch already in flight, and returns its
// outcome. A failed fetch keeps the last good keys.
func (s *Set) Refresh(ctx context.Context) error {
	f := s.startFetch(triggerScheduled)
	if f == nil {
		return ErrClosed
	}
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Status is a Set's state for operators.
type Status struct {
	Issuer      string
	Ready       bool
	Keys        int
	JWKSURI     string
	LastSuccess time.Time // zero until the first success
	LastError   error     // of the last fetch; nil when it succeeded
}

// Status returns the Set's state.
func (s *Set) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	uri := s.jwksURI
	switch {
	case s.cfg.JWKSFile != "":
		uri = "file:" + s.cfg.JWKSFile
	case s.cfg.JWKS != "":
		uri = "inline"
	}
	return Status{
		Issuer:      s.cfg.Issuer,
		Ready:       s.Ready(),
		Keys:        len(s.st.load().all),
		JWKSURI:     uri,
		LastSuccess: s.lastOK,
		LastError:   s.lastErr,
	}
}

// Close stops the Set's goroutines and waits for them. Look-ups of known kids keep
// working on the last keys; unknown kids no longer trigger fetches.
func (s *Set) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	s.client.CloseIdleConnections()
}

// run is the background loop: load at start, then refresh on schedule, backing off
// after failures.
func (s *Set) run() {
	defer s.wg.Done()
	trigger := triggerStartup
	backoff := time.Second
	checkIssuer := s.cfg.IssuerCheckURL != ""
	for {
		f := s.startFetch(trigger)
		if f == nil {
			return
		}
		select {
		case <-f.done:
		case <-s.ctx.Done():
			return
		}
		if checkIssuer && f.err == nil {
			// After the first fetch that loaded keys, so that it never delays them, nor
			// the retry of a fetch that failed (a server not yet reachable at start),
			// when it would most likely fail too and say nothing about the issuer.
			checkIssuer = false
			s.checkIssuer()
		}
		var wait time.Duration
		if f.err != nil {
			wait = backoff
			backoff = min(backoff*2, s.cfg.Refresh.Min)
		} else {
			backoff = time.Second
			wait = s.interval()
		}
		if s.Ready() {
			trigger = triggerScheduled
		}
		timer := time.NewTimer(jitter(wait))
		select {
		case <-timer.C:
		case <-s.ctx.Done():
			timer.Stop()
			return
		}
	}
}

// checkIssuer compares the issuer of the document at IssuerCheckURL with the configured
// one, and logs what it finds: an error when they differ, since every token would then
// be refused (reason issuer).
func (s *Set) checkIssuer() {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.HTTPTimeout)
	defer cancel()
	u := s.cfg.IssuerCheckURL
	r, err := get(ctx, s.client, u, "", s.cfg.MaxResponseBytes)
	if err != nil {
		if s.ctx.Err() == nil {
			s.log.Warn("the issuer could not be checked against the server's discovery document", "url", u, "error", withheldHint(err, s.bearer, u))
		}
		return
	}
	var meta struct {
		Issuer *string `json:"issuer"`
	}
	switch {
	case json.Unmarshal(r.body, &meta) != nil || meta.Issuer == nil:
		s.log.Warn("the issuer could not be checked: the server's discovery document names none", "url", u)
	case *meta.Issuer != s.cfg.Issuer:
		s.log.Error("the configured issuer is not the one the server writes in its tokens' iss: every token will be refused (reason issuer); configure the issuer its discovery document names",
			"url", u, "configured", s.cfg.Issuer, "discovered", clip.String(*meta.Issuer, 200))
	default:
		s.log.Info("the issuer is the one the server's discovery document names", "url", u)
	}
}

// interval is the time to the next scheduled fetch: for a file, a short poll (reading
// a stat is cheap); for an inline key set, which never changes, Max; for a URL, the
// response's max-age within [Min, Max], else Max.
func (s *Set) interval() time.Duration {
	r := s.cfg.Refresh
	if s.cfg.JWKSFile != "" {
		return min(r.Min, 10*time.Second)
	}
	if s.cfg.JWKS != "" {
		return r.Max
	}
	s.mu.Lock()
	age, has := s.maxAge, s.hasAge
	s.mu.Unlock()
	if !has {
		return r.Max
	}
	return min(max(age, r.Min), r.Max)
}

// jitter takes up to a tenth off d, so that sidecars started together drift apart.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return d - time.Duration(rand.Int64N(int64(d)/10+1))
}

// startFetch returns the fetch in flight, or starts one. It returns nil once the Set is
// closed.
func (s *Set) startFetch(trigger string) *fetch {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	if s.inflight != nil {
		return s.inflight
	}
	return s.startLocked(trigger)
}

// budgetedFetch returns the fetch in flight, or starts one when the unknown-kid rate
// limit allows; nil when the budget is spent. ErrClosed once the Set is closed. The
// look, the limit and the start hold one lock: with a gap between the limiter's yes and
// the start, a second caller would find no fetch in flight, be refused by the limiter,
// and give up on a kid that the first caller's fetch was about to bring.
func (s *Set) budgetedFetch(trigger string) (*fetch, error) {
	now := s.now() // a caller's clock, never called under the lock
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.inflight != nil {
		return s.inflight, nil
	}
	if !s.limiter.AllowN(now, 1) {
		return nil, nil
	}
	return s.startLocked(trigger), nil
}

// startLocked starts a fetch; s.mu is held and no fetch is in flight.
func (s *Set) startLocked(trigger string) *fetch {
	f := &fetch{done: make(chan struct{})}
	s.inflight = f
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		// The fetch runs on the Set's context, not a caller's: a caller that gives up
		// must not cancel the fetch that other callers share.
		f.err = s.load(trigger)
		s.mu.Lock()
		s.inflight = nil
		s.mu.Unlock()
		if s.Ready() {
			// Only now, so that a Refresh after WaitReady starts a fetch of its own.
			s.readyOnce.Do(func() { close(s.readyCh) })
		}
		close(f.done)
	}()
	return f
}

// load fetches and installs the keys once, and records the outcome.
func (s *Set) load(trigger string) error {
	ctx, cancel := context.WithTimeout(s.ctx, 2*s.cfg.HTTPTimeout)
	defer cancel()
	result, parsed, err := s.fetchKeys(ctx)
	now := s.now()
	if err != nil {
		s.mu.Lock()
		s.lastErr = err
		s.mu.Unlock()
		if s.ctx.Err() != nil {
			return err // shutting down: not a failure of the issuer
		}
		s.metrics.refreshed(s.cfg.Issuer, resultError, trigger)
		if s.Ready() {
			s.log.Warn("fetching keys failed; the last good keys stay in use", "trigger", trigger, "keys", len(s.st.load().all), "error", err)
		} else {
			s.log.Error("fetching keys failed; tokens of this issuer get 503 until keys load", "trigger", trigger, "error", err)
		}
		return err
	}

	s.mu.Lock()
	s.lastErr = nil
	s.lastOK = now
	s.mu.Unlock()
	s.metrics.refreshed(s.cfg.Issuer, result, trigger)
	s.metrics.succeeded(s.cfg.Issuer, now)
	if result != resultUpdated {
		return nil
	}

	for _, sk := range parsed.skipped {
		s.log.Warn("key skipped", "kid", clip.String(sk.kid, 64), "index", sk.index, "reason", sk.reason, "detail", sk.detail)
	}
	_ = s.st.KeyReplaceAll(ctx, parsed.keys)
	s.neg.reset()
	s.metrics.loaded(s.cfg.Issuer, len(parsed.keys), parsed.skipped)
	if !s.ready.Swap(true) {
		s.log.Info("keys loaded", "keys", len(parsed.keys), "skipped", len(parsed.skipped), "source", s.Status().JWKSURI)
	}
	return nil
}

// fetchKeys reads the key set document and parses it. It says not_modified, with
// nothing parsed, when the server answered 304 or sent the same bytes again.
func (s *Set) fetchKeys(ctx context.Context) (string, parsedSet, error) {
	var body []byte
	if s.cfg.JWKS != "" {
		body = []byte(s.cfg.JWKS)
	} else if s.cfg.JWKSFile != "" {
		st, err := os.Stat(s.cfg.JWKSFile)
		if err != nil {
			return "", parsedSet{}, fmt.Errorf("%w: %w", ErrFetch, err)
		}
		stamp := fileStamp{mod: st.ModTime(), size: st.Size()}
		s.mu.Lock()
		same := stamp.mod.Equal(s.file.mod) && stamp.size == s.file.size && s.Ready()
		s.mu.Unlock()
		if same {
			return resultNotModified, parsedSet{}, nil
		}
		if st.Size() > s.cfg.MaxResponseBytes {
			return "", parsedSet{}, fmt.Errorf("%w: %s is %d bytes, over the cap of %d", ErrFetch, s.cfg.JWKSFile, st.Size(), s.cfg.MaxResponseBytes)
		}
		if body, err = os.ReadFile(s.cfg.JWKSFile); err != nil {
			return "", parsedSet{}, fmt.Errorf("%w: %w", ErrFetch, err)
		}
		s.mu.Lock()
		s.file = stamp
		s.mu.Unlock()
	} else {
		s.mu.Lock()
		uri, etag := s.jwksURI, s.etag
		s.mu.Unlock()
		if uri == "" {
			var err error
			if uri, err = discover(ctx, s.client, s.cfg.Issuer, s.cfg.InsecureHTTP, s.cfg.MaxResponseBytes); err != nil {
				return "", parsedSet{}, err
			}
			s.mu.Lock()
			s.jwksURI = uri
			s.mu.Unlock()
		}
		if !s.Ready() {
			etag = "" // nothing to compare a 304 with
		}
		r, err := get(ctx, s.client, uri, etag, s.cfg.MaxResponseBytes)
		if err != nil {
			err = withheldHint(err, s.bearer, uri)
			var se *StatusError
			if errors.As(err, &se) && (se.Code == http.StatusNotFound || se.Code == http.StatusGone) && s.cfg.JWKSURI == "" {
				// The jwks_uri moved: discover again next time.
				s.mu.Lock()
				s.jwksURI = ""
				s.mu.Unlock()
			}
			return "", parsedSet{}, err
		}
		s.mu.Lock()
		s.maxAge, s.hasAge = r.maxAge, r.hasMaxAge
		s.etag = r.etag
		s.mu.Unlock()
		if r.notModified {
			return resultNotModified, parsedSet{}, nil
		}
		body = r.body
	}

	sum := sha256.Sum256(body)
	s.mu.Lock()
	same := bytes.Equal(sum[:], s.bodySum[:]) && s.Ready()
	s.mu.Unlock()
	if same {
		return resultNotModified, parsedSet{}, nil
	}
	parsed, err := parseJWKS(body, s.allowed, s.cfg.MaxKeys)
	if err != nil {
		for _, sk := range parsed.skipped {
			s.log.Warn("key skipped", "kid", clip.String(sk.kid, 64), "index", sk.index, "reason", sk.reason, "detail", sk.detail)
		}
		return "", parsedSet{}, err
	}
	s.mu.Lock()
	s.bodySum = sum
	s.mu.Unlock()
	return resultUpdated, parsed, nil
}

// onMiss handles a kid that the set lacks (docs/standards.md D5, X21): it waits for a
// fetch already in flight, or starts one when the rate limit allows, for no longer than
// Refresh.UnknownKIDWait or ctx; a kid still unknown afterwards is remembered for a
// while so that repeating it costs nothing.
func (s *Set) onMiss(ctx context.Context, kid string) (jwkset.JWK, error) {
	if s.neg.contains(kid, s.now()) {
		return jwkset.JWK{}, s.missErr()
	}
	f, err := s.budgetedFetch(triggerUnknownKID)
	if err != nil {
		return jwkset.JWK{}, err
	}
	if f == nil {
		// A fetch may have finished since the first look.
		if k, ok := s.st.readCached(kid); ok {
			return k, nil
		}
		s.neg.add(kid, s.now())
		return jwkset.JWK{}, s.missErr()
	}
	timer := time.NewTimer(s.cfg.Refresh.UnknownKIDWait)
	defer timer.Stop()
	select {
	case <-f.done:
	case <-ctx.Done():
		return jwkset.JWK{}, fmt.Errorf("%w: gave up waiting for a key refresh: %w", s.missErr(), ctx.Err())
	case <-timer.C:
		return jwkset.JWK{}, fmt.Errorf("%w: the key refresh took longer than %s", s.missErr(), s.cfg.Refresh.UnknownKIDWait)
	}
	if k, ok := s.st.readCached(kid); ok {
		return k, nil
	}
	if f.err == nil {
		s.neg.add(kid, s.now())
	}
	return jwkset.JWK{}, s.missErr()
}

// Recheck is for a token whose kid the set holds but whose signature that key did not
// verify: an issuer may have replaced a key without changing its kid (a restarted
// development server, a key store restored from backup), and a set that waits for its
// next scheduled refresh refuses every new token until then. It fetches the keys again
// when the unknown-kid budget allows (the same rate limit, at most one fetch per
// Refresh.UnknownKIDEvery, shared), waiting no longer than Refresh.UnknownKIDWait or
// ctx, and reports whether the key under kid changed: only then is the token worth
// verifying again. A forged token costs at most that budget, never a fetch of its own.
func (s *Set) Recheck(ctx context.Context, kid string) bool {
	before, ok := s.st.readCached(kid)
	if !ok {
		return false
	}
	f, err := s.budgetedFetch(triggerSignature)
	if err != nil {
		return false
	}
	if f == nil {
		after, ok := s.st.readCached(kid)
		return ok && !sameKey(before, after) // a fetch may have finished since
	}
	timer := time.NewTimer(s.cfg.Refresh.UnknownKIDWait)
	defer timer.Stop()
	select {
	case <-f.done:
	case <-ctx.Done():
		return false
	case <-timer.C:
		return false
	}
	after, ok := s.st.readCached(kid)
	return ok && !sameKey(before, after)
}

func (s *Set) missErr() error {
	if !s.Ready() {
		return ErrKeysUnavailable
	}
	return ErrUnknownKey
}

// negCache remembers kids that a fresh key set did not hold, bounded in size and time.
type negCache struct {
	ttl time.Duration
	max int

	mu sync.Mutex
	m  map[string]time.Time
}

func (c *negCache) contains(kid string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	exp, ok := c.m[kid]
	if ok && !now.Before(exp) {
		delete(c.m, kid)
		return false
	}
	return ok
}

func (c *negCache) add(kid string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]time.Time)
	}
	if len(c.m) >= c.max {
		// A flood of distinct kids: forgetting them all is cheaper than evicting one by
		// one, and the rate limit still holds fetches back.
		clear(c.m)
	}
	c.m[kid] = now.Add(c.ttl)
}

func (c *negCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.m)
}
