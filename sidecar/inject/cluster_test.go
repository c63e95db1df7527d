//go:build e2e

// The webhook against a real kube-apiserver and etcd, both on loopback, built from the Go
// module proxy (tools/build) and run by internal/kubetest. Run by .ci/run:
//
//	go test -tags e2e -run TestCluster ./sidecar/inject/
package inject_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/e2etest"
	"github.com/tokengate/tokengate/internal/helmtest"
	"github.com/tokengate/tokengate/internal/kubetest"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// process runs a command until the test ends, with its output kept for failures.
func process(t *testing.T, name string, args ...string) *exec.Cmd {
	t.Helper()
	var out e2etest.LockedBuffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("%s output (last 3000 bytes):\n%s", filepath.Base(name), tail(out.String(), 3000))
		}
	})
	return cmd
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// buildTokengate builds the binary under test.
func buildTokengate(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tokengate")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/tokengate").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return bin
}

// renderChart renders the chart with Helm's own code (internal/helmtest).
func renderChart(t *testing.T, set ...string) string {
	t.Helper()
	out, err := helmtest.Template("../../charts/tokengate", "tokengate-system", "1.37.0", set)
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	return out
}

const appPod = `apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: shop
  labels: %s
  annotations: %s
spec:
  serviceAccountName: orders
  containers:
    - name: api
      image: orders:1.4
      ports: [{name: http, containerPort: 8080}]
`

func TestCluster(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{})

	// The chart's objects pass the API server's own validation, strictly.
	c.MustKubectl(t, "", "create", "namespace", "tokengate-system")
	rendered := renderChart(t)
	if out, err := c.Kubectl(rendered, "apply", "--dry-run=server", "--validate=strict", "-f", "-"); err != nil {
		t.Fatalf("the chart's objects are refused by the API server:\n%s", out)
	}
	// The same check has teeth: a value Helm lets through is refused here.
	misspelled := strings.Replace(rendered, "sideEffects: None", "sideEffects: Nonee", 1)
	if misspelled == rendered {
		t.Fatal("the rendered chart has no sideEffects: None")
	}
	if out, err := c.Kubectl(misspelled, "apply", "--dry-run=server", "--validate=strict", "-f", "-"); err == nil || !strings.Contains(out, "sideEffects") {
		t.Fatalf("a misspelled sideEffects was accepted: %v\n%s", err, out)
	}
	for _, bad := range []string{"webhook.timeoutSeconds=31"} {
		if _, err := helmtest.Template("../../charts/tokengate", "tokengate-system", "1.37.0", []string{bad}); err == nil {
			t.Errorf("helm accepted %s", bad)
		}
	}
	example, _ := os.ReadFile("../../charts/tokengate/examples/orders.yaml")
	c.MustKubectl(t, "", "create", "namespace", "shop")
	if out, err := c.Kubectl(string(example), "-n", "shop", "apply", "--dry-run=server", "--validate=strict", "-f", "-"); err != nil {
		t.Fatalf("the example application is refused:\n%s", out)
	}

	// The real tokengate inject, on loopback, with a certificate of the test's CA.
	tg := buildTokengate(t)
	certFile, keyFile := c.ServingCertificate(t, "webhook")
	port := e2etest.FreePort(t)
	inj := process(t, tg, "inject", fmt.Sprintf("--listen=127.0.0.1:%d", port), fmt.Sprintf("--admin=127.0.0.1:%d", e2etest.FreePort(t)),
		"--tls-cert="+certFile, "--tls-key="+keyFile, "--sidecar-image=ghcr.io/tokengate/tokengate:e2e", "--log-format=json")

	// The chart's webhook configuration, pointed at it by URL: the API server cannot
	// reach a Service without a network, and nothing here may leave loopback.
	var hook admissionregistrationv1.MutatingWebhookConfiguration
	for _, doc := range strings.Split(rendered, "\n---") {
		if strings.Contains(doc, "kind: MutatingWebhookConfiguration") {
			if err := yaml.UnmarshalStrict([]byte(doc), &hook); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The path is the chart's: the real injector must answer on it.
	if len(hook.Webhooks) != 2 {
		t.Fatalf("the chart renders %d webhooks, want 2 (the sidecar's, the client tokens')", len(hook.Webhooks))
	}
	for i, w := range hook.Webhooks {
		url := fmt.Sprintf("https://127.0.0.1:%d%s", port, *w.ClientConfig.Service.Path)
		hook.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: c.CAPEM(t)}
	}
	hookJSON, _ := json.Marshal(hook)
	c.MustKubectl(t, string(hookJSON), "apply", "-f", "-")

	create := func(manifest string) (*corev1.Pod, string) {
		t.Helper()
		out, err := c.Kubectl(manifest, "create", "-f", "-", "-o", "json")
		if err != nil {
			return nil, out
		}
		var pod corev1.Pod
		if err := json.Unmarshal([]byte(out), &pod); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return &pod, out
	}
	created := func(name, labels, annotations string) (*corev1.Pod, string) {
		t.Helper()
		return create(fmt.Sprintf(appPod, name, labels, annotations))
	}
	good := `{tokengate.io/upstream-port: "8080", tokengate.io/config: orders-tokengate}`
	// The webhook may take a moment to be called after registration.
	var pod *corev1.Pod
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		var out string
		pod, out = created(fmt.Sprintf("labelled-%d", i), `{tokengate.io/inject: "true"}`, good)
		if pod != nil && len(pod.Spec.InitContainers) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a labelled pod was not injected: %s", out)
		}
		time.Sleep(time.Second)
	}
	sc := pod.Spec.InitContainers[0]
	if sc.Name != "tokengate" || sc.RestartPolicy == nil || *sc.RestartPolicy != corev1.ContainerRestartPolicyAlways || sc.Image != "ghcr.io/tokengate/tokengate:e2e" ||
		pod.Annotations["tokengate.io/status"] != "injected" || pod.Spec.Volumes[len(pod.Spec.Volumes)-1].ConfigMap.Name != "orders-tokengate" {
		t.Fatalf("the stored pod is not what the webhook means: %+v", pod.Spec)
	}

	if pod, out := created("unlabelled", `{app: orders}`, good); pod == nil || len(pod.Spec.InitContainers) != 0 || pod.Annotations["tokengate.io/status"] != "" {
		t.Fatalf("an unlabelled pod was changed: %s", out)
	}
	if pod, out := created("injected-before", `{tokengate.io/inject: "true"}`, `{tokengate.io/upstream-port: "8080", tokengate.io/config: c, tokengate.io/status: injected}`); pod == nil || len(pod.Spec.InitContainers) != 0 {
		t.Fatalf("an injected pod was injected again: %s", out)
	}
	if pod, out := created("misannotated", `{tokengate.io/inject: "true"}`, `{tokengate.io/config: orders-tokengate}`); pod != nil ||
		!strings.Contains(out, `admission webhook "inject.tokengate.io" denied the request`) || !strings.Contains(out, "annotation tokengate.io/upstream-port is missing") {
		t.Fatalf("a mis-annotated pod was not refused with a message: %s", out)
	}

	clientTokens(t, c, create)

	// The webhooks see every value of their label but "false": a mistyped one is
	// refused with the fix, not a pod started without what it asks for.
	if pod, out := created("label-yes", `{tokengate.io/inject: "yes"}`, good); pod != nil ||
		!strings.Contains(out, `admission webhook "inject.tokengate.io" denied the request`) || !strings.Contains(out, `label tokengate.io/inject is "yes"`) {
		t.Fatalf("a pod labelled yes was not refused with a message: %s", out)
	}
	if pod, out := create(fmt.Sprintf(clientPod, "client-label-true-cased", "payments", `{tokengate.io/client-tokens: "True"}`, `{tokengate.io/client-token-audiences: refunds}`, "billing")); pod != nil ||
		!strings.Contains(out, `admission webhook "client-tokens.tokengate.io" denied the request`) || !strings.Contains(out, `label tokengate.io/client-tokens is "True"`) {
		t.Fatalf("a client pod labelled True was not refused with a message: %s", out)
	}
	if pod, out := created("label-false", `{tokengate.io/inject: "false"}`, good); pod == nil || len(pod.Spec.InitContainers) != 0 {
		t.Fatalf("a pod labelled false was refused or changed: %s", out)
	}

	// While the webhook is down, labelled pods are refused (failurePolicy Fail); other
	// pods are not its business.
	_ = inj.Process.Kill()
	deadline = time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		pod, out := created(fmt.Sprintf("while-down-%d", i), `{tokengate.io/inject: "true"}`, good)
		if pod == nil && strings.Contains(out, `failed calling webhook "inject.tokengate.io"`) {
			break
		}
		if pod != nil && len(pod.Spec.InitContainers) == 0 {
			t.Fatalf("a labelled pod started without the sidecar while the webhook was down")
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod creation with the webhook down: %s", out)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if pod, out := created("unlabelled-while-down", `{app: orders}`, good); pod == nil {
		t.Fatalf("an unlabelled pod was refused while the webhook was down: %s", out)
	}
	if pod, out := create(fmt.Sprintf(clientPod, "client-while-down", "payments", `{tokengate.io/client-tokens: "true"}`, `{tokengate.io/client-token-audiences: refunds}`, "billing")); pod != nil ||
		!strings.Contains(out, `failed calling webhook "client-tokens.tokengate.io"`) {
		t.Fatalf("a client pod was not refused while the webhook was down: %s", out)
	}
}

const clientPod = `apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: %s
  labels: %s
  annotations: %s
spec:
  serviceAccountName: %s
  initContainers:
    - name: wait
      image: busybox:1.37
  containers:
    - name: app
      image: billing:2.1
`

// clientTokens creates client pods through the real API server: what it stores is what
// the webhook means, after the API server's own defaulting and validation, and the
// tokens the kubelet would ask for are issued as the volume says.
func clientTokens(t *testing.T, c *kubetest.Cluster, create func(string) (*corev1.Pod, string)) {
	t.Helper()
	c.CreateNamespace(t, "payments")
	c.CreateServiceAccount(t, "payments", "billing")
	c.CreateServiceAccount(t, "shop", "orders")

	audiences := map[string]string{"refunds": "refunds", "https://orders.example.com": "https___orders.example.com"}
	pod, out := create(fmt.Sprintf(clientPod, "billing", "payments", `{tokengate.io/client-tokens: "true"}`,
		`{tokengate.io/client-token-audiences: "refunds, https://orders.example.com", tokengate.io/client-token-expiration-seconds: "7200"}`, "billing"))
	if pod == nil {
		t.Fatalf("a client pod was refused: %s", out)
	}
	checkTokens(t, pod, audiences, 7200, "wait", "app")
	if len(pod.Spec.InitContainers) != 1 || pod.Annotations["tokengate.io/status"] != "" {
		t.Fatalf("a client pod got the sidecar: %+v", pod.Spec.InitContainers)
	}

	// What the kubelet asks for the pod, the API server issues: a token bound to the
	// pod, for the audience, with the lifetime.
	var vol *corev1.Volume
	for i := range pod.Spec.Volumes {
		if pod.Spec.Volumes[i].Name == "tokengate-client-tokens" {
			vol = &pod.Spec.Volumes[i]
		}
	}
	src := vol.Projected.Sources[0].ServiceAccountToken
	tok := c.Token(t, "payments", "billing", authenticationv1.TokenRequestSpec{
		Audiences: []string{src.Audience}, ExpirationSeconds: src.ExpirationSeconds,
		BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	})
	var claims struct {
		Aud      []string `json:"aud"`
		Sub      string   `json:"sub"`
		Exp, Iat int64
		K8s      struct {
			Pod struct{ Name string } `json:"pod"`
		} `json:"kubernetes.io"`
	}
	parts := strings.Split(tok, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil || json.Unmarshal(payload, &claims) != nil {
		t.Fatalf("the token's payload: %v\n%s", err, payload)
	}
	if len(claims.Aud) != 1 || claims.Aud[0] != "refunds" || claims.Sub != "system:serviceaccount:payments:billing" ||
		claims.K8s.Pod.Name != "billing" || claims.Exp-claims.Iat != 7200 {
		t.Fatalf("the pod's token for refunds: %s", payload)
	}

	// A copy of the stored pod, created anew (as `kubectl get -o yaml | kubectl
	// create` does), keeps one volume and one mount per container.
	cp := corev1.Pod{
		TypeMeta:   pod.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{Name: "billing-copy", Namespace: pod.Namespace, Labels: pod.Labels, Annotations: pod.Annotations},
		Spec:       pod.Spec,
	}
	raw, _ := json.Marshal(cp)
	again, out := create(string(raw))
	if again == nil {
		t.Fatalf("a copy of a client pod was refused: %s", out)
	}
	checkTokens(t, again, audiences, 7200, "wait", "app")

	// Only the containers named.
	pod, out = create(fmt.Sprintf(clientPod, "billing-app-only", "payments", `{tokengate.io/client-tokens: "true"}`,
		`{tokengate.io/client-token-audiences: refunds, tokengate.io/client-token-containers: app}`, "billing"))
	if pod == nil {
		t.Fatalf("a client pod was refused: %s", out)
	}
	checkTokens(t, pod, map[string]string{"refunds": "refunds"}, 3600, "app")

	// An API that calls another: both webhooks are called, and the second finds the
	// tokens there already.
	pod, out = create(fmt.Sprintf(appPod, "orders-and-client", `{tokengate.io/inject: "true", tokengate.io/client-tokens: "true"}`,
		`{tokengate.io/upstream-port: "8080", tokengate.io/config: orders-tokengate, tokengate.io/client-token-audiences: refunds}`))
	if pod == nil {
		t.Fatalf("an API's pod with client tokens was refused: %s", out)
	}
	if len(pod.Spec.InitContainers) != 1 || pod.Spec.InitContainers[0].Name != "tokengate" || pod.Annotations["tokengate.io/status"] != "injected" {
		t.Fatalf("no sidecar: %+v", pod.Spec.InitContainers)
	}
	checkTokens(t, pod, map[string]string{"refunds": "refunds"}, 3600, "api")

	// Refused with every problem; annotations without the label reach no webhook.
	if pod, out := create(fmt.Sprintf(clientPod, "twice", "payments", `{tokengate.io/client-tokens: "true"}`,
		`{tokengate.io/client-token-audiences: "refunds,refunds", tokengate.io/client-token-expiration-seconds: "60"}`, "billing")); pod != nil ||
		!strings.Contains(out, `admission webhook "client-tokens.tokengate.io" denied the request: tokengate: the pod asks for client tokens but cannot get it`) ||
		!strings.Contains(out, `audience "refunds" is listed twice`) || !strings.Contains(out, `client-token-expiration-seconds is "60"`) {
		t.Fatalf("a mis-annotated client pod was not refused with every problem: %s", out)
	}
	if pod, out := create(fmt.Sprintf(clientPod, "unlabelled-client", "payments", `{app: billing}`, `{tokengate.io/client-token-audiences: refunds}`, "billing")); pod == nil ||
		len(pod.Spec.Volumes) != 0 {
		t.Fatalf("an unlabelled pod was changed: %s", out)
	}
}

// checkTokens checks that a stored pod has the tokens' projected volume once, as
// defaulted by the API server, mounted read-only in exactly the containers named.
func checkTokens(t *testing.T, pod *corev1.Pod, audiences map[string]string, exp int64, containers ...string) {
	t.Helper()
	var vols []corev1.Volume
	for _, v := range pod.Spec.Volumes {
		if v.Name == "tokengate-client-tokens" {
			vols = append(vols, v)
		}
	}
	if len(vols) != 1 || vols[0].Projected == nil || len(vols[0].Projected.Sources) != len(audiences) ||
		vols[0].Projected.DefaultMode == nil || *vols[0].Projected.DefaultMode != 0o644 {
		t.Fatalf("pod %s: the tokens' volume as stored: %+v", pod.Name, vols)
	}
	for _, s := range vols[0].Projected.Sources {
		a := s.ServiceAccountToken
		if a == nil || audiences[a.Audience] != a.Path || a.ExpirationSeconds == nil || *a.ExpirationSeconds != exp {
			t.Fatalf("pod %s: a source %+v, want one of %v for %d s", pod.Name, s, audiences, exp)
		}
	}
	mounted := map[string]int{}
	for _, ct := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		for _, m := range ct.VolumeMounts {
			if m.Name == "tokengate-client-tokens" {
				if m.MountPath != "/var/run/secrets/tokengate.io/tokens" || !m.ReadOnly {
					t.Fatalf("pod %s: container %s mounts the tokens %+v", pod.Name, ct.Name, m)
				}
				mounted[ct.Name]++
			}
		}
	}
	if len(mounted) != len(containers) {
		t.Fatalf("pod %s: the tokens are mounted in %v, want %v", pod.Name, mounted, containers)
	}
	for _, name := range containers {
		if mounted[name] != 1 {
			t.Fatalf("pod %s: the tokens are mounted in %v, want %v once each", pod.Name, mounted, containers)
		}
	}
}
