// Package metricstest compares what a Prometheus registry exposes with a golden file,
// for the metrics tests of jwks and middleware: the exposition a scrape sees is the
// contract of docs/metrics.md, so a change to it shows up as a diff under review.
package metricstest

import (
	"bytes"
	"os"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
)

// Golden fails t unless the families named (all when none are) that g gathers are the
// text exposition in the file golden. With update set it first rewrites the file from
// g, for `go test -update` after an intended change.
func Golden(t testing.TB, g prometheus.Gatherer, golden string, update bool, names ...string) {
	t.Helper()
	if update {
		mfs, err := g.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		for _, mf := range mfs {
			if len(names) == 0 || slices.Contains(names, mf.GetName()) {
				if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
					t.Fatal(err)
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
	if err := testutil.GatherAndCompare(g, bytes.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
}
