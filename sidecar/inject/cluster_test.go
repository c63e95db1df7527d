//go:build e2e

// The webhook against a real kube-apiserver and etcd, both on loopback, built from the Go
// module proxy (tools/build) and run by internal/kubetest. Run by .ci/run:
//
//	go test -tags e2e -run TestCluster ./sidecar/inject/
package inject_test

import (
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
	corev1 "k8s.io/api/core/v1"
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
	url := fmt.Sprintf("https://127.0.0.1:%d%s", port, *hook.Webhooks[0].ClientConfig.Service.Path)
	hook.Webhooks[0].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: c.CAPEM(t)}
	hookJSON, _ := json.Marshal(hook)
	c.MustKubectl(t, string(hookJSON), "apply", "-f", "-")

	created := func(name, labels, annotations string) (*corev1.Pod, string) {
		t.Helper()
		out, err := c.Kubectl(fmt.Sprintf(appPod, name, labels, annotations), "create", "-f", "-", "-o", "json")
		if err != nil {
			return nil, out
		}
		var pod corev1.Pod
		if err := json.Unmarshal([]byte(out), &pod); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return &pod, out
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
}
