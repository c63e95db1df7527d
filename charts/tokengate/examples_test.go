package chart_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3" // the router filter's type, for protojson
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	headermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/early_header_mutation/header_mutation/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"helm.sh/helm/v3/pkg/chartutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/tokengate/tokengate/policy"
	"github.com/tokengate/tokengate/sidecar/inject"
)

// The examples under examples/: each parses, each Kubernetes object decodes strictly
// into its type (or, for another project's resource, into the fields that project
// documents), and each gateway example asks the Service and port that the chart
// renders with examples/authz-values.yaml, on the path of its gateway, for the identity
// headers that configuration forwards. The Envoy bootstrap is decoded by Envoy's own
// protobuf types and validated by their rules.

// The release the examples assume: `helm install tokengate charts/tokengate
// --namespace tokengate-system -f examples/authz-values.yaml`.
const (
	exampleRelease   = "tokengate"
	exampleNamespace = "tokengate-system"
)

// exampleCheckers check each example file; a file missing here fails
// TestEveryExampleIsChecked.
var exampleCheckers = map[string]func(t *testing.T, a authzAddress, docs []exampleDoc){
	"orders.yaml":              checkObjects,
	"authz-values.yaml":        checkAuthzValues,
	"authz-ingress-nginx.yaml": checkIngressNginx,
	"authz-traefik.yaml":       checkTraefik,
	"authz-istio-mesh.yaml":    checkIstioMesh,
	"authz-istio.yaml":         checkIstioPolicy,
	"authz-envoy.yaml":         checkEnvoy,
}

// exampleDoc is one YAML document of an example file, as JSON.
type exampleDoc struct {
	apiVersion, kind, name string
	json                   []byte
}

// authzAddress is where the examples' gateways must ask, as the chart renders it.
type authzAddress struct {
	host     string // the Service's DNS name
	port     int32  // grpc-authz, for Istio and Envoy
	httpPort int32  // http-authz, for ingress-nginx and Traefik
	headers  []string
	// peers are the NetworkPolicy peers admitted to the decision port.
	peers []networkingv1.NetworkPolicyPeer
}

// httpURL is the URL of the Service's http-authz port: http://host, or http://host:port.
func (a authzAddress) httpURL() string {
	if a.httpPort == 80 {
		return "http://" + a.host
	}
	return "http://" + a.host + ":" + strconv.Itoa(int(a.httpPort))
}

func TestEveryExampleIsChecked(t *testing.T) {
	files, err := filepath.Glob("examples/*")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if _, ok := exampleCheckers[filepath.Base(f)]; !ok {
			t.Errorf("%s has no check in exampleCheckers", f)
		}
	}
	for name := range exampleCheckers {
		if !slices.Contains(files, filepath.Join("examples", name)) {
			t.Errorf("exampleCheckers checks %s, which is not in examples/", name)
		}
	}
}

func TestExamples(t *testing.T) {
	a := renderedAuthzAddress(t)
	for name, check := range exampleCheckers {
		t.Run(name, func(t *testing.T) {
			check(t, a, readExample(t, name))
		})
	}
}

// readExample parses every document of an example file. An empty document, or one
// that is not a mapping, fails: each is meant to be applied or read as it is.
func readExample(t *testing.T, name string) []exampleDoc {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("examples", name))
	if err != nil {
		t.Fatal(err)
	}
	var docs []exampleDoc
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	for i := 0; ; i++ {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		if len(n.Content) != 1 || n.Content[0].Kind != yaml.MappingNode || len(n.Content[0].Content) == 0 {
			t.Fatalf("document %d is not a mapping", i)
		}
		var v any
		if err := n.Decode(&v); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		var meta crdMeta
		_ = json.Unmarshal(j, &meta)
		docs = append(docs, exampleDoc{meta.APIVersion, meta.Kind, meta.Metadata.Name, j})
	}
	if len(docs) == 0 {
		t.Fatal("no document")
	}
	return docs
}

// exampleValues reads examples/authz-values.yaml as Helm does.
func exampleValues(t *testing.T) map[string]any {
	t.Helper()
	vals, err := chartutil.ReadValuesFile("examples/authz-values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return vals
}

// renderedAuthzAddress renders the chart with examples/authz-values.yaml and returns
// the authz Service's address, the identity headers its configuration forwards and the
// peers its NetworkPolicy admits.
func renderedAuthzAddress(t *testing.T) authzAddress {
	t.Helper()
	objs := authzObjects(t, templateValues(t, exampleRelease, exampleNamespace, exampleValues(t)))
	var (
		svc corev1.Service
		cm  corev1.ConfigMap
		np  networkingv1.NetworkPolicy
	)
	for kind, into := range map[string]any{"Service": &svc, "ConfigMap": &cm, "NetworkPolicy": &np} {
		o, ok := objs[kind]
		if !ok {
			t.Fatalf("examples/authz-values.yaml renders no authz %s", kind)
		}
		strict(t, o, into)
	}
	a := authzAddress{host: svc.Name + "." + exampleNamespace + ".svc.cluster.local", peers: np.Spec.Ingress[0].From}
	for _, p := range svc.Spec.Ports {
		switch p.Name {
		case "grpc-authz":
			a.port = p.Port
		case "http-authz":
			a.httpPort = p.Port
		}
	}
	loaded, err := policy.Load(inject.ConfigFileKey, []byte(cm.Data[inject.ConfigFileKey]), policy.ForAuthz, policy.Overrides{})
	if err != nil {
		t.Fatalf("tokengate refuses the configuration of examples/authz-values.yaml: %v", err)
	}
	claims := loaded.Forward.Claims
	if len(claims) == 0 {
		claims = policy.DefaultClaimHeaders()
	}
	a.headers = slices.Sorted(maps.Values(claims))
	return a
}

// checkObjects decodes every document strictly into its Kubernetes type; a kind this
// test does not know fails, so that a new example gets a check.
func checkObjects(t *testing.T, _ authzAddress, docs []exampleDoc) {
	t.Helper()
	for _, d := range docs {
		var into any
		switch d.kind {
		case "ConfigMap":
			into = &corev1.ConfigMap{}
		case "Service":
			into = &corev1.Service{}
		case "Deployment":
			into = &appsv1.Deployment{}
		case "Ingress":
			into = &networkingv1.Ingress{}
		case "NetworkPolicy":
			into = &networkingv1.NetworkPolicy{}
		default:
			t.Fatalf("%s %s: not a kind checkObjects knows", d.kind, d.name)
		}
		decodeStrict(t, d, into)
	}
	checkAPIIsFenced(t, docs)
}

func decodeStrict(t *testing.T, d exampleDoc, into any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(d.json))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		t.Fatalf("%s %s does not decode strictly: %v", d.kind, d.name, err)
	}
}

// find decodes the only document of a kind strictly into into.
func find(t *testing.T, docs []exampleDoc, kind string, into any) {
	t.Helper()
	var found []exampleDoc
	for _, d := range docs {
		if d.kind == kind {
			found = append(found, d)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d documents of kind %s, want 1", len(found), kind)
	}
	decodeStrict(t, found[0], into)
}

// checkAPIIsFenced checks that an example's API, which trusts the identity headers,
// can be reached only through its gateway: a NetworkPolicy selects its pods and admits
// only the gateway's, which the authz NetworkPolicy of authz-values.yaml admits too.
func checkAPIIsFenced(t *testing.T, docs []exampleDoc) {
	t.Helper()
	var d appsv1.Deployment
	find(t, docs, "Deployment", &d)
	if d.Spec.Template.Labels[inject.LabelInject] == "true" {
		return // orders.yaml: the sidecar guards the API, which listens on 127.0.0.1
	}
	var np networkingv1.NetworkPolicy
	find(t, docs, "NetworkPolicy", &np)
	if !labels.SelectorFromSet(np.Spec.PodSelector.MatchLabels).Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("the NetworkPolicy selects %v, not the API's pods", np.Spec.PodSelector.MatchLabels)
	}
	if len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].From) == 0 || len(np.Spec.Ingress[0].Ports) != 1 {
		t.Fatalf("the API's NetworkPolicy admits %+v", np.Spec.Ingress)
	}
	port := np.Spec.Ingress[0].Ports[0].Port.IntValue()
	if c := d.Spec.Template.Spec.Containers[0]; len(c.Ports) != 1 || int(c.Ports[0].ContainerPort) != port {
		t.Errorf("the NetworkPolicy admits port %d, the API listens on %+v", port, c.Ports)
	}
	values := exampleValues(t)
	authz, _ := values["authz"].(map[string]any)
	netpol, _ := authz["networkPolicy"].(map[string]any)
	j, _ := json.Marshal(netpol["from"])
	var admitted []networkingv1.NetworkPolicyPeer
	if err := json.Unmarshal(j, &admitted); err != nil {
		t.Fatal(err)
	}
	for _, gateway := range np.Spec.Ingress[0].From {
		g, _ := json.Marshal(gateway)
		if !slices.ContainsFunc(admitted, func(p networkingv1.NetworkPolicyPeer) bool { a, _ := json.Marshal(p); return bytes.Equal(a, g) }) {
			t.Errorf("the gateway %s may reach the API but not tokengate authz: add it to authz-values.yaml's networkPolicy.from", g)
		}
	}
}

func checkAuthzValues(t *testing.T, a authzAddress, docs []exampleDoc) {
	t.Helper()
	if len(docs) != 1 {
		t.Fatalf("%d documents", len(docs))
	}
	// Rendered by renderedAuthzAddress already; here, what that must have found.
	if a.port == 0 || a.httpPort == 0 || len(a.headers) == 0 || len(a.peers) == 0 {
		t.Fatalf("the rendered authz Service, configuration or NetworkPolicy is missing: %+v", a)
	}
	for _, p := range a.peers {
		if p.PodSelector == nil || p.NamespaceSelector == nil {
			t.Errorf("the peer %+v admits a whole namespace, or pods with a label anywhere: name both", p)
		}
	}
}

// checkIngressNginx checks the ingress-nginx example: auth-url is the /nginx endpoint,
// ingress-nginx sets X-Original-URI itself (it sends X-Original-Method and
// X-Original-URL on its own, and passes a client's X-Original-URI on unless told to set
// it), and the identity headers reach the API.
func checkIngressNginx(t *testing.T, a authzAddress, docs []exampleDoc) {
	t.Helper()
	checkObjects(t, a, docs)
	var ing networkingv1.Ingress
	find(t, docs, "Ingress", &ing)
	const p = "nginx.ingress.kubernetes.io/"
	ann := ing.Annotations
	if got, want := ann[p+"auth-url"], a.httpURL()+"/nginx"; got != want {
		t.Errorf("auth-url is %q, want %q", got, want)
	}
	for _, k := range []string{"auth-snippet", "auth-cache-key", "auth-method", "auth-signin"} {
		if _, ok := ann[p+k]; ok {
			t.Errorf("the Ingress sets %s%s", p, k)
		}
	}
	ns, name, ok := strings.Cut(ann[p+"auth-proxy-set-headers"], "/")
	var cm corev1.ConfigMap
	find(t, docs, "ConfigMap", &cm)
	if !ok || name != cm.Name || ns != "shop" || cm.Data["X-Original-URI"] != "$request_uri" || len(cm.Data) != 1 {
		t.Errorf("auth-proxy-set-headers %q and ConfigMap %s %v: want ingress-nginx to set X-Original-URI to $request_uri", ann[p+"auth-proxy-set-headers"], cm.Name, cm.Data)
	}
	got := strings.Split(ann[p+"auth-response-headers"], ",")
	if slices.Sort(got); !slices.Equal(got, a.headers) {
		t.Errorf("auth-response-headers %v, want the identity headers %v", got, a.headers)
	}
	if len(ing.Spec.Rules) != 1 || ing.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Name != "orders" {
		t.Errorf("the Ingress does not send requests to the orders API: %+v", ing.Spec.Rules)
	}
}

// Traefik's resources, as far as the example uses them (traefik.io/v1alpha1).
type (
	traefikMiddleware struct {
		crdMeta
		Spec struct {
			ForwardAuth *struct {
				Address                  string   `json:"address"`
				TrustForwardHeader       *bool    `json:"trustForwardHeader"`
				AuthResponseHeaders      []string `json:"authResponseHeaders"`
				AuthResponseHeadersRegex string   `json:"authResponseHeadersRegex"`
			} `json:"forwardAuth"`
			Headers *struct {
				CustomRequestHeaders map[string]string `json:"customRequestHeaders"`
			} `json:"headers"`
		} `json:"spec"`
	}
	traefikIngressRoute struct {
		crdMeta
		Spec struct {
			EntryPoints []string `json:"entryPoints"`
			Routes      []struct {
				Match       string `json:"match"`
				Kind        string `json:"kind"`
				Middlewares []struct {
					Name string `json:"name"`
				} `json:"middlewares"`
				Services []struct {
					Name string `json:"name"`
					Port int    `json:"port"`
				} `json:"services"`
			} `json:"routes"`
			TLS *struct{} `json:"tls"`
		} `json:"spec"`
	}
)

// traefikSets are the headers Traefik's entry points replace with their own unless
// they trust the client (xHeaders in Traefik's pkg/middlewares/forwardedheaders), among
// the sidecar's default forward.stripHeaders: a headers middleware need not remove them.
var traefikSets = []string{"X-Real-Ip", "X-Forwarded-Port", "X-Forwarded-Server", "X-Forwarded-Uri"}

// checkTraefik checks the Traefik example: forwardAuth asks the /traefik endpoint,
// Traefik sets X-Forwarded-Method and -Uri itself (trustForwardHeader false), the
// identity headers reach the API and no client's do, the headers the sidecar strips are
// removed before tokengate decides, and the route runs both on its way to the API.
func checkTraefik(t *testing.T, a authzAddress, docs []exampleDoc) {
	t.Helper()
	var (
		route       traefikIngressRoute
		auth, strip *traefikMiddleware
		rest        []exampleDoc
	)
	for _, d := range docs {
		if !strings.HasPrefix(d.apiVersion, "traefik.io/") {
			rest = append(rest, d)
			continue
		}
		if d.apiVersion != "traefik.io/v1alpha1" {
			t.Errorf("%s %s is %s, want traefik.io/v1alpha1", d.kind, d.name, d.apiVersion)
		}
		if d.kind != "Middleware" {
			continue
		}
		var mw traefikMiddleware
		decodeStrict(t, d, &mw)
		switch {
		case mw.Spec.ForwardAuth != nil && auth == nil:
			auth = &mw
		case mw.Spec.Headers != nil && strip == nil:
			strip = &mw
		default:
			t.Fatalf("Middleware %s: want one forwardAuth and one headers middleware", mw.Metadata.Name)
		}
	}
	checkObjects(t, a, rest)
	find(t, docs, "IngressRoute", &route)
	if auth == nil || strip == nil {
		t.Fatal("want a forwardAuth and a headers middleware")
	}
	fa := auth.Spec.ForwardAuth
	if want := a.httpURL() + "/traefik"; fa.Address != want {
		t.Errorf("address %q, want %q", fa.Address, want)
	}
	if fa.TrustForwardHeader == nil || *fa.TrustForwardHeader {
		t.Error("trustForwardHeader is not false, said out loud")
	}
	if got := slices.Sorted(slices.Values(fa.AuthResponseHeaders)); !slices.Equal(got, a.headers) {
		t.Errorf("authResponseHeaders %v, want the identity headers %v", got, a.headers)
	}
	re, err := regexp.Compile(fa.AuthResponseHeadersRegex)
	if err != nil || fa.AuthResponseHeadersRegex == "" {
		t.Errorf("authResponseHeadersRegex %q: %v", fa.AuthResponseHeadersRegex, err)
	} else {
		for _, h := range append(slices.Clone(a.headers), "X_Auth_Subject", "x-auth-role") {
			if !re.MatchString(h) {
				t.Errorf("authResponseHeadersRegex %q lets a client's %s through", fa.AuthResponseHeadersRegex, h)
			}
		}
		if re.MatchString("Authorization") || re.MatchString("X-Request-Id") {
			t.Errorf("authResponseHeadersRegex %q removes headers that are not identity headers", fa.AuthResponseHeadersRegex)
		}
	}
	var removed []string
	for h, v := range strip.Spec.Headers.CustomRequestHeaders {
		if v != "" {
			t.Errorf("the headers middleware sets %s to %q: an empty value removes it", h, v)
		}
		removed = append(removed, strings.ToLower(h))
	}
	removed = append(removed, lower(traefikSets)...)
	if slices.Sort(removed); !slices.Equal(removed, lower(policy.DefaultStripHeaders())) {
		t.Errorf("the headers middleware, with what Traefik replaces itself, removes %v; the sidecar strips %v", removed, lower(policy.DefaultStripHeaders()))
	}
	var names []string
	if len(route.Spec.Routes) == 1 {
		for _, m := range route.Spec.Routes[0].Middlewares {
			names = append(names, m.Name)
		}
	}
	if !slices.Equal(names, []string{strip.Metadata.Name, auth.Metadata.Name}) || route.Spec.Routes[0].Services[0].Name != "orders" {
		t.Errorf("the IngressRoute runs %v on its way to %+v: want %s, then %s, to orders", names, route.Spec.Routes, strip.Metadata.Name, auth.Metadata.Name)
	}
}

// lower returns the headers in lower case, sorted.
func lower(headers []string) []string {
	var out []string
	for _, h := range headers {
		out = append(out, strings.ToLower(h))
	}
	slices.Sort(out)
	return out
}

// Istio's resources, as far as the example uses them: the field names are those of
// istio/api's mesh/v1alpha1/config.proto and security/v1/authorization_policy.proto.
type (
	istioOperator struct {
		crdMeta
		Spec struct {
			MeshConfig struct {
				ExtensionProviders []struct {
					Name              string `json:"name"`
					EnvoyExtAuthzGrpc *struct {
						Service       string `json:"service"`
						Port          int32  `json:"port"`
						Timeout       string `json:"timeout"`
						FailOpen      *bool  `json:"failOpen"`
						StatusOnError string `json:"statusOnError"`
					} `json:"envoyExtAuthzGrpc"`
				} `json:"extensionProviders"`
			} `json:"meshConfig"`
		} `json:"spec"`
	}
	authorizationPolicy struct {
		crdMeta
		Spec struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			Action   string `json:"action"`
			Provider struct {
				Name string `json:"name"`
			} `json:"provider"`
			Rules []map[string]any `json:"rules"`
		} `json:"spec"`
	}
)

// istioProvider is the extension provider of authz-istio-mesh.yaml.
func istioProvider(t *testing.T) string {
	t.Helper()
	var op istioOperator
	find(t, readExample(t, "authz-istio-mesh.yaml"), "IstioOperator", &op)
	if len(op.Spec.MeshConfig.ExtensionProviders) != 1 {
		t.Fatalf("%d extension providers", len(op.Spec.MeshConfig.ExtensionProviders))
	}
	return op.Spec.MeshConfig.ExtensionProviders[0].Name
}

// checkIstioMesh checks the extension provider: the authz Service's gRPC port, a
// bounded timeout, and failing closed.
func checkIstioMesh(t *testing.T, a authzAddress, docs []exampleDoc) {
	t.Helper()
	var op istioOperator
	find(t, docs, "IstioOperator", &op)
	if op.APIVersion != "install.istio.io/v1alpha1" || len(docs) != 1 {
		t.Errorf("%s %s, %d documents", op.APIVersion, op.Kind, len(docs))
	}
	providers := op.Spec.MeshConfig.ExtensionProviders
	if len(providers) != 1 || providers[0].EnvoyExtAuthzGrpc == nil {
		t.Fatalf("extension providers %+v, want one envoyExtAuthzGrpc", providers)
	}
	g := providers[0].EnvoyExtAuthzGrpc
	if g.Service != a.host || g.Port != a.port {
		t.Errorf("the provider asks %s:%d, want %s:%d", g.Service, g.Port, a.host, a.port)
	}
	timeout, err := time.ParseDuration(g.Timeout)
	if err != nil || timeout < 2*time.Second || timeout > 10*time.Second {
		t.Errorf("timeout %q: want a few seconds, more than a decision's longest wait (2 s)", g.Timeout)
	}
	if g.FailOpen == nil || *g.FailOpen || g.StatusOnError != "503" {
		t.Errorf("failOpen %v, statusOnError %q: want false and 503", g.FailOpen, g.StatusOnError)
	}
}

// checkIstioPolicy checks the AuthorizationPolicy: action CUSTOM with the provider of
// authz-istio-mesh.yaml, on every request of the workload it selects.
func checkIstioPolicy(t *testing.T, _ authzAddress, docs []exampleDoc) {
	t.Helper()
	var ap authorizationPolicy
	find(t, docs, "AuthorizationPolicy", &ap)
	if ap.APIVersion != "security.istio.io/v1" || len(docs) != 1 {
		t.Errorf("%s %s, %d documents", ap.APIVersion, ap.Kind, len(docs))
	}
	if ap.Spec.Action != "CUSTOM" || ap.Spec.Provider.Name != istioProvider(t) {
		t.Errorf("action %s with provider %q, want CUSTOM with %q", ap.Spec.Action, ap.Spec.Provider.Name, istioProvider(t))
	}
	// Without rules a CUSTOM policy matches nothing; an empty rule matches everything.
	if len(ap.Spec.Rules) != 1 || len(ap.Spec.Rules[0]) != 0 || len(ap.Spec.Selector.MatchLabels) == 0 {
		t.Errorf("rules %v on %v: want every request of a selected workload", ap.Spec.Rules, ap.Spec.Selector.MatchLabels)
	}
}

// checkEnvoy decodes the bootstrap with Envoy's own types (go-control-plane), which
// refuse a misspelt field, validates it by their rules, and checks the ext_authz
// filter: gRPC to the authz Service over HTTP/2, API V3, failing closed, without the
// body, and the identity headers removed from what clients send.
func checkEnvoy(t *testing.T, a authzAddress, docs []exampleDoc) {
	t.Helper()
	if len(docs) != 1 {
		t.Fatalf("%d documents", len(docs))
	}
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(docs[0].json, &b); err != nil {
		t.Fatalf("not an Envoy bootstrap: %v", err)
	}
	if err := b.ValidateAll(); err != nil {
		t.Fatalf("Envoy would refuse the bootstrap: %v", err)
	}
	unpack := func(what string, from interface{ GetTypedConfig() *anypb.Any }, into proto.Message) {
		t.Helper()
		if err := from.GetTypedConfig().UnmarshalTo(into); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if v, ok := into.(interface{ ValidateAll() error }); ok {
			if err := v.ValidateAll(); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		}
	}
	listeners := b.GetStaticResources().GetListeners()
	if len(listeners) != 1 || len(listeners[0].GetFilterChains()) != 1 || len(listeners[0].GetFilterChains()[0].GetFilters()) != 1 {
		t.Fatal("want one listener with one filter chain of one filter")
	}
	var hcm hcmv3.HttpConnectionManager
	unpack("the connection manager", listeners[0].GetFilterChains()[0].GetFilters()[0], &hcm)

	if a := hcm.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction(); a == corev3.HttpProtocolOptions_ALLOW {
		t.Error("the connection manager lets X_Auth_Subject and the like through, which some frameworks read as X-Auth-Subject")
	}
	filters := hcm.GetHttpFilters()
	if len(filters) != 2 || filters[0].GetName() != "envoy.filters.http.ext_authz" || filters[1].GetName() != "envoy.filters.http.router" {
		t.Fatalf("HTTP filters %v: want ext_authz, then the router", filters)
	}
	var ea extauthzv3.ExtAuthz
	unpack("ext_authz", filters[0], &ea)
	if ea.GetTransportApiVersion().String() != "V3" || ea.GetFailureModeAllow() || ea.GetWithRequestBody() != nil || ea.GetStatusOnError().GetCode() != 503 {
		t.Errorf("ext_authz: transport %s, failure_mode_allow %v, with_request_body %v, status_on_error %v: want V3, false, none, 503",
			ea.GetTransportApiVersion(), ea.GetFailureModeAllow(), ea.GetWithRequestBody(), ea.GetStatusOnError())
	}
	if d := ea.GetGrpcService().GetTimeout().AsDuration(); d < 2*time.Second || d > 10*time.Second {
		t.Errorf("the check's timeout is %s: want a few seconds, more than a decision's longest wait (2 s)", d)
	}
	clusterName := ea.GetGrpcService().GetEnvoyGrpc().GetClusterName()
	i := slices.IndexFunc(b.GetStaticResources().GetClusters(), func(c *clusterv3.Cluster) bool { return c.GetName() == clusterName })
	if clusterName == "" || i < 0 {
		t.Fatalf("ext_authz asks the cluster %q, which is not there", clusterName)
	}
	c := b.GetStaticResources().GetClusters()[i]
	eps := c.GetLoadAssignment().GetEndpoints()
	if len(eps) != 1 || len(eps[0].GetLbEndpoints()) != 1 {
		t.Fatalf("the cluster %s has %d endpoint groups", clusterName, len(eps))
	}
	sa := eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	if sa.GetAddress() != a.host || int32(sa.GetPortValue()) != a.port {
		t.Errorf("the cluster %s is %s:%d, want %s:%d", clusterName, sa.GetAddress(), sa.GetPortValue(), a.host, a.port)
	}
	opts, ok := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
	var hpo upstreamhttpv3.HttpProtocolOptions
	if !ok || opts.UnmarshalTo(&hpo) != nil || hpo.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		t.Errorf("the cluster %s does not speak HTTP/2, which gRPC needs", clusterName)
	}

	var removed []string
	for _, ext := range hcm.GetEarlyHeaderMutationExtensions() {
		var hm headermutationv3.HeaderMutation
		if err := ext.GetTypedConfig().UnmarshalTo(&hm); err != nil {
			t.Fatal(err)
		}
		for _, m := range hm.GetMutations() {
			if r := m.GetRemove(); r != "" {
				removed = append(removed, r)
			}
		}
	}
	want := lower(append(slices.Clone(a.headers), policy.DefaultStripHeaders()...))
	if slices.Sort(removed); !slices.Equal(removed, want) {
		t.Errorf("the connection manager removes %v from clients' requests, want the identity headers and the sidecar's default stripHeaders %v", removed, want)
	}
	hc := c.GetHealthChecks()
	if len(hc) != 1 || hc[0].GetGrpcHealthCheck().GetServiceName() != "envoy.service.auth.v3.Authorization" {
		t.Errorf("the cluster %s does not check the health of the ext_authz service: %v", clusterName, hc)
	}
}
