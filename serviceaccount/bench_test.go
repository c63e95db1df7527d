package serviceaccount_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/jwks/jwkstest"
	"github.com/tokengate/tokengate/middleware"
	"github.com/tokengate/tokengate/serviceaccount"
)

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := serviceaccount.Parse("system:serviceaccount:payments:billing-v2.eu-west-1"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAllows(b *testing.B) {
	entries := []string{"monitoring/*"}
	for _, ns := range []string{"payments", "orders", "shipping", "billing"} {
		for _, name := range []string{"api", "worker", "cron", "billing"} {
			entries = append(entries, ns+"/"+name)
		}
	}
	a, err := serviceaccount.ParseAllow(entries)
	if err != nil {
		b.Fatal(err)
	}
	id := serviceaccount.Identity{Namespace: "payments", Name: "billing"}
	b.ReportAllocs()
	for b.Loop() {
		if !a.Allows(id) {
			b.Fatal("refused")
		}
	}
}

// BenchmarkRule is what a route's serviceAccounts costs a request: Parse and Allows.
func BenchmarkRule(b *testing.B) {
	a, err := serviceaccount.ParseAllow([]string{"payments/billing", "monitoring/*"})
	if err != nil {
		b.Fatal(err)
	}
	rule := a.Rule("serviceAccounts")
	r := httptest.NewRequest("POST", "/refunds", nil)
	c := &middleware.Claims{Subject: "system:serviceaccount:payments:billing"}
	b.ReportAllocs()
	for b.Loop() {
		if ok, err := rule.Allow(r, c); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

func BenchmarkKubernetesClaim(b *testing.B) {
	c := claims(b, projected)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := serviceaccount.KubernetesClaim(c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecide is what a Kubernetes issuer costs a cached decision (Gate.Decide, an
// allowed POST with a token the cache holds): the same route of the same Gate with and
// without an allow list of ServiceAccounts, in the same run. The workload check
// (RequireWorkload) runs once per token, before it is cached, so it is not in a
// cached decision; it is in BenchmarkKubernetesClaim.
func BenchmarkDecide(b *testing.B) {
	as, err := jwkstest.NewServer(jwkstest.WithAudience(audience))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(as.Close)
	allow, err := serviceaccount.ParseAllow([]string{"payments/billing", "monitoring/*"})
	if err != nil {
		b.Fatal(err)
	}
	tok := as.MustMint(jwkstest.Claims{
		"sub": "system:serviceaccount:payments:billing",
		"kubernetes.io": map[string]any{
			"namespace":      "payments",
			"serviceaccount": map[string]any{"name": "billing", "uid": saUID},
			"pod":            map[string]any{"name": "billing-7d9f8b6c5-x2x4q", "uid": podUID},
		},
	})
	for _, bc := range []struct {
		name  string
		rules []middleware.Rule
	}{{"no_allow_list", nil}, {"serviceAccounts", []middleware.Rule{allow.Rule("serviceAccounts")}}} {
		gate, err := middleware.New(context.Background(), middleware.Config{
			Issuers: []middleware.Issuer{{
				Config:    jwks.Config{Issuer: as.Issuer},
				Audiences: []string{audience},
				Checks:    []middleware.ClaimsCheck{serviceaccount.RequireWorkload()},
			}},
			Routes: []middleware.Route{{Match: "POST /refunds", Scopes: []string{}, Rules: bc.rules}},
		}, middleware.Options{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := gate.WaitReady(ctx); err != nil {
			b.Fatal(err)
		}
		cancel()
		r := httptest.NewRequest("POST", "/refunds", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		if d := gate.Decide(r); !d.Allowed() {
			b.Fatalf("%s: %v", bc.name, d.Err)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if d := gate.Decide(r); !d.Allowed() {
					b.Fatal(d.Err)
				}
			}
		})
		gate.Close()
	}
}
