package middleware_test

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/jwks/jwkstest"
	"github.com/tokengate/tokengate/middleware"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestMetricsGolden pins the decision metrics that the chart's dashboard and alerts
// read: names, help, types and label sets. The issuer is a file source with a fixed
// name so that the golden file is stable. Run with -update after an intended change.
func TestMetricsGolden(t *testing.T) {
	as, err := jwkstest.NewServer(jwkstest.WithAudience(audience))
	if err != nil {
		t.Fatal(err)
	}
	defer as.Close()
	const issuer = "https://auth.example.com"
	file := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(file, as.JWKS(), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	gate, err := middleware.New(context.Background(), middleware.Config{
		Realm:   "orders-api",
		Issuers: []middleware.Issuer{{Config: jwks.Config{Issuer: issuer, JWKSFile: file}, Audiences: []string{audience}}},
		Routes:  defaultRoutes,
	}, middleware.Options{Registerer: reg, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer gate.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := gate.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	e := &env{as: as, gate: gate, reg: reg, api: &recorder{}}
	e.h = gate.Handler(e.api)

	ok := as.MustMint(jwkstest.Claims{"iss": issuer, "scope": "orders:read"})
	e.do("GET", "/orders/1", bearer(ok))
	e.do("GET", "/orders/1", bearer(ok))
	e.do("GET", "/orders/1")
	e.do("GET", "/nowhere", bearer(ok))
	e.do("GET", "/shadow/x", bearer(ok))
	e.do("GET", "/healthz")
	e.do("POST", "/orders", bearer(ok))

	names := []string{"tokengate_decisions_total", "tokengate_token_cache_requests_total"}
	golden := filepath.Join("testdata", "metrics.golden")
	if *update {
		var buf bytes.Buffer
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			for _, n := range names {
				if mf.GetName() == n {
					_, _ = expfmt.MetricFamilyToText(&buf, mf)
				}
			}
		}
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if err := testutil.GatherAndCompare(reg, bytes.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
	// Histograms hold timings, so only their series are pinned.
	for name, series := range map[string]int{
		"tokengate_decision_duration_seconds": 3, // allowed, denied, shadow_denied
		"tokengate_token_age_seconds":         1, // the one issuer
	} {
		if n, err := testutil.GatherAndCount(reg, name); err != nil || n != series {
			t.Errorf("%s: %d series, want %d (%v)", name, n, series, err)
		}
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", problems, err)
	}
}
