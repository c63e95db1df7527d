package middleware

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Observations on every shard add up, each in its bucket, with its sum; values above
// the last bound count in +Inf only.
func TestShardedHistogram(t *testing.T) {
	h := newShardedHistogram([]float64{1, 10})
	var c shardedCounter
	for sh := range shards {
		h.observe(sh, 0.5)
		h.observe(sh, 5)
		h.observe(sh, 50)
		h.observe(sh, 10) // a bound is in its own bucket (le)
		c.inc(sh)
	}
	var m dto.Metric
	if err := h.metric(prometheus.NewDesc("x", "x", []string{"l"}, nil), "v").Write(&m); err != nil {
		t.Fatal(err)
	}
	hist := m.GetHistogram()
	if hist.GetSampleCount() != 4*shards || hist.GetSampleSum() != shards*65.5 {
		t.Fatalf("count %d, sum %g; want %d, %g", hist.GetSampleCount(), hist.GetSampleSum(), 4*shards, shards*65.5)
	}
	want := map[float64]uint64{1: shards, 10: 3 * shards}
	for _, b := range hist.GetBucket() {
		if b.GetCumulativeCount() != want[b.GetUpperBound()] {
			t.Errorf("le %g: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want[b.GetUpperBound()])
		}
	}
	if c.value() != shards {
		t.Fatalf("counter %d, want %d", c.value(), shards)
	}
}

func TestErrorText(t *testing.T) {
	if got := (&Error{Reason: ReasonExpired}).Error(); got != "expired" {
		t.Errorf("%q", got)
	}
	if got := deny(ReasonSignature, errSegments).Error(); got != "signature: "+errSegments.Error() {
		t.Errorf("%q", got)
	}
}
