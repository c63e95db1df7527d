package middleware

import (
	"maps"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokengate/tokengate/internal/promreg"
	"github.com/tokengate/tokengate/jwks"
)

var (
	durationBuckets = []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}
	ageBuckets      = []float64{-300, -60, -10, 0, 10, 60, 300, 900, 1800, 3600, 7200, 86400}

	decisionsDesc = prometheus.NewDesc("tokengate_decisions_total",
		"Requests decided, by decision (allowed, denied, shadow_denied), reason and route pattern.",
		[]string{"decision", "reason", "route"}, nil)
	durationDesc = prometheus.NewDesc("tokengate_decision_duration_seconds",
		"Time spent deciding a request, from extraction to the decision, by decision.",
		[]string{"decision"}, nil)
	cacheDesc = prometheus.NewDesc("tokengate_token_cache_requests_total",
		"Look-ups in the verified-token cache, by result (hit, miss).",
		[]string{"result"}, nil)
	ageDesc = prometheus.NewDesc("tokengate_token_age_seconds",
		"Now minus iat of accepted tokens, by issuer; negative values show clock skew.",
		[]string{"issuer"}, nil)
)

// metrics are the decision metrics of docs/metrics.md, as one Prometheus collector. Every
// request updates several of them; with client_golang's own counters and histograms
// each update is an atomic operation on memory that every core shares, and concurrent
// requests queue on it (the cached decision got slower in parallel than alone). So the
// values live in per-core-ish shards and are summed when Prometheus scrapes. Labels
// stay bounded: route is a configured pattern or "none", reason one of Reasons, issuer a
// configured issuer.
type metrics struct {
	mu       sync.Mutex // guards the maps below, written only when a series first appears
	counters map[series]*shardedCounter
	ages     map[string]*shardedHistogram

	hit, miss *shardedCounter
	duration  [numOutcomes]*shardedHistogram

	keys *jwks.Metrics
}

// series names one series of tokengate_decisions_total.
type series struct {
	outcome Outcome
	reason  Reason
	route   string
}

var _ prometheus.Collector = (*metrics)(nil)

// newMetrics registers the metrics on reg. A registry that holds them already (a
// configuration reload builds a new Gate on the same registry) lends its collector.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		counters: map[series]*shardedCounter{},
		ages:     map[string]*shardedHistogram{},
		hit:      &shardedCounter{},
		miss:     &shardedCounter{},
	}
	for i := range m.duration {
		m.duration[i] = newShardedHistogram(durationBuckets)
	}
	m, err := promreg.Register(reg, m)
	if err != nil {
		return nil, err
	}
	if m.keys, err = jwks.NewMetrics(reg); err != nil {
		return nil, err
	}
	return m, nil
}

// counter returns the counter of one series, creating it (at zero) on first use.
func (m *metrics) counter(outcome Outcome, reason Reason, route string) *shardedCounter {
	k := series{outcome, reason, route}
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.counters[k]
	if c == nil {
		c = &shardedCounter{}
		m.counters[k] = c
	}
	return c
}

// tokenAge returns the token-age histogram of an issuer.
func (m *metrics) tokenAge(issuer string) *shardedHistogram {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.ages[issuer]
	if h == nil {
		h = newShardedHistogram(ageBuckets)
		m.ages[issuer] = h
	}
	return h
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- decisionsDesc
	ch <- durationDesc
	ch <- cacheDesc
	ch <- ageDesc
}

// Collect implements prometheus.Collector: it sums the shards.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	// A snapshot of the series, so that a series appearing meanwhile waits for no
	// scrape; the registry sorts what it gathers.
	m.mu.Lock()
	counters := maps.Clone(m.counters)
	ages := maps.Clone(m.ages)
	m.mu.Unlock()
	for k, c := range counters {
		ch <- prometheus.MustNewConstMetric(decisionsDesc, prometheus.CounterValue, float64(c.value()), k.outcome.String(), string(k.reason), k.route)
	}
	for o, h := range m.duration {
		ch <- h.metric(durationDesc, Outcome(o).String())
	}
	ch <- prometheus.MustNewConstMetric(cacheDesc, prometheus.CounterValue, float64(m.hit.value()), "hit")
	ch <- prometheus.MustNewConstMetric(cacheDesc, prometheus.CounterValue, float64(m.miss.value()), "miss")
	for iss, h := range ages {
		ch <- h.metric(ageDesc, iss)
	}
}

// counters holds the decision counters of one route, resolved on first use so that a
// request increments without a map look-up or an allocation.
type counters struct {
	route string
	slots [numOutcomes][len(reasons)]atomic.Pointer[shardedCounter]
}

// count counts one decision and its duration.
func (m *metrics) count(sh int, c *counters, outcome Outcome, reason Reason, took time.Duration) {
	slot := &c.slots[outcome][reasonIndex(reason)]
	sc := slot.Load()
	if sc == nil {
		sc = m.counter(outcome, reason, c.route)
		slot.Store(sc)
	}
	sc.inc(sh)
	m.duration[outcome].observe(sh, took.Seconds())
}

// shards is the number of cells a sharded value spreads over. A request takes a shard
// index from shardPool, whose sync.Pool keeps one per processor (P): requests running on
// one core keep writing the same cells, which stay in that core's cache. (A random cell
// per write would move cache lines between cores on most writes.)
const shards = 16

var (
	nextShard atomic.Uint32
	shardPool = sync.Pool{New: func() any {
		i := int(nextShard.Add(1) % shards)
		return &i
	}}
)

// acquireShard returns this processor's shard index; give it back with releaseShard.
func acquireShard() *int { return shardPool.Get().(*int) }

func releaseShard(i *int) { shardPool.Put(i) }

type paddedUint64 struct {
	v atomic.Uint64
	_ [56]byte
}

// shardedCounter is a counter whose increments do not contend.
type shardedCounter struct{ cells [shards]paddedUint64 }

func (c *shardedCounter) inc(sh int) { c.cells[sh].v.Add(1) }

func (c *shardedCounter) value() uint64 {
	var n uint64
	for i := range c.cells {
		n += c.cells[i].v.Load()
	}
	return n
}

// shardedHistogram is a histogram whose observations do not contend. Its cells live in
// one array, each cell's counts and sum followed by a cache line of padding, so that two
// cells never share a cache line.
type shardedHistogram struct {
	bounds []float64
	stride int             // words per cell: len(bounds)+1 counts, the sum, the padding
	words  []atomic.Uint64 // shards cells
}

func newShardedHistogram(bounds []float64) *shardedHistogram {
	stride := len(bounds) + 2 + 8
	return &shardedHistogram{bounds: bounds, stride: stride, words: make([]atomic.Uint64, stride*shards)}
}

func (h *shardedHistogram) observe(sh int, v float64) {
	cell := h.words[sh*h.stride:]
	cell[sort.SearchFloat64s(h.bounds, v)].Add(1)
	sum := &cell[len(h.bounds)+1]
	for {
		old := sum.Load()
		if sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// metric sums the cells into a constant histogram: cumulative bucket counts, as
// Prometheus wants them.
func (h *shardedHistogram) metric(desc *prometheus.Desc, label string) prometheus.Metric {
	per := make([]uint64, len(h.bounds)+1)
	var sum float64
	for i := range shards {
		cell := h.words[i*h.stride:]
		for b := range per {
			per[b] += cell[b].Load()
		}
		sum += math.Float64frombits(cell[len(h.bounds)+1].Load())
	}
	buckets := make(map[float64]uint64, len(h.bounds))
	var cum uint64
	for b, bound := range h.bounds {
		cum += per[b]
		buckets[bound] = cum
	}
	count := cum + per[len(h.bounds)]
	return prometheus.MustNewConstHistogram(desc, count, sum, buckets, label)
}
