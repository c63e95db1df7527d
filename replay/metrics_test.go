package replay_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokengate/tokengate/replay"
)

// brokenStore answers every use with an error.
type brokenStore struct{}

func (brokenStore) Use(context.Context, string, time.Time) (bool, error) {
	return true, errors.New("down") // first=true with an error must never count as a use
}

// TestInstrumentCountsEveryResult: first uses, replays and errors are counted by store,
// every use is timed, the store's answer passes through unchanged (an error is never
// a first use), and a second registration on the same registry (a reload) lends the
// same series.
func TestInstrumentCountsEveryResult(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := replay.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	exp := time.Now().Add(time.Minute)
	mem := m.Instrument(replay.NewMemory(0, nil))
	if n, ok := mem.(replay.Named); !ok || n.Name() != "memory" {
		t.Fatalf("the instrumented store's name: %v", mem)
	}
	for i, want := range []bool{true, false, false} {
		if first, err := mem.Use(ctx, "k", exp); first != want || err != nil {
			t.Fatalf("use %d: %v %v, want %v", i, first, err, want)
		}
	}
	if first, err := m.Instrument(brokenStore{}).Use(ctx, "k", exp); first || err == nil {
		t.Fatalf("a broken store's use: %v %v, want false and the error", first, err)
	}
	again, err := replay.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.Instrument(replay.NewMemory(0, nil)).Use(ctx, "other", exp); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP tokengate_replay_store_requests_total Uses recorded in the replay store, by store (memory, redis) and result (first_use, replay, error).
# TYPE tokengate_replay_store_requests_total counter
tokengate_replay_store_requests_total{result="error",store="custom"} 1
tokengate_replay_store_requests_total{result="error",store="memory"} 0
tokengate_replay_store_requests_total{result="first_use",store="custom"} 0
tokengate_replay_store_requests_total{result="first_use",store="memory"} 2
tokengate_replay_store_requests_total{result="replay",store="custom"} 0
tokengate_replay_store_requests_total{result="replay",store="memory"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "tokengate_replay_store_requests_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(reg, "tokengate_replay_store_duration_seconds"); n != 2 {
		t.Errorf("%d duration series, want 2 (memory, custom)", n)
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "tokengate_replay_store_duration_seconds" {
			continue
		}
		total := uint64(0)
		for _, m := range mf.GetMetric() {
			total += m.GetHistogram().GetSampleCount()
		}
		if total != 5 {
			t.Errorf("%d uses timed, want 5", total)
		}
	}
}
