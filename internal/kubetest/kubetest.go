// Package kubetest runs a real Kubernetes control plane for tests: etcd and
// kube-apiserver, built by tools/build at the versions tools/*/go.mod pins, on free
// 127.0.0.1 ports, with a PKI made for the test. It is what a pod sees of its cluster,
// minus the kubelet and the controllers:
//
//   - the API server's serving certificate, signed by the cluster's CA (CAFile), names
//     127.0.0.1 and kubernetes.default.svc;
//   - ServiceAccount tokens are signed with a key of the test's
//     (--service-account-signing-key-file), for the issuer and API audiences of
//     Options, and minted through the real TokenRequest API (Token);
//   - authorization is RBAC with the default roles and bindings, so the issuer
//     discovery endpoints (/.well-known/openid-configuration, /openid/v1/jwks) are
//     open to ServiceAccounts (system:service-account-issuer-discovery, bound to
//     system:serviceaccounts) and to no one else;
//   - anonymous requests are refused with 401, or, with Options.AnonymousAuth, reach
//     authorization as system:anonymous;
//   - the administrator is a client certificate in system:masters (Do, Kubectl).
//
// The API server can be restarted with other options (Restart) and with a new signing
// key (RotateSigningKey, RetireOldKeys), on the same port and etcd. Everything stops
// when the test ends; on Linux the kernel kills the processes if the test binary dies
// first. Nothing listens beyond loopback.
//
// The tests that use it carry the e2e build tag: the binaries take minutes to build
// from a cold cache (tools/build etcd, tools/build kube). A missing tool is built, not
// skipped.
package kubetest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/e2etest"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DefaultIssuer is the ServiceAccount issuer of a cluster made by kubeadm, and of
// Options' zero value.
const DefaultIssuer = "https://kubernetes.default.svc.cluster.local"

// readyTimeout bounds a start or restart of the API server, until /readyz says ok; a
// loaded machine with a cold page cache takes most of a minute.
const readyTimeout = 3 * time.Minute

// Options of Start and Restart. The zero value is a cluster with the issuer
// DefaultIssuer, that issuer as the only API audience, and anonymous requests refused.
type Options struct {
	// Issuer is --service-account-issuer: the iss of the tokens the API server mints,
	// and the base of its discovery document. It defaults to DefaultIssuer.
	Issuer string

	// APIAudiences is --api-audiences: the audiences a token must have for the API
	// server to accept it. They default to Issuer, as the API server's own default.
	APIAudiences []string

	// JWKSURI is --service-account-jwks-uri, the jwks_uri of the discovery document.
	// Empty leaves it to the API server, which names its own address:
	// https://127.0.0.1:PORT/openid/v1/jwks.
	JWKSURI string

	// AnonymousAuth is --anonymous-auth: anonymous requests are authenticated as
	// system:anonymous (and then refused by RBAC wherever no role allows them)
	// instead of refused with 401.
	AnonymousAuth bool
}

func (o Options) withDefaults() Options {
	if o.Issuer == "" {
		o.Issuer = DefaultIssuer
	}
	if len(o.APIAudiences) == 0 {
		o.APIAudiences = []string{o.Issuer}
	}
	return o
}

// Cluster is a running etcd and kube-apiserver.
type Cluster struct {
	bin        string
	dir        string
	pki        *pki
	etcdURL    string
	port       int
	kubeconfig string
	admin      *http.Client
	client     *http.Client

	mu       sync.Mutex
	opts     Options
	keyFiles []string // private signing keys, oldest first: the last one signs
	pubFiles []string // their public halves, oldest first
	retired  int      // public keys before this index are no longer trusted
	api      *process
}

// Tools returns the directory of etcd, kube-apiserver and kubectl, building them when
// needed (kube-apiserver takes about ten minutes from a cold cache).
func Tools(t testing.TB) string {
	t.Helper()
	root, err := e2etest.ModuleRoot()
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	var dir string
	for _, tool := range []string{"etcd", "kube"} {
		cmd := exec.Command(filepath.Join(root, "tools", "build"), tool)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("kubetest: tools/build %s: %v\n%s", tool, err, stderr.String())
		}
		dir = strings.TrimSpace(string(out))
	}
	return dir
}

// Start starts etcd and kube-apiserver with o and returns once the API server is ready.
// Both are stopped when the test ends, and their output is printed when it failed.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	c := &Cluster{bin: Tools(t), dir: t.TempDir(), opts: o.withDefaults()}
	c.pki = newPKI(t, c.dir)
	keyFile, pubFile := c.pki.signingKey(t, "sa-0")
	c.keyFiles, c.pubFiles = []string{keyFile}, []string{pubFile}

	pool := x509.NewCertPool()
	pool.AddCert(c.pki.ca)
	admin := c.pki.client(t, "admin", "kubetest-admin", "system:masters")
	c.admin = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{admin}, MinVersion: tls.VersionTLS12},
	}}
	c.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	}}
	t.Cleanup(c.admin.CloseIdleConnections)
	t.Cleanup(c.client.CloseIdleConnections)

	c.startEtcd(t)
	certFile, certKey := c.pki.serving(t, "apiserver",
		"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local")
	// A port taken by another process between FreePort and the API server's bind makes
	// it exit at once; then another port is tried.
	var err error
	for range 3 {
		c.port = e2etest.FreePort(t)
		c.writeKubeconfig(t)
		if err = c.startAPI(t, certFile, certKey); err == nil {
			return c
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	t.Fatalf("kubetest: %v", err)
	return nil
}

// startEtcd starts etcd on free ports and waits until it is healthy.
func (c *Cluster) startEtcd(t testing.TB) {
	t.Helper()
	var err error
	for range 3 {
		client, peer := e2etest.FreePort(t), e2etest.FreePort(t)
		c.etcdURL = fmt.Sprintf("http://127.0.0.1:%d", client)
		peerURL := fmt.Sprintf("http://127.0.0.1:%d", peer)
		var p *process
		p, err = startProcess(t, filepath.Join(c.bin, "etcd"),
			"--data-dir", filepath.Join(c.dir, "etcd"), "--name", "kubetest",
			"--listen-client-urls", c.etcdURL, "--advertise-client-urls", c.etcdURL,
			"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
			"--initial-cluster", "kubetest="+peerURL,
			"--log-level", "warn")
		if err != nil {
			t.Fatalf("kubetest: %v", err)
		}
		if err = p.waitFor(readyTimeout, func() error { return etcdHealthy(c.etcdURL) }); err == nil {
			return
		}
		p.stop()
		_ = os.RemoveAll(filepath.Join(c.dir, "etcd"))
	}
	t.Fatalf("kubetest: etcd: %v", err)
}

func etcdHealthy(base string) error {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(base + "/health")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var h struct{ Health string }
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<10)).Decode(&h); err != nil {
		return err
	}
	if h.Health != "true" {
		return fmt.Errorf("etcd says health %q", h.Health)
	}
	return nil
}

// apiArgs are the API server's flags for the current options and keys.
func (c *Cluster) apiArgs(certFile, keyFile string) []string {
	o := c.opts
	args := []string{
		"--etcd-servers", c.etcdURL,
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(c.port),
		"--tls-cert-file", certFile, "--tls-private-key-file", keyFile,
		"--client-ca-file", c.pki.caFile,
		"--authorization-mode", "RBAC",
		"--anonymous-auth=" + strconv.FormatBool(o.AnonymousAuth),
		"--service-account-issuer", o.Issuer,
		"--api-audiences", strings.Join(o.APIAudiences, ","),
		"--service-account-signing-key-file", c.keyFiles[len(c.keyFiles)-1],
		// Only loopback: no cluster IP may leave this machine.
		"--service-cluster-ip-range", "127.100.0.0/24",
		"--endpoint-reconciler-type", "none",
		// No controller makes the default ServiceAccount of a namespace: a pod names its
		// own, or none.
		"--disable-admission-plugins", "ServiceAccount",
		"--allow-privileged=true",
		"--cert-dir", filepath.Join(c.dir, "apiserver-certs"),
		"--v", "1",
	}
	for _, f := range c.pubFiles[c.retired:] {
		args = append(args, "--service-account-key-file", f)
	}
	if o.JWKSURI != "" {
		args = append(args, "--service-account-jwks-uri", o.JWKSURI)
	}
	return args
}

// startAPI starts kube-apiserver and waits until it is ready. c.mu is held or not
// needed (Start).
func (c *Cluster) startAPI(t testing.TB, certFile, keyFile string) error {
	t.Helper()
	p, err := startProcess(t, filepath.Join(c.bin, "kube-apiserver"), c.apiArgs(certFile, keyFile)...)
	if err != nil {
		return err
	}
	c.api = p
	return p.waitFor(readyTimeout, c.ready)
}

// ready is nil once /readyz says ok: every post-start hook has run, the default RBAC
// roles and bindings among them.
func (c *Cluster) ready() error {
	resp, err := c.admin.Get(c.URL() + "/readyz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "ok" {
		return fmt.Errorf("/readyz: %d %s", resp.StatusCode, body)
	}
	return nil
}

func (c *Cluster) writeKubeconfig(t testing.TB) {
	t.Helper()
	c.kubeconfig = filepath.Join(c.dir, "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kubetest
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: admin
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: kubetest
  context: {cluster: kubetest, user: admin}
current-context: kubetest
`, c.URL(), c.pki.caFile, filepath.Join(c.dir, "admin.crt"), filepath.Join(c.dir, "admin.key"))
	if err := os.WriteFile(c.kubeconfig, []byte(cfg), 0o600); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
}

// URL is the API server's address, https://127.0.0.1:PORT.
func (c *Cluster) URL() string { return fmt.Sprintf("https://127.0.0.1:%d", c.port) }

// Port is the API server's port.
func (c *Cluster) Port() int { return c.port }

// Issuer is the ServiceAccount issuer the API server runs with now.
func (c *Cluster) Issuer() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.opts.Issuer
}

// CAFile is the cluster CA's certificate (PEM), which signed the API server's serving
// certificate: a pod's /var/run/secrets/kubernetes.io/serviceaccount/ca.crt.
func (c *Cluster) CAFile() string { return c.pki.caFile }

// SigningKeyFile is the private key (PEM, PKCS #1) the API server signs
// ServiceAccount tokens with now, for a test that must sign what TokenRequest cannot
// mint (an expired token: TokenRequest's shortest lifetime is ten minutes) with the
// cluster's own key, so that the token differs from a real one only where the test
// says.
func (c *Cluster) SigningKeyFile() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.keyFiles[len(c.keyFiles)-1]
}

// CAPEM is the content of CAFile.
func (c *Cluster) CAPEM(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(c.pki.caFile)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	return b
}

// ServingCertificate issues a server certificate for 127.0.0.1 and localhost, signed
// by the cluster's CA (a webhook's, which the API server then trusts with CAPEM as its
// caBundle), and returns its files.
func (c *Cluster) ServingCertificate(t testing.TB, name string) (certFile, keyFile string) {
	t.Helper()
	return c.pki.serving(t, name)
}

// Kubeconfig is a kubeconfig file for the administrator.
func (c *Cluster) Kubeconfig() string { return c.kubeconfig }

// Kubectl runs kubectl as the administrator, with stdin, and returns its combined
// output.
func (c *Cluster) Kubectl(stdin string, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(c.bin, "kubectl"), append([]string{"--kubeconfig", c.kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// MustKubectl is Kubectl that fails the test on an error.
func (c *Cluster) MustKubectl(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	out, err := c.Kubectl(stdin, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// Client is an HTTP client that trusts the cluster's CA and sends no credentials: an
// anonymous request, or one that carries the Authorization header its caller sets.
func (c *Cluster) Client() *http.Client { return c.client }

// APIError is an answer of the API server other than 2xx.
type APIError struct {
	Method, Path string
	Code         int
	Body         string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.Path, e.Code, e.Body)
}

// Do sends one request to path as the administrator. in, when not nil, is sent as
// JSON; a 2xx answer is decoded into out when out is not nil; another answer is an
// *APIError.
func (c *Cluster) Do(method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.URL()+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.admin.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return &APIError{Method: method, Path: path, Code: resp.StatusCode, Body: strings.TrimSpace(string(b))}
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// Create POSTs obj to path as the administrator and decodes what the API server stored
// into out (when not nil).
func (c *Cluster) Create(t testing.TB, path string, obj, out any) {
	t.Helper()
	if err := c.Do(http.MethodPost, path, obj, out); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
}

// CreateNamespace creates a namespace.
func (c *Cluster) CreateNamespace(t testing.TB, name string) {
	t.Helper()
	c.Create(t, "/api/v1/namespaces", &corev1.Namespace{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
	}, nil)
}

// CreateServiceAccount creates a ServiceAccount in an existing namespace and returns
// it as stored (with its uid).
func (c *Cluster) CreateServiceAccount(t testing.TB, namespace, name string) *corev1.ServiceAccount {
	t.Helper()
	var sa corev1.ServiceAccount
	c.Create(t, "/api/v1/namespaces/"+namespace+"/serviceaccounts", &corev1.ServiceAccount{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
	}, &sa)
	return &sa
}

// Token mints a token for a ServiceAccount through the TokenRequest API (POST
// .../serviceaccounts/NAME/token), as the kubelet does for a pod's projected volume.
// An empty spec.Audiences means the API server's audiences; spec.ExpirationSeconds nil
// means an hour.
func (c *Cluster) Token(t testing.TB, namespace, name string, spec authenticationv1.TokenRequestSpec) string {
	t.Helper()
	tok, err := c.TryToken(namespace, name, spec)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	return tok
}

// TryToken is Token for a goroutine other than the test's, and for a request that may
// be refused.
func (c *Cluster) TryToken(namespace, name string, spec authenticationv1.TokenRequestSpec) (string, error) {
	var tr authenticationv1.TokenRequest
	err := c.Do(http.MethodPost, "/api/v1/namespaces/"+namespace+"/serviceaccounts/"+name+"/token", &authenticationv1.TokenRequest{
		TypeMeta: metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "TokenRequest"},
		Spec:     spec,
	}, &tr)
	if err != nil {
		return "", err
	}
	if tr.Status.Token == "" {
		return "", errors.New("kubetest: a TokenRequest answered without a token")
	}
	return tr.Status.Token, nil
}

// Restart stops the API server and starts it again with o, on the same port and etcd,
// with the same PKI and signing keys, and returns once it is ready.
func (c *Cluster) Restart(t testing.TB, o Options) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.opts = o.withDefaults()
	c.restartLocked(t)
}

// RotateSigningKey restarts the API server with a new signing key, as an operator
// rotates one: the new key signs, and the public keys so far stay trusted
// (--service-account-key-file, once per key), so that tokens signed before go on
// verifying until they expire, and /openid/v1/jwks publishes every trusted key.
func (c *Cluster) RotateSigningKey(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	keyFile, pubFile := c.pki.signingKey(t, fmt.Sprintf("sa-%d", len(c.keyFiles)))
	c.keyFiles, c.pubFiles = append(c.keyFiles, keyFile), append(c.pubFiles, pubFile)
	c.restartLocked(t)
}

// RetireOldKeys restarts the API server trusting the current signing key only, the
// last step of a rotation: tokens signed with an earlier key no longer authenticate,
// and /openid/v1/jwks publishes one key.
func (c *Cluster) RetireOldKeys(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.retired = len(c.pubFiles) - 1
	c.restartLocked(t)
}

func (c *Cluster) restartLocked(t testing.TB) {
	t.Helper()
	c.api.stop()
	c.admin.CloseIdleConnections()
	c.client.CloseIdleConnections()
	certFile, keyFile := filepath.Join(c.dir, "apiserver.crt"), filepath.Join(c.dir, "apiserver.key")
	if err := c.startAPI(t, certFile, keyFile); err != nil {
		t.Fatalf("kubetest: restarting kube-apiserver: %v", err)
	}
}

// process is a child process that lives until the test ends, with its output kept.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	out  *e2etest.LockedBuffer
	once sync.Once
}

// startProcess starts bin; it is killed when the test ends, and its output printed
// when the test failed.
func startProcess(t testing.TB, bin string, args ...string) (*process, error) {
	p := &process{name: filepath.Base(bin), out: &e2etest.LockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = sysProcAttr()
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s (pid %d) output, last 4000 bytes:\n%s", p.name, p.cmd.Process.Pid, tail(p.out.String(), 4000))
		}
	})
	return p, nil
}

// stop kills the process, as a crash would, and waits for it to exit.
func (p *process) stop() {
	p.once.Do(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
}

// waitFor polls ready until it returns nil, the process exits, or d passes.
func (p *process) waitFor(d time.Duration, ready func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %w\n%s", p.name, d, err, tail(p.out.String(), 3000))
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready (%s):\n%s", p.name, p.cmd.ProcessState, tail(p.out.String(), 3000))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
