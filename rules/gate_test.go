package rules_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/jwks/jwkstest"
	"github.com/tokengate/tokengate/middleware"
	"github.com/tokengate/tokengate/rules"
)

// TestGate runs compiled rules in a Gate: a false rule is 403 with the body
// access_denied and the rule's name in the log line, the handler not called.
func TestGate(t *testing.T) {
	as, err := jwkstest.NewServer(jwkstest.WithAudience("https://orders.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(as.Close)
	issuerRules, err := rules.Compile([]rules.Spec{{Name: "tenant", Expr: `claims.tid == "contoso"`}})
	if err != nil {
		t.Fatal(err)
	}
	routeRules, err := rules.Compile([]rules.Spec{
		{Name: "own-account", Expr: `request.headers["x-account"] == claims.sub`},
		{Name: "admins-write", Expr: `request.method == "GET" || "admins" in claims.groups`},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The cache keeps only the claims the rules read (and the registered ones).
	keep, all := rules.ClaimsUsed(append(issuerRules, routeRules...)...)
	if all {
		t.Fatal("ClaimsUsed: all")
	}
	var logs bytes.Buffer
	gate, err := middleware.New(context.Background(), middleware.Config{
		Issuers: []middleware.Issuer{{
			Config:    jwks.Config{Issuer: as.Issuer},
			Audiences: []string{"https://orders.example.com"},
			Rules:     issuerRules,
		}},
		Tokens: middleware.Tokens{KeepClaims: keep},
		Routes: []middleware.Route{{Match: "/accounts/", Rules: routeRules}},
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
	called := 0
	h := gate.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { called++ }))

	alice := as.MustMint(jwkstest.Claims{"sub": "alice", "tid": "contoso", "groups": []string{"admins"}, "extra": "dropped"})
	bob := as.MustMint(jwkstest.Claims{"sub": "bob", "tid": "contoso", "groups": []string{"users"}})
	other := as.MustMint(jwkstest.Claims{"sub": "carol", "tid": "fabrikam"})
	none := as.MustMint(jwkstest.Claims{"sub": "dave"})
	for _, tc := range []struct {
		name, method, token, account string
		status                       int
		rule                         string
	}{
		{"all rules hold", "GET", alice, "alice", 200, ""},
		{"again, from the cache", "GET", alice, "alice", 200, ""},
		{"admins may write", "POST", alice, "alice", 200, ""},
		{"others may not", "POST", bob, "bob", 403, "admins-write"},
		{"another account", "GET", bob, "alice", 403, "own-account"},
		{"no account header", "GET", bob, "", 403, "own-account"},
		{"another tenant", "GET", other, "carol", 403, "tenant"},
		{"no tenant", "GET", none, "dave", 403, "tenant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs.Reset()
			before := called
			r := httptest.NewRequest(tc.method, "/accounts/1", nil)
			r.Header.Set("Authorization", "Bearer "+tc.token)
			if tc.account != "" {
				r.Header.Set("X-Account", tc.account)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s %s", w.Code, tc.status, w.Body, &logs)
			}
			if tc.status == 200 {
				if called != before+1 {
					t.Fatal("the handler was not called")
				}
				return
			}
			if called != before {
				t.Fatal("the handler was called for a denied request")
			}
			if !strings.Contains(w.Body.String(), "access_denied") {
				t.Errorf("body %s", w.Body)
			}
			if line := logs.String(); !strings.Contains(line, "reason=rule") || !strings.Contains(line, "rule="+tc.rule) {
				t.Errorf("log line %q does not say reason=rule rule=%s", line, tc.rule)
			}
		})
	}
}
