package serviceaccount_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/jwks/jwkstest"
	"github.com/tokengate/tokengate/middleware"
	"github.com/tokengate/tokengate/serviceaccount"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const audience = "https://orders.example.com"

// An allow list's Rule on a route of a real Gate, with tokens from a test issuer: a
// listed ServiceAccount passes, another is 403 rule, a user's token is 403 rule, and
// the log line names the rule; the API never sees a refused request.
func TestRuleInGate(t *testing.T) {
	as, err := jwkstest.NewServer(jwkstest.WithAudience(audience))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(as.Close)
	allow, err := serviceaccount.ParseAllow([]string{"payments/billing", "monitoring/*"})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	gate, err := middleware.New(context.Background(), middleware.Config{
		Realm: "orders-api",
		Issuers: []middleware.Issuer{{
			Config:    jwks.Config{Issuer: as.Issuer},
			Audiences: []string{audience},
		}},
		Routes: []middleware.Route{
			{Match: "POST /refunds", Rules: []middleware.Rule{allow.Rule("serviceAccounts")}},
			{Match: "GET /orders", Scopes: []string{}},
		},
	}, middleware.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gate.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := gate.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	h := gate.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		c, _ := middleware.ClaimsFrom(r.Context())
		if wl, err := serviceaccount.KubernetesClaim(c); err == nil {
			w.Header().Set("X-Pod", wl.Pod.Name)
		}
	}))

	kube := func(ns, name string) map[string]any {
		return map[string]any{
			"namespace":      ns,
			"serviceaccount": map[string]any{"name": name, "uid": "u1"},
			"pod":            map[string]any{"name": name + "-1", "uid": "u2"},
		}
	}
	for _, tc := range []struct {
		name, method, path string
		claims             jwkstest.Claims
		status             int
		error              string // part of the log line's error
	}{
		{"listed", "POST", "/refunds", jwkstest.Claims{"sub": "system:serviceaccount:payments:billing", "kubernetes.io": kube("payments", "billing")}, 200, ""},
		{"namespace wildcard", "POST", "/refunds", jwkstest.Claims{"sub": "system:serviceaccount:monitoring:prober"}, 200, ""},
		{"not listed", "POST", "/refunds", jwkstest.Claims{"sub": "system:serviceaccount:payments:refunds"}, 403, `rule \"serviceAccounts\" is false`},
		{"a user", "POST", "/refunds", jwkstest.Claims{"sub": "alice"}, 403, "it does not begin with system:serviceaccount:"},
		{"a look-alike", "POST", "/refunds", jwkstest.Claims{"sub": "system:serviceaccount:payments:bіlling"}, 403, "name: byte 1 is not"},
		{"an extra part", "POST", "/refunds", jwkstest.Claims{"sub": "system:serviceaccount:payments:billing:admin"}, 403, "more than one ':'"},
		{"other routes are not ruled", "GET", "/orders", jwkstest.Claims{"sub": "alice"}, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs.Reset()
			before := calls.Load()
			req := httptest.NewRequest(tc.method, tc.path, nil)
			req.Header.Set("Authorization", "Bearer "+as.MustMint(tc.claims))
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if tc.status != 200 {
				if calls.Load() != before {
					t.Error("the API was called for a refused request")
				}
				line := logs.String()
				for _, want := range []string{"reason=rule", "rule=serviceAccounts", tc.error} {
					if !strings.Contains(line, want) {
						t.Errorf("the log line does not say %q:\n%s", want, line)
					}
				}
				// The subject is logged only as a hash.
				if sub, _ := tc.claims["sub"].(string); strings.Contains(line, sub) {
					t.Errorf("the log line quotes the subject:\n%s", line)
				}
				return
			}
			if calls.Load() != before+1 {
				t.Error("the API was not called")
			}
			if tc.name == "listed" && w.Header().Get("X-Pod") != "billing-1" {
				t.Errorf("the handler did not read the kubernetes.io claim: X-Pod %q", w.Header().Get("X-Pod"))
			}
		})
	}
}
