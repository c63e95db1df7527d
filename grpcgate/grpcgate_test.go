package grpcgate_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/tokengate/tokengate/grpcgate"
	"github.com/tokengate/tokengate/internal/grpctest"
	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/jwks/jwkstest"
	"github.com/tokengate/tokengate/middleware"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const audience = "https://orders.example.com"

// routes guard the TestService by method and leave the health service public.
var routes = []middleware.Route{
	{Match: "POST /grpc.testing.TestService/UnaryCall", Scopes: []string{"test:read"}},
	{Match: "/grpc.testing.TestService/FullDuplexCall", Scopes: []string{"test:stream"}},
	{Match: "/grpc.health.v1.Health/", Public: true},
}

// logRecords keeps the messages and attributes of the log lines a Gate writes at Info
// and above (denials; allowed calls log at Debug).
type logRecords struct {
	mu    sync.Mutex
	lines []string
}

func (l *logRecords) Enabled(_ context.Context, level slog.Level) bool {
	return level >= slog.LevelInfo
}
func (l *logRecords) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.String()); return true })
	l.mu.Lock()
	l.lines = append(l.lines, b.String())
	l.mu.Unlock()
	return nil
}
func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecords) WithGroup(string) slog.Handler      { return l }

func (l *logRecords) find(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.lines {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

type env struct {
	as   *jwkstest.Server
	gate *middleware.Gate
	reg  *prometheus.Registry
	logs *logRecords
}

func newEnv(t testing.TB, routes []middleware.Route) *env {
	t.Helper()
	as, err := jwkstest.NewServer(jwkstest.WithAudience(audience))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(as.Close)
	return newGate(t, as, routes)
}

func newGate(t testing.TB, as *jwkstest.Server, routes []middleware.Route) *env {
	t.Helper()
	e := &env{as: as, reg: prometheus.NewPedanticRegistry(), logs: &logRecords{}}
	gate, err := middleware.New(context.Background(), middleware.Config{
		Realm:   "test-api",
		Issuers: []middleware.Issuer{{Config: jwks.Config{Issuer: as.Issuer}, Audiences: []string{audience}}},
		Routes:  routes,
	}, middleware.Options{Registerer: e.reg, Logger: slog.New(e.logs)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gate.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := gate.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	e.gate = gate
	return e
}

// serve starts the TestService and the health service behind the interceptors of g.
func serve(t testing.TB, g *middleware.Gate, opts ...grpcgate.Option) *grpctest.Server {
	t.Helper()
	return grpctest.Start(t,
		grpc.ChainUnaryInterceptor(grpcgate.UnaryServerInterceptor(g, opts...)),
		grpc.ChainStreamInterceptor(grpcgate.StreamServerInterceptor(g, opts...)))
}

func (e *env) count(decision, reason, route string) float64 {
	mfs, _ := e.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "tokengate_decisions_total" {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			want := map[string]string{"decision": decision, "reason": reason, "route": route}
			for _, lp := range m.GetLabel() {
				if want[lp.GetName()] != lp.GetValue() {
					continue series
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func callContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestUnary(t *testing.T) {
	e := newEnv(t, routes)
	srv := serve(t, e.gate)
	client := testpb.NewTestServiceClient(grpctest.Dial(t, srv.Addr))
	ctx := callContext(t)

	tok := e.as.MustMint(jwkstest.Claims{"sub": "alice", "scope": "test:read"})
	resp, err := client.UnaryCall(grpctest.WithToken(ctx, tok), &testpb.SimpleRequest{ResponseSize: 4})
	if err != nil || resp.GetUsername() != "alice" || len(resp.GetPayload().GetBody()) != 4 {
		t.Fatalf("allowed: %v, %v", resp, err)
	}
	if c := srv.Service.Next(t, 5*time.Second); c.Subject != "alice" || c.Deadline.IsZero() {
		t.Fatalf("the service saw %+v; want alice's claims and the call's deadline", c)
	}
	if n := e.count("allowed", "ok", "POST /grpc.testing.TestService/UnaryCall"); n != 1 {
		t.Errorf("allowed decisions %v, want 1", n)
	}

	expired := e.as.MustMint(jwkstest.Claims{"scope": "test:read", "exp": time.Now().Add(-time.Hour).Unix()})
	tests := []struct {
		name      string
		call      func(ctx context.Context, opts ...grpc.CallOption) error
		code      codes.Code
		message   string
		challenge string
		reason    string
	}{
		{"no token", unary(client, ""), codes.Unauthenticated, "a bearer access token is required", `Bearer realm="test-api"`, "missing_token"},
		{"expired", unary(client, expired), codes.Unauthenticated, "the access token expired",
			`Bearer realm="test-api", error="invalid_token", error_description="the access token expired"`, "expired"},
		{"forged", unary(client, tok[:len(tok)-2]+"AA"), codes.Unauthenticated, "the access token signature is invalid", `error="invalid_token"`, "signature"},
		{"missing scope", unary(client, e.as.MustMint(jwkstest.Claims{"scope": "test:stream"})), codes.PermissionDenied,
			"the access token lacks a scope this route requires", `error="insufficient_scope", error_description="the access token lacks a scope this route requires", scope="test:read"`, "insufficient_scope"},
		{"no route", func(ctx context.Context, opts ...grpc.CallOption) error {
			_, err := client.EmptyCall(grpctest.WithToken(ctx, tok), &testpb.Empty{}, opts...)
			return err
		}, codes.PermissionDenied, "no route allows this request", `Bearer realm="test-api"`, "no_route"},
		{"two tokens", func(ctx context.Context, opts ...grpc.CallOption) error {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok, "authorization", "Bearer "+tok)
			_, err := client.UnaryCall(ctx, &testpb.SimpleRequest{}, opts...)
			return err
		}, codes.InvalidArgument, "the request carries a malformed or duplicated access token", `error="invalid_request"`, "malformed_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var header metadata.MD
			err := tt.call(ctx, grpc.Header(&header))
			st := status.Convert(err)
			if st.Code() != tt.code || st.Message() != tt.message {
				t.Fatalf("%v, want %v %q", err, tt.code, tt.message)
			}
			if ch := strings.Join(header.Get("www-authenticate"), ", "); !strings.Contains(ch, tt.challenge) {
				t.Fatalf("www-authenticate %q, want it to hold %q", ch, tt.challenge)
			}
			if !e.logs.find("request denied") || !e.logs.find("reason="+tt.reason) {
				t.Errorf("no log line for reason %s", tt.reason)
			}
		})
	}
	select {
	case c := <-srv.Service.Calls():
		t.Fatalf("a denied call reached the service: %+v", c)
	default:
	}
}

func unary(client testpb.TestServiceClient, token string) func(context.Context, ...grpc.CallOption) error {
	return func(ctx context.Context, opts ...grpc.CallOption) error {
		_, err := client.UnaryCall(grpctest.WithToken(ctx, token), &testpb.SimpleRequest{}, opts...)
		return err
	}
}

func TestStream(t *testing.T) {
	e := newEnv(t, routes)
	srv := serve(t, e.gate)
	cc := grpctest.Dial(t, srv.Addr)
	client := testpb.NewTestServiceClient(cc)
	ctx := callContext(t)

	t.Run("allowed", func(t *testing.T) {
		stream, err := client.FullDuplexCall(grpctest.WithToken(ctx, e.as.MustMint(jwkstest.Claims{"sub": "bob", "scope": "test:stream"})))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if err := stream.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: int32(i + 1)}}}); err != nil {
				t.Fatal(err)
			}
			resp, err := stream.Recv()
			if err != nil || len(resp.GetPayload().GetBody()) != i+1 {
				t.Fatalf("message %d: %v %v", i, resp, err)
			}
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("end of stream: %v", err)
		}
		if c := srv.Service.Next(t, 5*time.Second); c.Subject != "bob" || c.Ended != nil {
			t.Fatalf("the service saw %+v; want bob's claims", c)
		}
	})

	for _, tt := range []struct {
		name  string
		token string
		code  codes.Code
	}{
		{"no token", "", codes.Unauthenticated},
		{"missing scope", e.as.MustMint(jwkstest.Claims{"scope": "test:read"}), codes.PermissionDenied},
	} {
		t.Run(tt.name, func(t *testing.T) {
			stream, err := client.FullDuplexCall(grpctest.WithToken(ctx, tt.token))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := stream.Recv(); status.Code(err) != tt.code {
				t.Fatalf("%v, want %v", err, tt.code)
			}
			if h, err := stream.Header(); err != nil || len(h.Get("www-authenticate")) != 1 {
				t.Fatalf("header %v, %v", h, err)
			}
		})
	}

	// The health service is public: a check and a watch without a token.
	health := healthpb.NewHealthClient(cc)
	if r, err := health.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health check: %v %v", r, err)
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	watch, err := health.Watch(wctx, &healthpb.HealthCheckRequest{Service: "grpc.testing.TestService"})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := watch.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health watch: %v %v", r, err)
	}
	select {
	case c := <-srv.Service.Calls():
		t.Fatalf("a denied call reached the service: %+v", c)
	default:
	}
}

// The call's context reaches the handler: its deadline, and its cancellation.
func TestDeadlineAndCancellation(t *testing.T) {
	e := newEnv(t, routes)
	srv := serve(t, e.gate)
	client := testpb.NewTestServiceClient(grpctest.Dial(t, srv.Addr))
	tok := e.as.MustMint(jwkstest.Claims{"scope": "test:read test:stream"})

	ctx, cancel := context.WithTimeout(grpctest.WithToken(t.Context(), tok), 200*time.Millisecond)
	defer cancel()
	deadline, _ := ctx.Deadline()
	ctx = metadata.AppendToOutgoingContext(ctx, grpctest.BlockKey, "1")
	if _, err := client.UnaryCall(ctx, &testpb.SimpleRequest{}); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("%v, want DeadlineExceeded", err)
	}
	// The server ends the call at its deadline, or when the client's cancellation
	// arrives, whichever is first.
	c := srv.Service.Next(t, 5*time.Second)
	if !errors.Is(c.Ended, context.DeadlineExceeded) && !errors.Is(c.Ended, context.Canceled) {
		t.Fatalf("the service's call ended with %v", c.Ended)
	}
	if d := c.Deadline.Sub(deadline); c.Deadline.IsZero() || d < -50*time.Millisecond || d > time.Second {
		t.Fatalf("the service's deadline is %v off the client's", d)
	}

	sctx, stop := context.WithCancel(grpctest.WithToken(t.Context(), tok))
	defer stop()
	stream, err := client.FullDuplexCall(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: 1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	stop()
	if c := srv.Service.Next(t, 5*time.Second); !errors.Is(c.Ended, context.Canceled) {
		t.Fatalf("the service's stream ended with %v, want context.Canceled", c.Ended)
	}
}

// WithGateFunc decides each call with the Gate of the moment; none refuses.
func TestWithGateFunc(t *testing.T) {
	as := jwkstest.MustNewServer(jwkstest.WithAudience(audience))
	defer as.Close()
	first := newGate(t, as, routes)
	second := newGate(t, as, []middleware.Route{{Match: "/grpc.testing.TestService/", Scopes: []string{"test:admin"}}})
	var current atomic.Pointer[middleware.Gate]
	srv := serve(t, nil, grpcgate.WithGateFunc(current.Load))
	client := testpb.NewTestServiceClient(grpctest.Dial(t, srv.Addr))
	ctx := callContext(t)
	tok := as.MustMint(jwkstest.Claims{"scope": "test:read"})

	if err := unary(client, tok)(ctx); status.Code(err) != codes.Unavailable {
		t.Fatalf("without a Gate: %v, want Unavailable", err)
	}
	current.Store(first.gate)
	if err := unary(client, tok)(ctx); err != nil {
		t.Fatalf("first Gate: %v", err)
	}
	current.Store(second.gate)
	if err := unary(client, tok)(ctx); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("second Gate: %v, want PermissionDenied", err)
	}
}

func TestNilGatePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	grpcgate.UnaryServerInterceptor(nil)
}

// Request carries what the Gate needs from the call, and nothing a client could use to
// change the route.
func TestRequest(t *testing.T) {
	md := metadata.MD{
		":authority":    {"orders.example.com"},
		":path":         {"/evil/path"},
		"authorization": {"Bearer abc"},
		"dpop":          {"proof"},
		"x-request-id":  {"r-1"},
		"trace-bin":     {"\x00\x01"},
		"content-type":  {"application/grpc+proto"},
	}
	ctx := metadata.NewIncomingContext(context.Background(), md)
	cert := clientCert(t, "c")
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	ctx = peer.NewContext(ctx, &peer.Peer{
		Addr:     &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4242},
		AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}},
	})
	r := grpcgate.Request(ctx, "/orders.v1.Orders/GetOrder")
	switch {
	case r.Method != "POST" || r.URL.Path != "/orders.v1.Orders/GetOrder" || r.RequestURI != "/orders.v1.Orders/GetOrder":
		t.Errorf("method %s path %s uri %s", r.Method, r.URL.Path, r.RequestURI)
	case r.Host != "orders.example.com":
		t.Errorf("host %q", r.Host)
	case r.Header.Get("Authorization") != "Bearer abc" || r.Header.Get("DPoP") != "proof" || r.Header.Get("X-Request-Id") != "r-1":
		t.Errorf("header %v", r.Header)
	case r.Header.Get("Content-Type") != "application/grpc+proto":
		t.Errorf("content-type %q", r.Header.Get("Content-Type"))
	case len(r.Header.Values("Trace-Bin")) != 0 || len(r.Header.Values(":path")) != 0:
		t.Errorf("binary or pseudo-headers kept: %v", r.Header)
	case r.RemoteAddr != "127.0.0.1:4242" || r.TLS == nil || len(r.TLS.PeerCertificates) != 1:
		t.Errorf("remote %q, TLS %v", r.RemoteAddr, r.TLS)
	case r.Context() != ctx || r.ProtoMajor != 2:
		t.Error("not the call's context, or not HTTP/2")
	}
	// Without metadata and peer: still a request the Gate can decide (and deny).
	bare := grpcgate.Request(context.Background(), "/p.S/M")
	if bare.Header.Get("Content-Type") != "application/grpc" || bare.Host != "" || bare.TLS != nil {
		t.Errorf("bare request: %+v", bare)
	}
}

// A certificate-bound token (RFC 8705) passes over TLS with its client certificate,
// and only with it: the interceptor hands the Gate the peer's TLS state.
func TestCertificateBound(t *testing.T) {
	e := newEnv(t, routes)
	serverCert, good, bad := serverCert(t), clientCert(t, "good"), clientCert(t, "bad")
	sum := sha256.Sum256(good.Certificate[0])
	tok := e.as.MustMint(jwkstest.Claims{"scope": "test:read", "cnf": map[string]any{"x5t#S256": jwkstest.Encode(sum[:])}})
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12})
	srv := grpctest.Start(t, grpc.Creds(creds),
		grpc.ChainUnaryInterceptor(grpcgate.UnaryServerInterceptor(e.gate)))
	roots := x509.NewCertPool()
	leaf, _ := x509.ParseCertificate(serverCert.Certificate[0])
	roots.AddCert(leaf)
	ctx := callContext(t)
	for _, tt := range []struct {
		name string
		cert *tls.Certificate
		code codes.Code
	}{
		{"its certificate", &good, codes.OK},
		{"another certificate", &bad, codes.Unauthenticated},
		{"no certificate", nil, codes.Unauthenticated},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
			if tt.cert != nil {
				cfg.Certificates = []tls.Certificate{*tt.cert}
			}
			cc, err := grpc.NewClient(srv.Addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			_, err = testpb.NewTestServiceClient(cc).UnaryCall(grpctest.WithToken(ctx, tok), &testpb.SimpleRequest{})
			if status.Code(err) != tt.code {
				t.Fatalf("%v, want %v", err, tt.code)
			}
		})
	}
	if n := e.count("denied", "binding", "POST /grpc.testing.TestService/UnaryCall"); n != 2 {
		t.Errorf("binding denials %v, want 2", n)
	}
}

func clientCert(t testing.TB, cn string) tls.Certificate {
	t.Helper()
	return certificate(t, &x509.Certificate{Subject: pkixName(cn), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
}

func serverCert(t testing.TB) tls.Certificate {
	t.Helper()
	return certificate(t, &x509.Certificate{Subject: pkixName("127.0.0.1"), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature})
}

// certificate self-signs tmpl, valid for an hour either side of now.
func certificate(t testing.TB, tmpl *x509.Certificate) tls.Certificate {
	t.Helper()
	k := jwkstest.MustGenerateKey("", "ES256")
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, k.Public(), k.Private)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k.Private}
}

func pkixName(cn string) pkix.Name { return pkix.Name{CommonName: cn} }
