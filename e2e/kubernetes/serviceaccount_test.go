//go:build e2e

// Package kubernetes tests projected ServiceAccount tokens against a real kube-apiserver
// and etcd (internal/kubetest): what the API server's issuer discovery answers, to
// whom, and the tokens it mints (issue 16); and jwks fetching its keys with a
// ServiceAccount token, as the Kubernetes issuer does from a pod.
package kubernetes

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/internal/kubetest"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The paths of a Kubernetes API server's ServiceAccount issuer discovery.
const (
	discoveryPath = "/.well-known/openid-configuration"
	jwksPath      = "/openid/v1/jwks"
)

// get GETs path from the API server with token as a bearer token ("" for none), and
// returns the status and body.
func get(t *testing.T, c *kubetest.Cluster, path, token string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, c.URL()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// payload decodes a JWT's claims, unverified.
func payload(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS compact serialization: %d parts", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

// header decodes a JWT's protected header.
func header(t *testing.T, token string) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

// pretty is v as indented JSON, for the log.
func pretty(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}

// scheduledPod creates a node and a pod of serviceAccount bound to it, as the
// scheduler would have: what a token is bound to when the kubelet asks for one.
func scheduledPod(t *testing.T, c *kubetest.Cluster, namespace, name, serviceAccount, node string) (*corev1.Pod, *corev1.Node) {
	t.Helper()
	var n corev1.Node
	c.Create(t, "/api/v1/nodes", &corev1.Node{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
		ObjectMeta: metav1.ObjectMeta{Name: node},
	}, &n)
	var p corev1.Pod
	c.Create(t, "/api/v1/namespaces/"+namespace+"/pods", &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: corev1.PodSpec{
			NodeName:           node,
			ServiceAccountName: serviceAccount,
			Containers:         []corev1.Container{{Name: "api", Image: "orders:1.4"}},
		},
	}, &p)
	return &p, &n
}

// boundTo is a TokenRequest spec bound to pod, as the kubelet asks for a projected
// volume's token.
func boundTo(pod *corev1.Pod, audiences ...string) authenticationv1.TokenRequestSpec {
	return authenticationv1.TokenRequestSpec{
		Audiences:      audiences,
		BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}
}

// TestIssuerDiscoveryFacts establishes what issue 16's Kubernetes issuer relies on, on a
// real API server configured as a cluster is: who may read the discovery document and
// the key set, what the document says, and what a minted token holds.
func TestIssuerDiscoveryFacts(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{})
	c.CreateNamespace(t, "shop")
	c.CreateNamespace(t, "billing")
	orders := c.CreateServiceAccount(t, "shop", "orders")
	c.CreateServiceAccount(t, "billing", "ledger")
	pod, node := scheduledPod(t, c, "shop", "orders-0", "orders", "node-1")

	apiToken := c.Token(t, "shop", "orders", boundTo(pod)) // the API server's audience
	ledgerToken := c.Token(t, "billing", "ledger", authenticationv1.TokenRequestSpec{})
	otherToken := c.Token(t, "shop", "orders", boundTo(pod, "https://orders.shop.example"))

	t.Run("anonymous requests are refused with 401 when anonymous auth is off", func(t *testing.T) {
		for _, path := range []string{discoveryPath, jwksPath} {
			code, body := get(t, c, path, "")
			if code != http.StatusUnauthorized {
				t.Errorf("GET %s anonymously: %d %s", path, code, body)
			}
			t.Logf("GET %s anonymously: %d %s", path, code, body)
		}
	})

	var meta struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	var jwks struct {
		Keys []map[string]any `json:"keys"`
	}
	t.Run("a ServiceAccount token of the API's audience reads both, in any namespace", func(t *testing.T) {
		for _, tok := range []string{apiToken, ledgerToken} {
			code, body := get(t, c, discoveryPath, tok)
			if code != http.StatusOK {
				t.Fatalf("GET %s: %d %s", discoveryPath, code, body)
			}
			if err := json.Unmarshal(body, &meta); err != nil {
				t.Fatal(err)
			}
			t.Logf("GET %s: %d\n%s", discoveryPath, code, body)
			code, body = get(t, c, jwksPath, tok)
			if code != http.StatusOK {
				t.Fatalf("GET %s: %d %s", jwksPath, code, body)
			}
			if err := json.Unmarshal(body, &jwks); err != nil {
				t.Fatal(err)
			}
			t.Logf("GET %s: %d\n%s", jwksPath, code, body)
		}
		if meta.Issuer != c.Issuer() {
			t.Errorf("the document's issuer is %q, not the configured %q", meta.Issuer, c.Issuer())
		}
		// The API server names its own address, not the issuer's host: a pod that
		// follows jwks_uri dials whatever address the API server advertises.
		if want := c.URL() + jwksPath; meta.JWKSURI != want {
			t.Errorf("jwks_uri = %q, want %q", meta.JWKSURI, want)
		}
		if len(jwks.Keys) != 1 || jwks.Keys[0]["kid"] != header(t, apiToken)["kid"] || jwks.Keys[0]["alg"] != "RS256" || jwks.Keys[0]["use"] != "sig" {
			t.Errorf("keys = %v, want the one RS256 signing key whose kid the token names", jwks.Keys)
		}
	})

	t.Run("a token of another audience does not authenticate to the API server", func(t *testing.T) {
		code, body := get(t, c, jwksPath, otherToken)
		if code != http.StatusUnauthorized {
			t.Errorf("GET %s with a token for another audience: %d %s", jwksPath, code, body)
		}
		t.Logf("GET %s with a token for another audience: %d %s", jwksPath, code, body)
	})

	t.Run("a minted token's claims", func(t *testing.T) {
		claims := payload(t, apiToken)
		t.Logf("header of a token bound to pod shop/orders-0:\n%s\npayload:\n%s", pretty(header(t, apiToken)), pretty(claims))
		k8s, _ := claims["kubernetes.io"].(map[string]any)
		sa, _ := k8s["serviceaccount"].(map[string]any)
		p, _ := k8s["pod"].(map[string]any)
		n, _ := k8s["node"].(map[string]any)
		aud, _ := claims["aud"].([]any)
		switch {
		case claims["iss"] != c.Issuer():
			t.Errorf("iss = %v", claims["iss"])
		case claims["sub"] != "system:serviceaccount:shop:orders":
			t.Errorf("sub = %v", claims["sub"])
		case len(aud) != 1 || aud[0] != c.Issuer():
			t.Errorf("aud = %v, want the API audiences, which default to the issuer", claims["aud"])
		case k8s["namespace"] != "shop":
			t.Errorf("kubernetes.io.namespace = %v", k8s["namespace"])
		case sa["name"] != "orders" || sa["uid"] != string(orders.UID):
			t.Errorf("kubernetes.io.serviceaccount = %v, want orders %s", sa, orders.UID)
		case p["name"] != pod.Name || p["uid"] != string(pod.UID):
			t.Errorf("kubernetes.io.pod = %v, want %s %s", p, pod.Name, pod.UID)
		case n["name"] != node.Name || n["uid"] != string(node.UID):
			t.Errorf("kubernetes.io.node = %v, want %s %s", n, node.Name, node.UID)
		}
		for _, name := range []string{"exp", "iat", "nbf", "jti"} {
			if _, ok := claims[name]; !ok {
				t.Errorf("no %s claim", name)
			}
		}
		if got := payload(t, otherToken)["aud"].([]any); len(got) != 1 || got[0] != "https://orders.shop.example" {
			t.Errorf("aud of a token requested for another audience = %v", got)
		}
		if got := payload(t, ledgerToken); got["sub"] != "system:serviceaccount:billing:ledger" || got["kubernetes.io"].(map[string]any)["pod"] != nil {
			t.Errorf("an unbound token of billing/ledger: %s", pretty(got))
		}
	})

	t.Run("anonymous requests are refused with 403 when anonymous auth is on", func(t *testing.T) {
		c.Restart(t, kubetest.Options{AnonymousAuth: true})
		// Anonymous requests are authenticated now: the public-info role lets them read
		// /version. The discovery role is bound to system:serviceaccounts only.
		if code, body := get(t, c, "/version", ""); code != http.StatusOK {
			t.Fatalf("GET /version anonymously with anonymous auth on: %d %s", code, body)
		}
		for _, path := range []string{discoveryPath, jwksPath} {
			code, body := get(t, c, path, "")
			if code != http.StatusForbidden {
				t.Errorf("GET %s anonymously: %d %s", path, code, body)
			}
			t.Logf("GET %s anonymously: %d %s", path, code, body)
		}
		var binding struct {
			Subjects []map[string]string `json:"subjects"`
		}
		if err := c.Do(http.MethodGet, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/system:service-account-issuer-discovery", nil, &binding); err != nil {
			t.Fatal(err)
		}
		if len(binding.Subjects) != 1 || binding.Subjects[0]["kind"] != "Group" || binding.Subjects[0]["name"] != "system:serviceaccounts" {
			t.Errorf("the default binding of system:service-account-issuer-discovery: %v", binding.Subjects)
		}
		if code, body := get(t, c, jwksPath, apiToken); code != http.StatusOK {
			t.Errorf("GET %s with the token after the restart: %d %s", jwksPath, code, body)
		}
	})
}
