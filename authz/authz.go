package authz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tokengate/tokengate/middleware"
)

// The paths the decision endpoints are served at (docs/gateways.md).
const (
	// PathNginx answers nginx's auth_request subrequests.
	PathNginx = "/nginx"
	// PathTraefik answers Traefik's forwardAuth requests.
	PathTraefik = "/traefik"
	// PathEnvoy is the path_prefix of Envoy's ext_authz HTTP service: Envoy appends the
	// original request's path and query to it.
	PathEnvoy = "/envoy"
	// GRPCService is the gRPC service of Envoy's ext_authz, served over h2c on the same
	// port, with the standard gRPC health service beside it.
	GRPCService = "envoy.service.auth.v3.Authorization"
)

// Headers the nginx endpoint reads by default, as nginx's auth_request examples set
// them (proxy_set_header X-Original-URI $request_uri).
const (
	DefaultNginxMethodHeader = "X-Original-Method"
	DefaultNginxURIHeader    = "X-Original-URI"
)

// Defaults of Options.
const (
	DefaultMaxHeaderBytes  = 128 << 10
	DefaultMaxRecvMsgSize  = 1 << 20
	DefaultShutdownTimeout = 10 * time.Second
	// readHeaderTimeout bounds how long a connection may take to send a request's
	// headers; idleTimeout how long a kept-alive connection may wait for the next one.
	// Gateways keep their connections to the decision service open: that is the fast
	// path, so idle connections live long.
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 5 * time.Minute
)

// Identity turns the verified claims of an allowed request into the headers its
// upstream trusts (forward.claims and forward.values), and recognizes client headers that pose as them.
// *policy.Identity implements it.
type Identity interface {
	// Set writes the identity headers of c into h. A claim c lacks sets no header.
	Set(h http.Header, c *middleware.Claims)
	// StripInbound deletes from h every header that poses as an identity header, in
	// every spelling (case, '_' for '-').
	StripInbound(h http.Header)
}

// Snapshot is what one loaded configuration decides with. The Server reads it once per
// request, so that a configuration reload never mixes the gate of one configuration
// with the identity headers of another.
type Snapshot struct {
	// Gate decides. A nil Gate (no configuration loaded yet) makes every request a 503
	// error: never allowed.
	Gate *middleware.Gate
	// Identity writes the identity headers of allowed requests. nil: none are written
	// and none are stripped.
	Identity Identity
	// IdentityHeaders are the names Identity sets (the header names of forward.claims
	// and forward.values).
	// The Envoy answers remove those an allowed answer does not set, so that a value a
	// client sent under such a name never reaches the upstream (OkHttpResponse
	// headers_to_remove; x-envoy-auth-headers-to-remove over HTTP).
	IdentityHeaders []string
}

// Options configure a Server. The zero value serves with the defaults.
type Options struct {
	// Registerer receives tokengate_authz_requests_total. This defaults to a registry
	// of the Server's own, which nobody scrapes.
	Registerer prometheus.Registerer
	// Logger logs malformed check requests and the server's own failures; decisions
	// are logged by the Gate (Gate.LogDecision). This defaults to slog.Default().
	Logger *slog.Logger
	// NginxMethodHeader and NginxURIHeader name the headers that carry the original
	// request's method and URI in nginx's subrequest. These default to
	// X-Original-Method and X-Original-URI.
	NginxMethodHeader, NginxURIHeader string
	// MaxHeaderBytes caps a check request's headers, over HTTP/1.1 and HTTP/2. This
	// defaults to 128 KiB: room for a client's largest headers (nginx's 32 KiB, Envoy's
	// 60 KiB by default) and the gateway's own.
	MaxHeaderBytes int
	// MaxRecvMsgSize caps a gRPC CheckRequest. This defaults to 1 MiB. Envoy's
	// with_request_body makes it larger; tokengate reads no body, so leave that off.
	MaxRecvMsgSize int
	// ShutdownTimeout bounds how long Run lets check requests in flight finish after
	// its context is cancelled. This defaults to 10 s.
	ShutdownTimeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.NginxMethodHeader == "" {
		o.NginxMethodHeader = DefaultNginxMethodHeader
	}
	if o.NginxURIHeader == "" {
		o.NginxURIHeader = DefaultNginxURIHeader
	}
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if o.MaxRecvMsgSize <= 0 {
		o.MaxRecvMsgSize = DefaultMaxRecvMsgSize
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
	o.NginxMethodHeader = http.CanonicalHeaderKey(o.NginxMethodHeader)
	o.NginxURIHeader = http.CanonicalHeaderKey(o.NginxURIHeader)
	return o
}

// Server is the decision service for gateways: nginx auth_request (PathNginx), Traefik
// forwardAuth (PathTraefik), Envoy ext_authz over HTTP (PathEnvoy) and over gRPC
// (GRPCService), each a thin adapter onto Gate.Decide. It must never be reachable by
// clients: it trusts the method, URI and host that the gateway forwards.
type Server struct {
	current func() Snapshot
	opts    Options
	metrics *metrics
	log     *slog.Logger
	grpc    *grpc.Server
	health  *health.Server
	handler http.Handler

	// stopping is cancelled when Run begins to shut down: it ends health Watch streams,
	// which would otherwise hold the shutdown until its timeout.
	stopping context.Context
	stop     context.CancelFunc
	// inflight counts the handlers running, so that Run returns after the last.
	inflight inflight
}

// inflight counts running handlers; wait returns when none is left.
type inflight struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to zero, while someone waits
}

func (f *inflight) enter() { f.mu.Lock(); f.n++; f.mu.Unlock() }

func (f *inflight) leave() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n--; f.n == 0 && f.idle != nil {
		close(f.idle)
		f.idle = nil
	}
}

// wait waits until no handler runs, or until ctx ends.
func (f *inflight) wait(ctx context.Context) error {
	f.mu.Lock()
	if f.n == 0 {
		f.mu.Unlock()
		return nil
	}
	if f.idle == nil {
		f.idle = make(chan struct{})
	}
	idle := f.idle
	f.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// New returns a Server that decides with the Snapshot current returns, read once per
// request (a configuration reload swaps it). It registers the Server's metrics; nothing
// starts before Run.
func New(current func() Snapshot, opts Options) (*Server, error) {
	if current == nil {
		return nil, errors.New("authz: New needs the current Snapshot")
	}
	opts = opts.withDefaults()
	if strings.ContainsAny(opts.NginxMethodHeader+opts.NginxURIHeader, " :\r\n\t") {
		return nil, fmt.Errorf("authz: %q and %q are not header names", opts.NginxMethodHeader, opts.NginxURIHeader)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("authz: registering metrics: %w", err)
	}
	s := &Server{current: current, opts: opts, metrics: m, log: opts.Logger}
	s.stopping, s.stop = context.WithCancel(context.Background())
	s.grpc = grpc.NewServer(
		grpc.MaxRecvMsgSize(opts.MaxRecvMsgSize),
		// A CheckResponse is small: a denial's body and a few headers.
		grpc.MaxSendMsgSize(1<<20),
		grpc.MaxConcurrentStreams(1000),
		// Stop returns only once every call's handler has.
		grpc.WaitForHandlers(true),
	)
	authv3.RegisterAuthorizationServer(s.grpc, &checkService{s: s})
	s.health = health.NewServer()
	s.health.SetServingStatus(GRPCService, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s.grpc, &healthService{Server: s.health, stopping: s.stopping})
	s.handler = s.route()
	return s, nil
}

// Handler serves the HTTP endpoints and, to HTTP/2 requests whose Content-Type is
// application/grpc, the gRPC services (through grpc.Server's ServeHTTP), for a server
// of the caller's own; for the gRPC services that server must accept HTTP/2 without
// TLS (http.Server.Protocols with SetUnencryptedHTTP2). Run serves gRPC faster, on
// grpc.Server's own transport.
func (s *Server) Handler() http.Handler { return s.handler }

// route is the one place every HTTP request is routed.
//
// Paths are compared as the gateway sent them (RequestURI), not through ServeMux,
// which would answer a path it cleans with a redirect: Envoy passes any answer but
// 200 and 5xx on to the client.
func (s *Server) route() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.inflight.enter()
		defer s.inflight.leave()
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			s.grpc.ServeHTTP(w, r)
			return
		}
		switch uri := r.RequestURI; {
		case r.URL.Path == PathNginx:
			s.serveNginx(w, r)
		case r.URL.Path == PathTraefik:
			s.serveTraefik(w, r)
		case strings.HasPrefix(uri, PathEnvoy+"/"):
			s.serveEnvoy(w, r, uri[len(PathEnvoy):])
		default:
			http.NotFound(w, r)
		}
	})
}

// Run serves on ln until ctx is cancelled, then stops accepting connections, lets the
// check requests in flight finish for at most ShutdownTimeout, and returns once every
// goroutine it started, and every handler, has ended. It closes ln. A Server runs
// once.
//
// Connections that open with the HTTP/2 preface go to the gRPC services' own
// transport, the others to the HTTP endpoints (listen.go says why).
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    s.opts.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		Protocols:         new(http.Protocols),
	}
	srv.Protocols.SetHTTP1(true) // HTTP/2 connections are the gRPC server's
	sp := newSplitter(ln)
	httpDone, grpcDone := make(chan error, 1), make(chan error, 1)
	go func() { httpDone <- srv.Serve(sp.http) }()
	go func() { grpcDone <- s.grpc.Serve(sp.grpc) }()

	var failed error
	select {
	case <-ctx.Done():
	case failed = <-httpDone:
		httpDone <- failed
	case failed = <-grpcDone:
		grpcDone <- failed
	}
	s.stop() // ends health Watch streams
	s.health.Shutdown()
	drain, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	grpcStopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop() // lets calls in flight finish
		close(grpcStopped)
	}()
	if err := srv.Shutdown(drain); err != nil {
		s.log.Warn("authz: check requests still in flight after the shutdown timeout were cut", "error", err)
		_ = srv.Close()
	}
	select {
	case <-grpcStopped:
	case <-drain.Done():
		s.log.Warn("authz: gRPC calls still in flight after the shutdown timeout were cut")
		s.grpc.Stop() // cancels them, and waits for their handlers (WaitForHandlers)
		<-grpcStopped
	}
	_ = sp.Close()
	// Close cancelled the contexts of the HTTP handlers it cut; each ends as soon as
	// its Gate stops waiting (the Gate bounds every wait). Run returns after the last.
	cut, cancelCut := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancelCut()
	if err := s.inflight.wait(cut); err != nil {
		s.log.Warn("authz: check requests still running after the shutdown", "error", err)
	}
	herr, gerr := <-httpDone, <-grpcDone
	if failed == nil && !errors.Is(herr, http.ErrServerClosed) {
		failed = herr
	}
	if failed == nil {
		failed = gerr
	}
	if failed != nil && !errors.Is(failed, http.ErrServerClosed) {
		return fmt.Errorf("authz: serving %s: %w", ln.Addr(), failed)
	}
	return nil
}

// healthService is the standard gRPC health service whose Watch streams end when the
// Server shuts down.
type healthService struct {
	*health.Server
	stopping context.Context
}

// Watch streams the serving status until the client leaves or the Server stops.
func (h *healthService) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	defer context.AfterFunc(h.stopping, cancel)()
	return h.Server.Watch(req, &watchStream{Health_WatchServer: stream, ctx: ctx})
}

type watchStream struct {
	healthpb.Health_WatchServer
	ctx context.Context
}

func (w *watchStream) Context() context.Context { return w.ctx }
