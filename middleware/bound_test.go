package middleware_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/dpop/dpoptest"
	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/jwks/jwkstest"
	"github.com/tokengate/tokengate/middleware"
)

const externalURL = "https://api.example.com"

// dpopEnv is an env whose issuer has DPoP in mode, with the client whose key its
// DPoP-bound tokens are bound to.
func dpopEnv(t *testing.T, mode middleware.DPoPMode, mut func(*middleware.Config)) (*env, *dpoptest.Client) {
	t.Helper()
	e := newEnv(t, func(c *middleware.Config) {
		c.ExternalURL = externalURL
		c.Issuers[0].DPoP = mode
		if mut != nil {
			mut(c)
		}
	})
	return e, dpoptest.MustNewClient("ES256")
}

// boundToken is a token with orders:read bound to the client's key.
func boundToken(e *env, c *dpoptest.Client) string {
	return e.as.MustMint(jwkstest.Claims{"scope": "orders:read", "cnf": map[string]any{"jkt": c.JKT()}})
}

func dpopAuth(tok string) string  { return "Authorization: DPoP " + tok }
func proofHeader(p string) string { return "DPoP: " + p }

// TestDPoPAttacks is docs/standards.md's DPoP table: each row an attack on a
// DPoP-bound token, and the reason that stops it.
func TestDPoPAttacks(t *testing.T) {
	e, client := dpopEnv(t, middleware.DPoPAllowed, nil)
	tok := boundToken(e, client)
	uri := externalURL + "/orders/1"
	other := dpoptest.MustNewClient("ES256")
	replayed := client.MustProof("GET", uri, tok, nil, nil)
	if w := e.do("GET", "/orders/1", dpopAuth(tok), proofHeader(replayed)); w.Code != 200 {
		t.Fatalf("the good proof: %d %s", w.Code, w.Header())
	}
	old := time.Now().Add(-2 * time.Minute).Unix()
	future := time.Now().Add(2 * time.Minute).Unix()
	privateJWK := client.JWK()
	privateJWK["d"] = "AAAA"

	for _, tc := range []struct {
		attack  string
		headers []string
		reason  middleware.Reason
	}{
		{"the same proof replayed", []string{dpopAuth(tok), proofHeader(replayed)}, middleware.ReasonReplay},
		{"a proof for another method", []string{dpopAuth(tok), proofHeader(client.MustProof("POST", uri, tok, nil, nil))}, middleware.ReasonDPoPProof},
		{"a proof for another URL", []string{dpopAuth(tok), proofHeader(client.MustProof("GET", externalURL+"/orders/2", tok, nil, nil))}, middleware.ReasonDPoPProof},
		{"a proof for another token (ath)", []string{dpopAuth(tok), proofHeader(client.MustProof("GET", uri, "another-token", nil, nil))}, middleware.ReasonDPoPProof},
		{"a proof without ath", []string{dpopAuth(tok), proofHeader(client.MustProof("GET", uri, "", nil, nil))}, middleware.ReasonDPoPProof},
		{"a proof signed by another key (jkt)", []string{dpopAuth(tok), proofHeader(other.MustProof("GET", uri, tok, nil, nil))}, middleware.ReasonBinding},
		{"alg none", []string{dpopAuth(tok), proofHeader(client.MustProof("GET", uri, tok, nil, dpoptest.Header{"alg": "none"}))}, middleware.ReasonDPoPProof},
		{"alg HS256", []string{dpopAuth(tok), proofHeader(client.MustProof("GET", uri, tok, nil, dpoptest.Header{"alg": "HS256"}))}, middleware.ReasonDPoPProof},
		{"a private key in jwk", []string{dpopAuth(tok), proofHeader(client.MustProof("GET", uri, tok, nil, dpoptest.Header{"jwk": privateJWK}))}, middleware.ReasonDPoPProof},
		{"a proof too old", []string{dpopAuth(tok), proofHeader(client.MustProof("GET", uri, tok, dpoptest.Claims{"iat": old}, nil))}, middleware.ReasonDPoPProof},
		{"a proof from the future", []string{dpopAuth(tok), proofHeader(client.MustProof("GET", uri, tok, dpoptest.Claims{"iat": future}, nil))}, middleware.ReasonDPoPProof},
		{"a proof typed as a JWT", []string{dpopAuth(tok), proofHeader(client.MustProof("GET", uri, tok, nil, dpoptest.Header{"typ": "JWT"}))}, middleware.ReasonDPoPProof},
		{"two DPoP headers", []string{dpopAuth(tok), proofHeader(client.MustProof("GET", uri, tok, nil, nil)), proofHeader(client.MustProof("GET", uri, tok, nil, nil))}, middleware.ReasonDPoPProof},
		{"the DPoP scheme without a proof", []string{dpopAuth(tok)}, middleware.ReasonDPoPProof},
		{"a DPoP-bound token sent as Bearer", []string{bearer(tok)}, middleware.ReasonBinding},
		{"a DPoP-bound token as Bearer with its proof", []string{bearer(tok), proofHeader(client.MustProof("GET", uri, tok, nil, nil))}, middleware.ReasonBinding},
		{"htu spoofed through Host", []string{dpopAuth(tok), "Host: evil.example", proofHeader(client.MustProof("GET", "https://evil.example/orders/1", tok, nil, nil))}, middleware.ReasonDPoPProof},
		{"htu spoofed through X-Forwarded-Host", []string{dpopAuth(tok), "X-Forwarded-Host: evil.example", "X-Forwarded-Proto: http", proofHeader(client.MustProof("GET", "http://evil.example/orders/1", tok, nil, nil))}, middleware.ReasonDPoPProof},
		{"an unbound token with the DPoP scheme", []string{dpopAuth(e.as.MustMint(jwkstest.Claims{"scope": "orders:read"})), proofHeader(client.MustProof("GET", uri, "", nil, nil))}, middleware.ReasonBinding},
	} {
		t.Run(tc.attack, func(t *testing.T) {
			before := e.api.calls.Load()
			w := e.do("GET", "/orders/1", tc.headers...)
			if w.Code != 401 {
				t.Fatalf("status %d, want 401", w.Code)
			}
			if got := e.api.calls.Load(); got != before {
				t.Fatal("the request reached the API")
			}
			if n := e.count(middleware.DecisionDenied, string(tc.reason), "GET /orders/{id}"); n == 0 {
				t.Errorf("no denial counted with reason %s; challenges %q", tc.reason, w.Header().Values("WWW-Authenticate"))
			}
		})
	}
}

// TestDPoPAllowed: a DPoP-bound token with a fresh proof per request, cached or not;
// bearer tokens still pass where DPoP is allowed.
func TestDPoPAllowed(t *testing.T) {
	e, client := dpopEnv(t, middleware.DPoPAllowed, nil)
	tok := boundToken(e, client)
	for i := range 3 {
		w := e.do("GET", "/orders/1", dpopAuth(tok), proofHeader(client.MustProof("GET", externalURL+"/orders/1", tok, nil, nil)))
		if w.Code != 200 {
			t.Fatalf("request %d: %d %q", i, w.Code, w.Header().Values("WWW-Authenticate"))
		}
	}
	if n := metricValue(e.reg, "tokengate_token_cache_requests_total", map[string]string{"result": "hit"}); n != 2 {
		t.Errorf("cache hits %v, want 2: the token is cached, its proofs are not", n)
	}
	e.api.mu.Lock()
	jkt := e.api.claims.Confirmation.JKT
	e.api.mu.Unlock()
	if jkt != client.JKT() {
		t.Errorf("Claims.Confirmation.JKT = %q, want %q", jkt, client.JKT())
	}
	if w := e.do("GET", "/orders/1", bearer(e.as.MustMint(jwkstest.Claims{"scope": "orders:read"}))); w.Code != 200 {
		t.Errorf("a bearer token where DPoP is allowed: %d", w.Code)
	}
	// Each proof's jti went through the replay store once.
	if n := metricValue(e.reg, "tokengate_replay_store_requests_total", map[string]string{"store": "memory", "result": "first_use"}); n != 3 {
		t.Errorf("replay store first uses %v, want 3", n)
	}
}

// TestDPoPRequired: a bearer token is refused (binding), and the challenge names the
// error in the DPoP challenge alone.
func TestDPoPRequired(t *testing.T) {
	e, client := dpopEnv(t, middleware.DPoPRequired, nil)
	w := e.do("GET", "/orders/1", bearer(e.as.MustMint(jwkstest.Claims{"scope": "orders:read"})))
	if w.Code != 401 || e.count(middleware.DecisionDenied, "binding", "GET /orders/{id}") != 1 {
		t.Fatalf("a bearer token where DPoP is required: %d", w.Code)
	}
	got := w.Header().Values("WWW-Authenticate")
	want := []string{`DPoP realm="orders-api", error="invalid_token", error_description="the access token is bound to a key or certificate that the request does not prove", algs="RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA"`}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("challenges\n%q\nwant\n%q", got, want)
	}
	tok := boundToken(e, client)
	if w := e.do("GET", "/orders/1", dpopAuth(tok), proofHeader(client.MustProof("GET", externalURL+"/orders/1", tok, nil, nil))); w.Code != 200 {
		t.Errorf("a DPoP-bound token where DPoP is required: %d", w.Code)
	}
}

// TestDPoPOff: a DPoP-bound token is refused (claims: a binding nobody checks), and
// the DPoP scheme is not read at all.
func TestDPoPOff(t *testing.T) {
	e := newEnv(t, nil)
	client := dpoptest.MustNewClient("ES256")
	tok := boundToken(e, client)
	if w := e.do("GET", "/orders/1", bearer(tok)); w.Code != 401 || e.count(middleware.DecisionDenied, "claims", "GET /orders/{id}") != 1 {
		t.Errorf("a DPoP-bound token where DPoP is off: %d", w.Code)
	}
	if w := e.do("GET", "/orders/1", dpopAuth(tok)); w.Code != 401 || e.count(middleware.DecisionDenied, "missing_token", "GET /orders/{id}") != 1 {
		t.Errorf("the DPoP scheme where DPoP is off: %d", w.Code)
	}
	if got := e.do("GET", "/orders/1").Header().Values("WWW-Authenticate"); len(got) != 1 || strings.Contains(got[0], "DPoP") {
		t.Errorf("challenges where DPoP is off: %q", got)
	}
}

// TestDPoPChallenges: where DPoP is allowed, a 401 carries both challenges, the error in
// the one of the scheme the client used, that one first.
func TestDPoPChallenges(t *testing.T) {
	e, client := dpopEnv(t, middleware.DPoPAllowed, nil)
	algs := `algs="RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA"`
	tok := boundToken(e, client)
	expired := e.as.MustMint(jwkstest.Claims{"exp": time.Now().Add(-time.Hour).Unix(), "iat": time.Now().Add(-2 * time.Hour).Unix()})
	for _, tc := range []struct {
		name    string
		headers []string
		want    []string
	}{
		{"no token", nil, []string{`Bearer realm="orders-api"`, `DPoP realm="orders-api", ` + algs}},
		{"expired bearer", []string{bearer(expired)}, []string{
			`Bearer realm="orders-api", error="invalid_token", error_description="the access token expired"`,
			`DPoP realm="orders-api", ` + algs}},
		{"bad proof", []string{dpopAuth(tok), proofHeader("not.a.proof")}, []string{
			`DPoP realm="orders-api", error="invalid_dpop_proof", error_description="the DPoP proof is missing, malformed or invalid", ` + algs,
			`Bearer realm="orders-api"`}},
		{"proof with another key", []string{dpopAuth(tok), proofHeader(dpoptest.MustNewClient("ES256").MustProof("GET", externalURL+"/orders/1", tok, nil, nil))}, []string{
			`DPoP realm="orders-api", error="invalid_token", error_description="the access token is bound to a key or certificate that the request does not prove", ` + algs,
			`Bearer realm="orders-api"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := e.do("GET", "/orders/1", tc.headers...).Header().Values("WWW-Authenticate")
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("challenges\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
	p := client.MustProof("GET", externalURL+"/orders/1", tok, nil, nil)
	e.do("GET", "/orders/1", dpopAuth(tok), proofHeader(p))
	w := e.do("GET", "/orders/1", dpopAuth(tok), proofHeader(p))
	if got := w.Header().Values("WWW-Authenticate"); len(got) != 2 || !strings.Contains(got[0], `error="invalid_dpop_proof", error_description="the DPoP proof was used before"`) {
		t.Errorf("a replayed proof's challenges: %q", got)
	}
	if !strings.Contains(w.Body.String(), `"invalid_dpop_proof"`) {
		t.Errorf("a replayed proof's body: %s", w.Body)
	}
}

// TestDPoPNonces: with a nonce secret, a proof without the server's nonce gets
// use_dpop_nonce and a DPoP-Nonce header, and a retry with that nonce passes; a second
// Gate with the same secret (another replica) accepts the nonce too.
func TestDPoPNonces(t *testing.T) {
	secret := []byte(strings.Repeat("s", 32))
	withNonces := func(c *middleware.Config) { c.Tokens.DPoP.NonceSecret = secret }
	e, client := dpopEnv(t, middleware.DPoPAllowed, withNonces)
	replica := newEnvFor(t, e.as, func(c *middleware.Config) {
		c.ExternalURL = externalURL
		c.Issuers[0].DPoP = middleware.DPoPAllowed
		withNonces(c)
	}, middleware.Options{})
	tok := boundToken(e, client)
	uri := externalURL + "/orders/1"
	w := e.do("GET", "/orders/1", dpopAuth(tok), proofHeader(client.MustProof("GET", uri, tok, nil, nil)))
	nonce := w.Header().Get("DPoP-Nonce")
	if w.Code != 401 || nonce == "" || e.count(middleware.DecisionDenied, "dpop_nonce", "GET /orders/{id}") != 1 {
		t.Fatalf("a proof without a nonce: %d, DPoP-Nonce %q", w.Code, nonce)
	}
	if got := w.Header().Values("WWW-Authenticate"); !strings.Contains(got[0], `DPoP realm="orders-api", error="use_dpop_nonce"`) {
		t.Errorf("challenges %q", got)
	}
	for name, at := range map[string]*env{"this replica": e, "another replica": replica} {
		w := at.do("GET", "/orders/1", dpopAuth(tok), proofHeader(client.MustProof("GET", uri, tok, dpoptest.Claims{"nonce": nonce}, nil)))
		if w.Code != 200 {
			t.Errorf("%s: a proof with the nonce: %d %q", name, w.Code, w.Header().Values("WWW-Authenticate"))
		}
	}
}

// clientCert makes a self-signed client certificate.
func clientCert(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	k := jwkstest.MustGenerateKey("", "ES256")
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	tmpl.Subject.CommonName = cn
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, k.Public(), k.Private)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k.Private}
}

func certThumbprint(der []byte) string {
	sum := sha256.Sum256(der)
	return jwkstest.Encode(sum[:])
}

// TestCertificateBound: a token with cnf.x5t#S256 passes over a TLS connection with
// that client certificate, and is refused (binding) with none or another.
func TestCertificateBound(t *testing.T) {
	e := newEnv(t, nil)
	good, bad := clientCert(t, "good"), clientCert(t, "bad")
	tok := e.as.MustMint(jwkstest.Claims{"scope": "orders:read", "cnf": map[string]any{"x5t#S256": certThumbprint(good.Certificate[0])}})
	srv := httptest.NewUnstartedServer(e.h)
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	get := func(cert *tls.Certificate) int {
		tr := srv.Client().Transport.(*http.Transport).Clone()
		if cert != nil {
			tr.TLSClientConfig.Certificates = []tls.Certificate{*cert}
		}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest("GET", srv.URL+"/orders/1", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(&good); code != 200 {
		t.Errorf("with the certificate: %d", code)
	}
	for name, cert := range map[string]*tls.Certificate{"none": nil, "another": &bad} {
		if code := get(cert); code != 401 {
			t.Errorf("with %s certificate: %d", name, code)
		}
	}
	if n := e.count(middleware.DecisionDenied, "binding", "GET /orders/{id}"); n != 2 {
		t.Errorf("binding denials %v, want 2", n)
	}
	// Plain HTTP: no certificate at all.
	if w := e.do("GET", "/orders/1", bearer(tok)); w.Code != 401 {
		t.Errorf("over plain HTTP: %d", w.Code)
	}
}

// TestCertificateHeader: behind a trusted proxy the certificate's hash comes from its
// X-Forwarded-Client-Cert header (Envoy's form), the last element being the proxy's.
func TestCertificateHeader(t *testing.T) {
	e := newEnv(t, func(c *middleware.Config) { c.Tokens.ClientCertificateHeader = "X-Forwarded-Client-Cert" })
	der := clientCert(t, "good").Certificate[0]
	sum := sha256.Sum256(der)
	hash := hex.EncodeToString(sum[:])
	otherSum := sha256.Sum256([]byte("other"))
	other := hex.EncodeToString(otherSum[:])
	tok := e.as.MustMint(jwkstest.Claims{"scope": "orders:read", "cnf": map[string]any{"x5t#S256": certThumbprint(der)}})
	for _, tc := range []struct {
		name, xfcc string
		headers    int
		want       int
	}{
		{"Envoy's element", `By=spiffe://cluster.local/ns/default/sa/api;Hash=` + hash + `;Subject="CN=good,O=x;y";URI=spiffe://cluster.local/ns/default/sa/client`, 1, 200},
		{"upper-case hex", "Hash=" + strings.ToUpper(hash), 1, 200},
		{"the last element is the proxy's", "Hash=" + other + ",Hash=" + hash, 1, 200},
		{"an earlier element does not count", "Hash=" + hash + ",Hash=" + other, 1, 401},
		{"another certificate", "Hash=" + other, 1, 401},
		{"no header", "", 0, 401},
		{"two header fields", "Hash=" + hash, 2, 401},
		{"two hashes in one element", "Hash=" + hash + ";Hash=" + hash, 1, 401},
		{"not hex", "Hash=" + certThumbprint(der), 1, 401},
		{"a comma inside quotes", `Subject="CN=a,Hash=` + other + `";Hash=` + hash, 1, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			headers := []string{bearer(tok)}
			for range tc.headers {
				headers = append(headers, "X-Forwarded-Client-Cert: "+tc.xfcc)
			}
			if w := e.do("GET", "/orders/1", headers...); w.Code != tc.want {
				t.Errorf("status %d, want %d", w.Code, tc.want)
			}
		})
	}
}

// TestConfirmationClaim: cnf members tokengate cannot check are refused (claims), and
// so is a cnf that is not an object of thumbprints.
func TestConfirmationClaim(t *testing.T) {
	e, client := dpopEnv(t, middleware.DPoPAllowed, nil)
	for name, cnf := range map[string]any{
		"a jwk":              map[string]any{"jwk": client.JWK()},
		"a kid":              map[string]any{"kid": "k1"},
		"jkt and a jwk":      map[string]any{"jkt": client.JKT(), "jwk": client.JWK()},
		"an empty object":    map[string]any{},
		"a string":           client.JKT(),
		"a short jkt":        map[string]any{"jkt": "abc"},
		"a padded jkt":       map[string]any{"jkt": client.JKT() + "="},
		"a numeric x5t#S256": map[string]any{"x5t#S256": 1},
	} {
		t.Run(name, func(t *testing.T) {
			tok := e.as.MustMint(jwkstest.Claims{"scope": "orders:read", "cnf": cnf})
			before := e.count(middleware.DecisionDenied, "claims", "GET /orders/{id}")
			w := e.do("GET", "/orders/1", dpopAuth(tok), proofHeader(client.MustProof("GET", externalURL+"/orders/1", tok, nil, nil)))
			if w.Code != 401 || e.count(middleware.DecisionDenied, "claims", "GET /orders/{id}") != before+1 {
				t.Errorf("status %d, want 401 claims", w.Code)
			}
		})
	}
}

// failingStore is a replay store that cannot answer.
type failingStore struct{ calls atomic.Int64 }

func (s *failingStore) Use(context.Context, string, time.Time) (bool, error) {
	s.calls.Add(1)
	return false, errors.New("connection refused")
}

// TestSingleUse: a single-use route accepts a token's jti once; another route neither
// consumes it nor asks the store; a token without jti is refused; a store that cannot
// answer gets 503, never an allowed request.
func TestSingleUse(t *testing.T) {
	routes := func(c *middleware.Config) {
		c.Routes = append(c.Routes, middleware.Route{Match: "POST /payments", Scopes: []string{"payments:write"}, SingleUse: true})
	}
	e := newEnv(t, routes)
	tok := e.as.MustMint(jwkstest.Claims{"scope": "payments:write orders:read"})
	if w := e.do("GET", "/orders/1", bearer(tok)); w.Code != 200 {
		t.Fatalf("another route: %d", w.Code)
	}
	if n := metricValue(e.reg, "tokengate_replay_store_requests_total", map[string]string{"store": "memory", "result": "first_use"}); n != 0 {
		t.Fatalf("another route used the store: %v", n)
	}
	if w := e.do("POST", "/payments", bearer(tok)); w.Code != 200 {
		t.Fatalf("first use: %d", w.Code)
	}
	w := e.do("POST", "/payments", bearer(tok))
	if w.Code != 401 || e.count(middleware.DecisionDenied, "replay", "POST /payments") != 1 {
		t.Fatalf("second use: %d", w.Code)
	}
	if got := w.Header().Get("WWW-Authenticate"); got != `Bearer realm="orders-api", error="invalid_token", error_description="the access token was used before"` {
		t.Errorf("challenge %q", got)
	}
	if w := e.do("GET", "/orders/1", bearer(tok)); w.Code != 200 {
		t.Errorf("another route after the use: %d", w.Code)
	}
	// A denied request does not use the token up.
	weak := e.as.MustMint(jwkstest.Claims{"scope": "orders:read"})
	if w := e.do("POST", "/payments", bearer(weak)); w.Code != 403 {
		t.Errorf("without the scope: %d", w.Code)
	}
	noJTI := e.as.MustMint(jwkstest.Claims{"scope": "payments:write", "jti": jwkstest.Absent})
	if w := e.do("POST", "/payments", bearer(noJTI)); w.Code != 401 || e.count(middleware.DecisionDenied, "claims", "POST /payments") != 1 {
		t.Errorf("without jti: %d", w.Code)
	}
	if n := metricValue(e.reg, "tokengate_replay_store_requests_total", map[string]string{"store": "memory", "result": "replay"}); n != 1 {
		t.Errorf("replays counted %v, want 1", n)
	}

	store := &failingStore{}
	down := newEnvWith(t, routes, middleware.Options{Replay: store})
	w = down.do("POST", "/payments", bearer(down.as.MustMint(jwkstest.Claims{"scope": "payments:write"})))
	if w.Code != 503 || w.Header().Get("Retry-After") == "" || down.api.calls.Load() != 0 || store.calls.Load() != 1 {
		t.Errorf("store down: %d, Retry-After %q, API calls %d", w.Code, w.Header().Get("Retry-After"), down.api.calls.Load())
	}
	if n := down.count(middleware.DecisionDenied, "replay_store_unavailable", "POST /payments"); n != 1 {
		t.Errorf("replay_store_unavailable counted %v", n)
	}
	if n := metricValue(down.reg, "tokengate_replay_store_requests_total", map[string]string{"store": "custom", "result": "error"}); n != 1 {
		t.Errorf("store errors counted %v", n)
	}
}

// TestSingleUseConcurrent: many concurrent uses of one token, exactly one allowed.
func TestSingleUseConcurrent(t *testing.T) {
	e := newEnv(t, func(c *middleware.Config) {
		c.Routes = append(c.Routes, middleware.Route{Match: "POST /payments", SingleUse: true})
	})
	tok := e.as.MustMint(nil)
	var wg sync.WaitGroup
	var ok atomic.Int64
	for range 200 {
		wg.Go(func() {
			if e.do("POST", "/payments", bearer(tok)).Code == 200 {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || e.api.calls.Load() != 1 {
		t.Errorf("allowed %d times, API called %d times; want once", ok.Load(), e.api.calls.Load())
	}
}

// TestSenderConstraintConfig: what is wrong is named by its field.
func TestSenderConstraintConfig(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mut   func(*middleware.Config)
		field string
	}{
		{"an unknown DPoP mode", func(c *middleware.Config) { c.Issuers[0].DPoP = "maybe"; c.ExternalURL = externalURL }, "Issuers[0].DPoP"},
		{"DPoP without an external URL", func(c *middleware.Config) { c.Issuers[0].DPoP = middleware.DPoPAllowed }, "ExternalURL"},
		{"an external URL with a query", func(c *middleware.Config) {
			c.Issuers[0].DPoP = middleware.DPoPAllowed
			c.ExternalURL = externalURL + "/?x=1"
		}, "ExternalURL"},
		{"a short nonce secret", func(c *middleware.Config) {
			c.Issuers[0].DPoP = middleware.DPoPAllowed
			c.ExternalURL = externalURL
			c.Tokens.DPoP.NonceSecret = []byte("short")
		}, "Tokens.DPoP.NonceSecret"},
		{"an HMAC proof algorithm", func(c *middleware.Config) {
			c.Issuers[0].DPoP = middleware.DPoPAllowed
			c.ExternalURL = externalURL
			c.Tokens.DPoP.Algorithms = []string{"HS256"}
		}, "Tokens.DPoP.Algorithms"},
		{"a public single-use route", func(c *middleware.Config) {
			c.Routes = append(c.Routes, middleware.Route{Match: "GET /x", Public: true, SingleUse: true})
		}, "Routes[6].SingleUse"},
		{"a bad certificate header", func(c *middleware.Config) { c.Tokens.ClientCertificateHeader = "X Client" }, "Tokens.ClientCertificateHeader"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := middleware.Config{
				Issuers: []middleware.Issuer{{Config: jwks.Config{Issuer: "https://as.example.com"}, Audiences: []string{audience}}},
				Routes:  append([]middleware.Route(nil), defaultRoutes...),
			}
			tc.mut(&cfg)
			err := middleware.Validate(cfg)
			var fe *middleware.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Errorf("error %v, want one naming %s", err, tc.field)
			}
		})
	}
}
