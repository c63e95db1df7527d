package replay

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokengate/tokengate/internal/promreg"
)

// Named is a Store that says what kind it is, for the store label of the metrics:
// "memory", "redis". A store without a name is counted as "custom".
type Named interface {
	Store
	Name() string
}

// Name implements Named.
func (s *Memory) Name() string { return "memory" }

// Metrics are tokengate_replay_store_requests_total and
// tokengate_replay_store_duration_seconds (docs/metrics.md).
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics registers the metrics on reg. A registry that holds them already (a
// configuration reload) lends its collectors, so counts carry on.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	requests, err := promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokengate_replay_store_requests_total",
		Help: "Uses recorded in the replay store, by store (memory, redis) and result (first_use, replay, error).",
	}, []string{"store", "result"}))
	if err != nil {
		return nil, err
	}
	duration, err := promreg.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tokengate_replay_store_duration_seconds",
		Help:    "Time a use took in the replay store, by store, errors included.",
		Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
	}, []string{"store"}))
	if err != nil {
		return nil, err
	}
	return &Metrics{requests: requests, duration: duration}, nil
}

// Instrument returns s counted in m. The series of its store label exist at zero from
// here on, so that rates exist before the first use.
func (m *Metrics) Instrument(s Store) Store {
	name := "custom"
	if n, ok := s.(Named); ok {
		name = n.Name()
	}
	in := &instrumented{
		Store:    s,
		name:     name,
		first:    m.requests.WithLabelValues(name, "first_use"),
		replay:   m.requests.WithLabelValues(name, "replay"),
		failed:   m.requests.WithLabelValues(name, "error"),
		duration: m.duration.WithLabelValues(name),
	}
	return in
}

type instrumented struct {
	Store
	name                  string
	first, replay, failed prometheus.Counter
	duration              prometheus.Observer
}

func (s *instrumented) Name() string { return s.name }

func (s *instrumented) Use(ctx context.Context, key string, exp time.Time) (bool, error) {
	start := time.Now()
	first, err := s.Store.Use(ctx, key, exp)
	s.duration.Observe(time.Since(start).Seconds())
	switch {
	case err != nil:
		s.failed.Inc()
		return false, err
	case first:
		s.first.Inc()
	default:
		s.replay.Inc()
	}
	return first, nil
}
