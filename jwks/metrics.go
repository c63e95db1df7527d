package jwks

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokengate/tokengate/internal/promreg"
)

// Values of the labels of tokengate_jwks_refreshes_total.
const (
	resultUpdated     = "updated"
	resultNotModified = "not_modified"
	resultError       = "error"

	triggerStartup    = "startup"
	triggerScheduled  = "scheduled"
	triggerUnknownKID = "unknown_kid"
	// triggerSignature is a refresh after a token whose kid the set holds failed its
	// signature check: the issuer may have replaced the key under the same kid.
	triggerSignature = "signature"
)

// Metrics are the key-set metrics of docs/metrics.md. Build them once per process with
// NewMetrics and share them between every Set (and every reload): the issuer label
// tells the sets apart. A nil *Metrics counts nothing.
type Metrics struct {
	refreshes   *prometheus.CounterVec
	keys        *prometheus.GaugeVec
	lastSuccess *prometheus.GaugeVec
	skipped     *prometheus.GaugeVec
}

// NewMetrics registers the key-set metrics on reg. It never touches the global default
// registry on its own. Called again on the same registry (a configuration reload), it
// shares the collectors registered the first time.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokengate_jwks_refreshes_total",
			Help: "Fetches of an issuer's key set, by result (updated, not_modified, error) and trigger (startup, scheduled, unknown_kid, signature).",
		}, []string{"issuer", "result", "trigger"}),
		keys: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tokengate_jwks_keys",
			Help: "Usable signing keys in an issuer's current key set.",
		}, []string{"issuer"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tokengate_jwks_last_success_timestamp_seconds",
			Help: "Unix time of the last fetch of an issuer's key set that succeeded (updated or not modified).",
		}, []string{"issuer"}),
		skipped: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tokengate_jwks_skipped_keys",
			Help: "Keys of an issuer's last fetched key set that were left out, by reason.",
		}, []string{"issuer", "reason"}),
	}
	var err error
	if m.refreshes, err = promreg.Register(reg, m.refreshes); err != nil {
		return nil, err
	}
	if m.keys, err = promreg.Register(reg, m.keys); err != nil {
		return nil, err
	}
	if m.lastSuccess, err = promreg.Register(reg, m.lastSuccess); err != nil {
		return nil, err
	}
	if m.skipped, err = promreg.Register(reg, m.skipped); err != nil {
		return nil, err
	}
	return m, nil
}

// init creates an issuer's series at zero, so that dashboards and alerts see them
// before the first event.
func (m *Metrics) init(issuer string) {
	if m == nil {
		return
	}
	for _, result := range []string{resultUpdated, resultNotModified, resultError} {
		for _, trigger := range []string{triggerStartup, triggerScheduled, triggerUnknownKID, triggerSignature} {
			m.refreshes.WithLabelValues(issuer, result, trigger)
		}
	}
	m.keys.WithLabelValues(issuer)
	for _, r := range skipReasons {
		m.skipped.WithLabelValues(issuer, r)
	}
}

func (m *Metrics) refreshed(issuer, result, trigger string) {
	if m == nil {
		return
	}
	m.refreshes.WithLabelValues(issuer, result, trigger).Inc()
}

func (m *Metrics) succeeded(issuer string, at time.Time) {
	if m == nil {
		return
	}
	m.lastSuccess.WithLabelValues(issuer).Set(float64(at.UnixNano()) / 1e9)
}

func (m *Metrics) loaded(issuer string, keys int, skipped []skipped) {
	if m == nil {
		return
	}
	m.keys.WithLabelValues(issuer).Set(float64(keys))
	counts := make(map[string]int, len(skipReasons))
	for _, s := range skipped {
		counts[s.reason]++
	}
	for _, r := range skipReasons {
		m.skipped.WithLabelValues(issuer, r).Set(float64(counts[r]))
	}
}

// Forget removes an issuer's series, for a caller that stops trusting it (a
// configuration reload that drops it).
func (m *Metrics) Forget(issuer string) {
	if m == nil {
		return
	}
	l := prometheus.Labels{"issuer": issuer}
	m.refreshes.DeletePartialMatch(l)
	m.keys.DeletePartialMatch(l)
	m.lastSuccess.DeletePartialMatch(l)
	m.skipped.DeletePartialMatch(l)
}
