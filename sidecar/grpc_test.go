package sidecar_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tokengate/tokengate/internal/grpctest"
	"github.com/tokengate/tokengate/jwks/jwkstest"
	"github.com/tokengate/tokengate/sidecar"
)

// grpcConfig guards grpc-go's TestService behind an h2c upstream, by method, by whole
// service, and leaves the health service public. %[1]s is the issuer, %[3]q the
// audience; the upstream is filled in by startGRPC.
const grpcConfig = `
upstream: "h2c://UPSTREAM"
realm: test-api
issuers:
  - issuer: %[1]q
    audiences: [%[3]q]
routes:
  - match: "POST /grpc.testing.TestService/UnaryCall"
    scopes: [test:read]
  - match: "/grpc.testing.TestService/FullDuplexCall"
    scopes: [test:stream]
  - match: "/grpc.testing.TestService/"
    scopes: [test:admin]
  - match: "/grpc.health.v1.Health/"
    public: true
`

// grpcHarness is a sidecar in front of a real grpc-go server, and a client of the
// sidecar.
type grpcHarness struct {
	*harness
	api    *grpctest.Server
	cc     *grpc.ClientConn
	client testpb.TestServiceClient
}

func startGRPC(t testing.TB, extra string) *grpcHarness {
	t.Helper()
	api := grpctest.Start(t)
	h := startWith(t, strings.Replace(grpcConfig, "UPSTREAM", api.Addr, 1), extra)
	cc := grpctest.Dial(t, strings.TrimPrefix(h.url, "http://"))
	return &grpcHarness{harness: h, api: api, cc: cc, client: testpb.NewTestServiceClient(cc)}
}

func callContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// noCall fails t if a call reached the API.
func (g *grpcHarness) noCall(t *testing.T) {
	t.Helper()
	select {
	case c := <-g.api.Service.Calls():
		t.Fatalf("a call reached the API: %+v", c)
	default:
	}
}

func TestGRPCUnary(t *testing.T) {
	g := startGRPC(t, "")
	ctx := callContext(t)

	// Allowed: the identity headers reach the API as metadata, a spoofed one does
	// not, and trailers come back.
	tok := g.as.MustMint(jwkstest.Claims{"sub": "alice", "scope": "test:read"})
	out := metadata.AppendToOutgoingContext(grpctest.WithToken(ctx, tok), "x-auth-subject", "mallory", grpctest.EchoTrailerKey, "v1")
	var trailer metadata.MD
	resp, err := g.client.UnaryCall(out, &testpb.SimpleRequest{ResponseSize: 1000}, grpc.Trailer(&trailer))
	if err != nil || resp.GetUsername() != "alice" || len(resp.GetPayload().GetBody()) != 1000 {
		t.Fatalf("allowed: %v, %v", resp, err)
	}
	if got := trailer.Get(grpctest.EchoTrailerKey); len(got) != 1 || got[0] != "v1" {
		t.Fatalf("trailer %v", trailer)
	}
	c := g.api.Service.Next(t, 5*time.Second)
	if got := c.Metadata.Get("x-auth-subject"); len(got) != 1 || got[0] != "alice" {
		t.Fatalf("the API saw x-auth-subject %q", got)
	}

	// The API's own status passes through: code, and a message that needs
	// percent-encoding. grpc-go answers an error before any message Trailers-Only
	// (grpc-status in a HEADERS frame that ends the stream): the sidecar must not
	// split it into a header and an empty end of stream, whatever the timing, so
	// it is tried many times.
	for range 200 {
		_, err = g.client.UnaryCall(grpctest.WithToken(ctx, tok), &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.NotFound), Message: "no order 42 — 100% sure"}})
		if st := status.Convert(err); st.Code() != codes.NotFound || st.Message() != "no order 42 — 100% sure" {
			t.Fatalf("the API's status: %v", err)
		}
		g.api.Service.Next(t, 5*time.Second)
	}

	expired := g.as.MustMint(jwkstest.Claims{"scope": "test:read", "exp": time.Now().Add(-time.Hour).Unix()})
	for _, tt := range []struct {
		name      string
		call      func(context.Context, ...grpc.CallOption) error
		code      codes.Code
		challenge string
	}{
		{"no token", g.unary(""), codes.Unauthenticated, `Bearer realm="test-api"`},
		{"expired", g.unary(expired), codes.Unauthenticated, `error="invalid_token", error_description="the access token expired"`},
		{"missing scope", g.unary(g.as.MustMint(jwkstest.Claims{"scope": "test:stream"})), codes.PermissionDenied, `error="insufficient_scope"`},
		{"service route, missing scope", func(ctx context.Context, opts ...grpc.CallOption) error {
			_, err := g.client.EmptyCall(grpctest.WithToken(ctx, tok), &testpb.Empty{}, opts...)
			return err
		}, codes.PermissionDenied, `scope="test:admin"`},
		{"no route", func(ctx context.Context, opts ...grpc.CallOption) error {
			return g.cc.Invoke(grpctest.WithToken(ctx, tok), "/grpc.testing.UnimplementedService/UnimplementedCall", &testpb.Empty{}, &testpb.Empty{}, opts...)
		}, codes.PermissionDenied, `Bearer realm="test-api"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var header metadata.MD
			err := tt.call(ctx, grpc.Header(&header))
			if status.Code(err) != tt.code || status.Convert(err).Message() == "" {
				t.Fatalf("%v, want %v with a message", err, tt.code)
			}
			if ch := strings.Join(header.Get("www-authenticate"), ", "); !strings.Contains(ch, tt.challenge) {
				t.Fatalf("www-authenticate %q, want it to hold %q", ch, tt.challenge)
			}
			g.noCall(t)
		})
	}

	// The route for the whole service lets the method through with its scope.
	if _, err := g.client.EmptyCall(grpctest.WithToken(ctx, g.as.MustMint(jwkstest.Claims{"scope": "test:admin"})), &testpb.Empty{}); err != nil {
		t.Fatal(err)
	}
}

func (g *grpcHarness) unary(token string) func(context.Context, ...grpc.CallOption) error {
	return func(ctx context.Context, opts ...grpc.CallOption) error {
		_, err := g.client.UnaryCall(grpctest.WithToken(ctx, token), &testpb.SimpleRequest{}, opts...)
		return err
	}
}

// A bidirectional stream flows both ways through the sidecar, message by message.
func TestGRPCBidiStream(t *testing.T) {
	g := startGRPC(t, "")
	ctx := callContext(t)
	stream, err := g.client.FullDuplexCall(grpctest.WithToken(ctx, g.as.MustMint(jwkstest.Claims{"sub": "bob", "scope": "test:stream"})))
	if err != nil {
		t.Fatal(err)
	}
	// Each answer arrives before the next message is sent: nothing is buffered on the
	// way, in either direction.
	for i := range 5 {
		if err := stream.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: int32(10 * (i + 1))}, {Size: 1}}}); err != nil {
			t.Fatal(err)
		}
		for _, size := range []int{10 * (i + 1), 1} {
			resp, err := stream.Recv()
			if err != nil || len(resp.GetPayload().GetBody()) != size {
				t.Fatalf("message %d: %v %v", i, resp, err)
			}
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("end of stream: %v", err)
	}
	if c := g.api.Service.Next(t, 5*time.Second); c.Ended != nil || len(c.Metadata.Get("x-auth-subject")) != 1 {
		t.Fatalf("the API saw %+v", c)
	}

	for name, tok := range map[string]string{"no token": "", "missing scope": g.as.MustMint(jwkstest.Claims{"scope": "test:read"})} {
		t.Run(name, func(t *testing.T) {
			stream, err := g.client.FullDuplexCall(grpctest.WithToken(ctx, tok))
			if err != nil {
				t.Fatal(err)
			}
			want := codes.Unauthenticated
			if tok != "" {
				want = codes.PermissionDenied
			}
			if _, err := stream.Recv(); status.Code(err) != want {
				t.Fatalf("%v, want %v", err, want)
			}
			g.noCall(t)
		})
	}
}

// The client's deadline reaches the API (grpc-timeout), and so does its cancellation.
func TestGRPCDeadlineAndCancellation(t *testing.T) {
	g := startGRPC(t, "")
	tok := g.as.MustMint(jwkstest.Claims{"scope": "test:read test:stream"})

	ctx, cancel := context.WithTimeout(grpctest.WithToken(t.Context(), tok), 300*time.Millisecond)
	defer cancel()
	deadline, _ := ctx.Deadline()
	if _, err := g.client.UnaryCall(metadata.AppendToOutgoingContext(ctx, grpctest.BlockKey, "1"), &testpb.SimpleRequest{}); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("%v, want DeadlineExceeded", err)
	}
	c := g.api.Service.Next(t, 5*time.Second)
	if !errors.Is(c.Ended, context.DeadlineExceeded) && !errors.Is(c.Ended, context.Canceled) {
		t.Fatalf("the API's call ended with %v", c.Ended)
	}
	if d := c.Deadline.Sub(deadline); c.Deadline.IsZero() || d < -100*time.Millisecond || d > time.Second {
		t.Fatalf("the API's deadline is %v off the client's (%v)", d, c.Deadline)
	}

	sctx, stop := context.WithCancel(grpctest.WithToken(t.Context(), tok))
	defer stop()
	stream, err := g.client.FullDuplexCall(sctx)
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
	if c := g.api.Service.Next(t, 5*time.Second); !errors.Is(c.Ended, context.Canceled) {
		t.Fatalf("the API's stream ended with %v, want context.Canceled", c.Ended)
	}
}

// The health service, on a public route, needs no token: Check, and Watch, a
// server stream that stays open.
func TestGRPCHealthIsPublic(t *testing.T) {
	g := startGRPC(t, "")
	ctx := callContext(t)
	health := healthpb.NewHealthClient(g.cc)
	if r, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: "grpc.testing.TestService"}); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("check: %v %v", r, err)
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	watch, err := health.Watch(wctx, &healthpb.HealthCheckRequest{Service: "grpc.testing.TestService"})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := watch.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("watch: %v %v", r, err)
	}
	g.api.Health.SetServingStatus("grpc.testing.TestService", healthpb.HealthCheckResponse_NOT_SERVING)
	if r, err := watch.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("watch after a change: %v %v", r, err)
	}
}

// An upstream that does not answer is UNAVAILABLE, the gRPC way.
func TestGRPCUpstreamDown(t *testing.T) {
	g := startGRPC(t, "")
	g.api.Stop()
	_, err := g.client.UnaryCall(grpctest.WithToken(callContext(t), g.as.MustMint(jwkstest.Claims{"scope": "test:read"})), &testpb.SimpleRequest{})
	if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != "the API behind tokengate did not answer" {
		t.Fatalf("%v, want Unavailable from the sidecar", err)
	}
}

// A gRPC call waits for its response headers as long as its deadline says, not
// Options.UpstreamTimeout: a server sends them with its first message, which may come
// late. Had the timeout applied, the call would end UNAVAILABLE from the sidecar
// after 100 ms; it ends at the client's deadline instead.
func TestGRPCOutlivesUpstreamTimeout(t *testing.T) {
	api := grpctest.Start(t)
	h := startWith(t, strings.Replace(grpcConfig, "UPSTREAM", api.Addr, 1), "", func(o *sidecar.Options) { o.UpstreamTimeout = 100 * time.Millisecond })
	client := testpb.NewTestServiceClient(grpctest.Dial(t, strings.TrimPrefix(h.url, "http://")))
	ctx, cancel := context.WithTimeout(grpctest.WithToken(t.Context(), h.as.MustMint(jwkstest.Claims{"scope": "test:read"})), time.Second)
	defer cancel()
	start := time.Now()
	_, err := client.UnaryCall(metadata.AppendToOutgoingContext(ctx, grpctest.BlockKey, "1"), &testpb.SimpleRequest{})
	if status.Code(err) != codes.DeadlineExceeded || time.Since(start) < time.Second {
		t.Fatalf("%v after %v, want DeadlineExceeded at the client's deadline", err, time.Since(start))
	}
	api.Service.Next(t, 5*time.Second)
}

// h2cConfig is a plain HTTP API behind an h2c upstream.
const h2cConfig = `
upstream: "h2c://UPSTREAM"
realm: test-api
issuers:
  - issuer: %[1]q
    audiences: [%[3]q]
routes:
  - match: "/proto"
  - match: "/slow"
  - match: "/ws"
    websocket: true
`

// An h2c upstream serves plain HTTP requests too: over HTTP/2, with
// Options.UpstreamTimeout on the response headers, and WebSocket handshakes over
// HTTP/1.1, which an h2c server also speaks.
func TestH2CUpstream(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/proto", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, r.Proto) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		typ, msg, err := c.Read(r.Context())
		if err != nil {
			return
		}
		_ = c.Write(r.Context(), typ, append([]byte("echo: "), msg...))
		_, _, _ = c.Read(r.Context()) // until the client closes
	})
	up := httptest.NewUnstartedServer(mux)
	up.Config.Protocols = new(http.Protocols)
	up.Config.Protocols.SetHTTP1(true)
	up.Config.Protocols.SetUnencryptedHTTP2(true)
	up.Start()
	defer up.Close()
	h := startWith(t, strings.Replace(h2cConfig, "UPSTREAM", strings.TrimPrefix(up.URL, "http://"), 1), "",
		func(o *sidecar.Options) { o.UpstreamTimeout = 100 * time.Millisecond })
	tok := h.as.MustMint(nil)

	if resp, body := h.do(t, "GET", "/proto", tok); resp.StatusCode != 200 || body != "HTTP/2.0" {
		t.Fatalf("%d %q, want 200 HTTP/2.0", resp.StatusCode, body)
	}
	if resp, body := h.do(t, "GET", "/slow", tok); resp.StatusCode != 504 || !strings.Contains(body, "gateway_timeout") {
		t.Fatalf("%d %s, want 504", resp.StatusCode, body)
	}

	ctx := callContext(t)
	c := h.dialWebSocket(t, ctx, "/ws", tok)
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.Read(ctx); err != nil || string(msg) != "echo: hello" {
		t.Fatalf("%q %v", msg, err)
	}
	c.Close(websocket.StatusNormalClosure, "")
}
