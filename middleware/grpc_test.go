package middleware_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tokengate/tokengate/internal/grpctest"
	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/jwks/jwkstest"
	"github.com/tokengate/tokengate/middleware"
)

// grpcRequest is a gRPC call's request as Handler sees it: POST, HTTP/2, Content-Type
// application/grpc, header lines as "Name: value".
func grpcRequest(target string, headers ...string) *http.Request {
	req := httptest.NewRequest("POST", target, strings.NewReader("\x00\x00\x00\x00\x00"))
	req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/2.0", 2, 0
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	for _, h := range headers {
		name, value, _ := strings.Cut(h, ": ")
		req.Header.Add(name, value)
	}
	return req
}

// A denied gRPC call is answered the gRPC way: 200, application/grpc, no body, the
// challenge in the header, grpc-status and grpc-message in the trailers.
func TestGRPCDenials(t *testing.T) {
	e := newEnv(t, nil)
	expired := e.as.MustMint(jwkstest.Claims{"scope": "orders:write", "exp": time.Now().Add(-time.Hour).Unix()})
	tests := []struct {
		name      string
		target    string
		headers   []string
		code      string
		message   string
		challenge string
	}{
		{"no token", "/orders", nil, "16", "a bearer access token is required", `Bearer realm="orders-api"`},
		{"expired", "/orders", []string{bearer(expired)}, "16", "the access token expired",
			`Bearer realm="orders-api", error="invalid_token", error_description="the access token expired"`},
		{"bad signature", "/orders", []string{bearer(e.as.MustMint(nil) + "x")}, "16", "", `error="invalid_token"`},
		{"insufficient scope", "/orders", []string{bearer(e.as.MustMint(jwkstest.Claims{"scope": "orders:read"}))}, "7",
			"the access token lacks a scope this route requires", `error="insufficient_scope", error_description="the access token lacks a scope this route requires", scope="orders:write"`},
		{"no route", "/grpc.testing.TestService/UnaryCall", []string{bearer(e.as.MustMint(nil))}, "7", "no route allows this request", `Bearer realm="orders-api"`},
		{"two tokens", "/orders", []string{bearer(e.as.MustMint(nil)), bearer(e.as.MustMint(nil))}, "3",
			"the request carries a malformed or duplicated access token", `error="invalid_request"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.api.calls.Load()
			w := httptest.NewRecorder()
			e.h.ServeHTTP(w, grpcRequest(tt.target, tt.headers...))
			res := w.Result()
			if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/grpc" {
				t.Fatalf("status %d, Content-Type %q; want 200 application/grpc", res.StatusCode, res.Header.Get("Content-Type"))
			}
			if got := res.Trailer.Get("Grpc-Status"); got != tt.code {
				t.Errorf("grpc-status %q, want %q", got, tt.code)
			}
			if msg := res.Trailer.Get("Grpc-Message"); tt.message != "" && msg != tt.message || msg == "" {
				t.Errorf("grpc-message %q, want %q", msg, tt.message)
			}
			if res.Header.Get("Grpc-Status") != "" {
				t.Error("grpc-status in the header as well as the trailers")
			}
			if ch := res.Header.Get("WWW-Authenticate"); !strings.Contains(ch, tt.challenge) {
				t.Errorf("WWW-Authenticate %q, want it to hold %q", ch, tt.challenge)
			}
			if res.Header.Get(middleware.RequestIDHeader) == "" {
				t.Error("no X-Request-Id")
			}
			if w.Body.Len() != 0 {
				t.Errorf("a body: %q", w.Body.String())
			}
			if e.api.calls.Load() != before {
				t.Fatal("the API was called")
			}
		})
	}

	t.Run("allowed", func(t *testing.T) {
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, grpcRequest("/orders", bearer(e.as.MustMint(jwkstest.Claims{"scope": "orders:write"}))))
		if w.Code != http.StatusOK || w.Body.String() != "ok" {
			t.Fatalf("%d %q: the API did not answer", w.Code, w.Body.String())
		}
	})

	// A gRPC call over HTTP/1 (which no gRPC client makes, but a proxy might) has no
	// trailers without a body: the status goes in the header, as a Trailers-Only
	// response would carry it.
	t.Run("HTTP/1", func(t *testing.T) {
		req := grpcRequest("/orders")
		req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/1.1", 1, 1
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, req)
		if w.Code != http.StatusOK || w.Header().Get("Grpc-Status") != "16" || w.Header().Get("Grpc-Message") == "" {
			t.Fatalf("%d %v", w.Code, w.Header())
		}
	})
}

// Only application/grpc, alone or with "+codec" or ";parameters", is a gRPC call.
func TestGRPCContentTypes(t *testing.T) {
	e := newEnv(t, nil)
	for ct, isGRPC := range map[string]bool{
		"application/grpc":                true,
		"application/grpc+proto":          true,
		"application/grpc+json":           true,
		"application/grpc;charset=utf-8":  true,
		"APPLICATION/gRPC":                true,
		"application/grpc-web":            false,
		"application/grpc-web+proto":      false,
		"application/grpcx":               false,
		"application/json":                false,
		"text/plain; x=application/grpc":  false,
		"":                                false,
		"application/grp":                 false,
		"application/grpc-web-text+proto": false,
	} {
		req := grpcRequest("/orders")
		req.Header.Set("Content-Type", ct)
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, req)
		switch {
		case isGRPC && (w.Code != http.StatusOK || w.Result().Trailer.Get("Grpc-Status") != "16"):
			t.Errorf("%q: %d %v, want a gRPC denial", ct, w.Code, w.Result().Trailer)
		case !isGRPC && w.Code != http.StatusUnauthorized:
			t.Errorf("%q: %d, want 401", ct, w.Code)
		}
	}
	// Two Content-Type fields: not a call a gRPC server would take; a plain denial.
	req := grpcRequest("/orders")
	req.Header.Add("Content-Type", "application/grpc")
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, req)
	if w.Code != http.StatusUnauthorized {
		t.Errorf("two Content-Types: %d, want 401", w.Code)
	}
}

// A 503 keeps its Retry-After, and says UNAVAILABLE.
func TestGRPCKeysUnavailable(t *testing.T) {
	as, err := jwkstest.NewServer(jwkstest.WithAudience(audience))
	if err != nil {
		t.Fatal(err)
	}
	defer as.Close()
	as.SetDown(true)
	gate, err := middleware.New(t.Context(), middleware.Config{
		Realm:   "orders-api",
		Issuers: []middleware.Issuer{{Config: jwks.Config{Issuer: as.Issuer}, Audiences: []string{audience}}},
		Routes:  defaultRoutes,
	}, middleware.Options{Registerer: newRegistry(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer gate.Close()
	w := httptest.NewRecorder()
	gate.Handler(&recorder{}).ServeHTTP(w, grpcRequest("/orders", bearer(as.MustMint(jwkstest.Claims{"scope": "orders:write"}))))
	res := w.Result()
	if res.Trailer.Get("Grpc-Status") != "14" || res.Header.Get("Retry-After") == "" {
		t.Fatalf("trailers %v, header %v; want grpc-status 14 and Retry-After", res.Trailer, res.Header)
	}
}

// GRPCStatus maps every denial by its HTTP status, with the fixed description, which
// needs no percent-encoding.
func TestGRPCStatus(t *testing.T) {
	want := map[int]codes.Code{400: codes.InvalidArgument, 401: codes.Unauthenticated, 403: codes.PermissionDenied, 503: codes.Unavailable}
	e := newEnv(t, nil)
	for _, reason := range middleware.Reasons() {
		if reason == middleware.ReasonOK {
			continue
		}
		d := middleware.Decision{Outcome: middleware.DecisionDenied, Reason: reason, Status: statusOf(t, reason)}
		code, msg := middleware.GRPCStatus(d)
		if codes.Code(code) != want[d.Status] {
			t.Errorf("%s (%d): code %v, want %v", reason, d.Status, codes.Code(code), want[d.Status])
		}
		if msg == "" || strings.ContainsFunc(msg, func(r rune) bool { return r < ' ' || r > '~' || r == '%' }) {
			t.Errorf("%s: message %q", reason, msg)
		}
		h := e.gate.DenialHeader(d)
		if h.Get("WWW-Authenticate") == "" || (d.Status == 503) != (h.Get("Retry-After") != "") {
			t.Errorf("%s: DenialHeader %v", reason, h)
		}
	}
}

// statusOf is the HTTP status of a reason, from docs/metrics.md's table.
func statusOf(t *testing.T, r middleware.Reason) int {
	switch r {
	case middleware.ReasonMalformedRequest:
		return 400
	case middleware.ReasonInsufficientScope, middleware.ReasonNoRoute, middleware.ReasonRule:
		return 403
	case middleware.ReasonKeysUnavailable, middleware.ReasonReplayStoreUnavailable, middleware.ReasonIntrospectionUnavailable:
		return 503
	}
	return 401
}

// NewContext puts a Decision where ClaimsFrom and DecisionFrom find it.
func TestNewContext(t *testing.T) {
	e := newEnv(t, nil)
	req := httptest.NewRequest("GET", "/orders/1", nil)
	req.Header.Set("Authorization", "Bearer "+e.as.MustMint(jwkstest.Claims{"sub": "alice", "scope": "orders:read"}))
	d := e.gate.Decide(req)
	ctx := middleware.NewContext(context.Background(), d)
	if c, ok := middleware.ClaimsFrom(ctx); !ok || c.Subject != "alice" {
		t.Fatalf("ClaimsFrom: %v %v", c, ok)
	}
	if got, ok := middleware.DecisionFrom(ctx); !ok || got.Route != "GET /orders/{id}" {
		t.Fatalf("DecisionFrom: %+v %v", got, ok)
	}
	denied := middleware.NewContext(context.Background(), middleware.Decision{Outcome: middleware.DecisionShadowDenied})
	if _, ok := middleware.ClaimsFrom(denied); ok {
		t.Fatal("claims from a shadow denial")
	}
}

// A real grpc-go client over h2c against Handler in front of a real grpc-go server
// (grpc.Server.ServeHTTP): the allowed call reaches the service with its claims, the
// denied ones end with the gRPC code, and the challenge arrives as header metadata.
func TestGRPCRoundTrip(t *testing.T) {
	e := newEnv(t, func(c *middleware.Config) {
		c.Routes = []middleware.Route{
			{Match: "POST /grpc.testing.TestService/UnaryCall", Scopes: []string{"orders:read"}},
			{Match: "/grpc.health.v1.Health/", Public: true},
		}
	})
	svc := grpctest.NewService()
	api := grpc.NewServer()
	grpctest.Register(api, svc)
	defer api.Stop()
	srv := httptest.NewUnstartedServer(e.gate.Handler(api))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	defer srv.Close()

	cc := grpctest.Dial(t, strings.TrimPrefix(srv.URL, "http://"))
	client := testpb.NewTestServiceClient(cc)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	tok := e.as.MustMint(jwkstest.Claims{"sub": "alice", "scope": "orders:read"})
	resp, err := client.UnaryCall(grpctest.WithToken(ctx, tok), &testpb.SimpleRequest{ResponseSize: 3})
	if err != nil || resp.GetUsername() != "alice" || len(resp.GetPayload().GetBody()) != 3 {
		t.Fatalf("allowed call: %v %v", resp, err)
	}
	if c := svc.Next(t, 5*time.Second); c.Subject != "alice" {
		t.Fatalf("the service saw subject %q, want alice", c.Subject)
	}

	for _, tt := range []struct {
		name  string
		token string
		code  codes.Code
	}{
		{"no token", "", codes.Unauthenticated},
		{"expired", e.as.MustMint(jwkstest.Claims{"scope": "orders:read", "exp": time.Now().Add(-time.Hour).Unix()}), codes.Unauthenticated},
		{"insufficient scope", e.as.MustMint(jwkstest.Claims{"scope": "orders:write"}), codes.PermissionDenied},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var header metadata.MD
			_, err := client.UnaryCall(grpctest.WithToken(ctx, tt.token), &testpb.SimpleRequest{}, grpc.Header(&header))
			if status.Code(err) != tt.code {
				t.Fatalf("%v, want %v", err, tt.code)
			}
			if ch := header.Get("www-authenticate"); len(ch) != 1 || !strings.HasPrefix(ch[0], `Bearer realm="orders-api"`) {
				t.Fatalf("header metadata www-authenticate %q", ch)
			}
			if status.Convert(err).Message() == "" {
				t.Fatal("no message")
			}
		})
	}
	select {
	case c := <-svc.Calls():
		t.Fatalf("a denied call reached the service: %+v", c)
	default:
	}

	// The health service on a public route needs no token.
	hc, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: "grpc.testing.TestService"})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health check: %v %v", hc, err)
	}
}
