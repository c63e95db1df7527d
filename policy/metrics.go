package policy

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokengate/tokengate/internal/promreg"
)

// ReloadMetrics count the reloads of a configuration file (docs/metrics.md):
// tokengate_config_reloads_total{result} and tokengate_config_last_reload_successful.
// A Watcher counts with them, and so does the sidecar.
type ReloadMetrics struct {
	success, failure prometheus.Counter
	// ok is 1 while the running configuration is the file's content, 0 while the file
	// holds a configuration that was refused: the state an alert can watch for as long
	// as it lasts, which a count of refusals cannot say.
	ok prometheus.Gauge
}

// NewReloadMetrics registers the metrics on reg, or borrows them from reg when it holds
// them already (a second Watcher, a restart in a test).
func NewReloadMetrics(reg prometheus.Registerer) (*ReloadMetrics, error) {
	reloads, err := promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokengate_config_reloads_total",
		Help: "Configuration reloads, by result (success, error).",
	}, []string{"result"}))
	if err != nil {
		return nil, err
	}
	ok, err := promreg.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tokengate_config_last_reload_successful",
		Help: "1 while the running configuration is the configuration file's content; 0 while the file holds a configuration that was refused.",
	}))
	if err != nil {
		return nil, err
	}
	ok.Set(1)
	// Both series exist at zero, so that rates exist before the first reload.
	return &ReloadMetrics{success: reloads.WithLabelValues("success"), failure: reloads.WithLabelValues("error"), ok: ok}, nil
}

// Observe counts one attempt to apply a changed file: a success when err is nil, else
// a refusal, which lasts (last_reload_successful 0) until a success.
func (m *ReloadMetrics) Observe(err error) {
	if err != nil {
		m.failure.Inc()
		m.ok.Set(0)
		return
	}
	m.success.Inc()
	m.ok.Set(1)
}
