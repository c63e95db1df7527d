package middleware_test

import (
	"context"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokengate/tokengate/internal/metricstest"
	"github.com/tokengate/tokengate/internal/testclock"
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
	metricstest.Golden(t, reg, filepath.Join("testdata", "metrics.golden"), *update, names...)
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

// tokengate_token_age_seconds observes now − iat of every allowed token, cached or not,
// in the bucket it falls in; denied tokens and tokens without iat are not observed.
func TestTokenAge(t *testing.T) {
	clk := testclock.New(time.Now().Truncate(time.Second)) // iat is in whole seconds
	e := newEnvWith(t, nil, middleware.Options{Now: clk.Now})
	now := clk.Now()
	age := func() (count uint64, sum float64, buckets map[float64]uint64) {
		mfs, err := e.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "tokengate_token_age_seconds" {
				continue
			}
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() != e.as.Issuer {
					continue
				}
				h := m.GetHistogram()
				buckets = map[float64]uint64{}
				for _, b := range h.GetBucket() {
					buckets[b.GetUpperBound()] = b.GetCumulativeCount()
				}
				return h.GetSampleCount(), h.GetSampleSum(), buckets
			}
		}
		t.Fatal("no tokengate_token_age_seconds series for the issuer")
		return 0, 0, nil
	}
	tok := e.as.MustMint(jwkstest.Claims{"scope": "orders:read", "iat": now.Add(-100 * time.Second).Unix(), "exp": now.Add(time.Hour).Unix()})
	if resp := e.do("GET", "/orders/1", bearer(tok)); resp.Code != 200 {
		t.Fatalf("%d", resp.Code)
	}
	count, sum, buckets := age()
	if count != 1 || sum != 100 || buckets[60] != 0 || buckets[300] != 1 || buckets[86400] != 1 {
		t.Fatalf("after one token 100 s old: count %d, sum %g, buckets %v", count, sum, buckets)
	}
	clk.Advance(time.Second) // the same token from the cache, a second older
	e.do("GET", "/orders/1", bearer(tok))
	if count, sum, _ := age(); count != 2 || sum != 201 {
		t.Fatalf("after a cached hit: count %d, sum %g", count, sum)
	}
	// A clock behind the issuer's: negative ages land below zero.
	skewed := e.as.MustMint(jwkstest.Claims{"scope": "orders:read", "iat": clk.Now().Add(20 * time.Second).Unix(), "exp": clk.Now().Add(time.Hour).Unix()})
	e.do("GET", "/orders/1", bearer(skewed))
	if count, _, buckets := age(); count != 3 || buckets[-60] != 0 || buckets[-10] != 1 || buckets[0] != 1 {
		t.Fatalf("after a token from 20 s ahead: count %d, buckets %v", count, buckets)
	}
	e.do("GET", "/orders/1", bearer(e.as.MustMint(jwkstest.Claims{"scope": "profile"})))                             // denied
	e.do("GET", "/orders/1", bearer(e.as.MustMint(jwkstest.Claims{"scope": "orders:read", "iat": jwkstest.Absent}))) // no iat
	if count, _, _ := age(); count != 3 {
		t.Fatalf("count %d after a denied token and one without iat, want 3", count)
	}
	// Require decides on its own path, without the route table: it counts ages too.
	h := e.gate.Require("orders:read")(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	r := httptest.NewRequest("GET", "/anything", nil)
	r.Header.Set("Authorization", "Bearer "+e.as.MustMint(jwkstest.Claims{"scope": "orders:read", "iat": clk.Now().Add(-30 * time.Second).Unix(), "exp": clk.Now().Add(time.Hour).Unix()}))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if count, sum, _ := age(); w.Code != 200 || count != 4 || sum != 201-20+30 {
		t.Fatalf("after a token 30 s old through Require: status %d, count %d, sum %g", w.Code, count, sum)
	}
}
