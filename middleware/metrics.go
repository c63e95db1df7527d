package middleware

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokengate/tokengate/internal/promreg"
	"github.com/tokengate/tokengate/jwks"
)

// Values of the decision label.
const (
	DecisionAllowed      = "allowed"
	DecisionDenied       = "denied"
	DecisionShadowDenied = "shadow_denied"
)

// NoRoute is the route label of a request that no route matched.
const NoRoute = "none"

var decisions = []string{DecisionAllowed, DecisionDenied, DecisionShadowDenied}

// metrics are the decision metrics of DESIGN.md. Labels are bounded: route is a
// configured pattern or "none", reason one of Reasons, issuer a configured issuer.
type metrics struct {
	decisions *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	cache     *prometheus.CounterVec
	tokenAge  *prometheus.HistogramVec
	keys      *jwks.Metrics

	hit, miss prometheus.Counter
	observe   [3]prometheus.Observer // by decision index
}

// newMetrics registers the metrics on reg. A registry that holds them already (a
// configuration reload builds a new Gate on the same registry) lends its collectors.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{}
	var err error
	if m.decisions, err = promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokengate_decisions_total",
		Help: "Requests decided, by decision (allowed, denied, shadow_denied), reason and route pattern.",
	}, []string{"decision", "reason", "route"})); err != nil {
		return nil, err
	}
	if m.duration, err = promreg.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tokengate_decision_duration_seconds",
		Help:    "Time spent deciding a request, from extraction to the decision, by decision.",
		Buckets: []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"decision"})); err != nil {
		return nil, err
	}
	if m.cache, err = promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokengate_token_cache_requests_total",
		Help: "Look-ups in the verified-token cache, by result (hit, miss).",
	}, []string{"result"})); err != nil {
		return nil, err
	}
	if m.tokenAge, err = promreg.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tokengate_token_age_seconds",
		Help:    "Now minus iat of accepted tokens, by issuer; negative values show clock skew.",
		Buckets: []float64{-300, -60, -10, 0, 10, 60, 300, 900, 1800, 3600, 7200, 86400},
	}, []string{"issuer"})); err != nil {
		return nil, err
	}
	if m.keys, err = jwks.NewMetrics(reg); err != nil {
		return nil, err
	}
	m.hit, m.miss = m.cache.WithLabelValues("hit"), m.cache.WithLabelValues("miss")
	for i, d := range decisions {
		m.observe[i] = m.duration.WithLabelValues(d)
	}
	return m, nil
}

// counters holds the decision counters of one route, resolved on first use so that a
// request increments without allocating, and only series that happened exist.
type counters struct {
	route string
	slots [3][16]atomic.Pointer[prometheus.Counter]
}

func reasonIndex(r Reason) int {
	for i, x := range Reasons {
		if x == r {
			return i
		}
	}
	return 0
}

func (m *metrics) count(c *counters, decision int, reason Reason, took time.Duration) {
	slot := &c.slots[decision][reasonIndex(reason)]
	p := slot.Load()
	if p == nil {
		counter := m.decisions.WithLabelValues(decisions[decision], string(reason), c.route)
		slot.Store(&counter)
		p = &counter
	}
	(*p).Inc()
	m.observe[decision].Observe(took.Seconds())
}
