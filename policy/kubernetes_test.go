package policy_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/middleware"
	"github.com/tokengate/tokengate/policy"
	"github.com/tokengate/tokengate/serviceaccount"
)

// inlineJWKS is a key set of one ES256 key, written as a configuration file holds it.
const inlineJWKS = `{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","use":"sig","alg":"ES256","x":"h7vQPkqloAqtK2fxhBt2QTzwJcBD4jlb_k8TTPwEXSo","y":"LcjP8v06lTIVtEUObY_OqAuBSSPL4LpXmjHX3Yq4neY"}]}`

const cluster = "https://kubernetes.default.svc.cluster.local"

// podFiles writes what a pod has mounted: its ServiceAccount token and the cluster's
// CA, and returns their paths.
func podFiles(t *testing.T) (tokenFile, caFile string) {
	t.Helper()
	dir := t.TempDir()
	tokenFile, caFile = filepath.Join(dir, "token"), filepath.Join(dir, "ca.crt")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubernetes"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokenFile, []byte("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return tokenFile, caFile
}

// kubeFile is a configuration with a cluster's issuer (its kubernetes block given),
// a plain issuer, and routes, one with an allow list.
func kubeFile(block string) string {
	return `upstream: http://127.0.0.1:8080
issuers:
  - issuer: ` + cluster + `
    audiences: [orders]
` + block + `  - issuer: https://auth.example.com
    audiences: [https://orders.example.com]
routes:
  - match: "POST /refunds"
    serviceAccounts: [payments/billing, monitoring/*]
  - match: /
`
}

func TestKubernetesInCluster(t *testing.T) {
	token, ca := podFiles(t)
	l, err := policy.Load("t.yaml", []byte(kubeFile(`    kubernetes:
      apiServer: https://10.0.0.1:6443/
      tokenFile: `+token+`
      caFile: `+ca+`
`)), policy.ForProxy, policy.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	k := l.Gate.Issuers[0]
	// The API server's own path, never discovery's jwks_uri host; its discovery
	// document only to check the issuer; the pod's token and CA.
	if k.JWKSURI != "https://10.0.0.1:6443/openid/v1/jwks" || k.IssuerCheckURL != "https://10.0.0.1:6443/.well-known/openid-configuration" ||
		k.BearerTokenFile != token || k.CAFile != ca || k.Issuer != cluster || !slices.Equal(k.Audiences, []string{"orders"}) {
		t.Errorf("the cluster's issuer: %+v", k)
	}
	if len(k.Checks) != 1 {
		t.Errorf("the cluster's issuer has %d checks, want the workload check", len(k.Checks))
	}
	plain := l.Gate.Issuers[1]
	if len(plain.Checks) != 0 || plain.BearerTokenFile != "" || plain.JWKSURI != "" {
		t.Errorf("the plain issuer: %+v", plain)
	}
	// The cache keeps the kubernetes.io claim.
	if !slices.Contains(l.Gate.Tokens.KeepClaims, serviceaccount.ClaimName) {
		t.Errorf("KeepClaims %v", l.Gate.Tokens.KeepClaims)
	}
	// The allow list is the route's first rule; the other route has none.
	if r := l.Gate.Routes[0].Rules; len(r) != 1 || r[0].Name() != "serviceAccounts" {
		t.Errorf("the allow list's rule: %v", r)
	}
	if len(l.Gate.Routes[1].Rules) != 0 {
		t.Errorf("a route without serviceAccounts has rules: %v", l.Gate.Routes[1].Rules)
	}
	if err := middleware.Validate(l.Gate); err != nil {
		t.Fatal(err)
	}
}

// The allow list reads sub only from the cluster's tokens; the identity headers come
// from them only, and clients cannot send them.
func TestKubernetesRulesAndHeaders(t *testing.T) {
	l, err := policy.Load("t.yaml", []byte(kubeFile("    kubernetes: {source: public}\n")), policy.ForProxy, policy.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	rule := l.Gate.Routes[0].Rules[0]
	r, _ := http.NewRequest("POST", "/refunds", nil)
	for _, tc := range []struct {
		name, iss, sub string
		allow          bool
		err            error
	}{
		{"listed", cluster, "system:serviceaccount:payments:billing", true, nil},
		{"its namespace listed", cluster, "system:serviceaccount:monitoring:prometheus", true, nil},
		{"not listed", cluster, "system:serviceaccount:shop:orders", false, nil},
		{"a plain issuer's token naming a listed one", "https://auth.example.com", "system:serviceaccount:payments:billing", false, serviceaccount.ErrOtherIssuer},
	} {
		allow, err := rule.Allow(r, &middleware.Claims{Issuer: tc.iss, Subject: tc.sub})
		if allow != tc.allow || !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
			t.Errorf("%s: %v, %v", tc.name, allow, err)
		}
	}

	id := l.Identity()
	if got := strings.Join(id.Headers(), " "); got != "X-Auth-Client-Id X-Auth-Scopes X-Auth-Subject X-Auth-Namespace X-Auth-Serviceaccount" {
		t.Errorf("Headers() = %s", got)
	}
	for _, tc := range []struct {
		name, iss, sub string
		ns, sa         string
	}{
		{"a workload", cluster, "system:serviceaccount:payments:billing", "payments", "billing"},
		{"a plain issuer's token", "https://auth.example.com", "system:serviceaccount:payments:billing", "", ""},
		// The workload check refuses such a token first; the headers do not rely on it.
		{"a cluster's token whose sub is not a ServiceAccount's", cluster, "system:node:node-1", "", ""},
	} {
		h := http.Header{"X-Auth-Namespace": {"kube-system"}, "X_auth_serviceaccount": {"admin"}}
		id.StripInbound(h)
		id.Set(h, &middleware.Claims{Issuer: tc.iss, Subject: tc.sub})
		if got := h.Values("X-Auth-Namespace"); strings.Join(got, ",") != tc.ns {
			t.Errorf("%s: X-Auth-Namespace %q, want %q", tc.name, got, tc.ns)
		}
		if got := h.Values("X-Auth-Serviceaccount"); strings.Join(got, ",") != tc.sa {
			t.Errorf("%s: X-Auth-ServiceAccount %q, want %q", tc.name, got, tc.sa)
		}
		if _, ok := h["X_auth_serviceaccount"]; ok {
			t.Errorf("%s: a client's header in another spelling stayed", tc.name)
		}
	}

	// Renamed, and one turned off.
	l, err = policy.Load("t.yaml", []byte(kubeFile("    kubernetes: {source: public}\n")+"forward:\n  kubernetes: {namespace: X-Namespace, serviceAccount: \"\"}\n"), policy.ForProxy, policy.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	// A client's X-Auth-ServiceAccount is still removed: a header turned off is not
	// one that a client may now set (the API may read it whatever this file says).
	h := http.Header{"X-Namespace": {"spoofed"}, "X-Auth-Serviceaccount": {"admin"}}
	l.Identity().StripInbound(h)
	l.Identity().Set(h, &middleware.Claims{Issuer: cluster, Subject: "system:serviceaccount:payments:billing"})
	if len(h) != 1 || h.Get("X-Namespace") != "payments" {
		t.Errorf("headers %v", h)
	}
}

// `kubernetes:` with nothing after it is the in-cluster defaults, not a plain issuer:
// here the mounted files do not exist, and the problems say so at the block's line.
func TestKubernetesDefaults(t *testing.T) {
	for name, block := range map[string]string{"{}": "    kubernetes: {}\n", "empty": "    kubernetes:\n", "null": "    kubernetes: null\n"} {
		t.Run(name, func(t *testing.T) {
			_, err := policy.Load("t.yaml", []byte(kubeFile(block)), policy.ForProxy, policy.Overrides{})
			for _, want := range []string{
				"t.yaml:5: issuers[0].kubernetes.tokenFile: cannot be read: open " + policy.DefaultTokenFile,
				"t.yaml:5: issuers[0].kubernetes.caFile: cannot be read: open " + policy.DefaultCAFile,
			} {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q:\n%v", want, err)
				}
			}
		})
	}
}

func TestKubernetesStaticKeys(t *testing.T) {
	jwksFile := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwksFile, []byte(inlineJWKS), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, block := range map[string]string{
		"inline": "    jwks: '" + inlineJWKS + "'\n    kubernetes: {}\n",
		"file":   "    jwksFile: " + jwksFile + "\n    kubernetes: {}\n",
	} {
		t.Run(name, func(t *testing.T) {
			l, err := policy.Load("t.yaml", []byte(kubeFile(block)), policy.ForProxy, policy.Overrides{})
			if err != nil {
				t.Fatal(err)
			}
			k := l.Gate.Issuers[0]
			if k.JWKSURI != "" || k.BearerTokenFile != "" || k.IssuerCheckURL != "" || len(k.Checks) != 1 || (k.JWKS == "") == (k.JWKSFile == "") {
				t.Errorf("%+v", k)
			}
		})
	}
}

func TestKubernetesProblems(t *testing.T) {
	token, ca := podFiles(t)
	files := "      tokenFile: " + token + "\n      caFile: " + ca + "\n"
	for _, tc := range []struct {
		name, file string
		want       []string
	}{
		{"jwksURI", kubeFile("    jwksURI: https://10.0.0.1/openid/v1/jwks\n    kubernetes:\n" + files),
			[]string{"t.yaml:5: issuers[0].jwksURI: an issuer with kubernetes takes its keys from kubernetes.source"}},
		{"a source and a file", kubeFile("    jwksFile: /x.json\n    kubernetes: {source: inCluster}\n"),
			[]string{`t.yaml:6: issuers[0].kubernetes.source: "inCluster": the keys come from jwksFile; remove one or the other`}},
		{"unknown source", kubeFile("    kubernetes: {source: cluster}\n"),
			[]string{`t.yaml:5: issuers[0].kubernetes.source: "cluster": use inCluster`}},
		{"in-cluster keys with public", kubeFile("    kubernetes: {source: public, tokenFile: /t}\n"),
			[]string{"t.yaml:5: issuers[0].kubernetes.tokenFile: is read only with kubernetes.source: inCluster"}},
		{"caFile beside the block", kubeFile("    caFile: " + ca + "\n    kubernetes:\n" + files),
			[]string{"t.yaml:5: issuers[0].caFile: with kubernetes.source inCluster the API server's CA is kubernetes.caFile"}},
		{"plain http to the API server", kubeFile("    kubernetes:\n      apiServer: http://10.0.0.1\n" + files),
			[]string{`t.yaml:6: issuers[0].kubernetes.apiServer: "http://10.0.0.1": the pod's token goes to it, so it must be https`}},
		{"a CA file without certificates", kubeFile("    kubernetes:\n      tokenFile: " + token + "\n      caFile: " + token + "\n"),
			[]string{"t.yaml:7: issuers[0].kubernetes.caFile: " + token + " holds no PEM certificate"}},
		{"a token file without a token", kubeFile("    kubernetes:\n      tokenFile: " + ca + "\n      caFile: " + ca + "\n"),
			[]string{"t.yaml:6: issuers[0].kubernetes.tokenFile: " + ca + " does not hold one bearer token"}},
		{"an inline key set without a usable key", kubeFile(`    jwks: '{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}'` + "\n    kubernetes: {}\n"),
			[]string{"t.yaml:5: issuers[0].jwks: the document holds no usable signing key (1 skipped); key 0: symmetric"}},
		{"an inline key set and a file", kubeFile("    jwks: '" + inlineJWKS + "'\n    jwksFile: /x\n    kubernetes: {}\n"),
			[]string{"t.yaml:5: issuers[0].jwks: set one of jwksURI, jwksFile and jwks"}},
		{"malformed entries", strings.Replace(kubeFile("    kubernetes: {source: public}\n"), "[payments/billing, monitoring/*]", "[payments/billing, \"*/billing\", Payments/x, payments/billing]", 1),
			[]string{
				`t.yaml:10: routes[0].serviceAccounts[1]: "*/billing": the namespace cannot be a wildcard (write namespace/name or namespace/*)`,
				`t.yaml:10: routes[0].serviceAccounts[2]: "Payments/x": namespace: byte 0 is not a lower-case letter`,
				`t.yaml:10: routes[0].serviceAccounts[3]: "payments/billing": entry 0 is the same`,
			}},
		{"an empty list", strings.Replace(kubeFile("    kubernetes: {source: public}\n"), "[payments/billing, monitoring/*]", "[]", 1),
			[]string{"t.yaml:10: routes[0].serviceAccounts: is empty, which would refuse every token"}},
		{"on a public route", strings.Replace(kubeFile("    kubernetes: {source: public}\n"), "serviceAccounts:", "public: true\n    serviceAccounts:", 1),
			[]string{"t.yaml:11: routes[0].serviceAccounts: a public route needs no token"}},
		{"no cluster", kubeFile("") + "forward:\n  kubernetes: {namespace: X-Ns}\n",
			[]string{
				"t.yaml:9: routes[0].serviceAccounts: no issuer has kubernetes",
				"t.yaml:12: forward.kubernetes: is set, but no issuer has kubernetes",
			}},
		{"the API server's audiences", strings.Replace(kubeFile("    kubernetes:\n      apiServer: https://10.0.0.1:6443/\n"+files), "audiences: [orders]", "audiences: [orders, "+cluster+"/, https://kubernetes.default.svc, 'https://10.0.0.1:6443']", 1),
			[]string{
				`t.yaml:4: issuers[0].audiences[1]: "` + cluster + `/" is the API server's own audience: every pod's default token would be accepted`,
				`t.yaml:4: issuers[0].audiences[2]: "https://kubernetes.default.svc" is the API server's own audience`,
				`t.yaml:4: issuers[0].audiences[3]: "https://10.0.0.1:6443" is the API server's own audience`,
			}},
		{"a header twice", kubeFile("    kubernetes: {source: public}\n") + "forward:\n  kubernetes: {namespace: X-Auth-Subject, serviceAccount: Host}\n",
			[]string{
				`t.yaml:13: forward.kubernetes.namespace: header "X-Auth-Subject" is also used for claim "sub"`,
				`t.yaml:13: forward.kubernetes.serviceAccount: "Host" is a header the proxy manages`,
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := policy.Load("t.yaml", []byte(tc.file), policy.ForProxy, policy.Overrides{})
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// The kubernetes.io claim reaches the headers: whole, as a claim header, and a part of
// it through a value (rules read it as values do; e2e/kubernetes runs one).
func TestKubernetesClaimInHeaders(t *testing.T) {
	l, err := policy.Load("t.yaml", []byte(kubeFile("    kubernetes: {source: public}\n")+`forward:
  claims: {sub: X-Auth-Subject, kubernetes.io: X-Auth-Workload}
  values: [{header: X-Auth-Pod, expr: 'string(claims["kubernetes.io"].pod.name)'}]
`), policy.ForProxy, policy.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	c := claimsJSON(t, `{"iss":"`+cluster+`","sub":"system:serviceaccount:payments:billing","kubernetes.io":{"namespace":"payments","serviceaccount":{"name":"billing","uid":"u1"},"pod":{"name":"billing-0","uid":"u2"}}}`)
	h := http.Header{}
	l.Identity().Set(h, c)
	if got := h.Get("X-Auth-Workload"); got != `{"namespace":"payments"%2C"serviceaccount":{"name":"billing"%2C"uid":"u1"}%2C"pod":{"name":"billing-0"%2C"uid":"u2"}}` {
		t.Errorf("X-Auth-Workload %s", got)
	}
	if h.Get("X-Auth-Pod") != "billing-0" || h.Get("X-Auth-Namespace") != "payments" {
		t.Errorf("headers %v", h)
	}
	if !slices.Contains(l.Gate.Tokens.KeepClaims, "kubernetes.io") {
		t.Errorf("KeepClaims %v", l.Gate.Tokens.KeepClaims)
	}
}
