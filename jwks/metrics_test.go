package jwks_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokengate/tokengate/internal/metricstest"
	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

// TestMetricsGolden pins names, types, help texts and labels of the key-set metrics,
// which the Helm chart's dashboard and alerts are built on. A file source keeps the
// issuer label stable. Run with -update to rewrite testdata/metrics.golden after an
// intended change.
func TestMetricsGolden(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := jwks.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := jwks.NewMetrics(reg); err != nil || again == nil {
		t.Fatalf("a second NewMetrics on one registry (a reload) failed: %v", err)
	}

	k := jwkstest.MustGenerateKey("k1", "ES256")
	doc, _ := json.Marshal(map[string]any{"keys": []json.RawMessage{
		k.JWK(),
		[]byte(`{"kty":"oct","k":"AAAA"}`),
		k.JWKWith(map[string]any{"use": "enc", "kid": "k2"}),
	}})
	file := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(file, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	set, err := jwks.New(context.Background(), jwks.Config{Issuer: "https://auth.example.com", JWKSFile: file}, jwks.Options{Logger: quiet, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	ready(t, set)
	if err := os.WriteFile(file, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := set.Refresh(context.Background()); !errors.Is(err, jwks.ErrFetch) {
		t.Fatal(err)
	}

	names := []string{"tokengate_jwks_refreshes_total", "tokengate_jwks_keys", "tokengate_jwks_skipped_keys"}
	metricstest.Golden(t, reg, filepath.Join("testdata", "metrics.golden"), *update, names...)
	if n, err := testutil.GatherAndCount(reg, "tokengate_jwks_last_success_timestamp_seconds"); err != nil || n != 1 {
		t.Fatalf("last success series: %d, %v", n, err)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", problems, err)
	}

	m.Forget("https://auth.example.com")
	if n, _ := testutil.GatherAndCount(reg); n != 0 {
		t.Fatalf("%d series left after Forget", n)
	}
}

func TestNilMetricsCountNothing(t *testing.T) {
	var m *jwks.Metrics
	m.Forget("x") // must not panic
	srv := server(t)
	set := newSet(t, srv, nil) // Options.Metrics nil
	ready(t, set)
	if !strings.HasPrefix(set.Issuer(), "http://127.0.0.1:") {
		t.Fatal(set.Issuer())
	}
}
