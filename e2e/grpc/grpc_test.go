//go:build e2e

// Package grpc_test drives the real tokengate binary in front of a real grpc-go
// server (grpc-go's interop TestService and the standard health service) over an h2c
// upstream, with a real grpc-go client: unary and bidirectional streaming calls
// allowed; a missing, an expired and a forged token refused with UNAUTHENTICATED and
// the WWW-Authenticate challenge in the header metadata; a missing scope and a method
// no route names refused with PERMISSION_DENIED; the client's deadline reaching the
// server (a slow call ends DEADLINE_EXCEEDED) and its cancellation ending the server's
// stream; the health service public; every decision counted under the gRPC method's
// route.
//
//	go test -tags e2e -count=1 -v ./e2e/grpc/
package grpc_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tokengate/tokengate/internal/e2etest"
	"github.com/tokengate/tokengate/internal/grpctest"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	audience = "https://orders.example.com"
	unary    = "POST /grpc.testing.TestService/UnaryCall"
	duplex   = "/grpc.testing.TestService/FullDuplexCall"
	health   = "/grpc.health.v1.Health/"
)

// config puts the sidecar in front of the gRPC server at upstream (host:port).
func config(issuer, upstream string) string {
	return fmt.Sprintf(`upstream: "h2c://%s"
realm: orders-api
issuers:
  - issuer: %q
    audiences: [%q]
routes:
  - match: %q
    scopes: [orders:read]
  - match: %q
    scopes: [orders:stream]
  - match: %q
    public: true
`, upstream, issuer, audience, unary, duplex, health)
}

// rig is an authorization server, a gRPC server, the sidecar process in front of it,
// and a client connection to the sidecar.
type rig struct {
	as     *jwkstest.Server
	api    *grpctest.Server
	sc     *e2etest.Sidecar
	cc     *grpc.ClientConn
	client testpb.TestServiceClient
}

func start(t *testing.T) *rig {
	t.Helper()
	as, err := jwkstest.NewServer(jwkstest.WithAudience(audience))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(as.Close)
	r := &rig{as: as, api: grpctest.Start(t)}
	r.sc = e2etest.StartSidecar(t, e2etest.Options{Config: config(as.Issuer, r.api.Addr)})
	r.cc = grpctest.Dial(t, r.sc.Listen)
	r.client = testpb.NewTestServiceClient(r.cc)
	return r
}

func (r *rig) token(claims jwkstest.Claims) string { return r.as.MustMint(claims) }

// noCall fails t if a call reached the gRPC server.
func (r *rig) noCall(t *testing.T) {
	t.Helper()
	select {
	case c := <-r.api.Service.Calls():
		t.Fatalf("a call reached the server: %s", c.Method)
	default:
	}
}

func callContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestGRPCThroughTheSidecar(t *testing.T) {
	r := start(t)

	t.Run("unary allowed", func(t *testing.T) {
		ctx := callContext(t)
		tok := r.token(jwkstest.Claims{"sub": "alice", "scope": "orders:read"})
		var trailer metadata.MD
		out := metadata.AppendToOutgoingContext(grpctest.WithToken(ctx, tok), grpctest.EchoTrailerKey, "t-1")
		resp, err := r.client.UnaryCall(out, &testpb.SimpleRequest{ResponseSize: 32 << 10}, grpc.Trailer(&trailer))
		if err != nil || len(resp.GetPayload().GetBody()) != 32<<10 || resp.GetUsername() != "alice" {
			t.Fatalf("%v %v", resp.GetUsername(), err)
		}
		if got := trailer.Get(grpctest.EchoTrailerKey); len(got) != 1 || got[0] != "t-1" {
			t.Fatalf("trailer %v", trailer)
		}
		c := r.api.Service.Next(t, 5*time.Second)
		t.Logf("the server saw x-auth-subject %q, :authority %q", c.Metadata.Get("x-auth-subject"), c.Metadata.Get(":authority"))
		// The API's own error status passes through unchanged. grpc-go sends it
		// Trailers-Only (grpc-status on the HEADERS frame that ends the stream), which
		// a proxy must not split, whatever the timing: tried many times.
		const times = 100
		for range times {
			_, err = r.client.UnaryCall(grpctest.WithToken(ctx, tok), &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.FailedPrecondition), Message: "order 42 is closed"}})
			if st := status.Convert(err); st.Code() != codes.FailedPrecondition || st.Message() != "order 42 is closed" {
				t.Fatalf("the API's status: %v", err)
			}
			r.api.Service.Next(t, 5*time.Second)
		}
		t.Logf("%d error statuses from the API passed through intact", times)
	})

	t.Run("bidi streaming allowed", func(t *testing.T) {
		stream, err := r.client.FullDuplexCall(grpctest.WithToken(callContext(t), r.token(jwkstest.Claims{"sub": "bob", "scope": "orders:stream"})))
		if err != nil {
			t.Fatal(err)
		}
		const messages = 20
		for i := range messages {
			if err := stream.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: int32(i + 1)}}}); err != nil {
				t.Fatal(err)
			}
			// The answer to each message arrives before the next one is sent.
			if resp, err := stream.Recv(); err != nil || len(resp.GetPayload().GetBody()) != i+1 {
				t.Fatalf("message %d: %v", i, err)
			}
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("end of stream: %v", err)
		}
		if c := r.api.Service.Next(t, 5*time.Second); c.Ended != nil {
			t.Fatalf("the server's stream ended with %v", c.Ended)
		}
		t.Logf("%d messages each way on one stream", messages)
	})

	expired := r.token(jwkstest.Claims{"scope": "orders:read orders:stream", "exp": time.Now().Add(-time.Hour).Unix()})
	valid := r.token(jwkstest.Claims{"scope": "orders:read orders:stream"})
	forged := valid[:len(valid)-4] + "AAAA"
	denials := []struct {
		name, token string
		code        codes.Code
		challenge   string
	}{
		{"missing token", "", codes.Unauthenticated, `Bearer realm="orders-api"`},
		{"expired token", expired, codes.Unauthenticated, `Bearer realm="orders-api", error="invalid_token", error_description="the access token expired"`},
		{"forged token", forged, codes.Unauthenticated, `error="invalid_token"`},
		{"missing scope", r.token(jwkstest.Claims{"scope": "orders:stream"}), codes.PermissionDenied, `error="insufficient_scope", error_description="the access token lacks a scope this route requires", scope="orders:read"`},
	}
	for _, d := range denials {
		t.Run("unary "+d.name, func(t *testing.T) {
			var header metadata.MD
			_, err := r.client.UnaryCall(grpctest.WithToken(callContext(t), d.token), &testpb.SimpleRequest{}, grpc.Header(&header))
			if status.Code(err) != d.code {
				t.Fatalf("%v, want %v", err, d.code)
			}
			if ch := header.Get("www-authenticate"); len(ch) != 1 || !strings.Contains(ch[0], d.challenge) {
				t.Fatalf("www-authenticate %q, want it to hold %q", ch, d.challenge)
			}
			r.noCall(t)
			t.Logf("%v %q; www-authenticate: %s", status.Code(err), status.Convert(err).Message(), header.Get("www-authenticate")[0])
		})
	}
	t.Run("stream missing token", func(t *testing.T) {
		stream, err := r.client.FullDuplexCall(callContext(t))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("%v, want Unauthenticated", err)
		}
		if h, _ := stream.Header(); len(h.Get("www-authenticate")) != 1 {
			t.Fatalf("header %v", h)
		}
		r.noCall(t)
	})
	t.Run("stream missing scope", func(t *testing.T) {
		stream, err := r.client.FullDuplexCall(grpctest.WithToken(callContext(t), r.token(jwkstest.Claims{"scope": "orders:read"})))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("%v, want PermissionDenied", err)
		}
		r.noCall(t)
	})
	t.Run("method no route names", func(t *testing.T) {
		_, err := r.client.EmptyCall(grpctest.WithToken(callContext(t), valid), &testpb.Empty{})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("%v, want PermissionDenied", err)
		}
		r.noCall(t)
	})

	t.Run("deadline passed through", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(grpctest.WithToken(t.Context(), valid), 2*time.Second)
		defer cancel()
		deadline, _ := ctx.Deadline()
		if _, err := r.client.UnaryCall(ctx, &testpb.SimpleRequest{}); err != nil {
			t.Fatal(err)
		}
		c := r.api.Service.Next(t, 5*time.Second)
		if d := c.Deadline.Sub(deadline); c.Deadline.IsZero() || d < -200*time.Millisecond || d > time.Second {
			t.Fatalf("the server's deadline is %v off the client's (%v)", d, c.Deadline)
		}
		t.Logf("the server's deadline is %v after the client's", c.Deadline.Sub(deadline).Round(time.Microsecond))

		// A call slower than its deadline ends DEADLINE_EXCEEDED, and the server's
		// call ends with it.
		slow, cancel := context.WithTimeout(grpctest.WithToken(t.Context(), valid), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := r.client.UnaryCall(metadata.AppendToOutgoingContext(slow, grpctest.BlockKey, "1"), &testpb.SimpleRequest{})
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("%v, want DeadlineExceeded", err)
		}
		took := time.Since(start)
		c = r.api.Service.Next(t, 5*time.Second)
		if !errors.Is(c.Ended, context.DeadlineExceeded) && !errors.Is(c.Ended, context.Canceled) {
			t.Fatalf("the server's call ended with %v", c.Ended)
		}
		t.Logf("slow call: DeadlineExceeded after %v; the server's call ended with %v", took.Round(time.Millisecond), c.Ended)
	})

	t.Run("cancellation passed through", func(t *testing.T) {
		ctx, cancel := context.WithCancel(grpctest.WithToken(t.Context(), valid))
		defer cancel()
		stream, err := r.client.FullDuplexCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: 1}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatal(err)
		}
		cancel()
		if c := r.api.Service.Next(t, 5*time.Second); !errors.Is(c.Ended, context.Canceled) {
			t.Fatalf("the server's stream ended with %v, want context.Canceled", c.Ended)
		}
	})

	t.Run("health is public", func(t *testing.T) {
		ctx := callContext(t)
		hc := healthpb.NewHealthClient(r.cc)
		if resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("check: %v %v", resp, err)
		}
		wctx, stop := context.WithCancel(ctx)
		defer stop()
		watch, err := hc.Watch(wctx, &healthpb.HealthCheckRequest{Service: "grpc.testing.TestService"})
		if err != nil {
			t.Fatal(err)
		}
		if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("watch: %v %v", resp, err)
		}
		r.api.Health.SetServingStatus("grpc.testing.TestService", healthpb.HealthCheckResponse_NOT_SERVING)
		if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("watch after a change: %v %v", resp, err)
		}
		r.api.Health.SetServingStatus("grpc.testing.TestService", healthpb.HealthCheckResponse_SERVING)
	})

	t.Run("decisions counted", func(t *testing.T) {
		m := r.sc.Metrics(t)
		for _, c := range []struct {
			labels []string
			min    float64
		}{
			{[]string{`decision="allowed"`, `route="` + unary + `"`}, 3},
			{[]string{`decision="allowed"`, `route="` + duplex + `"`}, 2},
			{[]string{`decision="allowed"`, `route="` + health + `"`}, 2},
			{[]string{`decision="denied"`, `reason="missing_token"`}, 2},
			{[]string{`decision="denied"`, `reason="expired"`}, 1},
			{[]string{`decision="denied"`, `reason="signature"`}, 1},
			{[]string{`decision="denied"`, `reason="insufficient_scope"`}, 2},
			{[]string{`decision="denied"`, `reason="no_route"`}, 1},
		} {
			if n := e2etest.Sum(m, "tokengate_decisions_total", c.labels...); n < c.min {
				t.Errorf("tokengate_decisions_total%v = %v, want at least %v", c.labels, n, c.min)
			}
		}
	})
}
