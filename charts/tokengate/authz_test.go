package chart_test

import (
	"crypto/sha256"
	"fmt"
	"maps"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/release"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/tokengate/tokengate/internal/helmtest"
	"github.com/tokengate/tokengate/policy"
	"github.com/tokengate/tokengate/sidecar/inject"
)

// The chart's authz mode (issue 15): `tokengate authz`, the decision service that
// gateways ask, as a Deployment with its ConfigMap, ClusterIP Service, ServiceAccount,
// PodDisruptionBudget, ServiceMonitor and NetworkPolicy. examples_test.go checks the
// gateway examples that point at it.

// authzOn runs the decision service with a configuration that tokengate accepts.
var authzOn = []string{
	"authz.enabled=true",
	"authz.config.issuers[0].issuer=https://auth.example.com/realms/shop",
	"authz.config.issuers[0].audiences[0]=https://orders.example.com",
	"authz.config.routes[0].match=GET /orders/{id}",
	"authz.config.routes[0].scopes[0]=orders:read",
}

func with(base []string, more ...string) []string { return append(slices.Clone(base), more...) }

// authzSets are the authz configurations the chart is rendered and linted with, and
// what each must render.
var authzSets = map[string]struct {
	set []string
	// The kinds of the authz objects, each once.
	kinds []string
	// The decision port (in the pod, and grpc-authz on the Service), the Service's
	// http-authz port, and the admin port.
	port, httpPort, adminPort int32
	// The pods' sidecar.istio.io/inject annotation.
	istioInject string
	// The ConfigMap the pods mount.
	configMap string
}{
	"defaults": {
		set:         authzOn,
		kinds:       []string{"ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "ServiceAccount"},
		port:        9191,
		httpPort:    80,
		adminPort:   9090,
		configMap:   "rel-tokengate-authz",
		istioInject: "false",
	},
	"one replica, monitored, behind a NetworkPolicy": {
		set: with(authzOn, "authz.replicas=1", "monitoring.serviceMonitor.enabled=true", "monitoring.serviceMonitor.labels.release=prom",
			"authz.networkPolicy.enabled=true",
			`authz.networkPolicy.from[0].namespaceSelector.matchLabels.kubernetes\.io/metadata\.name=ingress-nginx`,
			`authz.networkPolicy.from[0].podSelector.matchLabels.app\.kubernetes\.io/name=ingress-nginx`,
			`authz.networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.kubernetes\.io/metadata\.name=monitoring`),
		kinds:       []string{"ConfigMap", "Deployment", "NetworkPolicy", "Service", "ServiceAccount", "ServiceMonitor"},
		port:        9191,
		httpPort:    80,
		adminPort:   9090,
		configMap:   "rel-tokengate-authz",
		istioInject: "false",
	},
	"an existing ConfigMap, other ports": {
		set: []string{"authz.enabled=true", "authz.existingConfigMap=gateway-policy", "authz.port=8181", "authz.adminPort=8282",
			"authz.replicas=3", "authz.podDisruptionBudget.minAvailable=2", "fullnameOverride=gate", "authz.logLevel=debug",
			// The chart leaves the user's own value of the annotation as it is (--set
			// would make "true" a boolean, which an annotation cannot be).
			"authz.httpServicePort=8080", `authz.podAnnotations.sidecar\.istio\.io/inject=own`},
		kinds:       []string{"Deployment", "PodDisruptionBudget", "Service", "ServiceAccount"},
		port:        8181,
		httpPort:    8080,
		adminPort:   8282,
		configMap:   "gateway-policy",
		istioInject: "own",
	},
}

func TestAuthzLint(t *testing.T) {
	for name, tc := range authzSets {
		t.Run(name, func(t *testing.T) {
			if err := helmtest.Lint(".", namespace, kubeVersion, tc.set); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// authzObjects are the objects of the authz component, by kind; a kind rendered twice
// fails the test.
func authzObjects(t *testing.T, objs []object) map[string]object {
	t.Helper()
	out := map[string]object{}
	for _, o := range objs {
		if o.component != "authz" {
			if strings.Contains(o.name, "authz") {
				t.Errorf("%s %s is named for authz but is not labelled app.kubernetes.io/component: authz", o.kind, o.name)
			}
			continue
		}
		if _, dup := out[o.kind]; dup {
			t.Errorf("two authz objects of kind %s", o.kind)
		}
		out[o.kind] = o
	}
	return out
}

func TestAuthzObjects(t *testing.T) {
	for name, tc := range authzSets {
		t.Run(name, func(t *testing.T) {
			objs := authzObjects(t, render(t, tc.set))
			if got := slices.Sorted(maps.Keys(objs)); !slices.Equal(got, tc.kinds) {
				t.Fatalf("authz objects %v, want %v", got, tc.kinds)
			}
			var (
				d   appsv1.Deployment
				svc corev1.Service
				sa  corev1.ServiceAccount
			)
			strict(t, objs["Deployment"], &d)
			strict(t, objs["Service"], &svc)
			strict(t, objs["ServiceAccount"], &sa)
			pod := labels.Set(d.Spec.Template.Labels)
			if sel := labels.SelectorFromSet(d.Spec.Selector.MatchLabels); !sel.Matches(pod) || pod["app.kubernetes.io/component"] != "authz" {
				t.Errorf("the Deployment's selector %v does not select its authz pods %v", d.Spec.Selector.MatchLabels, pod)
			}
			if svc.Name != d.Name || sa.Name != d.Name {
				t.Errorf("names: Deployment %s, Service %s, ServiceAccount %s", d.Name, svc.Name, sa.Name)
			}
			checkAuthzPod(t, &d, &sa, tc.port, tc.adminPort, tc.configMap, tc.set)
			checkAuthzService(t, &svc, pod, tc.port, tc.httpPort, tc.adminPort)
			if got := d.Spec.Template.Annotations["sidecar.istio.io/inject"]; got != tc.istioInject {
				t.Errorf("the pods' sidecar.istio.io/inject is %q, want %q", got, tc.istioInject)
			}

			if o, ok := objs["ConfigMap"]; ok {
				var cm corev1.ConfigMap
				strict(t, o, &cm)
				checkAuthzConfig(t, &cm, &d, tc.port, tc.adminPort)
			} else if _, ok := d.Spec.Template.Annotations["checksum/config"]; ok {
				t.Error("the pods carry a checksum of a configuration the chart does not render")
			}
			if o, ok := objs["PodDisruptionBudget"]; ok {
				var pdb policyv1.PodDisruptionBudget
				strict(t, o, &pdb)
				if !labels.SelectorFromSet(pdb.Spec.Selector.MatchLabels).Matches(pod) || pdb.Spec.MinAvailable == nil ||
					pdb.Spec.MinAvailable.IntValue() < 1 || pdb.Spec.MinAvailable.IntValue() >= int(*d.Spec.Replicas) {
					t.Errorf("the PodDisruptionBudget %+v does not keep some, and not all, of %d authz pods", pdb.Spec, *d.Spec.Replicas)
				}
			} else if *d.Spec.Replicas > 1 {
				t.Errorf("%d replicas and no PodDisruptionBudget", *d.Spec.Replicas)
			}
			if o, ok := objs["ServiceMonitor"]; ok {
				var sm serviceMonitor
				strict(t, o, &sm)
				if !labels.SelectorFromSet(sm.Spec.Selector.MatchLabels).Matches(labels.Set(svc.Labels)) ||
					labels.SelectorFromSet(sm.Spec.Selector.MatchLabels).Matches(labels.Set{"app.kubernetes.io/component": "injector"}) {
					t.Errorf("the ServiceMonitor selects %v, not the authz Service %v alone", sm.Spec.Selector.MatchLabels, svc.Labels)
				}
				if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "admin" || sm.Spec.Endpoints[0].Path != "/metrics" || sm.Metadata.Labels["release"] != "prom" {
					t.Errorf("the ServiceMonitor scrapes %+v, labelled %v", sm.Spec.Endpoints, sm.Metadata.Labels)
				}
			}
			if o, ok := objs["NetworkPolicy"]; ok {
				var np networkingv1.NetworkPolicy
				strict(t, o, &np)
				checkAuthzNetworkPolicy(t, &np, pod)
			}
		})
	}
}

// checkAuthzPod checks the decision service's pods: what they run, their ports and
// probes, and that they are locked down as the injector's are.
func checkAuthzPod(t *testing.T, d *appsv1.Deployment, sa *corev1.ServiceAccount, port, adminPort int32, configMap string, set []string) {
	t.Helper()
	p := d.Spec.Template.Spec
	if len(p.Containers) != 1 || len(p.InitContainers) != 0 {
		t.Fatalf("%d containers, %d init containers", len(p.Containers), len(p.InitContainers))
	}
	c := p.Containers[0]
	level := "info"
	if has(set, "authz.logLevel=debug") {
		level = "debug"
	}
	// The file is where the sidecars read theirs: the same key of a ConfigMap mounted at
	// the same place.
	want := []string{"authz", "--config=" + inject.ConfigMountDir + "/" + inject.ConfigFileKey, "--log-level=" + level}
	if !slices.Equal(c.Args, want) {
		t.Errorf("args %q, want %q", c.Args, want)
	}
	if !mounts(c, "config", inject.ConfigMountDir) || len(p.Volumes) != 1 || p.Volumes[0].ConfigMap == nil || p.Volumes[0].ConfigMap.Name != configMap {
		t.Errorf("the ConfigMap %s is not mounted at %s: volumes %+v", configMap, inject.ConfigMountDir, p.Volumes)
	}
	ports := map[string]int32{}
	for _, cp := range c.Ports {
		ports[cp.Name] = cp.ContainerPort
	}
	if len(ports) != 2 || ports["authz"] != port || ports["admin"] != adminPort {
		t.Errorf("container ports %v, want authz %d and admin %d", ports, port, adminPort)
	}
	for probe, path := range map[*corev1.Probe]string{c.LivenessProbe: "/healthz", c.ReadinessProbe: "/readyz"} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != path || probe.HTTPGet.Port.String() != "admin" {
			t.Errorf("no probe on admin %s: %+v", path, probe)
		}
	}
	ps, sc := p.SecurityContext, c.SecurityContext
	if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || ps.RunAsUser == nil || *ps.RunAsUser != inject.DefaultSidecarRunAsUser ||
		ps.SeccompProfile == nil || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("the pod is not non-root (user %d) with the runtime's seccomp profile: %+v", inject.DefaultSidecarRunAsUser, ps)
	}
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Privileged == nil || *sc.Privileged || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
		t.Errorf("the container is not locked down: %+v", sc)
	}
	if p.ServiceAccountName != sa.Name || p.AutomountServiceAccountToken == nil || *p.AutomountServiceAccountToken ||
		sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Error("the pods mount a service account token they do not need, or use another service account")
	}
	if p.HostNetwork || p.HostPID || p.HostIPC {
		t.Error("the pods share the node's namespaces")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v", c.Resources)
	}
	if i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "GOMEMLIMIT" }); i < 0 ||
		c.Env[i].ValueFrom == nil || c.Env[i].ValueFrom.ResourceFieldRef == nil || c.Env[i].ValueFrom.ResourceFieldRef.Resource != "limits.memory" {
		t.Error("GOMEMLIMIT does not follow the memory limit")
	}
	if p.Affinity == nil || p.Affinity.PodAntiAffinity == nil {
		t.Error("replicas are not spread over nodes")
	}
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if g := p.TerminationGracePeriodSeconds; g != nil {
		grace = *g
	}
	if grace <= int64(inject.DefaultDrainTimeout.Seconds()) {
		t.Errorf("the pods get %d s to stop, not more than the drain timeout %s", grace, inject.DefaultDrainTimeout)
	}
}

// checkAuthzService checks that the decision endpoints are reachable from inside the
// cluster only, on a port that tells Istio and Envoy to speak HTTP/2 (gRPC) and on one
// that tells them to speak HTTP/1.1 (the HTTP endpoints).
func checkAuthzService(t *testing.T, svc *corev1.Service, pod labels.Set, port, httpPort, adminPort int32) {
	t.Helper()
	s := svc.Spec
	if s.Type != corev1.ServiceTypeClusterIP || len(s.ExternalIPs) != 0 || s.LoadBalancerIP != "" || len(s.LoadBalancerSourceRanges) != 0 {
		t.Errorf("the authz Service is reachable from outside the cluster: %+v", s)
	}
	if !labels.SelectorFromSet(s.Selector).Matches(pod) || len(s.Selector) == 0 {
		t.Errorf("the Service selects %v, not the authz pods %v", s.Selector, pod)
	}
	type servicePort struct {
		name, target, appProtocol string
		port                      int32
	}
	var got []servicePort
	for _, p := range s.Ports {
		if p.NodePort != 0 {
			t.Errorf("port %s has a node port", p.Name)
		}
		ap := ""
		if p.AppProtocol != nil {
			ap = *p.AppProtocol
		}
		got = append(got, servicePort{p.Name, p.TargetPort.String(), ap, p.Port})
	}
	// Istio reads a port's protocol from appProtocol and from its name's prefix: grpc
	// makes the mesh speak HTTP/2, which the gRPC check needs, and http HTTP/1.1, which
	// the HTTP endpoints need (an HTTP/2 connection goes to the gRPC server).
	want := []servicePort{{"grpc-authz", "authz", "grpc", port}, {"http-authz", "authz", "http", httpPort}, {"admin", "admin", "http", adminPort}}
	if !slices.Equal(got, want) {
		t.Errorf("Service ports %+v, want %+v", got, want)
	}
}

// checkAuthzConfig checks the rendered configuration file: tokengate loads it for authz,
// and it listens where the pod's ports are. The pods roll when it changes.
func checkAuthzConfig(t *testing.T, cm *corev1.ConfigMap, d *appsv1.Deployment, port, adminPort int32) {
	t.Helper()
	if len(cm.Data) != 1 || cm.Name != d.Spec.Template.Spec.Volumes[0].ConfigMap.Name {
		t.Fatalf("the ConfigMap %s holds %d keys, or is not the one the pods mount", cm.Name, len(cm.Data))
	}
	file, ok := cm.Data[inject.ConfigFileKey]
	if !ok {
		t.Fatalf("the ConfigMap has no key %s", inject.ConfigFileKey)
	}
	loaded, err := policy.Load(inject.ConfigFileKey, []byte(file), policy.ForAuthz, policy.Overrides{})
	if err != nil {
		t.Fatalf("tokengate refuses the rendered configuration:\n%v\n%s", err, file)
	}
	for what, addr := range map[string]struct {
		got  string
		want int32
	}{"authz.listen": {loaded.AuthzListen, port}, "admin": {loaded.Admin, adminPort}} {
		host, p, err := net.SplitHostPort(addr.got)
		if err != nil || host != "" || p != strconv.Itoa(int(addr.want)) {
			t.Errorf("%s is %q, want \":%d\" (every interface: the Service sends requests to the pod's address)", what, addr.got, addr.want)
		}
	}
	sum := fmt.Sprintf("%x", sha256.Sum256([]byte(strings.TrimSuffix(file, "\n"))))
	if got := d.Spec.Template.Annotations["checksum/config"]; got != sum {
		t.Errorf("the pods' checksum/config is %q, not the configuration's %s: a change would not roll them", got, sum)
	}
}

// checkAuthzNetworkPolicy checks that the decision port admits the configured peers
// only, and the admin port those of metricsFrom.
func checkAuthzNetworkPolicy(t *testing.T, np *networkingv1.NetworkPolicy, pod labels.Set) {
	t.Helper()
	s := np.Spec
	if !labels.SelectorFromSet(s.PodSelector.MatchLabels).Matches(pod) || len(s.PodSelector.MatchLabels) == 0 {
		t.Errorf("the NetworkPolicy selects %v, not the authz pods %v", s.PodSelector.MatchLabels, pod)
	}
	if !slices.Equal(s.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) || len(s.Ingress) != 2 {
		t.Fatalf("policy types %v, %d ingress rules", s.PolicyTypes, len(s.Ingress))
	}
	for i, want := range []struct{ port, namespace string }{{"authz", "ingress-nginx"}, {"admin", "monitoring"}} {
		r := s.Ingress[i]
		if len(r.Ports) != 1 || r.Ports[0].Port == nil || r.Ports[0].Port.String() != want.port {
			t.Errorf("rule %d admits to ports %+v, want %s only", i, r.Ports, want.port)
		}
		// A rule without peers admits everyone.
		if len(r.From) != 1 || r.From[0].NamespaceSelector == nil || r.From[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != want.namespace {
			t.Errorf("rule %d admits %+v, want the pods of %s", i, r.From, want.namespace)
		}
	}
	if r := s.Ingress[0]; r.From[0].PodSelector == nil || r.From[0].PodSelector.MatchLabels["app.kubernetes.io/name"] != "ingress-nginx" {
		t.Errorf("the decision port admits every pod of ingress-nginx's namespace, not its controller's: %+v", r.From)
	}
}

// generated are the lines of a rendered chart that differ from one rendering to the
// next: the generated certificate and what follows it.
var generated = regexp.MustCompile(`(?m)^\s*(tls\.crt|tls\.key|ca\.crt|caBundle|checksum/tls):.*$`)

// TestAuthzOffRendersNothing checks that authz.enabled false renders nothing of the
// decision service, whatever else authz says: the chart's output is what it was
// without authz mode.
func TestAuthzOffRendersNothing(t *testing.T) {
	off := with(authzOn[1:], "authz.enabled=false", "authz.networkPolicy.enabled=true",
		"authz.networkPolicy.from[0].podSelector.matchLabels.app=gateway", "authz.replicas=3", "monitoring.serviceMonitor.enabled=true")
	for name, set := range map[string][]string{"defaults": nil, "authz configured, not enabled": off} {
		t.Run(name, func(t *testing.T) {
			if objs := authzObjects(t, render(t, set)); len(objs) != 0 {
				t.Errorf("authz objects rendered while authz is off: %v", slices.Sorted(maps.Keys(objs)))
			}
		})
	}
	base, err := template(t, namespace, []string{"monitoring.serviceMonitor.enabled=true"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := template(t, namespace, off)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := generated.ReplaceAllString(base, ""), generated.ReplaceAllString(got, ""); a != b {
		t.Errorf("authz values change the output while authz is off:\n%s", firstDifference(b, a))
	}
}

func TestAuthzSchemaRefusesBadValues(t *testing.T) {
	for name, set := range map[string][]string{
		"enabled not a boolean":        {"authz.enabled=yes"},
		"unknown key":                  with(authzOn, "authz.replica=2"),
		"no replica":                   with(authzOn, "authz.replicas=0"),
		"port out of range":            with(authzOn, "authz.port=70000"),
		"HTTP Service port zero":       with(authzOn, "authz.httpServicePort=0"),
		"admin port zero":              with(authzOn, "authz.adminPort=0"),
		"log level":                    with(authzOn, "authz.logLevel=loud"),
		"config not a mapping":         {"authz.enabled=true", "authz.config=tokengate.yaml"},
		"config sets admin":            with(authzOn, "authz.config.admin=:9999"),
		"config sets authz.listen":     with(authzOn, "authz.config.authz.listen=127.0.0.1:9191"),
		"enabled without a file":       {"authz.enabled=true"},
		"a file twice":                 with(authzOn, "authz.existingConfigMap=gateway-policy"),
		"ConfigMap name":               {"authz.enabled=true", "authz.existingConfigMap=Gateway_Policy"},
		"unknown network policy key":   with(authzOn, "authz.networkPolicy.fromm[0].podSelector.matchLabels.app=x"),
		"network policy without peers": with(authzOn, "authz.networkPolicy.enabled=true"),
		"unknown peer key":             with(authzOn, "authz.networkPolicy.enabled=true", "authz.networkPolicy.from[0].podSelecter.matchLabels.app=x"),
		"ipBlock without cidr":         with(authzOn, "authz.networkPolicy.enabled=true", "authz.networkPolicy.from[0].ipBlock.except[0]=10.0.0.0/8"),
		"minAvailable":                 with(authzOn, "authz.podDisruptionBudget.minAvailable=half"),
		"pod annotation not a string":  with(authzOn, "authz.podAnnotations.a=1"),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := template(t, namespace, set)
			if err == nil || !strings.Contains(err.Error(), "values don't meet the specifications of the schema") {
				t.Fatalf("accepted %q: %v", set, err)
			}
		})
	}
}

// TestAuthzPortsMustDiffer checks that ports the Service or the pod would hold twice are
// refused with a message that names them, rather than by the API server.
func TestAuthzPortsMustDiffer(t *testing.T) {
	for _, set := range [][]string{
		with(authzOn, "authz.httpServicePort=9191"),
		with(authzOn, "authz.adminPort=9191"),
		with(authzOn, "authz.httpServicePort=9090"),
	} {
		_, err := template(t, namespace, set)
		if err == nil || !strings.Contains(err.Error(), "authz.port (") || !strings.Contains(err.Error(), "must differ") {
			t.Errorf("%v: %v", set[len(set)-1], err)
		}
	}
}

// templateValues renders the chart as `helm template RELEASE charts/tokengate
// --namespace NAMESPACE -f FILE` does, for values read from a file (helmtest.Template
// takes --set expressions only).
func templateValues(t *testing.T, release, namespace string, vals map[string]any) []object {
	t.Helper()
	rel := install(t, release, namespace, vals)
	if len(rel.Hooks) != 0 {
		t.Fatal("the chart has hooks: render them too")
	}
	return objects(t, rel.Manifest)
}

// install runs a client-only dry-run install, as helmtest.Template does, and returns
// the release: its manifest and its notes.
func install(t *testing.T, name, namespace string, vals map[string]any) *release.Release {
	t.Helper()
	chrt, err := loader.Load(".")
	if err != nil {
		t.Fatal(err)
	}
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	in := action.NewInstall(&action.Configuration{})
	in.DryRun, in.ClientOnly, in.Replace = true, true, true
	in.ReleaseName, in.Namespace, in.KubeVersion = name, namespace, kv
	rel, err := in.Run(chrt, vals)
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	return rel
}

// TestAuthzNotes checks what `helm install` prints: where the decision service
// answers, and a warning while any pod may ask it.
func TestAuthzNotes(t *testing.T) {
	for name, tc := range map[string]struct {
		set           []string
		where, warned bool
	}{
		"off":                    {nil, false, false},
		"on, without the policy": {authzOn, true, true},
		"on, behind the policy":  {with(authzOn, "authz.networkPolicy.enabled=true", "authz.networkPolicy.from[0].podSelector.matchLabels.app=gateway"), true, false},
	} {
		t.Run(name, func(t *testing.T) {
			vals, err := helmtest.Values(tc.set)
			if err != nil {
				t.Fatal(err)
			}
			notes := install(t, "rel", namespace, vals).Info.Notes
			where := strings.Contains(notes, "rel-tokengate-authz."+namespace+".svc.cluster.local\n") &&
				strings.Contains(notes, "port 80 (http-authz)") && strings.Contains(notes, "port 9191 (grpc-authz)")
			if where != tc.where {
				t.Errorf("the notes name the decision service: %v, want %v\n%s", where, tc.where, notes)
			}
			if warned := strings.Contains(notes, "WARNING: authz.networkPolicy.enabled is false"); warned != tc.warned {
				t.Errorf("the notes warn of an open decision service: %v, want %v\n%s", warned, tc.warned, notes)
			}
		})
	}
}
