package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/jwks/jwkstest"
	"github.com/tokengate/tokengate/middleware"
)

// A Go service protects its routes with scopes and reads the caller from the claims.
func ExampleGate_Handler() {
	as := jwkstest.MustNewServer(jwkstest.WithAudience("https://orders.example.com")) // the authorization server
	defer as.Close()

	gate, err := middleware.New(context.Background(), middleware.Config{
		Realm: "orders-api",
		Issuers: []middleware.Issuer{{
			Config:    jwks.Config{Issuer: as.Issuer},
			Audiences: []string{"https://orders.example.com"},
		}},
		Routes: []middleware.Route{
			{Match: "GET /healthz", Public: true},
			{Match: "GET /orders/{id}", Scopes: []string{"orders:read"}},
			{Match: "POST /orders", AnyScopes: []string{"orders:write", "orders:admin"}},
		},
	}, middleware.Options{Registerer: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	defer gate.Close()
	waitForKeys(gate)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		claims, ok := middleware.ClaimsFrom(r.Context())
		if !ok { // never on this route behind Handler; check anyway, never panic
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		fmt.Fprintf(w, "order %s for %s", r.PathValue("id"), claims.Subject)
	})
	api := httptest.NewServer(gate.Handler(mux))
	defer api.Close()

	get := func(token string) {
		req, _ := http.NewRequest("GET", api.URL+"/orders/42", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusOK {
			fmt.Println(resp.StatusCode, string(body))
			return
		}
		fmt.Println(resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	get(as.MustMint(jwkstest.Claims{"sub": "alice", "scope": "orders:read"}))
	get("")
	get(as.MustMint(jwkstest.Claims{"scope": "orders:read", "exp": time.Now().Add(-time.Hour).Unix()}))
	get(as.MustMint(jwkstest.Claims{"scope": "orders:write"}))
	// Output:
	// 200 order 42 for alice
	// 401 Bearer realm="orders-api"
	// 401 Bearer realm="orders-api", error="invalid_token", error_description="the access token expired"
	// 403 Bearer realm="orders-api", error="insufficient_scope", error_description="the access token lacks a scope this route requires", scope="orders:read"
}

// A service that routes itself puts the requirement on each handler instead of a route
// table.
func ExampleGate_Require() {
	as := jwkstest.MustNewServer(jwkstest.WithAudience("https://orders.example.com"))
	defer as.Close()
	gate, err := middleware.New(context.Background(), middleware.Config{
		Issuers: []middleware.Issuer{{Config: jwks.Config{Issuer: as.Issuer}, Audiences: []string{"https://orders.example.com"}}},
	}, middleware.Options{Registerer: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	defer gate.Close()
	waitForKeys(gate)

	mux := http.NewServeMux()
	mux.Handle("POST /orders", gate.Require("orders:write")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, ok := middleware.ClaimsFrom(r.Context())
		if !ok {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		fmt.Fprintf(w, "created by %s", claims.ClientID)
	})))

	for _, scope := range []string{"orders:write", "orders:read"} {
		req := httptest.NewRequest("POST", "/orders", nil)
		req.Header.Set("Authorization", "Bearer "+as.MustMint(jwkstest.Claims{"scope": scope, "client_id": "shop"}))
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		fmt.Println(scope, w.Code, w.Body.String())
	}
	// Output:
	// orders:write 200 created by shop
	// orders:read 403 {"error":"insufficient_scope","error_description":"the access token lacks a scope this route requires"}
}

// Decide is the decision without a response: what the sidecar and the check command
// act on.
func ExampleGate_Decide() {
	as := jwkstest.MustNewServer(jwkstest.WithAudience("https://orders.example.com"))
	defer as.Close()
	gate, err := middleware.New(context.Background(), middleware.Config{
		Issuers: []middleware.Issuer{{Config: jwks.Config{Issuer: as.Issuer}, Audiences: []string{"https://orders.example.com"}}},
		Routes:  []middleware.Route{{Match: "GET /orders/{id}", Scopes: []string{"orders:read"}}},
	}, middleware.Options{Registerer: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	defer gate.Close()
	waitForKeys(gate)

	req := httptest.NewRequest("GET", "/orders/1", nil)
	req.Header.Set("Authorization", "Bearer "+as.MustMint(jwkstest.Claims{"aud": "https://other.example"}))
	d := gate.Decide(req)
	fmt.Println(d.Outcome, d.Reason, d.Status, d.Route)
	// Output:
	// denied audience 401 GET /orders/{id}
}

// ClaimsFrom returns false where a request carries no verified claims: on a public
// route reached without a valid token, or for a shadow-mode denial. Check ok; a handler
// that dereferences the claims without it panics there.
func ExampleClaimsFrom() {
	as := jwkstest.MustNewServer(jwkstest.WithAudience("https://orders.example.com"))
	defer as.Close()
	gate, err := middleware.New(context.Background(), middleware.Config{
		Issuers: []middleware.Issuer{{Config: jwks.Config{Issuer: as.Issuer}, Audiences: []string{"https://orders.example.com"}}},
		Routes:  []middleware.Route{{Match: "GET /", Public: true}},
	}, middleware.Options{Registerer: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	defer gate.Close()
	waitForKeys(gate)

	h := gate.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if claims, ok := middleware.ClaimsFrom(r.Context()); ok {
			fmt.Fprintf(w, "hello %s", claims.Subject)
			return
		}
		fmt.Fprint(w, "hello, whoever you are")
	}))
	for _, token := range []string{as.MustMint(jwkstest.Claims{"sub": "alice"}), "", "not-a-token"} {
		req := httptest.NewRequest("GET", "/", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		fmt.Println(w.Code, w.Body.String())
	}
	// Output:
	// 200 hello alice
	// 200 hello, whoever you are
	// 200 hello, whoever you are
}

// New reports every problem of a configuration at once, each naming its field.
func ExampleNew() {
	_, err := middleware.New(context.Background(), middleware.Config{
		Issuers: []middleware.Issuer{{Config: jwks.Config{Issuer: "https://auth.example.com"}}},
		Routes:  []middleware.Route{{Match: "GET /orders/{id}", Scopes: []string{"orders read"}}},
	}, middleware.Options{})
	var fe *middleware.FieldError
	fmt.Println(errors.As(err, &fe))
	fmt.Println(err)
	// Output:
	// true
	// Issuers[0].Audiences: is empty: a token for any API would be accepted; list this API's identifiers
	// Routes[0].Scopes[0]: "orders read" is not a scope (RFC 6749 §3.3: printable ASCII without spaces, quotes or backslashes)
}

func waitForKeys(g *middleware.Gate) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.WaitReady(ctx); err != nil {
		panic(err)
	}
}
