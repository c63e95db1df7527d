package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tokengate/tokengate/jwks/jwkstest"
	"github.com/tokengate/tokengate/policy"
	"github.com/tokengate/tokengate/sidecar"
)

const demoAudience = "https://orders.example.com"

// demoConfig is the demo's configuration file: the same format as the sidecar's.
const demoConfig = `# tokengate demo configuration
upstream: %q
realm: orders-api
issuers:
  - issuer: %q
    audiences: [%q]
routes:
  - match: "GET /healthz"
    public: true
  - match: "GET /orders/{id}"
    scopes: [orders:read]
  - match: "POST /orders"
    scopes: [orders:write]
  # A catch-all: any valid token reaches what no route above names. tokengate holds
  # /ORDERS/1, /orders/1/ and /orders;x/1 to GET /orders/{id} (upstreamPaths: strict),
  # but list an API's routes instead where you can: docs/configuration.md says why.
  - match: "/"
    scopes: []
forward:
  claims: {sub: X-Auth-Subject, client_id: X-Auth-Client-Id, scope: X-Auth-Scopes}
  removeAuthorization: true
`

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("demo", "Runs tokengate end to end on 127.0.0.1: a development authorization server, a small\necho API, and the sidecar in front of it. Prints ready-to-paste curl lines for an\nallowed request, an expired token, a missing scope and no token, runs them and prints\nwhat each returned, then serves until interrupted.", stderr)
	once := fs.Bool("once", false, "exit after printing the four outcomes instead of serving")
	showConfig := fs.Bool("print-config", false, "also print the configuration file the demo runs with")
	var lf logFlags
	lf.register(fs, "warn")
	if code, exit := parseOrExit(fs, args, stderr); exit {
		return code
	}
	log, err := lf.logger(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "tokengate demo: %v\n", err)
		return exitUsage
	}

	as, err := jwkstest.NewServer(jwkstest.WithAudience(demoAudience))
	if err != nil {
		fmt.Fprintf(stderr, "tokengate demo: authorization server: %v\n", err)
		return exitFail
	}
	defer as.Close()
	as.AddClient(jwkstest.Client{ID: "demo-client", Secret: "demo-secret", Scopes: []string{"orders:read", "orders:write"}, Audiences: []string{demoAudience}})

	api, err := startEchoAPI()
	if err != nil {
		fmt.Fprintf(stderr, "tokengate demo: API: %v\n", err)
		return exitFail
	}
	defer api.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(stderr, "tokengate demo: %v\n", err)
		return exitFail
	}
	adminLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ln.Close()
		fmt.Fprintf(stderr, "tokengate demo: %v\n", err)
		return exitFail
	}
	cfgText := fmt.Sprintf(demoConfig, api.URL, as.Issuer, demoAudience)
	loaded, err := policy.Load("demo.yaml", []byte(cfgText), policy.ForProxy, policy.Overrides{Listen: ln.Addr().String(), Admin: adminLn.Addr().String()})
	if err != nil {
		fmt.Fprintf(stderr, "tokengate demo: %v\n", err)
		return exitFail
	}
	ver, _ := buildVersion()
	sc, err := sidecar.New(loaded, sidecar.Options{Logger: log, Version: ver, Listener: ln, AdminListener: adminLn, DrainTimeout: 5 * time.Second})
	if err != nil {
		fmt.Fprintf(stderr, "tokengate demo: %v\n", err)
		return exitFail
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	runErr := make(chan error, 1)
	wg.Go(func() { runErr <- sc.Run(runCtx) })
	defer wg.Wait()
	defer stop()

	if err := waitReady(ctx, sc, 15*time.Second); err != nil {
		fmt.Fprintf(stderr, "tokengate demo: %v\n", err)
		return exitFail
	}
	gate := "http://" + ln.Addr().String()
	admin := "http://" + adminLn.Addr().String()

	fmt.Fprintf(stdout, "tokengate demo: an authorization server, an API, and tokengate in front of it, on 127.0.0.1.\n\n")
	fmt.Fprintf(stdout, "  authorization server  %s   (client demo-client, secret demo-secret)\n", as.Issuer)
	fmt.Fprintf(stdout, "  API                   %s   (echoes what reaches it)\n", api.URL)
	fmt.Fprintf(stdout, "  tokengate             %s   (metrics: %s/metrics)\n\n", gate, admin)
	fmt.Fprint(stdout, "Policy: GET /healthz is public, GET /orders/{id} needs orders:read, POST /orders needs\norders:write, anything else needs a valid token.\n")
	if *showConfig {
		fmt.Fprintf(stdout, "\nConfiguration file:\n%s", indent(cfgText))
	}

	client := &http.Client{Timeout: 10 * time.Second}
	cases := []struct {
		title, token string
	}{
		{"Allowed: a valid token with scope orders:read", as.MustMint(jwkstest.Claims{"sub": "alice", "client_id": "demo-client", "scope": "orders:read"})},
		{"Expired: the client should use its refresh token and try again", as.MustMint(jwkstest.Claims{"sub": "alice", "client_id": "demo-client", "scope": "orders:read", "iat": time.Now().Add(-15 * time.Minute).Unix(), "exp": time.Now().Add(-10 * time.Minute).Unix()})},
		{"Missing scope: the token has orders:write, the route needs orders:read", as.MustMint(jwkstest.Claims{"sub": "alice", "client_id": "demo-client", "scope": "orders:write"})},
		{"No token", ""},
	}
	for i, c := range cases {
		fmt.Fprintf(stdout, "\n%d. %s\n", i+1, c.title)
		url := gate + "/orders/42"
		if c.token == "" {
			fmt.Fprintf(stdout, "   curl -i %s\n", url)
		} else {
			fmt.Fprintf(stdout, "   curl -i -H 'Authorization: Bearer %s' %s\n", c.token, url)
		}
		fmt.Fprintf(stdout, "   → %s\n", demoRequest(client, url, c.token))
	}
	fmt.Fprintf(stdout, "\nThe tokens above expire in five minutes. Get a fresh one from the authorization server:\n")
	fmt.Fprintf(stdout, "   curl -s -u demo-client:demo-secret -d grant_type=client_credentials -d scope=orders:read %s\n", as.TokenURL())

	if *once {
		return exitOK
	}
	fmt.Fprintf(stdout, "\nServing until interrupted (Ctrl-C).\n")
	select {
	case <-ctx.Done():
	case err := <-runErr:
		if err != nil {
			fmt.Fprintf(stderr, "tokengate demo: %v\n", err)
			return exitFail
		}
	}
	return exitOK
}

// demoRequest sends one request and describes the answer in a line.
func demoRequest(client *http.Client, url, token string) string {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err.Error()
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "error: " + err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	out := resp.Status
	if c := resp.Header.Get("WWW-Authenticate"); c != "" {
		out += "\n     WWW-Authenticate: " + c
	}
	return out + "\n     " + strings.TrimSpace(string(body))
}

func waitReady(ctx context.Context, sc *sidecar.Sidecar, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		if ok, _ := sc.Ready(); ok {
			return nil
		}
		if time.Now().After(deadline) {
			_, why := sc.Ready()
			return fmt.Errorf("not ready after %s: %s", limit, strings.Join(why, "; "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// echoAPI is the demo's protected API: it answers with what reached it.
type echoAPI struct {
	URL string
	srv *http.Server
	wg  sync.WaitGroup
}

func startEchoAPI() (*echoAPI, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	a := &echoAPI{URL: "http://" + ln.Addr().String()}
	a.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen := map[string]any{"method": r.Method, "path": r.URL.Path, "authorization_forwarded": r.Header.Get("Authorization") != ""}
		for _, h := range []string{"X-Auth-Subject", "X-Auth-Client-Id", "X-Auth-Scopes"} {
			if v := r.Header.Get(h); v != "" {
				seen[h] = v
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(seen)
	})}
	a.wg.Go(func() {
		if err := a.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			fmt.Println("echo API:", err)
		}
	})
	return a, nil
}

func (a *echoAPI) Close() {
	_ = a.srv.Close()
	a.wg.Wait()
}
