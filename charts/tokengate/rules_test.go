package chart_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	engine "github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/tokengate/tokengate/jwks/jwkstest"
	"github.com/tokengate/tokengate/policy"
	"github.com/tokengate/tokengate/sidecar"
	"github.com/tokengate/tokengate/sidecar/inject"
)

// The chart's alerts, evaluated by Prometheus' own PromQL engine over synthetic series
// named and labelled as tokengate exports them, with the pending-then-firing logic of
// Prometheus' rule manager (what `promtool test rules` runs): each alert fires when it
// should and stays silent when it should not (issue 17). The series are written in
// promtool's notation ("0+60x40": 0, then 60 more each minute, 40 times; "_" no sample).
// Prometheus' rules and tsdb packages are not imported: they bring some 400 packages
// more (remote storage, cloud SDKs) to every fresh `go test ./...`; the store below is
// the few dozen lines the engine needs.

// monitoring renders the chart with everything SREs watch switched on.
var monitoring = []string{"monitoring.prometheusRule.enabled=true", "monitoring.serviceMonitor.enabled=true",
	"monitoring.podMonitor.enabled=true", "monitoring.dashboard.enabled=true"}

type alertRule struct {
	Alert, Expr, For string
	Labels           map[string]string
}

// renderedAlerts are the chart's alerts, rendered by Helm with set.
func renderedAlerts(t *testing.T, set []string) map[string]alertRule {
	t.Helper()
	out := map[string]alertRule{}
	for _, o := range render(t, set) {
		if o.kind != "PrometheusRule" {
			continue
		}
		var pr prometheusRule
		strict(t, o, &pr)
		for _, g := range pr.Spec.Groups {
			for _, r := range g.Rules {
				out[r.Alert] = alertRule{r.Alert, r.Expr, r.For, r.Labels}
			}
		}
	}
	return out
}

// scenario is one case of an alert: series in promqltest's load notation, one sample a
// minute from time 0, and whether the alert fires at the end, or never fires at all.
type scenario struct {
	name   string
	series string
	at     time.Duration // evaluated every minute from 0 up to this
	fires  bool          // firing at `at`; false: never firing at any evaluation
}

// Labels of a sidecar's series as the chart's PodMonitor scrapes them.
const pod = `namespace="shop",pod="orders-7d9f",job="shop/tokengate",container="tokengate"`

func series(name, extra, values string) string {
	if extra != "" {
		extra = "," + extra
	}
	return fmt.Sprintf("%s{%s%s} %s\n", name, pod, extra, values)
}

func decisions(decision, reason, values string) string {
	return series("tokengate_decisions_total", fmt.Sprintf(`decision=%q,reason=%q,route="GET /orders/{id}"`, decision, reason), values)
}

const issuerLabel = `issuer="https://auth.example.com"`

// steady is a counter that grows by perMinute every minute for minutes minutes.
func steady(perMinute, minutes int) string { return fmt.Sprintf("0+%dx%d", perMinute, minutes) }

var scenarios = map[string][]scenario{
	"TokengateHighRejectionRate": {
		{"half of the requests denied for half an hour", decisions("allowed", "ok", steady(600, 40)) + decisions("denied", "insufficient_scope", steady(600, 40)), 30 * time.Minute, true},
		{"a two-minute burst of denials", decisions("allowed", "ok", steady(600, 40)) + decisions("denied", "insufficient_scope", "0x10 600 1200 1200x28"), 40 * time.Minute, false},
		{"a tenth denied", decisions("allowed", "ok", steady(540, 40)) + decisions("denied", "expired", steady(60, 40)), 40 * time.Minute, false},
		{"no traffic at all (0/0)", decisions("allowed", "ok", "0x40") + decisions("denied", "expired", "0x40"), 40 * time.Minute, false},
	},
	"TokengateExpiredTokens": {
		{"a tenth of the tokens expired for 40 minutes", decisions("allowed", "ok", steady(540, 40)) + decisions("denied", "expired", steady(60, 40)), 40 * time.Minute, true},
		{"one in a hundred", decisions("allowed", "ok", steady(594, 40)) + decisions("denied", "expired", steady(6, 40)), 40 * time.Minute, false},
		{"no traffic at all (0/0)", decisions("allowed", "ok", "0x40") + decisions("denied", "expired", "0x40"), 40 * time.Minute, false},
	},
	"TokengateReplayStoreUnavailable": {
		{"Redis down for ten minutes", series("tokengate_replay_store_requests_total", `store="redis",result="error"`, steady(60, 15)), 15 * time.Minute, true},
		{"one timeout among 600 uses a minute", series("tokengate_replay_store_requests_total", `store="redis",result="first_use"`, steady(600, 20)) +
			series("tokengate_replay_store_requests_total", `store="redis",result="error"`, "0x5 1x15"), 20 * time.Minute, false},
		{"uses that all worked", series("tokengate_replay_store_requests_total", `store="redis",result="first_use"`, steady(600, 15)) +
			series("tokengate_replay_store_requests_total", `store="redis",result="error"`, "0x15"), 15 * time.Minute, false},
	},
	"TokengateIntrospectionUnavailable": {
		{"the endpoint down for ten minutes", series("tokengate_introspection_requests_total", issuerLabel+`,result="error"`, steady(30, 15)), 15 * time.Minute, true},
		{"a two-minute outage", series("tokengate_introspection_requests_total", issuerLabel+`,result="error"`, "0x5 30 60 60x12"), 20 * time.Minute, false},
		{"one error among 30 calls a minute", series("tokengate_introspection_requests_total", issuerLabel+`,result="active"`, steady(30, 20)) +
			series("tokengate_introspection_requests_total", issuerLabel+`,result="error"`, "0x5 1x15"), 20 * time.Minute, false},
		{"answers, none failing", series("tokengate_introspection_requests_total", issuerLabel+`,result="active"`, steady(30, 15)) +
			series("tokengate_introspection_requests_total", issuerLabel+`,result="error"`, "0x15"), 15 * time.Minute, false},
	},
	"TokengateKeysUnavailable": {
		{"keys never loaded", series("tokengate_jwks_keys", issuerLabel, "0x20"), 20 * time.Minute, true},
		{"keys loaded", series("tokengate_jwks_keys", issuerLabel, "3x20"), 20 * time.Minute, false},
		{"keys loaded two minutes after start", series("tokengate_jwks_keys", issuerLabel, "0 0 3x20"), 20 * time.Minute, false},
	},
	"TokengateUnknownKeys": {
		{"unknown kids for half an hour", decisions("denied", "unknown_key", steady(60, 40)), 30 * time.Minute, true},
		{"a two-minute burst of unknown kids", decisions("denied", "unknown_key", "0x10 60 120 180 180x27"), 40 * time.Minute, false},
	},
	"TokengateJWKSRefreshFailing": {
		{"every fetch failing for 40 minutes", series("tokengate_jwks_refreshes_total", issuerLabel+`,result="error",trigger="scheduled"`, steady(1, 45)) +
			series("tokengate_jwks_refreshes_total", issuerLabel+`,result="updated",trigger="startup"`, "1x45"), 40 * time.Minute, true},
		{"a few seconds' hiccup healed by a retry", series("tokengate_jwks_refreshes_total", issuerLabel+`,result="error",trigger="scheduled"`, "0x4 3x40") +
			series("tokengate_jwks_refreshes_total", issuerLabel+`,result="updated",trigger="scheduled"`, "1x4 2x40"), 45 * time.Minute, false},
	},
	"TokengateKeysStale": {
		{"no fetch for 25 hours", series("tokengate_jwks_last_success_timestamp_seconds", issuerLabel, "60x1500") + series("tokengate_jwks_keys", issuerLabel, "3x1500") +
			series("process_start_time_seconds", "", "0x1500"), 25 * time.Hour, true},
		{"never fetched, in a process 25 hours old", series("tokengate_jwks_keys", issuerLabel, "0x1500") + series("process_start_time_seconds", "", "0x1500"), 25 * time.Hour, true},
		{"fetched every hour", series("tokengate_jwks_last_success_timestamp_seconds", issuerLabel, "0+60x1500") + series("tokengate_jwks_keys", issuerLabel, "3x1500") +
			series("process_start_time_seconds", "", "0x1500"), 25 * time.Hour, false},
		{"never fetched, in a process an hour old", series("tokengate_jwks_keys", issuerLabel, "0x60") + series("process_start_time_seconds", "", "0x60"), time.Hour, false},
	},
	"TokengateConfigReloadFailed": {
		{"the file refused, for half an hour", series("tokengate_config_last_reload_successful", "", "1x4 0x30"), 30 * time.Minute, true},
		{"every reload applied", series("tokengate_config_last_reload_successful", "", "1x30"), 30 * time.Minute, false},
	},
	"TokengateInjectorRefusingPods": {
		{"a pod refused", injectorSeries(`result="refused"`, "0x4 1x10"), 8 * time.Minute, true},
		{"pods injected, none refused", injectorSeries(`result="refused"`, "0x20") + injectorSeries(`result="injected"`, steady(5, 20)), 20 * time.Minute, false},
	},
	"TokengateInjectorErrors": {
		{"a request it could not read", injectorSeries(`result="error"`, "0x4 1x10"), 8 * time.Minute, true},
		{"no errors", injectorSeries(`result="error"`, "0x20"), 20 * time.Minute, false},
	},
	"TokengateInjectorDown": {
		{"both replicas down", upSeries("0x20", "0x20"), 20 * time.Minute, true},
		{"never scraped", "", 20 * time.Minute, true},
		{"one replica down", upSeries("1x20", "0x20"), 20 * time.Minute, false},
	},
	"TokengateWebhookCallsFailing": {
		{"the very first failure", webhookSeries("_x5 1x10"), 8 * time.Minute, true},
		{"failures going on", webhookSeries(steady(2, 20)), 15 * time.Minute, true},
		{"old failures, none new", webhookSeries("3x40"), 40 * time.Minute, false},
		{"no failure ever", "", 20 * time.Minute, false},
	},
}

func injectorSeries(extra, values string) string {
	return fmt.Sprintf("tokengate_inject_requests_total{namespace=%q,pod=\"rel-tokengate-injector-1\",job=\"rel-tokengate-injector\",%s} %s\n", namespace, extra, values)
}

func upSeries(a, b string) string {
	return fmt.Sprintf("up{namespace=%q,job=\"rel-tokengate-injector\",pod=\"a\"} %s\nup{namespace=%q,job=\"rel-tokengate-injector\",pod=\"b\"} %s\n", namespace, a, namespace, b)
}

func webhookSeries(values string) string {
	return fmt.Sprintf("apiserver_admission_webhook_rejection_count{name=\"inject.tokengate.io\",error_type=\"calling_webhook_error\",operation=\"CREATE\",rejection_code=\"0\",type=\"admit\"} %s\n", values)
}

// sample is one float sample of the in-memory store.
type sample struct {
	t int64
	f float64
}

func (s sample) T() int64                      { return s.t }
func (s sample) ST() int64                     { return 0 }
func (s sample) F() float64                    { return s.f }
func (s sample) H() *histogram.Histogram       { return nil }
func (s sample) FH() *histogram.FloatHistogram { return nil }
func (s sample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s sample) Copy() chunks.Sample           { return s }

// memStore is the series of a scenario, one sample a minute from time 0, as a
// storage.Queryable for the PromQL engine.
type memStore struct{ series []storage.Series }

func newStore(t *testing.T, desc string) memStore {
	t.Helper()
	var st memStore
	for _, line := range strings.Split(strings.TrimSpace(desc), "\n") {
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		lset, values, err := promql.ParseSeriesDesc(line)
		if err != nil {
			t.Fatalf("series %q: %v", line, err)
		}
		var samples []chunks.Sample
		for i, v := range values {
			if !v.Omitted {
				samples = append(samples, sample{t: int64(i) * time.Minute.Milliseconds(), f: v.Value})
			}
		}
		st.series = append(st.series, storage.NewListSeries(lset, samples))
	}
	return st
}

func (m memStore) Querier(int64, int64) (storage.Querier, error) { return m, nil }
func (m memStore) Close() error                                  { return nil }

func (m memStore) Select(_ context.Context, _ bool, _ *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	var out []storage.Series
series:
	for _, s := range m.series {
		for _, matcher := range ms {
			if !matcher.Matches(s.Labels().Get(matcher.Name)) {
				continue series
			}
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return labels.Compare(out[i].Labels(), out[j].Labels()) < 0 })
	return &seriesSet{list: out, i: -1}
}

func (m memStore) LabelValues(context.Context, string, *storage.LabelHints, ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return nil, nil, nil
}

func (m memStore) LabelNames(context.Context, *storage.LabelHints, ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return nil, nil, nil
}

type seriesSet struct {
	list []storage.Series
	i    int
}

func (s *seriesSet) Next() bool                        { s.i++; return s.i < len(s.list) }
func (s *seriesSet) At() storage.Series                { return s.list[s.i] }
func (s *seriesSet) Err() error                        { return nil }
func (s *seriesSet) Warnings() annotations.Annotations { return nil }

// query evaluates expr over a store at one instant.
func query(t *testing.T, st memStore, expr string, at time.Duration) engine.Vector {
	t.Helper()
	eng := engine.NewEngine(engine.EngineOpts{MaxSamples: 1e7, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	q, err := eng.NewInstantQuery(context.Background(), st, nil, expr, time.Unix(0, 0).Add(at))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	defer q.Close()
	res := q.Exec(context.Background())
	if res.Err != nil {
		t.Fatalf("%s: %v", expr, res.Err)
	}
	v, err := res.Vector()
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// evaluate runs an alert over the series every minute from 0 to s.at, as Prometheus'
// rule manager does: an alert of a label set is pending from the first evaluation that
// returns it, firing once it has been returned for its for duration without a gap, and
// gone at the first evaluation that does not return it. It returns whether the alert
// fired at the last evaluation, and at which evaluations it was firing.
func evaluate(t *testing.T, r alertRule, s scenario) (bool, []time.Duration) {
	t.Helper()
	var hold time.Duration
	if r.For != "" {
		d, err := model.ParseDuration(r.For)
		if err != nil {
			t.Fatalf("%s: for %q: %v", r.Alert, r.For, err)
		}
		hold = time.Duration(d)
	}
	st := newStore(t, s.series)
	activeAt := map[string]time.Duration{}
	var firingAt []time.Duration
	firing := false
	for at := time.Duration(0); at <= s.at; at += time.Minute {
		seen := map[string]bool{}
		for _, smp := range query(t, st, r.Expr, at) {
			key := smp.Metric.String()
			seen[key] = true
			if _, ok := activeAt[key]; !ok {
				activeAt[key] = at
			}
		}
		firing = false
		for key, since := range activeAt {
			switch {
			case !seen[key]:
				delete(activeAt, key)
			case at-since >= hold:
				firing = true
			}
		}
		if firing {
			firingAt = append(firingAt, at)
		}
	}
	return firing, firingAt
}

// TestAlertsFireWhenTheyShould runs every alert of the chart through its scenarios:
// each has at least one that must fire and one that must not.
func TestAlertsFireWhenTheyShould(t *testing.T) {
	alerts := renderedAlerts(t, monitoring)
	for name := range alerts {
		fire, silent := 0, 0
		for _, s := range scenarios[name] {
			if s.fires {
				fire++
			} else {
				silent++
			}
		}
		if fire == 0 || silent == 0 {
			t.Errorf("%s has %d must-fire and %d must-not-fire scenarios; it needs both", name, fire, silent)
		}
	}
	for name, ss := range scenarios {
		r, ok := alerts[name]
		if !ok {
			t.Errorf("scenarios for %s, which the chart does not have", name)
			continue
		}
		for _, s := range ss {
			t.Run(name+"/"+s.name, func(t *testing.T) {
				firing, at := evaluate(t, r, s)
				switch {
				case s.fires && !firing:
					t.Errorf("silent at %s; it was firing at %v", s.at, at)
				case !s.fires && len(at) > 0:
					t.Errorf("fired at %v", at)
				}
			})
		}
	}
}

// Without a ServiceMonitor nothing scrapes the injector, and an alert on its up series
// would fire for ever: the chart leaves it out.
func TestInjectorDownNeedsWhatScrapesIt(t *testing.T) {
	alerts := renderedAlerts(t, []string{"monitoring.prometheusRule.enabled=true"})
	if _, ok := alerts["TokengateInjectorDown"]; ok {
		t.Fatal("TokengateInjectorDown without a ServiceMonitor")
	}
	if len(alerts) < 10 {
		t.Fatalf("%d alerts", len(alerts))
	}
}

// exported is what tokengate exports: every metric a running sidecar and injector
// serve, with its label names, and the labels Prometheus adds to a scraped target.
func exported(t *testing.T) map[string]map[string]bool {
	t.Helper()
	as, err := jwkstest.NewServer(jwkstest.WithAudience("https://orders.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	defer as.Close()
	dir := t.TempDir()
	cfg, secret := filepath.Join(dir, "tokengate.yaml"), filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Every feature with metrics of its own on: DPoP and single use (the replay store),
	// introspection.
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`upstream: http://127.0.0.1:9
externalURL: https://orders.example.com
issuers:
  - issuer: %s
    audiences: [https://orders.example.com]
    dpop: allowed
    introspection: {clientID: orders-api, clientSecretFile: %s, opaqueTokens: true}
routes:
  - match: "GET /orders/{id}"
    singleUse: true
`, as.Issuer, secret)), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := policy.LoadFile(cfg, policy.ForProxy, policy.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	admin, _ := net.Listen("tcp", "127.0.0.1:0")
	reg := sidecar.NewRegistry("test")
	sc, err := sidecar.New(l, sidecar.Options{Registry: reg, Listener: ln, AdminListener: admin, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sc.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(10 * time.Second)
	for ok, _ := sc.Ready(); !ok; ok, _ = sc.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("the sidecar did not get ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	injReg := prometheus.NewRegistry()
	if _, err := inject.NewWebhook(inject.Defaults{}, nil, injReg); err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]bool{}
	for _, g := range []prometheus.Gatherer{reg, injReg} {
		mfs, err := g.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			names := []string{mf.GetName()}
			switch mf.GetType().String() {
			case "HISTOGRAM":
				names = []string{mf.GetName() + "_bucket", mf.GetName() + "_sum", mf.GetName() + "_count"}
			case "SUMMARY":
				names = append(names, mf.GetName()+"_sum", mf.GetName()+"_count")
			}
			for _, n := range names {
				if out[n] == nil {
					out[n] = map[string]bool{}
				}
				for _, m := range mf.GetMetric() {
					for _, lp := range m.GetLabel() {
						out[n][lp.GetName()] = true
					}
				}
				if strings.HasSuffix(n, "_bucket") {
					out[n]["le"] = true
				}
			}
		}
	}
	return out
}

// Labels that a scrape adds to every series (the PodMonitor's and ServiceMonitor's
// target labels), and the series of others that the alerts use.
var (
	targetLabels = []string{"namespace", "pod", "job", "instance", "container", "service", "endpoint"}
	foreign      = map[string][]string{
		"up": nil,
		"apiserver_admission_webhook_rejection_count": {"name", "error_type", "operation", "rejection_code", "type"},
	}
)

// TestAlertsUseWhatTheCodeExports fails when an alert or a dashboard query names a
// metric, or a label, that tokengate (or the API server, for its own series) does not
// export: such an alert is silent for ever.
func TestAlertsUseWhatTheCodeExports(t *testing.T) {
	have := exported(t)
	for name, extra := range foreign {
		have[name] = map[string]bool{}
		for _, l := range extra {
			have[name][l] = true
		}
	}
	for _, m := range have {
		for _, l := range targetLabels {
			m[l] = true
		}
	}
	check := func(what, expr string) (problems []string) {
		e, err := promql.ParseExpr(expr)
		if err != nil {
			return []string{fmt.Sprintf("%s: %v", what, err)}
		}
		var metrics []string
		var grouping []string
		parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
			switch n := n.(type) {
			case *parser.VectorSelector:
				labels, ok := have[n.Name]
				if !ok {
					problems = append(problems, fmt.Sprintf("%s uses %s, which nothing exports", what, n.Name))
					return nil
				}
				metrics = append(metrics, n.Name)
				for _, m := range n.LabelMatchers {
					if m.Name != "__name__" && !labels[m.Name] {
						problems = append(problems, fmt.Sprintf("%s matches label %s of %s, which it does not have", what, m.Name, n.Name))
					}
				}
			case *parser.AggregateExpr:
				grouping = append(grouping, n.Grouping...)
			case *parser.BinaryExpr:
				if n.VectorMatching != nil {
					grouping = append(grouping, n.VectorMatching.MatchingLabels...)
				}
			}
			return nil
		})
		for _, g := range grouping {
			found := false
			for _, m := range metrics {
				found = found || have[m][g]
			}
			if !found {
				problems = append(problems, fmt.Sprintf("%s groups by %s, which none of %v has", what, g, metrics))
			}
		}
		return problems
	}
	// The check itself must catch what it is for.
	for expr, want := range map[string]string{
		`rate(tokengate_decision_total[5m])`:                                "which nothing exports",
		`tokengate_jwks_keys{kid="x"}`:                                      "matches label kid",
		`sum by (tenant) (rate(tokengate_decisions_total[5m]))`:             "groups by tenant",
		`sum by (pod, issuer) (tokengate_jwks_keys) and on (route) up == 0`: "groups by route",
	} {
		if p := check("canary", expr); len(p) == 0 || !strings.Contains(strings.Join(p, "\n"), want) {
			t.Errorf("the check passed %s: %v", expr, p)
		}
	}
	var problems []string
	for name, r := range renderedAlerts(t, monitoring) {
		problems = append(problems, check(name, r.Expr)...)
	}
	for title, expr := range dashboardQueries(t) {
		problems = append(problems, check("dashboard panel "+title, expr)...)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// dashboardQueries are the rendered dashboard's queries by panel title, with Grafana's
// variables replaced as Grafana would for every namespace and a 5-minute window.
func dashboardQueries(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, o := range render(t, monitoring) {
		if o.kind != "ConfigMap" || !strings.Contains(o.name, "dashboard") {
			continue
		}
		var cm struct {
			Data map[string]string `json:"data"`
		}
		if err := json.Unmarshal(o.json, &cm); err != nil {
			t.Fatal(err)
		}
		var dash dashboard
		if err := json.Unmarshal([]byte(cm.Data["tokengate.json"]), &dash); err != nil {
			t.Fatal(err)
		}
		for _, p := range dash.Panels {
			for i, tg := range p.Targets {
				out[fmt.Sprintf("%s #%d", p.Title, i+1)] = grafanaVars.Replace(tg.Expr)
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("no dashboard rendered")
	}
	return out
}

// The dashboard's panels over the same synthetic series: denials show by reason when
// there are some, and no panel shows a misleading NaN when there is no traffic.
func TestDashboardPanels(t *testing.T) {
	queries := dashboardQueries(t)
	busy := decisions("allowed", "ok", steady(600, 30)) + decisions("denied", "expired", steady(60, 30)) +
		decisions("denied", "insufficient_scope", steady(30, 30)) +
		series("tokengate_token_cache_requests_total", `result="hit"`, steady(500, 30)) +
		series("tokengate_token_cache_requests_total", `result="miss"`, steady(100, 30))
	idle := decisions("allowed", "ok", "5x30") + decisions("denied", "expired", "1x30") +
		series("tokengate_token_cache_requests_total", `result="hit"`, "3x30") +
		series("tokengate_token_cache_requests_total", `result="miss"`, "1x30") +
		series("tokengate_jwks_keys", issuerLabel, "3x30") + series("tokengate_jwks_last_success_timestamp_seconds", issuerLabel, "60x30")
	run := func(load, expr string) engine.Vector { return query(t, newStore(t, load), expr, 25*time.Minute) }
	var byReason []string
	for _, s := range run(busy, queries["Denials by reason #1"]) {
		byReason = append(byReason, s.Metric.Get("reason"))
	}
	sort.Strings(byReason)
	if !slices.Equal(byReason, []string{"expired", "insufficient_scope"}) {
		t.Errorf("Denials by reason shows %v over expired and insufficient_scope denials", byReason)
	}
	for title, expr := range queries {
		for _, s := range run(idle, expr) {
			if math.IsNaN(s.F) || math.IsInf(s.F, 0) {
				t.Errorf("%s shows %v at zero traffic: %s", title, s.F, expr)
			}
		}
	}
}

// TestMetricsAreDocumented keeps docs/metrics.md true: every metric a running sidecar
// and injector export is in its tables, and the registries pass client_golang's lint.
func TestMetricsAreDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	for name := range exported(t) {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if !strings.HasPrefix(base, "tokengate_") {
			continue // the Go and process collectors
		}
		if !strings.Contains(string(doc), "| `"+base+"` |") {
			t.Errorf("docs/metrics.md does not document %s", base)
		}
	}
}
