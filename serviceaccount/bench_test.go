package serviceaccount_test

import (
	"net/http/httptest"
	"testing"

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
