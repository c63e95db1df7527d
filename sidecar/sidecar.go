package sidecar

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tokengate/tokengate/internal/certfile"
	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/middleware"
	"github.com/tokengate/tokengate/policy"
	"github.com/tokengate/tokengate/replay"
	"github.com/tokengate/tokengate/replay/redisstore"
)

// Defaults of Options, which `tokengate sidecar`'s flags take (a test of the command
// checks that its help says so).
const (
	// DefaultReloadEvery is how often the configuration file is checked for changes.
	DefaultReloadEvery = policy.DefaultReloadEvery
	// DefaultDrainTimeout bounds the drain at shutdown: under Kubernetes' default
	// termination grace period of 30 s, so that requests in flight finish before the
	// kubelet kills the container.
	DefaultDrainTimeout = 25 * time.Second
	// DefaultUpstreamTimeout bounds the wait for the upstream's response headers.
	DefaultUpstreamTimeout = 60 * time.Second
)

// Server limits: a client gets this long to send its headers (slowloris), and this many
// header bytes (a token is at most 8 KiB).
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 120 * time.Second
	maxHeaderBytes    = 64 << 10
)

// Options are the sidecar's collaborators. The zero value works.
type Options struct {
	// Logger receives every log line. Default slog.Default().
	Logger *slog.Logger
	// Registry is what /metrics serves; the sidecar registers its metrics on it.
	// Default NewRegistry(Version).
	Registry *prometheus.Registry
	// Version is reported by tokengate_build_info.
	Version string
	// ConfigPath is the configuration file to watch and reload; "" turns reloading off.
	ConfigPath string
	// Overrides are applied to every reloaded file, as to the first.
	Overrides policy.Overrides
	// ReloadEvery is how often the configuration file is checked for changes.
	// Default DefaultReloadEvery.
	ReloadEvery time.Duration
	// DrainTimeout bounds how long requests in flight may finish after the context is
	// cancelled. Default DefaultDrainTimeout.
	DrainTimeout time.Duration
	// Listener and AdminListener, when set, are used instead of listening on the
	// configuration's addresses (tests and the demo pick free ports this way).
	Listener, AdminListener net.Listener
	// Profiling serves net/http/pprof under /debug/pprof/ on the admin listener.
	Profiling bool
	// UpstreamTimeout bounds the wait for the upstream's response headers (then 504).
	// A slow body is streamed for as long as it takes. Default DefaultUpstreamTimeout.
	UpstreamTimeout time.Duration
	// Replay replaces the replay store the configuration names (replay.store). The
	// sidecar does not close it.
	Replay replay.Store
}

// Sidecar is the reverse proxy that is tokengate's main job: a traffic listener that
// lets only authorized requests reach the upstream, an admin listener with /metrics,
// /healthz and /readyz, and a watcher that reloads the configuration file.
type Sidecar struct {
	opts     Options
	log      *slog.Logger
	reg      *prometheus.Registry
	metrics  *sidecarMetrics
	keys     *jwks.Metrics
	first    *policy.Loaded
	draining atomic.Bool
	state    atomic.Pointer[state]

	// tr is the upstream connection pool for the life of the sidecar, so that a
	// reload keeps its idle connections; up adds WebSocket handshakes to it.
	tr *http.Transport
	up *upgradeTransport
	// h2c is the pool of an h2c upstream (gRPC), for the life of the sidecar too.
	h2c *h2cTransport
	// tuns are the open WebSocket tunnels, closed when the sidecar stops.
	tuns *tunnels

	mu   sync.Mutex // guards sets and introspectors
	sets map[string]*keySet
	// introspectors are shared, as key sets are, by the configurations that name the
	// same issuer with the same introspection settings: a reload keeps their caches,
	// and cuts no call in flight.
	introspectors map[string]*sharedIntrospector

	// store records single uses for every configuration the sidecar runs: a reload
	// must not forget which tokens were used. closeStore closes it when the sidecar
	// made it.
	store      replay.Store
	closeStore func() error
}

// state is one loaded configuration: what serves requests until the next reload.
type state struct {
	loaded        *policy.Loaded
	gate          *middleware.Gate
	handler       http.Handler
	sets          []*jwks.Set
	introspectors []string // keys of Sidecar.introspectors
}

type sharedIntrospector struct {
	in   *middleware.Introspector
	refs int
}

// keySet is a key set shared by the configurations that name the same issuer with the
// same key settings, so that a reload does not fetch keys again.
type keySet struct {
	set  *jwks.Set
	refs int
}

// New prepares a sidecar for a validated configuration. Nothing starts before Run.
func New(l *policy.Loaded, opts Options) (*Sidecar, error) {
	if l.Upstream == nil {
		return nil, errors.New("sidecar: the configuration has no upstream")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Registry == nil {
		opts.Registry = NewRegistry(opts.Version)
	}
	if opts.ReloadEvery == 0 {
		opts.ReloadEvery = DefaultReloadEvery
	}
	if opts.DrainTimeout == 0 {
		opts.DrainTimeout = DefaultDrainTimeout
	}
	if opts.UpstreamTimeout == 0 {
		opts.UpstreamTimeout = DefaultUpstreamTimeout
	}
	m, err := newSidecarMetrics(opts.Registry)
	if err != nil {
		return nil, err
	}
	keys, err := jwks.NewMetrics(opts.Registry)
	if err != nil {
		return nil, err
	}
	tr := newTransport(opts.UpstreamTimeout)
	up := &upgradeTransport{base: tr, dialer: &net.Dialer{Timeout: upstreamDialTimeout, KeepAlive: 30 * time.Second}, headerTimeout: opts.UpstreamTimeout}
	s := &Sidecar{opts: opts, log: opts.Logger, reg: opts.Registry, metrics: m, keys: keys, first: l,
		tr: tr, up: up, h2c: newH2CTransport(opts.UpstreamTimeout, up), tuns: newTunnels(), sets: map[string]*keySet{}, introspectors: map[string]*sharedIntrospector{},
		store: opts.Replay}
	if s.store == nil {
		if s.store, s.closeStore, err = NewReplayStore(l.Replay); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// MemoryStoreEntries bounds the in-memory replay store: 13 MiB of heap when full of
// DPoP proof records (measured; docs/operations.md#memory). When it is full of
// unexpired records a new use is refused (503), never let through.
const MemoryStoreEntries = 100_000

// NewReplayStore makes the replay store of a configuration: in memory, or a Redis client
// (which connects on first use, so that the sidecar starts while Redis is down).
func NewReplayStore(r policy.Replay) (replay.Store, func() error, error) {
	if r.Store != policy.StoreRedis {
		return replay.NewMemory(MemoryStoreEntries, nil), func() error { return nil }, nil
	}
	cfg := redisstore.Config{Addrs: r.Redis.Addrs, MasterName: r.Redis.MasterName, Timeout: r.Redis.Timeout}
	var err error
	if cfg.Username, cfg.Password, err = r.Redis.Credentials(); err != nil {
		return nil, nil, fmt.Errorf("sidecar: replay.redis: %w", err)
	}
	if r.Redis.TLS || r.Redis.CAFile != "" {
		cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.TLS.RootCAs, err = r.Redis.RootCAs(); err != nil {
			return nil, nil, fmt.Errorf("sidecar: replay.redis.caFile: %w", err)
		}
	}
	store, err := redisstore.New(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("sidecar: replay.redis: %w", err)
	}
	return store, store.Close, nil
}

// trafficTLS is the traffic listener's TLS configuration, nil for plain HTTP.
func (s *Sidecar) trafficTLS() (*tls.Config, error) {
	t := s.first.TLS
	if t == nil {
		return nil, nil
	}
	certs, err := certfile.NewReloader(t.Cert, t.Key, s.log)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.GetCertificate}
	if t.ClientCA != "" {
		pool, err := t.ClientCAs()
		if err != nil {
			return nil, fmt.Errorf("tls.clientCA: %w", err)
		}
		// A client without a certificate is served: only its certificate-bound tokens
		// are refused (binding).
		cfg.ClientAuth, cfg.ClientCAs = tls.VerifyClientCertIfGiven, pool
	}
	return cfg, nil
}

// Run serves until ctx is cancelled, then stops accepting connections, lets requests in
// flight finish within DrainTimeout, and returns nil. It returns an error when a
// listener cannot be opened or a server fails. Every goroutine it starts has ended when
// it returns.
func (s *Sidecar) Run(ctx context.Context) error {
	keyCtx, stopKeys := context.WithCancel(context.Background())
	defer stopKeys()
	defer s.closeAll()

	st, err := s.build(keyCtx, s.first)
	if err != nil {
		return err
	}
	s.state.Store(st)
	var seen [sha256.Size]byte // the content running, for the file watch
	if s.opts.ConfigPath != "" {
		if data, err := os.ReadFile(s.opts.ConfigPath); err == nil {
			seen = sha256.Sum256(data)
		}
	}

	tlsCfg, err := s.trafficTLS()
	if err != nil {
		return err
	}
	ln, err := s.listen(s.opts.Listener, s.first.Listen, "listen")
	if err != nil {
		return err
	}
	admin, err := s.listen(s.opts.AdminListener, s.first.Admin, "admin")
	if err != nil {
		ln.Close()
		return err
	}
	traffic := &http.Server{
		Handler:           http.HandlerFunc(s.serveTraffic),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		Protocols:         new(http.Protocols),
	}
	// Clients may speak HTTP/2 in clear text (h2c) as well as HTTP/1.1; over TLS,
	// HTTP/2 as ALPN agrees.
	traffic.Protocols.SetHTTP1(true)
	traffic.Protocols.SetUnencryptedHTTP2(true)
	if tlsCfg != nil {
		traffic.Protocols.SetHTTP2(true)
		traffic.TLSConfig = tlsCfg
		ln = tls.NewListener(ln, traffic.TLSConfig)
	}
	adminSrv := &http.Server{
		Handler:           s.adminHandler(),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}

	errs := make(chan error, 3)
	var wg sync.WaitGroup
	wg.Go(func() { errs <- serve(traffic, ln) })
	wg.Go(func() { errs <- serve(adminSrv, admin) })
	watchCtx, stopWatch := context.WithCancel(ctx)
	if s.opts.ConfigPath != "" {
		wg.Go(func() { s.watch(watchCtx, keyCtx, seen) })
	}
	s.log.Info("tokengate sidecar serving", "listen", ln.Addr().String(), "tls", tlsCfg != nil, "admin", admin.Addr().String(),
		"upstream", s.first.Upstream.String(), "mode", modeOf(s.first), "replay_store", storeName(s.store))

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
	}
	stopWatch()
	s.draining.Store(true)
	drainCtx, cancel := context.WithTimeout(context.Background(), s.opts.DrainTimeout)
	defer cancel()
	s.log.Info("draining", "timeout", s.opts.DrainTimeout.String())
	if err := traffic.Shutdown(drainCtx); err != nil {
		s.log.Warn("requests still in flight after the drain timeout were cut", "error", err)
		traffic.Close()
	}
	_ = adminSrv.Shutdown(drainCtx)
	s.tuns.closeAll()
	wg.Wait()
	s.tr.CloseIdleConnections()
	s.h2c.CloseIdleConnections()
	if s.closeStore != nil {
		if err := s.closeStore(); err != nil {
			s.log.Warn("closing the replay store", "error", err)
		}
	}
	close(errs)
	for err := range errs {
		if runErr == nil && err != nil {
			runErr = err
		}
	}
	s.log.Info("stopped")
	return runErr
}

func serve(srv *http.Server, ln net.Listener) error {
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (s *Sidecar) listen(given net.Listener, addr, key string) (net.Listener, error) {
	if given != nil {
		return given, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", key, addr, err)
	}
	return ln, nil
}

func modeOf(l *policy.Loaded) string {
	if l.Gate.Shadow {
		return policy.ModeShadow
	}
	return policy.ModeEnforce
}

func (s *Sidecar) serveTraffic(w http.ResponseWriter, r *http.Request) {
	s.state.Load().handler.ServeHTTP(w, r)
}

// build makes the state of a configuration: key sets (shared with the running
// configuration where the issuer and its key settings are the same), the Gate and the
// proxy.
func (s *Sidecar) build(keyCtx context.Context, l *policy.Loaded) (*state, error) {
	var sets []*jwks.Set
	for _, iss := range l.Gate.Issuers {
		set, err := s.acquire(keyCtx, iss.Config)
		if err != nil {
			s.release(sets)
			return nil, err
		}
		sets = append(sets, set)
	}
	group, err := jwks.GroupOf(sets...)
	if err != nil {
		s.release(sets)
		return nil, err
	}
	ins, keys, err := s.acquireIntrospectors(l.Gate.Issuers)
	if err != nil {
		s.release(sets)
		return nil, err
	}
	var transport http.RoundTripper = s.up
	if l.Upstream.Scheme == schemeH2C {
		transport = s.h2c
	}
	p := newProxy(l, transport, s.tuns, s.log, s.metrics)
	gate, err := middleware.New(keyCtx, l.Gate, middleware.Options{
		Introspectors: ins,
		Registerer:    s.reg,
		KeySource:     group,
		Logger:        s.log,
		ClaimsChecks:  []func(*middleware.Claims) error{p.id.Check},
		RequestChecks: []func(*http.Request) error{forwardable},
		Replay:        s.store,
	})
	if err != nil {
		s.release(sets)
		s.releaseIntrospectors(keys)
		return nil, err
	}
	return &state{loaded: l, gate: gate, handler: gate.Handler(p), sets: sets, introspectors: keys}, nil
}

// acquireIntrospectors returns the Introspectors of the issuers with introspection on,
// shared with the running configuration where the settings are the same, and their
// keys, for releaseIntrospectors.
func (s *Sidecar) acquireIntrospectors(issuers []middleware.Issuer) (map[string]*middleware.Introspector, []string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ins := map[string]*middleware.Introspector{}
	var keys []string
	for _, iss := range issuers {
		in := iss.Introspection
		if !in.OpaqueTokens && !in.Always {
			continue
		}
		// The secret counts by its hash: a rotated secret is a new Introspector.
		secret := sha256.Sum256(in.ClientSecret)
		in.ClientSecret = secret[:]
		b, _ := json.Marshal(struct {
			Issuer, Endpoint string
			InsecureHTTP     bool
			In               middleware.Introspection
		}{iss.Issuer, in.Endpoint, iss.InsecureHTTP, in})
		k := string(b)
		sh := s.introspectors[k]
		if sh == nil {
			made, err := middleware.NewIntrospector(iss, s.reg)
			if err != nil {
				s.releaseLocked(keys)
				return nil, nil, err
			}
			sh = &sharedIntrospector{in: made}
			s.introspectors[k] = sh
		}
		sh.refs++
		keys = append(keys, k)
		ins[iss.Issuer] = sh.in
	}
	return ins, keys, nil
}

// releaseIntrospectors drops a configuration's hold on its Introspectors and closes
// those no configuration uses any more.
func (s *Sidecar) releaseIntrospectors(keys []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.releaseLocked(keys)
}

func (s *Sidecar) releaseLocked(keys []string) {
	for _, k := range keys {
		sh := s.introspectors[k]
		if sh == nil {
			continue
		}
		if sh.refs--; sh.refs == 0 {
			delete(s.introspectors, k)
			sh.in.Close()
		}
	}
}

// errNoHost refuses a request without a host (HTTP/1.0 may omit it; so may HTTP/2's
// :authority): the route table would match it against host-less routes only, and the
// upstream would be told its own address as the host.
var errNoHost = errors.New("the request names no host (Host or :authority)")

// errConnect refuses CONNECT in shadow mode too: the route table matches no CONNECT,
// and a tunnel through the sidecar would carry requests nobody decides on.
var errConnect = &middleware.Error{Reason: middleware.ReasonNoRoute, Err: errors.New("the sidecar never forwards CONNECT")}

// forwardable refuses, before any token is looked at and whatever the mode, a request
// that the sidecar cannot forward as it was decided on.
func forwardable(r *http.Request) error {
	switch {
	case r.Host == "":
		return errNoHost
	case r.Method == http.MethodConnect:
		return errConnect
	}
	return nil
}

func setKey(c jwks.Config) string {
	b, _ := json.Marshal(c)
	return string(b)
}

func (s *Sidecar) acquire(ctx context.Context, c jwks.Config) (*jwks.Set, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := setKey(c)
	if ks, ok := s.sets[k]; ok {
		ks.refs++
		return ks.set, nil
	}
	set, err := jwks.New(ctx, c, jwks.Options{Logger: s.log, Metrics: s.keys})
	if err != nil {
		return nil, err
	}
	s.sets[k] = &keySet{set: set, refs: 1}
	return set, nil
}

// release drops a configuration's hold on its key sets and closes those no
// configuration uses any more.
func (s *Sidecar) release(sets []*jwks.Set) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, set := range sets {
		for k, ks := range s.sets {
			if ks.set != set {
				continue
			}
			ks.refs--
			if ks.refs == 0 {
				delete(s.sets, k)
				set.Close()
				if !s.issuerInUse(set.Issuer()) {
					s.keys.Forget(set.Issuer())
				}
			}
		}
	}
}

func (s *Sidecar) issuerInUse(issuer string) bool {
	for _, ks := range s.sets {
		if ks.set.Issuer() == issuer {
			return true
		}
	}
	return false
}

func (s *Sidecar) closeAll() {
	if st := s.state.Load(); st != nil {
		s.release(st.sets)
		s.releaseIntrospectors(st.introspectors)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, ks := range s.sets {
		ks.set.Close()
		delete(s.sets, k)
	}
}

// Ready reports whether the sidecar should get traffic: a configuration is loaded,
// every issuer's keys were loaded once, and it is not draining.
func (s *Sidecar) Ready() (bool, []string) {
	st := s.state.Load()
	if st == nil {
		return false, []string{"no configuration loaded"}
	}
	if s.draining.Load() {
		return false, []string{"shutting down"}
	}
	var waiting []string
	for _, set := range st.sets {
		if !set.Ready() {
			waiting = append(waiting, "keys of "+set.Issuer()+" not loaded")
		}
	}
	return len(waiting) == 0, waiting
}

// storeStatus says whether a store that can be asked (Redis) answers: "ok", or
// "unavailable: …"; "" for a store in memory. A replay store that does not answer
// leaves the sidecar ready: requests on single-use routes and with DPoP proofs are
// refused (503, Retry-After) while every other route keeps working, whereas an unready
// pod would take all of them out of the Service (docs/operations.md#replay-store-redis).
func (s *Sidecar) storeStatus(ctx context.Context) string {
	p, ok := s.store.(interface{ Ping(context.Context) error })
	if !ok {
		return ""
	}
	if err := p.Ping(ctx); err != nil {
		return "unavailable: " + err.Error()
	}
	return "ok"
}

// storeName is the replay store's kind, for the log.
func storeName(st replay.Store) string {
	if n, ok := st.(replay.Named); ok {
		return n.Name()
	}
	return "custom"
}

func (s *Sidecar) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"alive"}` + "\n"))
	})
	if s.opts.Profiling {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ok, why := s.Ready()
		body := map[string]any{"ready": ok, "waiting": why}
		if store := s.storeStatus(r.Context()); store != "" {
			body["replayStore"] = store
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(body)
	})
	return mux
}
