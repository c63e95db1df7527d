package authz_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokengate/tokengate/authz"
	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/jwks/jwkstest"
	"github.com/tokengate/tokengate/middleware"
)

const (
	audience = "https://orders.example.com"
	realm    = "orders-api"
)

// identity is a static Identity for tests, shaped as forward.claims makes one: claims
// to header names, and every header under X-Auth- (any case, '_' for '-') stripped.
type identity map[string]string // claim → header

func (id identity) Set(h http.Header, c *middleware.Claims) {
	for claim, header := range id {
		switch claim {
		case "sub":
			if c.Subject != "" {
				h.Set(header, c.Subject)
			}
		case "client_id":
			if c.ClientID != "" {
				h.Set(header, c.ClientID)
			}
		case "scope":
			if len(c.Scopes) > 0 {
				h.Set(header, strings.Join(c.Scopes, " "))
			}
		}
	}
}

func (id identity) StripInbound(h http.Header) {
	for name := range h {
		if n := strings.ReplaceAll(strings.ToLower(name), "_", "-"); strings.HasPrefix(n, "x-auth-") {
			delete(h, name)
		}
	}
}

func (id identity) names() []string {
	out := make([]string, 0, len(id))
	for _, h := range id {
		out = append(out, h)
	}
	return out
}

var testIdentity = identity{"sub": "X-Auth-Subject", "client_id": "X-Auth-Client-Id", "scope": "X-Auth-Scopes"}

// rig is an authorization server, a Gate in front of an orders API's routes, and the
// decision service deciding with it.
type rig struct {
	as      *jwkstest.Server
	gate    *middleware.Gate
	srv     *authz.Server
	reg     *prometheus.Registry
	snap    atomic.Pointer[authz.Snapshot]
	handler http.Handler

	mu    sync.Mutex
	last  *http.Request // the last request the Gate decided on, as it saw it
	count int           // how many it decided on
}

type rigOption func(*middleware.Config, *middleware.Options)

func shadow() rigOption {
	return func(c *middleware.Config, _ *middleware.Options) { c.Shadow = true }
}

// unobserved leaves out the request check that records what the Gate decided on, for
// benchmarks: the Gate as a service runs it.
func unobserved() rigOption {
	return func(_ *middleware.Config, o *middleware.Options) { o.RequestChecks = nil }
}

func withDPoP() rigOption {
	return func(c *middleware.Config, _ *middleware.Options) {
		c.Issuers[0].DPoP = middleware.DPoPAllowed
		c.ExternalURL = "https://orders.example.com"
	}
}

func newRig(t testing.TB, opts ...rigOption) *rig {
	t.Helper()
	as, err := jwkstest.NewServer(jwkstest.WithAudience(audience))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(as.Close)
	return newRigWith(t, as, true, opts...)
}

// newRigWith builds the rig on as; ready waits for the Gate's keys.
func newRigWith(t testing.TB, as *jwkstest.Server, ready bool, opts ...rigOption) *rig {
	t.Helper()
	r := &rig{as: as, reg: prometheus.NewRegistry()}
	cfg := middleware.Config{
		Realm: realm,
		Issuers: []middleware.Issuer{{
			Config:    jwks.Config{Issuer: as.Issuer, Refresh: jwks.Refresh{UnknownKIDWait: 30 * time.Second}},
			Audiences: []string{audience},
		}},
		Routes: []middleware.Route{
			{Match: "GET /healthz", Public: true},
			{Match: "GET /orders/{id}", Scopes: []string{"orders:read"}},
			{Match: "POST /orders", Scopes: []string{"orders:write"}},
			{Match: "GET api.example.com/hosted", Scopes: []string{"orders:read"}},
		},
	}
	mopts := middleware.Options{
		Registerer: r.reg,
		Logger:     slog.New(slog.DiscardHandler),
		RequestChecks: []func(*http.Request) error{func(req *http.Request) error {
			r.mu.Lock()
			r.last, r.count = req, r.count+1
			r.mu.Unlock()
			return nil
		}},
	}
	for _, o := range opts {
		o(&cfg, &mopts)
	}
	gate, err := middleware.New(context.Background(), cfg, mopts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gate.Close)
	if ready {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := gate.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
	}
	r.gate = gate
	r.snap.Store(&authz.Snapshot{Gate: gate, Identity: testIdentity, IdentityHeaders: testIdentity.names()})
	r.srv, err = authz.New(func() authz.Snapshot { return *r.snap.Load() }, authz.Options{
		Registerer: r.reg,
		Logger:     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	r.handler = r.srv.Handler()
	return r
}

// token mints a token with scope (and the default sub and client_id).
func (r *rig) token(scope string) string {
	return r.as.MustMint(jwkstest.Claims{"scope": scope})
}

// lastSeen is the last request the Gate decided on.
func (r *rig) lastSeen(t testing.TB) *http.Request {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		t.Fatal("the Gate decided on no request")
	}
	return r.last
}

// decided is how many requests the Gate decided on.
func (r *rig) decided() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

// requests is tokengate_authz_requests_total{protocol, decision}.
func (r *rig) requests(t testing.TB, protocol, decision string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "tokengate_authz_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["protocol"] == protocol && labels["decision"] == decision {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no series tokengate_authz_requests_total{protocol=%q,decision=%q}", protocol, decision)
	return 0
}

// do sends a check request to the rig's handler in process. target is an absolute
// URL, sent as a gateway sends it: the path in the request line, the host in Host.
func (r *rig) do(method, target string, header ...string) *http.Response {
	rest, ok := strings.CutPrefix(target, "http://")
	if !ok {
		panic("do: not an http URL: " + target)
	}
	host, path, _ := strings.Cut(rest, "/")
	req := httptest.NewRequest(method, "/"+path, nil)
	req.Host = host
	for _, h := range header {
		name, value, _ := strings.Cut(h, ": ")
		req.Header.Add(name, value)
	}
	w := httptest.NewRecorder()
	r.handler.ServeHTTP(w, req)
	return w.Result()
}

// serve runs the rig's Server on a free loopback port until the test ends, and
// returns its address.
func (r *rig) serve(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.srv.Run(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Run did not return after its context was cancelled")
		}
	})
	return ln.Addr().String()
}

func body(t testing.TB, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
