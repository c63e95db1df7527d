package authz_test

import (
	"flag"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokengate/tokengate/authz"
	"github.com/tokengate/tokengate/internal/metricstest"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestMetricsGolden: tokengate_authz_requests_total as docs/metrics.md names it, every
// series at zero from the start, so that rates and alerts exist before the first
// request.
func TestMetricsGolden(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := authz.New(func() authz.Snapshot { return authz.Snapshot{} }, authz.Options{Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	metricstest.Golden(t, reg, "testdata/metrics.golden", *update, "tokengate_authz_requests_total")
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// TestMetricsCount: each protocol counts under its own label.
func TestMetricsCount(t *testing.T) {
	r := newRig(t)
	read := r.token("orders:read")
	for _, p := range protocols {
		body(t, p.ask(r, "GET", "/orders/1", "Authorization: Bearer "+read))
		body(t, p.ask(r, "GET", "/orders/1"))
	}
	for _, p := range protocols {
		for _, d := range []string{"allowed", "denied"} {
			if n := r.requests(t, p.label, d); n != 1 {
				t.Errorf("%s %s: %v", p.label, d, n)
			}
		}
	}
	// The Gate counted its own decisions as well.
	n, err := testutil.GatherAndCount(r.reg, "tokengate_decisions_total")
	if err != nil || n == 0 {
		t.Fatalf("tokengate_decisions_total: %d series, %v", n, err)
	}
	if err := testutil.GatherAndCompare(r.reg, strings.NewReader(`
# HELP tokengate_authz_requests_total Check requests from gateways, by protocol (nginx, traefik, envoy_http, envoy_grpc) and decision (allowed, denied, shadow_denied, or error for a request that was not decided).
# TYPE tokengate_authz_requests_total counter
tokengate_authz_requests_total{decision="allowed",protocol="envoy_grpc"} 0
tokengate_authz_requests_total{decision="allowed",protocol="envoy_http"} 1
tokengate_authz_requests_total{decision="allowed",protocol="nginx"} 1
tokengate_authz_requests_total{decision="allowed",protocol="traefik"} 1
tokengate_authz_requests_total{decision="denied",protocol="envoy_grpc"} 0
tokengate_authz_requests_total{decision="denied",protocol="envoy_http"} 1
tokengate_authz_requests_total{decision="denied",protocol="nginx"} 1
tokengate_authz_requests_total{decision="denied",protocol="traefik"} 1
tokengate_authz_requests_total{decision="error",protocol="envoy_grpc"} 0
tokengate_authz_requests_total{decision="error",protocol="envoy_http"} 0
tokengate_authz_requests_total{decision="error",protocol="nginx"} 0
tokengate_authz_requests_total{decision="error",protocol="traefik"} 0
tokengate_authz_requests_total{decision="shadow_denied",protocol="envoy_grpc"} 0
tokengate_authz_requests_total{decision="shadow_denied",protocol="envoy_http"} 0
tokengate_authz_requests_total{decision="shadow_denied",protocol="nginx"} 0
tokengate_authz_requests_total{decision="shadow_denied",protocol="traefik"} 0
`), "tokengate_authz_requests_total"); err != nil {
		t.Error(err)
	}
}

// TestMetricsTwice: a second Server on the same registry shares the counter (a
// restart of the service within one process), rather than failing.
func TestMetricsTwice(t *testing.T) {
	reg := prometheus.NewRegistry()
	for range 2 {
		if _, err := authz.New(func() authz.Snapshot { return authz.Snapshot{} }, authz.Options{Registerer: reg}); err != nil {
			t.Fatal(err)
		}
	}
}
