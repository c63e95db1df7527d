package middleware_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/jwks/jwkstest"
	"github.com/tokengate/tokengate/middleware"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const audience = "https://orders.example.com"

var quiet = slog.New(slog.DiscardHandler)

// recorder is the protected API: it counts calls and keeps the claims it saw.
type recorder struct {
	calls  atomic.Int64
	mu     sync.Mutex
	claims *middleware.Claims
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec.calls.Add(1)
	c, _ := middleware.ClaimsFrom(r.Context())
	rec.mu.Lock()
	rec.claims = c
	rec.mu.Unlock()
	_, _ = io.WriteString(w, "ok")
}

// env is a Gate in front of a recorder, with its own authorization server and registry.
type env struct {
	as   *jwkstest.Server
	gate *middleware.Gate
	reg  *prometheus.Registry
	api  *recorder
	h    http.Handler
}

// defaultRoutes are the routes of docs/configuration.md's example.
var defaultRoutes = []middleware.Route{
	{Match: "GET /healthz", Public: true},
	{Match: "GET /orders/{id}", Scopes: []string{"orders:read"}},
	{Match: "POST /orders", AnyScopes: []string{"orders:write", "orders:admin"}},
	{Match: "DELETE /orders/{id}", Scopes: []string{"orders:read", "orders:admin"}},
	{Match: "/shadow/", Scopes: []string{"never"}, Shadow: true},
	{Match: "/any/", Scopes: []string{}},
}

func newEnv(t testing.TB, mut func(*middleware.Config)) *env {
	t.Helper()
	return newEnvWith(t, mut, middleware.Options{})
}

// newEnvWith is newEnv with Options (its Registerer is the env's own registry).
func newEnvWith(t testing.TB, mut func(*middleware.Config), opts middleware.Options) *env {
	t.Helper()
	as, err := jwkstest.NewServer(jwkstest.WithAudience(audience))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(as.Close)
	return newEnvFor(t, as, mut, opts)
}

func newEnvFor(t testing.TB, as *jwkstest.Server, mut func(*middleware.Config), opts middleware.Options) *env {
	t.Helper()
	cfg := middleware.Config{
		Realm: "orders-api",
		Issuers: []middleware.Issuer{{
			Config:    jwks.Config{Issuer: as.Issuer},
			Audiences: []string{audience},
		}},
		Routes: append([]middleware.Route(nil), defaultRoutes...),
	}
	if mut != nil {
		mut(&cfg)
	}
	reg := prometheus.NewPedanticRegistry()
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	opts.Registerer = reg
	gate, err := middleware.New(context.Background(), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gate.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := gate.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	api := &recorder{}
	return &env{as: as, gate: gate, reg: reg, api: api, h: gate.Handler(api)}
}

// do sends a request through the Gate, with header lines given as "Name: value".
func (e *env) do(method, target string, headers ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	for _, h := range headers {
		name, value, _ := strings.Cut(h, ": ")
		req.Header.Add(name, value)
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, req)
	return w
}

// count returns tokengate_decisions_total for one label set (0 when the series does not
// exist).
func (e *env) count(decision middleware.Outcome, reason, route string) float64 {
	return metricValue(e.reg, "tokengate_decisions_total", map[string]string{"decision": decision.String(), "reason": reason, "route": route})
}

// metricValue finds one series of a counter or gauge in a registry.
func metricValue(reg *prometheus.Registry, name string, labels map[string]string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return -1
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue series
				}
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	return 0
}

func bearer(tok string) string { return "Authorization: Bearer " + tok }

func newRegistry() *prometheus.Registry { return prometheus.NewPedanticRegistry() }
