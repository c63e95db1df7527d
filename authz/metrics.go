package authz

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokengate/tokengate/internal/promreg"
)

// protocol is the protocol label of tokengate_authz_requests_total.
type protocol uint8

const (
	protoNginx protocol = iota
	protoTraefik
	protoEnvoyHTTP
	protoEnvoyGRPC
	numProtocols
)

var protocolNames = [numProtocols]string{"nginx", "traefik", "envoy_http", "envoy_grpc"}

func (p protocol) String() string { return protocolNames[p] }

// decisionError is the decision label of a check request that was not decided: a
// missing or malformed forwarded method or URI, no configuration loaded, or a gRPC
// deadline that passed before the answer.
const decisionError = "error"

// decisions are the decision label's values: the Gate's outcomes, and error.
var decisions = []string{"allowed", "denied", "shadow_denied", decisionError}

// metrics counts check requests by protocol and decision.
type metrics struct {
	requests [numProtocols]map[string]prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	vec, err := promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokengate_authz_requests_total",
		Help: "Check requests from gateways, by protocol (nginx, traefik, envoy_http, envoy_grpc) and decision (allowed, denied, shadow_denied, or error for a request that was not decided).",
	}, []string{"protocol", "decision"}))
	if err != nil {
		return nil, err
	}
	m := &metrics{}
	for p := range numProtocols {
		m.requests[p] = make(map[string]prometheus.Counter, len(decisions))
		for _, d := range decisions {
			// Series at zero, so that rates exist before the first request.
			m.requests[p][d] = vec.WithLabelValues(p.String(), d)
		}
	}
	return m, nil
}

func (m *metrics) count(p protocol, decision string) {
	if c, ok := m.requests[p][decision]; ok {
		c.Inc()
	}
}
