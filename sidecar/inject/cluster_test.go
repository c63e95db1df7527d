//go:build e2e

// The webhook against a real kube-apiserver and etcd, both on loopback, built from the Go
// module proxy (tools/build). Run by .ci/run:
//
//	go test -tags e2e -run TestCluster ./sidecar/inject/
package inject_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/e2etest"
	"github.com/tokengate/tokengate/internal/helmtest"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// tools returns the directory of etcd, kube-apiserver and kubectl, building them when
// needed (kube-apiserver takes about ten minutes from a cold cache).
func tools(t *testing.T) string {
	t.Helper()
	var dir string
	for _, tool := range []string{"etcd", "kube"} {
		out, err := exec.Command("../../tools/build", tool).Output()
		if err != nil {
			t.Fatalf("tools/build %s: %v", tool, err)
		}
		dir = strings.TrimSpace(string(out))
	}
	return dir
}

// pki is a CA and what it signed, written as PEM files.
type pki struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caFile string
}

func newPKI(t *testing.T) *pki {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tokengate-e2e-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	ca, _ := x509.ParseCertificate(der)
	p := &pki{dir: t.TempDir(), ca: ca, caKey: key}
	p.caFile = p.write(t, "ca.crt", "CERTIFICATE", der)
	return p
}

func (p *pki) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// serving issues a certificate for 127.0.0.1 and localhost.
func (p *pki) serving(t *testing.T, name string) (certFile, keyFile string) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	kder, _ := x509.MarshalECPrivateKey(key)
	return p.write(t, name+".crt", "CERTIFICATE", der), p.write(t, name+".key", "EC PRIVATE KEY", kder)
}

// process runs a command until the test ends, with its output kept for failures.
func process(t *testing.T, name string, args ...string) (cmd *exec.Cmd, exited <-chan struct{}) {
	t.Helper()
	var out e2etest.LockedBuffer
	cmd = exec.Command(name, args...)
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
	return cmd, done
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// cluster is an API server with etcd, and a kubectl configured for it.
type cluster struct {
	bin, kubeconfig string
}

func (c *cluster) kubectl(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(c.bin, "kubectl"), append([]string{"--kubeconfig", c.kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *cluster) mustKubectl(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := c.kubectl(t, stdin, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func startCluster(t *testing.T, bin string, p *pki) *cluster {
	t.Helper()
	etcdPort, peerPort, apiPort := e2etest.FreePort(t), e2etest.FreePort(t), e2etest.FreePort(t)
	process(t, filepath.Join(bin, "etcd"),
		"--data-dir", t.TempDir(), "--name", "e2e",
		"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPort),
		"--advertise-client-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPort),
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peerPort),
		"--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peerPort),
		"--initial-cluster", fmt.Sprintf("e2e=http://127.0.0.1:%d", peerPort),
		"--log-level", "warn")

	certFile, keyFile := p.serving(t, "apiserver")
	saKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	saKeyFile := p.write(t, "sa.key", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(saKey))
	saPub, _ := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	saPubFile := p.write(t, "sa.pub", "PUBLIC KEY", saPub)
	const token = "e2e-admin-token"
	tokens := filepath.Join(p.dir, "tokens.csv")
	_ = os.WriteFile(tokens, []byte(token+",admin,admin,system:masters\n"), 0o600)

	_, apiExited := process(t, filepath.Join(bin, "kube-apiserver"),
		"--etcd-servers", fmt.Sprintf("http://127.0.0.1:%d", etcdPort),
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
		"--secure-port", fmt.Sprint(apiPort),
		"--tls-cert-file", certFile, "--tls-private-key-file", keyFile,
		"--token-auth-file", tokens,
		"--authorization-mode", "RBAC",
		"--service-account-key-file", saPubFile, "--service-account-signing-key-file", saKeyFile,
		"--service-account-issuer", "https://kubernetes.default.svc",
		// Only loopback: no cluster IP may leave this machine.
		"--service-cluster-ip-range", "127.100.0.0/24",
		"--endpoint-reconciler-type", "none",
		"--disable-admission-plugins", "ServiceAccount",
		"--allow-privileged=true",
		"--cert-dir", t.TempDir(),
		"--v", "1")

	kubeconfig := filepath.Join(p.dir, "kubeconfig")
	_ = os.WriteFile(kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: https://127.0.0.1:%d
    certificate-authority: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: e2e
  context: {cluster: e2e, user: admin}
current-context: e2e
`, apiPort, p.caFile, token)), 0o600)
	c := &cluster{bin: bin, kubeconfig: kubeconfig}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out, err := c.kubectl(t, "", "get", "--raw", "/readyz")
		if err == nil && strings.TrimSpace(out) == "ok" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the API server is not ready: %v %s", err, out)
		}
		select {
		case <-apiExited:
			t.Fatal("kube-apiserver exited before it was ready")
		case <-time.After(500 * time.Millisecond):
		}
	}
	// The default service account is made by a controller this test does not run.
	return c
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
	bin := tools(t)
	p := newPKI(t)
	c := startCluster(t, bin, p)

	// The chart's objects pass the API server's own validation, strictly.
	c.mustKubectl(t, "", "create", "namespace", "tokengate-system")
	rendered := renderChart(t)
	if out, err := c.kubectl(t, rendered, "apply", "--dry-run=server", "--validate=strict", "-f", "-"); err != nil {
		t.Fatalf("the chart's objects are refused by the API server:\n%s", out)
	}
	// The same check has teeth: a value Helm lets through is refused here.
	misspelled := strings.Replace(rendered, "sideEffects: None", "sideEffects: Nonee", 1)
	if misspelled == rendered {
		t.Fatal("the rendered chart has no sideEffects: None")
	}
	if out, err := c.kubectl(t, misspelled, "apply", "--dry-run=server", "--validate=strict", "-f", "-"); err == nil || !strings.Contains(out, "sideEffects") {
		t.Fatalf("a misspelled sideEffects was accepted: %v\n%s", err, out)
	}
	for _, bad := range []string{"webhook.timeoutSeconds=31"} {
		if _, err := helmtest.Template("../../charts/tokengate", "tokengate-system", "1.37.0", []string{bad}); err == nil {
			t.Errorf("helm accepted %s", bad)
		}
	}
	example, _ := os.ReadFile("../../charts/tokengate/examples/orders.yaml")
	c.mustKubectl(t, "", "create", "namespace", "shop")
	if out, err := c.kubectl(t, string(example), "-n", "shop", "apply", "--dry-run=server", "--validate=strict", "-f", "-"); err != nil {
		t.Fatalf("the example application is refused:\n%s", out)
	}

	// The real tokengate inject, on loopback, with a certificate of the test's CA.
	tg := buildTokengate(t)
	certFile, keyFile := p.serving(t, "webhook")
	port := e2etest.FreePort(t)
	inj, _ := process(t, tg, "inject", fmt.Sprintf("--listen=127.0.0.1:%d", port), fmt.Sprintf("--admin=127.0.0.1:%d", e2etest.FreePort(t)),
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
	caPEM, _ := os.ReadFile(p.caFile)
	hook.Webhooks[0].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caPEM}
	hookJSON, _ := json.Marshal(hook)
	c.mustKubectl(t, string(hookJSON), "apply", "-f", "-")

	created := func(name, labels, annotations string) (*corev1.Pod, string) {
		t.Helper()
		out, err := c.kubectl(t, fmt.Sprintf(appPod, name, labels, annotations), "create", "-f", "-", "-o", "json")
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
