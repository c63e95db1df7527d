package sidecar

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tokengate/tokengate/internal/promreg"
	"github.com/tokengate/tokengate/policy"
)

// sidecarMetrics are the metrics of the sidecar around the middleware's: reloads,
// upstream answers, the build.
type sidecarMetrics struct {
	reloads  *policy.ReloadMetrics
	upstream func(code string)
}

// NewRegistry returns a registry with the Go and process collectors, tokengate's
// build_info, and nothing else: the sidecar's /metrics serves it.
func NewRegistry(version string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "tokengate_build_info",
		Help:        "The version of tokengate and of Go it was built with; always 1.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	info.Set(1)
	reg.MustRegister(info)
	return reg
}

func newSidecarMetrics(reg prometheus.Registerer) (*sidecarMetrics, error) {
	reloads, err := policy.NewReloadMetrics(reg)
	if err != nil {
		return nil, err
	}
	upstream, err := promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokengate_upstream_requests_total",
		Help: "Requests forwarded to the upstream, by status class of its answer (2xx ... 5xx) or error (no answer).",
	}, []string{"code"}))
	if err != nil {
		return nil, err
	}
	byCode := map[string]prometheus.Counter{}
	for _, c := range []string{"1xx", "2xx", "3xx", "4xx", "5xx", "error"} {
		byCode[c] = upstream.WithLabelValues(c)
	}
	return &sidecarMetrics{reloads: reloads, upstream: func(code string) { byCode[code].Inc() }}, nil
}
