package policy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokengate/tokengate/jwks/jwkstest"
	"github.com/tokengate/tokengate/middleware"
	"github.com/tokengate/tokengate/policy"
)

// Load reports every problem of a configuration file at once, in the order of its
// lines, each naming the key.
func ExampleLoad() {
	file := `upstream: localhost:8080
issuers:
  - issuer: https://auth.example.com
    audience: [https://orders.example.com]
routes:
  - match: "GET /orders/{id}"
    scopes: [orders:read]
`
	_, err := policy.Load("tokengate.yaml", []byte(file), policy.ForProxy, policy.Overrides{})
	fmt.Println(err)
	// Output:
	// tokengate.yaml:1: upstream: "localhost:8080" is not an http, https or h2c URL with a host and nothing else (no credentials, query or fragment)
	// tokengate.yaml:3: issuers[0].audiences: is empty: a token for any API would be accepted; list this API's identifiers
	// tokengate.yaml:4: issuers[0].audience: unknown key (known here: issuer, jwksURI, jwksFile, jwks, audiences, algorithms, tokenType, scopeClaim, audienceClaims, refresh, caFile, insecureHTTP, dpop, introspection, rules, kubernetes)
}

// Identity writes the headers forward.claims names from verified claims, and removes
// whatever a client sent under those names, in any spelling, or under X-Auth-.
func ExampleLoaded_Identity() {
	file := `issuers:
  - issuer: https://auth.example.com
    audiences: [https://orders.example.com]
routes:
  - match: /
forward:
  claims: {sub: X-User, groups: X-Groups, scope: X-Scopes}
`
	l, err := policy.Load("tokengate.yaml", []byte(file), policy.ForCheck, policy.Overrides{})
	if err != nil {
		fmt.Println(err)
		return
	}
	id := l.Identity()
	h := http.Header{}
	h.Set("X_User", "admin") // a client posing as someone
	h.Set("X-Auth-Role", "root")
	h.Set("Accept", "application/json")
	id.StripInbound(h)
	id.Set(h, &middleware.Claims{
		Scopes: []string{"orders:read", "orders:write"},
		Raw: map[string]json.RawMessage{
			"sub":    json.RawMessage(`"alice"`),
			"groups": json.RawMessage(`["eng,ops", "admins"]`),
		},
	})
	for _, name := range slices.Sorted(maps.Keys(h)) {
		fmt.Printf("%s: %s\n", name, h.Get(name))
	}
	// Output:
	// Accept: application/json
	// X-Groups: eng%2Cops,admins
	// X-Scopes: orders:read orders:write
	// X-User: alice
}

// A Go service runs the file with Watch: the Handler decides every request with the
// file's current policy, and a change of the file takes effect between two requests.
func ExampleWatch() {
	as := jwkstest.MustNewServer(jwkstest.WithAudience("https://orders.example.com"))
	defer as.Close()
	dir, err := os.MkdirTemp("", "tokengate")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "tokengate.yaml")
	write := func(routes string) {
		file := fmt.Sprintf("issuers:\n  - issuer: %q\n    audiences: [https://orders.example.com]\nroutes:\n%s", as.Issuer, routes)
		_ = os.WriteFile(path+".tmp", []byte(file), 0o600)
		_ = os.Rename(path+".tmp", path)
	}
	write("  - match: \"GET /orders/{id}\"\n    scopes: [orders:read]\n")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reloaded := make(chan error, 1)
	w, err := policy.Watch(ctx, path, policy.WatchOptions{
		Registerer: prometheus.NewRegistry(), // the registry your /metrics serves
		Logger:     slog.New(slog.DiscardHandler),
		Every:      10 * time.Millisecond,
		OnReload:   func(_ *policy.Loaded, err error) { reloaded <- err },
	})
	if err != nil {
		fmt.Println(err) // every problem of the file, with its key and line
		return
	}
	defer w.Close()
	_ = w.Gate().WaitReady(ctx)

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(rw http.ResponseWriter, r *http.Request) {
		c, _ := middleware.ClaimsFrom(r.Context())
		fmt.Fprintf(rw, "hello %s", c.Subject)
	})
	srv := httptest.NewServer(w.Handler(mux))
	defer srv.Close()
	get := func(path, token string) {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := srv.Client().Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		defer resp.Body.Close()
		fmt.Println("GET", path, resp.StatusCode)
	}
	tok := as.MustMint(jwkstest.Claims{"sub": "alice", "scope": "orders:read"})
	get("/orders/1", tok)
	get("/invoices/1", tok)

	write("  - match: \"GET /orders/{id}\"\n    scopes: [orders:read]\n  - match: \"GET /invoices/{id}\"\n    scopes: [orders:read]\n")
	fmt.Println("reloaded:", <-reloaded)
	get("/invoices/1", tok)
	// Output:
	// GET /orders/1 200
	// GET /invoices/1 403
	// reloaded: <nil>
	// GET /invoices/1 200
}
