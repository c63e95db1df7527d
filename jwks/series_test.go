package jwks_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokengate/tokengate/jwks"
)

func TestSeriesExistBeforeTheFirstLoad(t *testing.T) {
	// Every series of an issuer exists from New on, at zero, so that dashboards and
	// alerts see the issuer before its first fetch (here one that never succeeds).
	reg := prometheus.NewRegistry()
	m, err := jwks.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	srv := lightServer(t)
	srv.SetDown(true)
	newSet(t, srv, nil, func(o *jwks.Options) { o.Metrics = m })
	for name, want := range map[string]int{
		"tokengate_jwks_refreshes_total": 3 * 4, // results × triggers
		"tokengate_jwks_keys":            1,
		"tokengate_jwks_skipped_keys":    11, // reasons
	} {
		if n, err := testutil.GatherAndCount(reg, name); err != nil || n != want {
			t.Errorf("%s: %d series (%v), want %d", name, n, err, want)
		}
	}
	if v := metricValue(t, reg, "tokengate_jwks_keys", map[string]string{"issuer": srv.Issuer}); v != 0 {
		t.Errorf("keys before the first load: %v", v)
	}
}

func TestForgetDropsOneIssuer(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := jwks.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	a, b := lightServer(t), lightServer(t)
	for _, srv := range []string{a.Issuer, b.Issuer} {
		set, err := jwks.New(context.Background(), jwks.Config{Issuer: srv}, jwks.Options{Logger: quiet, Metrics: m})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(set.Close)
		ready(t, set)
	}
	m.Forget(a.Issuer)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	left := 0
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "issuer" {
					if l.GetValue() == a.Issuer {
						t.Fatalf("%s of the forgotten issuer is still there", mf.GetName())
					}
					left++
				}
			}
		}
	}
	if want := 12 + 1 + 1 + 11; left != want { // refreshes, keys, last success, skipped
		t.Fatalf("%d series of the other issuer left, want %d", left, want)
	}
}

func TestNewMetricsRefusesConflicts(t *testing.T) {
	// A registry that holds another metric under one of the names is a real conflict:
	// NewMetrics fails rather than count into something else.
	for _, name := range []string{
		"tokengate_jwks_refreshes_total", "tokengate_jwks_keys",
		"tokengate_jwks_last_success_timestamp_seconds", "tokengate_jwks_skipped_keys",
	} {
		reg := prometheus.NewRegistry()
		reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: "something else"}))
		if m, err := jwks.NewMetrics(reg); err == nil || m != nil {
			t.Errorf("%s taken: NewMetrics = %v, %v", name, m, err)
		}
	}
}

func TestLastSuccessIsTheClockTime(t *testing.T) {
	at := time.Date(2031, 2, 3, 4, 5, 6, 500_000_000, time.UTC)
	reg := prometheus.NewRegistry()
	m, err := jwks.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	srv := lightServer(t)
	set := newSet(t, srv, nil, func(o *jwks.Options) {
		o.Metrics = m
		o.Now = func() time.Time { return at }
	})
	ready(t, set)
	if got := set.Status().LastSuccess; !got.Equal(at) {
		t.Fatalf("Status().LastSuccess = %s, want %s", got, at)
	}
	got := metricValue(t, reg, "tokengate_jwks_last_success_timestamp_seconds", map[string]string{"issuer": srv.Issuer})
	if want := float64(at.UnixNano()) / 1e9; got != want {
		t.Fatalf("last success gauge %v, want %v (Unix seconds)", got, want)
	}
	// testdata/metrics.golden pins the other families; this one's value changes, so its
	// help text is pinned here.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "tokengate_jwks_last_success_timestamp_seconds" {
			if h := mf.GetHelp(); h != "Unix time of the last fetch of an issuer's key set that succeeded (updated or not modified)." {
				t.Fatalf("help %q", h)
			}
			return
		}
	}
	t.Fatal("no last success family")
}
