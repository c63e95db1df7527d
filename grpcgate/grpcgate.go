package grpcgate

import (
	"context"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/tokengate/tokengate/middleware"
)

// Option configures the interceptors.
type Option func(*config)

type config struct {
	gate func() *middleware.Gate
}

// WithGateFunc decides each call with the Gate that current returns at the call's
// start, instead of the one given to the interceptor (which may then be nil): for a
// service that replaces its Gate when its configuration is reloaded: a
// policy.Watcher's Gate method, or an atomic.Pointer's Load. A call that finds no Gate
// (current returns nil) is refused with UNAVAILABLE, never let through.
func WithGateFunc(current func() *middleware.Gate) Option {
	return func(c *config) { c.gate = current }
}

// UnaryServerInterceptor returns an interceptor that decides every unary call with g,
// as g.Handler decides an HTTP request (see the package documentation for the request
// it decides on). A denied call ends with the Gate's gRPC status (middleware.GRPCStatus)
// and the WWW-Authenticate challenge in its header metadata, without reaching the
// handler; an allowed one reaches it with the Decision in its context
// (middleware.ClaimsFrom, middleware.DecisionFrom). Every decision is counted and logged
// as the Gate does. It panics if g is nil without WithGateFunc, at wiring time.
func UnaryServerInterceptor(g *middleware.Gate, opts ...Option) grpc.UnaryServerInterceptor {
	current := gateFunc(g, opts)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := decide(ctx, current(), info.FullMethod, func(md metadata.MD) error { return grpc.SetHeader(ctx, md) })
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor is UnaryServerInterceptor for streaming calls: the call is
// decided when it starts, before any message is read, and an allowed stream's Context
// carries the Decision.
func StreamServerInterceptor(g *middleware.Gate, opts ...Option) grpc.StreamServerInterceptor {
	current := gateFunc(g, opts)
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := decide(ss.Context(), current(), info.FullMethod, ss.SetHeader)
		if err != nil {
			return err
		}
		return handler(srv, &decidedStream{ServerStream: ss, ctx: ctx})
	}
}

func gateFunc(g *middleware.Gate, opts []Option) func() *middleware.Gate {
	var c config
	for _, o := range opts {
		o(&c)
	}
	if c.gate != nil {
		return c.gate
	}
	if g == nil {
		panic("grpcgate: a nil *middleware.Gate without WithGateFunc")
	}
	return func() *middleware.Gate { return g }
}

// errNoGate refuses a call when WithGateFunc's function returns no Gate.
var errNoGate = status.Error(codes.Unavailable, "no access policy is loaded")

// decide decides one call: the context for its handler, or the error that ends it,
// after sending the denial's header fields with setHeader.
func decide(ctx context.Context, g *middleware.Gate, fullMethod string, setHeader func(metadata.MD) error) (context.Context, error) {
	if g == nil {
		return nil, errNoGate
	}
	r := Request(ctx, fullMethod)
	d := g.Decide(r)
	g.LogDecision(r, d)
	if d.Forward() {
		return middleware.NewContext(ctx, d), nil
	}
	h := g.DenialHeader(d)
	md := make(metadata.MD, len(h))
	for k, vs := range h {
		md[strings.ToLower(k)] = vs
	}
	// The status is what matters; a header that cannot be sent (the call already
	// ended) changes nothing about it.
	_ = setHeader(md)
	code, msg := middleware.GRPCStatus(d)
	return nil, status.Error(codes.Code(code), msg)
}

// Request returns the *http.Request that the interceptors have a Gate decide a call by,
// built from the call's context: method POST, the full method (/package.Service/Method)
// as its path, the :authority as its Host, the incoming metadata as its header (without
// pseudo-headers and binary "-bin" keys; Content-Type application/grpc unless the
// client sent one), the peer's address as RemoteAddr, and, when the peer came over TLS,
// its connection state (for certificate-bound tokens). Its context is ctx. It is for an
// interceptor of one's own that calls Gate.Decide.
func Request(ctx context.Context, fullMethod string) *http.Request {
	md, _ := metadata.FromIncomingContext(ctx)
	h := make(http.Header, len(md)+1)
	host := ""
	for k, vs := range md {
		switch {
		case k == ":authority":
			if len(vs) == 1 {
				host = vs[0]
			}
		case strings.HasPrefix(k, ":"), strings.HasSuffix(k, "-bin"):
		default:
			h[textproto.CanonicalMIMEHeaderKey(k)] = vs
		}
	}
	if len(h["Content-Type"]) == 0 {
		h["Content-Type"] = []string{"application/grpc"}
	}
	r := &http.Request{
		Method:     http.MethodPost,
		URL:        &url.URL{Path: fullMethod},
		RequestURI: fullMethod,
		Proto:      "HTTP/2.0",
		ProtoMajor: 2,
		Header:     h,
		Host:       host,
		Body:       http.NoBody,
	}
	if p, ok := peer.FromContext(ctx); ok {
		if p.Addr != nil {
			r.RemoteAddr = p.Addr.String()
		}
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			r.TLS = &info.State
		}
	}
	return r.WithContext(ctx)
}

// decidedStream is an allowed stream whose Context carries its Decision.
type decidedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *decidedStream) Context() context.Context { return s.ctx }
