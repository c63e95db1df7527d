//go:build e2e

package kubernetes

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/e2etest"
	"github.com/tokengate/tokengate/internal/kubetest"
	"github.com/tokengate/tokengate/internal/upstreamtest"
	"github.com/tokengate/tokengate/jwks/jwkstest"

	authenticationv1 "k8s.io/api/authentication/v1"
)

// The API behind the sidecar is "refunds" in namespace payments: its Service's name is
// the audience its callers request (serviceAccountToken.audience), as
// docs/kubernetes.md advises.
const apiAudience = "refunds"

// unreachableJWKS is what the API server's discovery document names as jwks_uri
// (--service-account-jwks-uri): a public address a pod cannot reach, as many clusters
// publish. The Kubernetes issuer never uses it.
const unreachableJWKS = "https://oidc.unreachable.invalid/openid/v1/jwks"

// sidecarConfig is the configuration of a sidecar in the refunds pod: a Kubernetes
// issuer that fetches from the API server with the pod's token and CA, a plain issuer
// beside it, and routes that list ServiceAccounts.
func sidecarConfig(upstream, issuer, apiServer, tokenFile, caFile, plainIssuer string) string {
	return fmt.Sprintf(`upstream: %q
issuers:
  - issuer: %q
    audiences: [%s]
    kubernetes:
      apiServer: %q
      tokenFile: %q
      caFile: %q
  - issuer: %q
    audiences: [%s]
routes:
  - match: "GET /healthz"
    public: true
  - match: "POST /refunds"
    serviceAccounts: [payments/billing]
  - match: "GET /refunds/{id}"
    serviceAccounts: [payments/*, shop/orders]
    rules:
      - name: billing-pods
        expr: 'claims["kubernetes.io"].pod.name.startsWith("billing-")'
  - match: "GET /whoami"
    scopes: []
`, upstream, issuer, apiAudience, apiServer, tokenFile, caFile, plainIssuer, apiAudience)
}

// reply is what the sidecar answered.
type reply struct {
	code      int
	challenge string // WWW-Authenticate
	body      string
}

func call(t *testing.T, url, method, path, token string, headers ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for _, h := range headers {
		name, value, _ := strings.Cut(h, ": ")
		req.Header.Add(name, value)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return reply{resp.StatusCode, resp.Header.Get("WWW-Authenticate"), string(body)}
}

// resign signs a token's claims, changed by change, with the cluster's current signing
// key under the kid of a real token signed with it: what the API server would have
// minted, but for what the test changes (TokenRequest cannot mint an expired token).
func resign(t *testing.T, c *kubetest.Cluster, real string, change func(claims map[string]any)) string {
	t.Helper()
	pemBytes, err := os.ReadFile(c.SigningKeyFile())
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		t.Fatal("the signing key file holds no PEM block")
	}
	key, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	claims := payload(t, real)
	change(claims)
	kid, _ := header(t, real)["kid"].(string)
	tok, err := jwkstest.SignJSON(&jwkstest.Key{KID: kid, Alg: "RS256", Private: key}, "RS256",
		map[string]any{"alg": "RS256", "kid": kid}, claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// probe is a token of the cluster's issuer that names a kid nobody has: the sidecar
// spends its unknown-kid budget on it (one fetch of the keys) and refuses it.
func probe(t *testing.T, c *kubetest.Cluster, n int) string {
	t.Helper()
	tok, err := jwkstest.SignJSON(throwaway, "RS256",
		map[string]any{"alg": "RS256", "kid": fmt.Sprintf("probe-%d-%d", time.Now().UnixNano(), n)},
		map[string]any{"iss": c.Issuer(), "aud": []string{apiAudience}, "sub": "system:serviceaccount:payments:billing",
			"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

var throwaway = func() *jwkstest.Key {
	k := jwkstest.MustGenerateKey("throwaway", "RS256")
	if _, ok := k.Private.(*rsa.PrivateKey); !ok {
		panic("not an RSA key")
	}
	return k
}()

// TestSidecarWithAKubernetesIssuer runs the tokengate binary as the sidecar of a pod:
// its Kubernetes issuer fetches the API server's keys with the pod's ServiceAccount
// token and the cluster's CA (files, as the projected volume has them), and it guards
// an API against tokens that the real TokenRequest API mints for ServiceAccounts of two
// namespaces. It follows a rotation of the API server's signing key, measured, and of
// the pod's token.
func TestSidecarWithAKubernetesIssuer(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{JWKSURI: unreachableJWKS})
	c.CreateNamespace(t, "payments")
	c.CreateNamespace(t, "shop")
	c.CreateServiceAccount(t, "payments", "refunds") // the API's pod, where the sidecar runs
	c.CreateServiceAccount(t, "payments", "billing") // the caller allowed to refund
	c.CreateServiceAccount(t, "shop", "orders")      // a caller of another namespace
	refundsPod, _ := scheduledPod(t, c, "payments", "refunds-0", "refunds", "node-1")
	billingPod, _ := scheduledPod(t, c, "payments", "billing-0", "billing", "node-2")
	ordersPod, _ := scheduledPod(t, c, "shop", "orders-0", "orders", "node-3")

	// Tokens as the kubelet asks for them: bound to the pod; the sidecar's own for
	// the API server's audience, the callers' for this API's.
	podToken := func() string { return c.Token(t, "payments", "refunds", boundTo(refundsPod)) }
	billing := func() string { return c.Token(t, "payments", "billing", boundTo(billingPod, apiAudience)) }
	orders := func() string { return c.Token(t, "shop", "orders", boundTo(ordersPod, apiAudience)) }

	tokenFile := filepath.Join(t.TempDir(), "token")
	firstPodToken := podToken()
	writeToken(t, tokenFile, firstPodToken)

	plain, err := jwkstest.NewServer(jwkstest.WithAudience(apiAudience))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(plain.Close)
	up := upstreamtest.Start(t)
	sc := e2etest.StartSidecar(t, e2etest.Options{
		Config: sidecarConfig(up.URL, c.Issuer(), c.URL(), tokenFile, c.CAFile(), plain.Issuer),
		Args:   []string{"--log-level", "debug"},
	})
	denials := func(reason string) float64 {
		return e2etest.Sum(sc.Metrics(t), "tokengate_decisions_total", `decision="denied"`, `reason="`+reason+`"`)
	}
	refreshes := func(labels ...string) float64 {
		return e2etest.Sum(sc.Metrics(t), "tokengate_jwks_refreshes_total", append(labels, `issuer="`+c.Issuer()+`"`)...)
	}
	// expect sends a request and checks its status and, for a denial, its reason and
	// that the upstream never saw it.
	expect := func(t *testing.T, method, path, token string, status int, reason string, headers ...string) reply {
		t.Helper()
		before, seen := denials(reason), up.Count()
		r := call(t, sc.URL, method, path, token, headers...)
		if r.code != status {
			t.Fatalf("%s %s: %d, want %d: %s %s", method, path, r.code, status, r.challenge, r.body)
		}
		if status != http.StatusOK {
			if got := denials(reason); got != before+1 {
				t.Errorf("%s %s: denials with reason %s went from %v to %v", method, path, reason, before, got)
			}
			if up.Count() != seen {
				t.Errorf("%s %s: the upstream saw a refused request", method, path)
			}
		}
		return r
	}
	billingToken := billing()

	t.Run("the keys come from the API server's own path, with the pod's token", func(t *testing.T) {
		// Anonymous requests are refused: the sidecar, ready, authenticated.
		for _, path := range []string{discoveryPath, jwksPath} {
			if code, body := get(t, c, path, ""); code != http.StatusUnauthorized {
				t.Fatalf("GET %s anonymously: %d %s", path, code, body)
			}
		}
		// Discovery names a jwks_uri that cannot be reached; the sidecar is ready all
		// the same, since it reads /openid/v1/jwks of the API server itself.
		code, body := get(t, c, discoveryPath, firstPodToken)
		var meta struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := json.Unmarshal(body, &meta); code != http.StatusOK || err != nil || meta.JWKSURI != unreachableJWKS {
			t.Fatalf("discovery: %d %s", code, body)
		}
		e2etest.Eventually(t, 10*time.Second, "the issuer check's log line", func() bool {
			return strings.Contains(sc.Log(), "the issuer is the one the server's discovery document names")
		})
		if !strings.Contains(sc.Log(), `"source":"`+c.URL()+jwksPath+`"`) {
			t.Errorf("the keys were not loaded from %s:\n%s", c.URL()+jwksPath, sc.Log())
		}
		if n := refreshes(`result="error"`); n != 0 {
			t.Errorf("%v failed fetches", n)
		}
	})

	t.Run("the allowed ServiceAccount gets through, with its identity", func(t *testing.T) {
		// A client's own identity headers, in any spelling, never reach the upstream.
		expect(t, "POST", "/refunds", billingToken, 200, "ok",
			"X-Auth-Namespace: kube-system", "x_auth_serviceaccount: admin", "X-AUTH-SERVICEACCOUNT: root")
		h := up.Last().Header
		if got := h.Values("X-Auth-Namespace"); len(got) != 1 || got[0] != "payments" {
			t.Errorf("X-Auth-Namespace %q", got)
		}
		if got := h.Values("X-Auth-ServiceAccount"); len(got) != 1 || got[0] != "billing" {
			t.Errorf("X-Auth-ServiceAccount %q", got)
		}
		if got := h.Get("X-Auth-Subject"); got != "system:serviceaccount:payments:billing" {
			t.Errorf("X-Auth-Subject %q", got)
		}
		for name := range h {
			if n := strings.ToLower(strings.ReplaceAll(name, "_", "-")); strings.HasPrefix(n, "x-auth-") &&
				n != "x-auth-namespace" && n != "x-auth-serviceaccount" && n != "x-auth-subject" {
				t.Errorf("the upstream got %s: %q", name, h[name])
			}
		}
		// The kubernetes.io claim reaches the rules: billing-0 is a billing pod.
		expect(t, "GET", "/refunds/7", billingToken, 200, "ok")
	})

	t.Run("another namespace is refused with 403", func(t *testing.T) {
		ordersToken := orders()
		r := expect(t, "POST", "/refunds", ordersToken, 403, "rule")
		if !strings.Contains(r.body, "access_denied") {
			t.Errorf("body %s", r.body)
		}
		if !strings.Contains(sc.Log(), `"rule":"serviceAccounts"`) {
			t.Errorf("the denial's log line does not name the rule:\n%s", sc.Log())
		}
		// Listed on this route, but its pod is not a billing pod.
		expect(t, "GET", "/refunds/7", ordersToken, 403, "rule")
		// Where any valid token goes, it is forwarded as itself.
		expect(t, "GET", "/whoami", ordersToken, 200, "ok")
		if h := up.Last().Header; h.Get("X-Auth-Namespace") != "shop" || h.Get("X-Auth-ServiceAccount") != "orders" {
			t.Errorf("identity %q %q", h.Get("X-Auth-Namespace"), h.Get("X-Auth-ServiceAccount"))
		}
	})

	t.Run("a token for another audience is refused with 401", func(t *testing.T) {
		for name, tok := range map[string]string{
			"the API server's":  c.Token(t, "payments", "billing", boundTo(billingPod)),
			"another service's": c.Token(t, "payments", "billing", boundTo(billingPod, "payments-api")),
		} {
			r := expect(t, "POST", "/refunds", tok, 401, "audience")
			if !strings.Contains(r.challenge, `error="invalid_token"`) {
				t.Errorf("%s: WWW-Authenticate %q", name, r.challenge)
			}
		}
	})

	t.Run("an expired token is refused with 401", func(t *testing.T) {
		// Signed with the cluster's own key and kid: the claims of a real token, two
		// hours older.
		expired := resign(t, c, billingToken, func(m map[string]any) {
			past := time.Now().Add(-2 * time.Hour).Unix()
			m["iat"], m["nbf"], m["exp"] = past, past, past+3600
		})
		r := expect(t, "POST", "/refunds", expired, 401, "expired")
		if !strings.Contains(r.challenge, `error="invalid_token"`) || !strings.Contains(r.challenge, "expired") {
			t.Errorf("WWW-Authenticate %q", r.challenge)
		}
		// The same claims re-signed with the current times pass: only the times
		// differed.
		fresh := resign(t, c, billingToken, func(map[string]any) {})
		expect(t, "POST", "/refunds", fresh, 200, "ok")
	})

	t.Run("a token of the cluster that is not a workload's is refused with 401", func(t *testing.T) {
		for name, change := range map[string]func(map[string]any){
			"a malformed sub": func(m map[string]any) { m["sub"] = "system:serviceaccount:payments:Billing" },
			"the group form":  func(m map[string]any) { m["sub"] = "system:serviceaccounts:payments" },
			"an extra part":   func(m map[string]any) { m["sub"] = "system:serviceaccount:payments:billing:admin" },
			"a claim of another namespace": func(m map[string]any) {
				m["kubernetes.io"].(map[string]any)["namespace"] = "kube-system"
			},
			"no kubernetes.io claim": func(m map[string]any) { delete(m, "kubernetes.io") },
		} {
			tok := resign(t, c, billingToken, change)
			r := expect(t, "GET", "/whoami", tok, 401, "claims")
			if !strings.Contains(r.challenge, `error="invalid_token"`) {
				t.Errorf("%s: WWW-Authenticate %q", name, r.challenge)
			}
		}
	})

	t.Run("another issuer's token cannot name a ServiceAccount", func(t *testing.T) {
		tok := plain.MustMint(jwkstest.Claims{"sub": "system:serviceaccount:payments:billing"})
		expect(t, "POST", "/refunds", tok, 403, "rule")
		if !strings.Contains(sc.Log(), "the token's issuer is not a Kubernetes cluster the allow list trusts") {
			t.Errorf("the log does not say why:\n%s", sc.Log())
		}
		expect(t, "GET", "/whoami", tok, 200, "ok")
		if h := up.Last().Header; h.Get("X-Auth-Namespace") != "" || h.Get("X-Auth-ServiceAccount") != "" {
			t.Errorf("a plain issuer's token got a workload's identity: %q %q", h.Get("X-Auth-Namespace"), h.Get("X-Auth-ServiceAccount"))
		}
	})

	// How long the sidecar takes to accept a token of a new signing key, from the
	// moment the API server publishes the key, with the default refresh settings
	// (refresh.unknownKidEvery 30s, unknownKidWait 2s, and the API server's
	// Cache-Control max-age of an hour for scheduled fetches).
	follow := func(t *testing.T) (since time.Duration, refused int, tok string) {
		t.Helper()
		tok = billing() // signed with the new key
		kid, _ := header(t, tok)["kid"].(string)
		code, body := get(t, c, jwksPath, firstPodToken)
		if code != http.StatusOK || !strings.Contains(string(body), kid) {
			t.Fatalf("the API server does not publish the new key %s: %d %s", kid, code, body)
		}
		published := time.Now()
		for {
			r := call(t, sc.URL, "POST", "/refunds", tok)
			if r.code == http.StatusOK {
				return time.Since(published), refused, tok
			}
			if r.code != http.StatusUnauthorized || !strings.Contains(r.body, "invalid_token") {
				t.Fatalf("a token of the new key: %d %s", r.code, r.body)
			}
			refused++
			if time.Since(published) > 70*time.Second {
				t.Fatalf("a token of the new key still refused %s after the key was published", time.Since(published))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	t.Run("a rotation of the API server's signing key is followed", func(t *testing.T) {
		fetches := refreshes(`trigger="unknown_kid"`)
		c.RotateSigningKey(t)
		took, refused, _ := follow(t)
		t.Logf("ROTATION FOLLOWED: the first token of the new key was allowed %s after the API server published the key (%d refused before; %v unknown-kid fetch)",
			took.Round(time.Millisecond), refused, refreshes(`trigger="unknown_kid"`)-fetches)
		if refused != 0 {
			t.Errorf("with the unknown-kid budget unspent, the first token of the new key was refused %d times", refused)
		}
		// A token of the old key, still published, still passes.
		expect(t, "POST", "/refunds", billingToken, 200, "ok")
	})

	t.Run("a rotation right after the unknown-kid budget was spent is followed within unknownKidEvery", func(t *testing.T) {
		// The worst case: a token naming an unknown kid (here a probe; in life any
		// client's, or a flood) spent the one fetch per 30 s just before the API
		// server restarted with a new key.
		if r := call(t, sc.URL, "GET", "/whoami", probe(t, c, 0)); r.code != http.StatusUnauthorized {
			t.Fatalf("a probe: %d %s", r.code, r.body)
		}
		spent := time.Now()
		c.RotateSigningKey(t)
		took, refused, _ := follow(t)
		t.Logf("ROTATION FOLLOWED, WORST CASE: the first token of the new key was allowed %s after the API server published the key, %s after the budget was spent (%d refused before)",
			took.Round(time.Millisecond), time.Since(spent).Round(time.Millisecond), refused)
		if took > 30*time.Second+5*time.Second {
			t.Errorf("followed after %s, more than unknownKidEvery (30s) and a margin", took)
		}
	})

	t.Run("the old keys retired, the kubelet's new token is used at the next fetch", func(t *testing.T) {
		// The pod's token was signed with the first key, which the API server no longer
		// trusts: its fetches are refused, and the sidecar keeps its last good keys.
		c.RetireOldKeys(t)
		fetchUntil := func(what string, cond func() bool) {
			t.Helper()
			deadline := time.Now().Add(70 * time.Second)
			for n := 1; !cond(); n++ {
				if time.Now().After(deadline) {
					t.Fatalf("timed out waiting for %s", what)
				}
				// Each probe asks for a fetch; one per unknownKidEvery is made.
				call(t, sc.URL, "GET", "/whoami", probe(t, c, n))
				time.Sleep(500 * time.Millisecond)
			}
		}
		failed := refreshes(`result="error"`)
		fetchUntil("a fetch refused by the API server", func() bool { return refreshes(`result="error"`) > failed })
		if !strings.Contains(sc.Log(), "status 401") {
			t.Errorf("the refused fetch was not logged:\n%s", sc.Log())
		}
		expect(t, "POST", "/refunds", billing(), 200, "ok") // the last good keys
		rotated := time.Now()
		writeToken(t, tokenFile, podToken()) // the kubelet's rotation
		updated := refreshes(`result="updated"`)
		fetchUntil("a fetch with the new token", func() bool { return refreshes(`result="updated"`) > updated })
		t.Logf("the rotated token file was used by the next fetch the budget allowed, %s after it was written", time.Since(rotated).Round(time.Millisecond))
		if n := e2etest.Sum(sc.Metrics(t), "tokengate_jwks_keys", `issuer="`+c.Issuer()+`"`); n != 1 {
			t.Errorf("%v keys after the retirement, want 1", n)
		}
		expect(t, "POST", "/refunds", billingToken, 401, "unknown_key") // of the retired key
		expect(t, "POST", "/refunds", billing(), 200, "ok")
	})

	t.Run("no log line holds a token", func(t *testing.T) {
		for _, line := range strings.Split(sc.Log(), "\n") {
			if strings.Contains(line, "eyJ") {
				t.Errorf("a log line holds a token: %s", line)
			}
		}
	})
}

// A sidecar configured with an issuer that is not the cluster's says so at start, with
// both values: the keys load, and every token of the cluster would be refused.
func TestSidecarWithTheWrongKubernetesIssuer(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{})
	c.CreateNamespace(t, "payments")
	c.CreateServiceAccount(t, "payments", "refunds")
	c.CreateServiceAccount(t, "payments", "billing")
	tokenFile := filepath.Join(t.TempDir(), "token")
	writeToken(t, tokenFile, c.Token(t, "payments", "refunds", authenticationv1.TokenRequestSpec{}))
	plain, err := jwkstest.NewServer(jwkstest.WithAudience(apiAudience))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(plain.Close)
	up := upstreamtest.Start(t)
	const wrong = "https://kubernetes.default.svc" // the API server's name, not its issuer
	sc := e2etest.StartSidecar(t, e2etest.Options{Config: sidecarConfig(up.URL, wrong, c.URL(), tokenFile, c.CAFile(), plain.Issuer)})
	e2etest.Eventually(t, 10*time.Second, "the issuer check's error", func() bool {
		return strings.Contains(sc.Log(), `"configured":"`+wrong+`","discovered":"`+c.Issuer()+`"`)
	})
	r := call(t, sc.URL, "POST", "/refunds", c.Token(t, "payments", "billing", authenticationv1.TokenRequestSpec{Audiences: []string{apiAudience}}))
	if r.code != http.StatusUnauthorized {
		t.Fatalf("a token of the cluster with the wrong issuer configured: %d %s", r.code, r.body)
	}
	for _, line := range strings.Split(sc.Log(), "\n") {
		if strings.Contains(line, "the configured issuer is not the one") {
			t.Logf("%s", line)
		}
	}
}
