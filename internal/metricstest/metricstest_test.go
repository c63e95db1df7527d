package metricstest_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokengate/tokengate/internal/metricstest"
)

// fakeT records a failure instead of ending the test, so that a test can see Golden fail.
type fakeT struct {
	testing.TB
	failed bool
}

func (f *fakeT) Helper()           {}
func (f *fakeT) Fatal(args ...any) { f.failed = true; panic(f) }

func run(f *fakeT, fn func()) {
	defer func() {
		if r := recover(); r != nil && r != any(f) {
			panic(r)
		}
	}()
	fn()
}

func TestGolden(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "things_total", Help: "Things."}, []string{"kind"})
	other := prometheus.NewGauge(prometheus.GaugeOpts{Name: "other", Help: "Not compared."})
	reg.MustRegister(c, other)
	c.WithLabelValues("a").Add(2)
	golden := filepath.Join(t.TempDir(), "metrics.golden")

	metricstest.Golden(t, reg, golden, true, "things_total")
	b, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `things_total{kind="a"} 2`) || strings.Contains(string(b), "other") {
		t.Fatalf("golden file:\n%s", b)
	}
	other.Set(7) // a family not named is not compared
	metricstest.Golden(t, reg, golden, false, "things_total")

	c.WithLabelValues("a").Inc()
	f := &fakeT{TB: t}
	run(f, func() { metricstest.Golden(f, reg, golden, false, "things_total") })
	if !f.failed {
		t.Fatal("a changed count matched the golden file")
	}
	f = &fakeT{TB: t}
	run(f, func() { metricstest.Golden(f, reg, filepath.Join(t.TempDir(), "missing"), false) })
	if !f.failed {
		t.Fatal("a missing golden file passed")
	}
}
