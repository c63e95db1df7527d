// Package chart_test renders and lints the Helm chart with Helm itself: Helm's Go
// packages compiled into the test binary (internal/helmtest), which do what `helm
// template` and `helm lint --strict` do, so that no test builds or runs a tool within
// its time limit. It checks what the chart renders: every object decoded
// strictly into its Kubernetes type, every alert and dashboard query parsed by
// Prometheus' own PromQL parser, and the properties docs/kubernetes.md describes. It
// also keeps the chart in step with what it documents and runs: README.md's table of
// values is generated from values.yaml (readme_test.go), and the defaults values.yaml
// passes to `tokengate inject` are the injector's own (defaults_test.go). authz_test.go
// checks the authz mode (`tokengate authz` for gateways), and examples_test.go every
// file under examples/, the gateway examples against what the chart renders.
package chart_test

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/tokengate/tokengate/internal/helmtest"
	"github.com/tokengate/tokengate/sidecar/inject"
)

// kubeVersion is the Kubernetes version the chart is rendered and linted for.
const kubeVersion = "1.33.0"

// template renders the chart as `helm template` does (helmtest.Template).
func template(t *testing.T, namespace string, set []string) (string, error) {
	t.Helper()
	return helmtest.Template(".", namespace, kubeVersion, set)
}

const namespace = "tokengate-system"

// valueSets are the configurations the chart is rendered with.
var valueSets = map[string][]string{
	"defaults":                  nil,
	"cert-manager, self-signed": {"certificates.certManager.enabled=true"},
	"cert-manager, own issuer":  {"certificates.certManager.enabled=true", "certificates.certManager.issuerRef.name=corp-ca", "certificates.certManager.issuerRef.kind=ClusterIssuer"},
	"monitoring": {"monitoring.serviceMonitor.enabled=true", "monitoring.podMonitor.enabled=true",
		"monitoring.prometheusRule.enabled=true", "monitoring.dashboard.enabled=true", "monitoring.serviceMonitor.labels.release=prom"},
	"customised": {"injector.replicas=3", "webhook.excludedNamespaces={legacy,batch}", "fullnameOverride=gate",
		"image.tag=v9.9.9", "injector.priorityClassName=system-cluster-critical", "sidecar.memoryLimit=128Mi",
		"sidecar.redisSecret=replay-redis"},
}

// object is a rendered object: its kind, name, component (its
// app.kubernetes.io/component label: injector, authz, or none) and its JSON.
type object struct {
	kind, name, component string
	json                  []byte
}

func render(t *testing.T, set []string) []object {
	t.Helper()
	out, err := template(t, namespace, set)
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	return objects(t, out)
}

// objects splits a rendered manifest into its objects.
func objects(t *testing.T, out string) []object {
	t.Helper()
	var objs []object
	for _, doc := range strings.Split(out, "\n---") {
		j, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatalf("not YAML: %v\n%s", err, doc)
		}
		if string(j) == "null" {
			continue
		}
		var meta struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name   string            `json:"name"`
				Labels map[string]string `json:"labels"`
			} `json:"metadata"`
		}
		_ = json.Unmarshal(j, &meta)
		objs = append(objs, object{meta.Kind, meta.Metadata.Name, meta.Metadata.Labels["app.kubernetes.io/component"], j})
	}
	return objs
}

// strict decodes an object into its type, refusing fields the type does not have.
func strict(t *testing.T, o object, into any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(o.json))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		t.Fatalf("%s %s does not decode strictly: %v\n%s", o.kind, o.name, err, o.json)
	}
}

// The custom resources the chart renders, as far as it uses them: decoding strictly
// into these catches a misspelt field.
type (
	crdMeta struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Metadata   metav1.ObjectMeta `json:"metadata"`
	}
	serviceMonitor struct {
		crdMeta
		Spec struct {
			Selector  metav1.LabelSelector `json:"selector"`
			Endpoints []struct {
				Port, Path, Interval string
			} `json:"endpoints"`
		} `json:"spec"`
	}
	podMonitor struct {
		crdMeta
		Spec struct {
			NamespaceSelector struct {
				Any bool `json:"any"`
			} `json:"namespaceSelector"`
			Selector            metav1.LabelSelector `json:"selector"`
			PodMetricsEndpoints []struct {
				Port, Path, Interval string
			} `json:"podMetricsEndpoints"`
		} `json:"spec"`
	}
	prometheusRule struct {
		crdMeta
		Spec struct {
			Groups []struct {
				Name  string `json:"name"`
				Rules []struct {
					Alert       string            `json:"alert"`
					Expr        string            `json:"expr"`
					For         string            `json:"for"`
					Labels      map[string]string `json:"labels"`
					Annotations map[string]string `json:"annotations"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"spec"`
	}
	certificate struct {
		crdMeta
		Spec struct {
			IsCA        bool     `json:"isCA"`
			CommonName  string   `json:"commonName"`
			SecretName  string   `json:"secretName"`
			DNSNames    []string `json:"dnsNames"`
			Duration    string   `json:"duration"`
			RenewBefore string   `json:"renewBefore"`
			PrivateKey  struct {
				Algorithm string `json:"algorithm"`
				Size      int    `json:"size"`
			} `json:"privateKey"`
			IssuerRef struct{ Name, Kind, Group string } `json:"issuerRef"`
		} `json:"spec"`
	}
	issuer struct {
		crdMeta
		Spec struct {
			SelfSigned *struct{} `json:"selfSigned"`
			CA         *struct {
				SecretName string `json:"secretName"`
			} `json:"ca"`
		} `json:"spec"`
	}
)

var promql = parser.NewParser(parser.Options{})

func TestLint(t *testing.T) {
	for name, set := range valueSets {
		t.Run(name, func(t *testing.T) {
			if err := helmtest.Lint(".", namespace, kubeVersion, set); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSchemaRefusesBadValues(t *testing.T) {
	for name, set := range map[string]string{
		"unknown key":         "webhook.failurePolicyy=Fail",
		"failure policy":      "webhook.failurePolicy=Maybe",
		"timeout":             "webhook.timeoutSeconds=60",
		"log level":           "sidecar.logLevel=loud",
		"quantity":            "sidecar.memoryLimit=lots",
		"replicas":            "injector.replicas=0",
		"namespace name":      "webhook.excludedNamespaces={Not_A_Name}",
		"ratio":               "monitoring.prometheusRule.rejectionRatio=2",
		"issuer kind":         "certificates.certManager.issuerRef.kind=Vault",
		"issuer without name": "certificates.certManager.issuerRef.kind=ClusterIssuer",
		"empty issuer group":  "certificates.certManager.issuerRef.group=",
		"unknown monitor key": "monitoring.podMonitor.intervall=1m",
		"redis secret name":   "sidecar.redisSecret=Redis_Secret",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := template(t, "default", []string{set})
			if err == nil || !strings.Contains(err.Error(), "values don't meet the specifications of the schema") {
				t.Fatalf("accepted %s: %v", set, err)
			}
		})
	}
}

func TestRenderedObjects(t *testing.T) {
	for name, set := range valueSets {
		t.Run(name, func(t *testing.T) {
			objs := render(t, set)
			kinds := map[string]int{}
			for _, o := range objs {
				kinds[o.kind]++
				switch o.kind {
				case "Deployment":
					var d appsv1.Deployment
					strict(t, o, &d)
					checkDeployment(t, &d, set)
				case "Service":
					var s corev1.Service
					strict(t, o, &s)
				case "ServiceAccount":
					var sa corev1.ServiceAccount
					strict(t, o, &sa)
					if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
						t.Error("the injector's service account mounts a token it does not need")
					}
				case "Secret":
					var s corev1.Secret
					strict(t, o, &s)
					checkGeneratedTLS(t, &s, objs)
				case "ConfigMap":
					var cm corev1.ConfigMap
					strict(t, o, &cm)
					checkDashboard(t, cm.Data["tokengate.json"])
				case "PodDisruptionBudget":
					var pdb policyv1.PodDisruptionBudget
					strict(t, o, &pdb)
					if pdb.Spec.MinAvailable.IntValue() < 1 {
						t.Error("the PDB lets every replica go")
					}
				case "MutatingWebhookConfiguration":
					var m admissionregistrationv1.MutatingWebhookConfiguration
					strict(t, o, &m)
					checkWebhook(t, &m, set)
				case "ServiceMonitor":
					var sm serviceMonitor
					strict(t, o, &sm)
				case "PodMonitor":
					var pm podMonitor
					strict(t, o, &pm)
					if pm.Spec.PodMetricsEndpoints[0].Port != inject.AdminPortName || !pm.Spec.NamespaceSelector.Any {
						t.Error("the PodMonitor does not scrape every injected sidecar's admin port")
					}
				case "PrometheusRule":
					var pr prometheusRule
					strict(t, o, &pr)
					checkRules(t, &pr)
				case "Certificate":
					var c certificate
					strict(t, o, &c)
				case "Issuer":
					var i issuer
					strict(t, o, &i)
				default:
					t.Errorf("unexpected kind %s", o.kind)
				}
			}
			for _, k := range []string{"Deployment", "Service", "ServiceAccount", "PodDisruptionBudget", "MutatingWebhookConfiguration"} {
				if kinds[k] != 1 {
					t.Errorf("%d %s, want 1", kinds[k], k)
				}
			}
			if cm := slices.Contains(set, "certificates.certManager.enabled=true"); cm && kinds["Secret"] != 0 || !cm && kinds["Secret"] != 1 {
				t.Errorf("%d generated Secrets with cert-manager %v", kinds["Secret"], cm)
			}
		})
	}
}

func has(set []string, s string) bool { return slices.Contains(set, s) }

func checkDeployment(t *testing.T, d *appsv1.Deployment, set []string) {
	t.Helper()
	want := int32(2)
	if has(set, "injector.replicas=3") {
		want = 3
	}
	if *d.Spec.Replicas != want {
		t.Errorf("replicas %d, want %d", *d.Spec.Replicas, want)
	}
	p := d.Spec.Template.Spec
	if p.Affinity == nil || p.Affinity.PodAntiAffinity == nil {
		t.Error("replicas are not spread over nodes")
	}
	c := p.Containers[0]
	sc := c.SecurityContext
	if p.SecurityContext == nil || !*p.SecurityContext.RunAsNonRoot || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || sc.Capabilities.Drop[0] != "ALL" {
		t.Error("the injector is not locked down")
	}
	if c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Error("liveness and readiness probes")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Error("resources")
	}
	if c.Args[0] != "inject" || !slices.Contains(c.Args, "--tls-cert="+inject.DefaultCertFile) {
		t.Errorf("args %v", c.Args)
	}
	if has(set, "image.tag=v9.9.9") && (!strings.HasSuffix(c.Image, ":v9.9.9") || !slices.Contains(c.Args, "--sidecar-image="+c.Image)) {
		t.Errorf("image %s args %v", c.Image, c.Args)
	}
	if has(set, "sidecar.memoryLimit=128Mi") && !slices.Contains(c.Args, "--sidecar-memory-limit=128Mi") {
		t.Error("the sidecar's memory limit is not passed on")
	}
	// The Redis Secret is passed only when set: the injector's default is none.
	redis := slices.IndexFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--sidecar-redis-secret") })
	if has(set, "sidecar.redisSecret=replay-redis") != (redis >= 0) || redis >= 0 && c.Args[redis] != "--sidecar-redis-secret=replay-redis" {
		t.Errorf("the sidecars' Redis Secret: args %v", c.Args)
	}
}

func checkWebhook(t *testing.T, m *admissionregistrationv1.MutatingWebhookConfiguration, set []string) {
	t.Helper()
	// A webhook per opt-in label, in this order: the sidecar's first, so that a pod with
	// both labels gets everything from it and the second has nothing left to do.
	labels := []string{inject.LabelInject, inject.LabelClientTokens}
	if len(m.Webhooks) != len(labels) {
		t.Fatalf("%d webhooks, want %d", len(m.Webhooks), len(labels))
	}
	names := map[string]bool{}
	for i, w := range m.Webhooks {
		names[w.Name] = true
		if *w.FailurePolicy != admissionregistrationv1.Fail || *w.SideEffects != admissionregistrationv1.SideEffectClassNone || *w.TimeoutSeconds > 10 {
			t.Errorf("%s: failurePolicy Fail, sideEffects None and a short timeout", w.Name)
		}
		if w.ReinvocationPolicy == nil || *w.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy {
			t.Errorf("%s: reinvocationPolicy IfNeeded, so that containers other webhooks add later are seen", w.Name)
		}
		// Pods labelled "true" reach the injector, and so do pods with a value it
		// refuses (a pod labelled "yes" must not start without what it asks for); pods
		// without the label, or labelled "false", never do.
		sel, err := metav1.LabelSelectorAsSelector(w.ObjectSelector)
		if err != nil || w.ObjectSelector == nil {
			t.Fatalf("%s: objectSelector %+v: %v", w.Name, w.ObjectSelector, err)
		}
		for _, c := range []struct {
			labels k8slabels.Set
			want   bool
		}{
			{k8slabels.Set{labels[i]: "true"}, true},
			{k8slabels.Set{labels[i]: "yes"}, true},
			{k8slabels.Set{labels[i]: "True"}, true},
			{k8slabels.Set{labels[i]: ""}, true},
			{k8slabels.Set{labels[i]: "false"}, false},
			{k8slabels.Set{}, false},
			{k8slabels.Set{"app": "orders"}, false},
			{k8slabels.Set{labels[1-i]: "true"}, false},
		} {
			if got := sel.Matches(c.labels); got != c.want {
				t.Errorf("%s: objectSelector %q selects pods labelled %v: %t, want %t", w.Name, sel, c.labels, got, c.want)
			}
		}
		ex := w.NamespaceSelector.MatchExpressions[0]
		if ex.Key != "kubernetes.io/metadata.name" || ex.Operator != metav1.LabelSelectorOpNotIn || !slices.Contains(ex.Values, "kube-system") || !slices.Contains(ex.Values, namespace) {
			t.Errorf("%s: namespaceSelector %+v", w.Name, ex)
		}
		if has(set, "webhook.excludedNamespaces={legacy,batch}") && !slices.Contains(ex.Values, "legacy") {
			t.Errorf("%s: excluded namespaces", w.Name)
		}
		if w.ClientConfig.Service == nil || *w.ClientConfig.Service.Path != inject.MutatePath {
			t.Errorf("%s: clientConfig", w.Name)
		}
		cm := has(set, "certificates.certManager.enabled=true")
		if cm && (len(w.ClientConfig.CABundle) != 0 || m.Annotations["cert-manager.io/inject-ca-from"] == "") || !cm && len(w.ClientConfig.CABundle) == 0 {
			t.Errorf("%s: the CA bundle comes neither from cert-manager nor from the generated CA", w.Name)
		}
		if i > 0 && (!bytes.Equal(w.ClientConfig.CABundle, m.Webhooks[0].ClientConfig.CABundle) || !reflect.DeepEqual(w.ClientConfig.Service, m.Webhooks[0].ClientConfig.Service)) {
			t.Errorf("%s does not call the injector %s calls, with the same CA", w.Name, m.Webhooks[0].Name)
		}
		if !slices.Equal(w.AdmissionReviewVersions, []string{"v1"}) || len(w.Rules) != 1 || !slices.Equal(w.Rules[0].Resources, []string{"pods"}) ||
			!slices.Equal(w.Rules[0].Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Create}) {
			t.Errorf("%s: rules", w.Name)
		}
	}
	if len(names) != len(m.Webhooks) {
		t.Error("two webhooks share a name")
	}
}

// checkGeneratedTLS checks that the generated certificate is signed by the CA the
// webhook configuration trusts, for the Service's DNS name.
func checkGeneratedTLS(t *testing.T, s *corev1.Secret, objs []object) {
	t.Helper()
	var m admissionregistrationv1.MutatingWebhookConfiguration
	for _, o := range objs {
		if o.kind == "MutatingWebhookConfiguration" {
			strict(t, o, &m)
		}
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(m.Webhooks[0].ClientConfig.CABundle) {
		t.Fatal("caBundle holds no certificate")
	}
	block, _ := pem.Decode(s.Data["tls.crt"])
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	svc := m.Webhooks[0].ClientConfig.Service
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: svc.Name + "." + svc.Namespace + ".svc"}); err != nil {
		t.Fatalf("the serving certificate does not verify against the webhook's CA: %v", err)
	}
}

var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$namespace", ".*", "${datasource}", "prometheus")

// dashboard is the Grafana dashboard, as far as the tests read it.
type dashboard struct {
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

func checkDashboard(t *testing.T, raw string) {
	t.Helper()
	var dash dashboard
	if err := json.Unmarshal([]byte(raw), &dash); err != nil || len(dash.Panels) < 10 {
		t.Fatalf("dashboard: %v (%d panels)", err, len(dash.Panels))
	}
	seen := map[string]bool{}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			if _, err := promql.ParseExpr(grafanaVars.Replace(tg.Expr)); err != nil {
				t.Errorf("panel %q: %v\n%s", p.Title, err, tg.Expr)
			}
			for _, m := range metricName.FindAllString(tg.Expr, -1) {
				seen[m] = true
			}
		}
	}
	// What docs/metrics.md's table offers, the dashboard shows.
	for _, m := range []string{"tokengate_decisions_total", "tokengate_decision_duration_seconds_bucket", "tokengate_token_cache_requests_total",
		"tokengate_jwks_keys", "tokengate_jwks_last_success_timestamp_seconds", "tokengate_jwks_refreshes_total",
		"tokengate_upstream_requests_total", "tokengate_token_age_seconds_bucket", "tokengate_config_reloads_total"} {
		if !seen[m] {
			t.Errorf("the dashboard does not show %s", m)
		}
	}
}

var metricName = regexp.MustCompile(`tokengate_[a-z_]+`)

func checkRules(t *testing.T, pr *prometheusRule) {
	t.Helper()
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	alerts := 0
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			alerts++
			if _, err := promql.ParseExpr(r.Expr); err != nil {
				t.Errorf("%s: %v\n%s", r.Alert, err, r.Expr)
			}
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s lacks a severity, summary or description", r.Alert)
			}
			anchor := r.Annotations["runbook_url"][strings.LastIndexByte(r.Annotations["runbook_url"], '#')+1:]
			if anchor != strings.ToLower(r.Alert) || !strings.Contains(string(doc), "\n### "+r.Alert+"\n") {
				t.Errorf("%s has no runbook section in docs/operations.md (anchor %q)", r.Alert, anchor)
			}
		}
	}
	if alerts < 10 {
		t.Errorf("%d alerts", alerts)
	}
}

func TestCertManagerIssuerRef(t *testing.T) {
	type ref struct{ Name, Kind, Group string }
	for name, tc := range map[string]struct {
		set  []string
		want ref
	}{
		"the chart's own CA": {nil, ref{Name: "rel-tokengate-injector-ca", Kind: "Issuer"}},
		"an Issuer by name":  {[]string{"certificates.certManager.issuerRef.name=corp-ca"}, ref{Name: "corp-ca", Kind: "Issuer"}},
		"a ClusterIssuer": {[]string{"certificates.certManager.issuerRef.name=corp-ca", "certificates.certManager.issuerRef.kind=ClusterIssuer"},
			ref{Name: "corp-ca", Kind: "ClusterIssuer"}},
		"an external issuer keeps its group": {[]string{"certificates.certManager.issuerRef.name=pca", "certificates.certManager.issuerRef.kind=AWSPCAClusterIssuer", "certificates.certManager.issuerRef.group=awspca.cert-manager.io"},
			ref{Name: "pca", Kind: "AWSPCAClusterIssuer", Group: "awspca.cert-manager.io"}},
	} {
		t.Run(name, func(t *testing.T) {
			var got []ref
			for _, o := range render(t, append([]string{"certificates.certManager.enabled=true"}, tc.set...)) {
				if o.kind != "Certificate" {
					continue
				}
				var c certificate
				strict(t, o, &c)
				if !c.Spec.IsCA {
					got = append(got, ref(c.Spec.IssuerRef))
				}
			}
			if len(got) != 1 || got[0] != tc.want {
				t.Fatalf("the serving certificate's issuerRef: %+v, want %+v", got, tc.want)
			}
		})
	}
}
