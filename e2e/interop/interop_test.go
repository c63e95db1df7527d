//go:build e2e

// Package interop_test runs the real tokengate binary against an authorization server
// nobody here wrote: node-oidc-provider (npm `oidc-provider`, pinned in
// testdata/oidc/package-lock.json), on loopback. Tokens come from its token endpoint
// (client_credentials, client_secret_basic, a resource indicator), tokengate finds its
// keys through its discovery document, and the tests check what an interoperating
// resource server must do with them: allow, deny for scope, refuse a token that is not
// typed at+jwt, follow a key rotation, and refuse a token for another audience. Each
// test logs its figures.
//
// It needs node and npm on PATH (and the npm registry for the first `npm ci`); without
// them it fails, it never skips.
//
//	go test -tags e2e -count=1 -v ./e2e/interop/
package interop_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/e2etest"
	"github.com/tokengate/tokengate/internal/upstreamtest"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

const (
	ordersAPI  = "https://orders.example.com"  // the API tokengate guards; the provider's default resource
	reportsAPI = "https://reports.example.com" // another API of the same provider

	ordersClient, ordersSecret = "orders-client", "orders-secret"
	legacyClient, legacySecret = "legacy-client", "legacy-secret" // its tokens are typed JWT
)

var client = &http.Client{Timeout: 10 * time.Second}

func TestMain(m *testing.M) {
	if err := setupNode(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e/interop: FAIL: %v\n", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// config is the sidecar's configuration for the provider's issuer: keys by discovery,
// RFC 9068 tokens for the orders API, reading orders needs orders:read and creating one
// orders:write.
func config(issuer, upstream, issuerExtra string) string {
	return fmt.Sprintf(`upstream: %q
realm: "orders-api"
issuers:
  - issuer: %q
    audiences: [%q]
    algorithms: [RS256]
    refresh: {min: 1m, unknownKidEvery: 1s, unknownKidWait: 2s}
%s
routes:
  - match: "GET /orders/{id}"
    scopes: [orders:read]
  - match: "POST /orders"
    scopes: [orders:write]
forward:
  claims: {sub: X-Auth-Subject, client_id: X-Auth-Client-Id, scope: X-Auth-Scopes}
`, upstream, issuer, ordersAPI, issuerExtra)
}

const requireATJWT = "    tokenType: at+jwt"

// result is tokengate's answer to one request.
type result struct {
	status int
	header http.Header
	body   errorBody
	took   time.Duration
}

type errorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

func call(t *testing.T, method, url, token string) result {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	r := result{status: resp.StatusCode, header: resp.Header, took: time.Since(start)}
	_ = json.Unmarshal(b, &r.body)
	return r
}

// expectInvalidToken checks a 401 invalid_token answer and its description.
func expectInvalidToken(t *testing.T, r result, description, what string) {
	t.Helper()
	if r.status != 401 || r.body.Error != "invalid_token" || r.body.Description != description {
		t.Fatalf("%s: %d %+v, want 401 invalid_token %q", what, r.status, r.body, description)
	}
	if ch := r.header.Get("WWW-Authenticate"); !strings.Contains(ch, `error="invalid_token"`) || !strings.HasPrefix(ch, "Bearer ") {
		t.Fatalf("%s: WWW-Authenticate %q", what, ch)
	}
}

// TestAllowedWithScope: the provider's token for the orders API with orders:read is
// an RFC 9068 JWT that tokengate allows; the API sees the caller's identity.
func TestAllowedWithScope(t *testing.T) {
	key := newKey(t, "orders")
	op := startProvider(t, key)
	up := upstreamtest.Start(t)
	sc := e2etest.StartSidecar(t, e2etest.Options{Config: config(op.Issuer, up.URL, requireATJWT)})

	tr, tokenTook := op.token(t, ordersClient, ordersSecret, "orders:read", ordersAPI)
	h, c := decodeJWT(t, tr.AccessToken)
	if h["typ"] != "at+jwt" || h["alg"] != "RS256" || h["kid"] != key.KID {
		t.Fatalf("token header %v, want typ at+jwt, alg RS256, kid %s", h, key.KID)
	}
	for name, want := range map[string]any{"iss": op.Issuer, "aud": ordersAPI, "scope": "orders:read", "client_id": ordersClient, "sub": ordersClient} {
		if c[name] != want {
			t.Fatalf("claim %s = %v, want %v (claims %v)", name, c[name], want, c)
		}
	}
	for _, name := range []string{"jti", "iat", "exp"} {
		if c[name] == nil {
			t.Fatalf("claim %s missing: %v", name, c)
		}
	}

	r := call(t, "GET", sc.URL+"/orders/42", tr.AccessToken)
	if r.status != 200 {
		t.Fatalf("GET /orders/42 with the provider's orders:read token: %d %+v", r.status, r.body)
	}
	if up.Count() != 1 {
		t.Fatalf("the upstream saw %d requests, want 1", up.Count())
	}
	got := up.Last()
	for name, want := range map[string]string{"X-Auth-Subject": ordersClient, "X-Auth-Client-Id": ordersClient, "X-Auth-Scopes": "orders:read", "Authorization": "Bearer " + tr.AccessToken} {
		if v := got.Header.Get(name); v != want {
			t.Fatalf("the upstream got %s %q, want %q", name, v, want)
		}
	}
	again := call(t, "GET", sc.URL+"/orders/43", tr.AccessToken)
	if again.status != 200 {
		t.Fatalf("second request: %d", again.status)
	}

	// A token with both scopes also creates orders.
	both, _ := op.token(t, ordersClient, ordersSecret, "orders:read orders:write", ordersAPI)
	if both.Scope != "orders:read orders:write" {
		t.Fatalf("granted scope %q", both.Scope)
	}
	if r := call(t, "POST", sc.URL+"/orders", both.AccessToken); r.status != 200 || up.Last().Header.Get("X-Auth-Scopes") != "orders:read orders:write" {
		t.Fatalf("POST /orders with orders:write: %d, upstream scopes %q", r.status, up.Last().Header.Get("X-Auth-Scopes"))
	}
	m := sc.Metrics(t)
	if n := e2etest.Sum(m, "tokengate_decisions_total", `decision="allowed"`, `reason="ok"`); n != 3 {
		t.Fatalf("allowed decisions %v, want 3", n)
	}
	t.Logf("allowed: oidc-provider token (RS256, at+jwt, %d bytes, expires_in %ds) issued in %s; first request through tokengate %s, second (cached) %s; upstream saw X-Auth-Subject=%s X-Auth-Client-Id=%s X-Auth-Scopes=%q",
		len(tr.AccessToken), tr.ExpiresIn, tokenTook.Round(time.Microsecond), r.took.Round(time.Microsecond), again.took.Round(time.Microsecond),
		got.Header.Get("X-Auth-Subject"), got.Header.Get("X-Auth-Client-Id"), got.Header.Get("X-Auth-Scopes"))
}

// TestDeniedWrongScope: the provider's orders:read token on the route that needs
// orders:write gets 403 insufficient_scope naming the scope, and never reaches the API.
func TestDeniedWrongScope(t *testing.T) {
	op := startProvider(t, newKey(t, "orders"))
	up := upstreamtest.Start(t)
	sc := e2etest.StartSidecar(t, e2etest.Options{Config: config(op.Issuer, up.URL, requireATJWT)})

	tr, _ := op.token(t, ordersClient, ordersSecret, "orders:read", ordersAPI)
	r := call(t, "POST", sc.URL+"/orders", tr.AccessToken)
	ch := r.header.Get("WWW-Authenticate")
	if r.status != 403 || r.body.Error != "insufficient_scope" {
		t.Fatalf("POST /orders with orders:read: %d %+v, want 403 insufficient_scope", r.status, r.body)
	}
	for _, want := range []string{`Bearer realm="orders-api"`, `error="insufficient_scope"`, `scope="orders:write"`} {
		if !strings.Contains(ch, want) {
			t.Fatalf("WWW-Authenticate %q lacks %s", ch, want)
		}
	}
	// The denied POST never reached the API; a GET needs only orders:read, and the same
	// token reads.
	if r := call(t, "GET", sc.URL+"/orders/7", tr.AccessToken); r.status != 200 || up.Count() != 1 {
		t.Fatalf("GET /orders/7 with orders:read: %d, upstream saw %d", r.status, up.Count())
	}
	if n := e2etest.Sum(sc.Metrics(t), "tokengate_decisions_total", `decision="denied"`, `reason="insufficient_scope"`); n != 1 {
		t.Fatalf("insufficient_scope decisions %v, want 1", n)
	}
	t.Logf("wrong scope: the provider's orders:read token on POST /orders → %d in %s, WWW-Authenticate: %s", r.status, r.took.Round(time.Microsecond), ch)
}

// TestTokenTypeEnforced: with tokenType at+jwt, a token typed JWT is refused even
// though the provider signed it; a token minted here with the provider's own key is
// refused when typed JWT and allowed when typed at+jwt, so the check is on typ and not
// on who signed.
func TestTokenTypeEnforced(t *testing.T) {
	key := newKey(t, "orders")
	op := startProvider(t, key)
	up := upstreamtest.Start(t)
	sc := e2etest.StartSidecar(t, e2etest.Options{Config: config(op.Issuer, up.URL, requireATJWT)})
	lenient := e2etest.StartSidecar(t, e2etest.Options{Config: config(op.Issuer, up.URL, "")})

	// The legacy client's token: same provider, key, claims shape; header typ JWT.
	legacy, _ := op.token(t, legacyClient, legacySecret, "orders:read", ordersAPI)
	if h, _ := decodeJWT(t, legacy.AccessToken); h["typ"] != "JWT" || h["kid"] != key.KID {
		t.Fatalf("legacy token header %v, want typ JWT", h)
	}
	r := call(t, "GET", sc.URL+"/orders/1", legacy.AccessToken)
	expectInvalidToken(t, r, "the access token lacks a required claim or has an invalid one", "the provider's JWT-typed token")
	if r := call(t, "GET", lenient.URL+"/orders/1", legacy.AccessToken); r.status != 200 {
		t.Fatalf("without tokenType the provider's JWT-typed token is valid, got %d %+v", r.status, r.body)
	}

	// The same claims as a real orders token, signed here with the provider's key.
	issued, _ := op.token(t, ordersClient, ordersSecret, "orders:read", ordersAPI)
	if r := call(t, "GET", sc.URL+"/orders/1", issued.AccessToken); r.status != 200 {
		t.Fatalf("the provider's at+jwt token: %d %+v", r.status, r.body)
	}
	_, claims := decodeJWT(t, issued.AccessToken)
	mint := func(typ string) string {
		c := map[string]any{}
		for k, v := range claims {
			c[k] = v
		}
		c["jti"] = "minted-" + typ + "-" + key.KID
		tok, err := jwkstest.SignJSON(key, "RS256", map[string]any{"alg": "RS256", "typ": typ, "kid": key.KID}, c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	plain := call(t, "GET", sc.URL+"/orders/1", mint("JWT"))
	expectInvalidToken(t, plain, "the access token lacks a required claim or has an invalid one", "a JWT-typed token signed with the provider's key")
	typed := call(t, "GET", sc.URL+"/orders/1", mint("at+jwt"))
	if typed.status != 200 {
		t.Fatalf("the same token typed at+jwt: %d %+v", typed.status, typed.body)
	}
	// RFC 9068 §4 also names the full media type.
	if r := call(t, "GET", sc.URL+"/orders/1", mint("application/at+jwt")); r.status != 200 {
		t.Fatalf("typ application/at+jwt: %d %+v", r.status, r.body)
	}

	m := sc.Metrics(t)
	if n := e2etest.Sum(m, "tokengate_decisions_total", `decision="denied"`, `reason="claims"`); n != 2 {
		t.Fatalf("claims denials %v, want 2", n)
	}
	if n := e2etest.Sum(m, "tokengate_decisions_total", `decision="allowed"`); n != 3 {
		t.Fatalf("allowed %v, want 3", n)
	}
	t.Logf("token type: provider token typ JWT → %d (allowed without tokenType); minted with the provider's key typ JWT → %d, typ at+jwt → %d, application/at+jwt → 200; reason claims ×%v",
		r.status, plain.status, typed.status, e2etest.Sum(m, "tokengate_decisions_total", `reason="claims"`))
}

// TestKeyRotation: the provider restarts with a new signing key first and the old one
// still published; the first token of the new key is allowed, at the price of one
// unknown-kid fetch, and the old key's tokens stay valid.
func TestKeyRotation(t *testing.T) {
	oldKey, newK := newKey(t, "old"), newKey(t, "new")
	op := startProvider(t, oldKey)
	up := upstreamtest.Start(t)
	sc := e2etest.StartSidecar(t, e2etest.Options{Config: config(op.Issuer, up.URL, requireATJWT)})

	before, _ := op.token(t, ordersClient, ordersSecret, "orders:read", ordersAPI)
	if r := call(t, "GET", sc.URL+"/orders/1", before.AccessToken); r.status != 200 {
		t.Fatalf("before rotation: %d %+v", r.status, r.body)
	}
	m0 := sc.Metrics(t)
	unknown0 := e2etest.Sum(m0, "tokengate_jwks_refreshes_total", `trigger="unknown_kid"`)

	mark := len(op.output())
	down := op.restart(t, newK, oldKey)
	after, _ := op.token(t, ordersClient, ordersSecret, "orders:read", ordersAPI)
	if h, _ := decodeJWT(t, after.AccessToken); h["kid"] != newK.KID {
		t.Fatalf("after rotation the provider signs with %v, want the new kid %s", h["kid"], newK.KID)
	}
	first := call(t, "GET", sc.URL+"/orders/2", after.AccessToken)
	if first.status != 200 {
		t.Fatalf("first token of the new key: %d %+v", first.status, first.body)
	}
	second := call(t, "GET", sc.URL+"/orders/3", after.AccessToken)
	if second.status != 200 {
		t.Fatalf("second request with the new key's token: %d", second.status)
	}
	if r := call(t, "GET", sc.URL+"/orders/4", before.AccessToken); r.status != 200 {
		t.Fatalf("the old key's token after rotation (old key still published): %d %+v", r.status, r.body)
	}
	fresh, _ := op.token(t, ordersClient, ordersSecret, "orders:read", ordersAPI)
	if r := call(t, "GET", sc.URL+"/orders/5", fresh.AccessToken); r.status != 200 {
		t.Fatalf("another new-key token: %d", r.status)
	}

	m := sc.Metrics(t)
	unknownUpdated := e2etest.Sum(m, "tokengate_jwks_refreshes_total", `trigger="unknown_kid"`, `result="updated"`) -
		e2etest.Sum(m0, "tokengate_jwks_refreshes_total", `trigger="unknown_kid"`, `result="updated"`)
	unknown := e2etest.Sum(m, "tokengate_jwks_refreshes_total", `trigger="unknown_kid"`) - unknown0
	if unknownUpdated < 1 || unknown != 1 {
		t.Fatalf("unknown_kid refreshes: %v (updated %v), want exactly one that updated the set", unknown, unknownUpdated)
	}
	if n := e2etest.Sum(m, "tokengate_jwks_keys"); n != 2 {
		t.Fatalf("tokengate_jwks_keys %v, want 2 (new and old)", n)
	}
	jwksPath := strings.TrimPrefix(op.discovery(t).JWKSURI, op.Issuer)
	fetches := 0
	for _, l := range op.requests(mark) {
		if strings.HasPrefix(l, "GET "+jwksPath+" ") {
			fetches++
		}
	}
	if fetches != 1 {
		t.Fatalf("the provider served its JWKS %d times after the rotation, want 1: %v", fetches, op.requests(mark))
	}
	t.Logf("key rotation: provider restarted with kid %s first in %s; first request with the new kid %s (one unknown_kid fetch, %d JWKS request at the provider), next %s; old kid %s still allowed; %v keys",
		newK.KID, down.Round(time.Millisecond), first.took.Round(time.Microsecond), fetches, second.took.Round(time.Microsecond), oldKey.KID, e2etest.Sum(m, "tokengate_jwks_keys"))
}

// TestDiscovery: tokengate, given only the issuer, found the provider's JWKS at the
// URL its discovery document names (not a default path), and refuses the provider's
// token for another audience.
func TestDiscovery(t *testing.T) {
	op := startProvider(t, newKey(t, "orders"))
	doc := op.discovery(t)
	if doc.Issuer != op.Issuer {
		t.Fatalf("discovery issuer %q, want exactly %q", doc.Issuer, op.Issuer)
	}
	if doc.JWKSURI != op.Issuer+"/oauth/keys" {
		t.Fatalf("jwks_uri %q", doc.JWKSURI)
	}
	mark := len(op.output())
	up := upstreamtest.Start(t)
	start := time.Now()
	sc := e2etest.StartSidecar(t, e2etest.Options{Config: config(op.Issuer, up.URL, requireATJWT)})
	ready := time.Since(start)
	if s := sc.AdminStatus("/readyz"); s != 200 {
		t.Fatalf("/readyz %d", s)
	}

	// What tokengate asked the provider: the discovery document, then the jwks_uri.
	reqs := op.requests(mark)
	if len(reqs) < 2 || !strings.HasPrefix(reqs[0], "GET /.well-known/openid-configuration ") || !strings.HasPrefix(reqs[1], "GET /oauth/keys ") {
		t.Fatalf("requests tokengate made to the provider: %q, want discovery then /oauth/keys", reqs)
	}
	var loaded map[string]any
	for _, line := range strings.Split(sc.Log(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "keys loaded" {
			loaded = rec
			break
		}
	}
	if loaded == nil || loaded["source"] != doc.JWKSURI {
		t.Fatalf("the sidecar's \"keys loaded\" log %v, want source %s", loaded, doc.JWKSURI)
	}
	m := sc.Metrics(t)
	if n := e2etest.Sum(m, "tokengate_jwks_refreshes_total", `trigger="startup"`, `result="updated"`); n != 1 {
		t.Fatalf("startup refreshes %v", n)
	}

	// Right scope, wrong audience: a token of the provider for its reports API.
	tr, _ := op.token(t, ordersClient, ordersSecret, "orders:read", reportsAPI)
	if _, c := decodeJWT(t, tr.AccessToken); c["aud"] != reportsAPI || c["scope"] != "orders:read" {
		t.Fatalf("reports token claims %v", c)
	}
	r := call(t, "GET", sc.URL+"/orders/1", tr.AccessToken)
	expectInvalidToken(t, r, "the access token is not meant for this API", "a token for "+reportsAPI)
	if up.Count() != 0 {
		t.Fatal("a token for another audience reached the upstream")
	}
	ok, _ := op.token(t, ordersClient, ordersSecret, "orders:read", "") // the default resource
	if r := call(t, "GET", sc.URL+"/orders/1", ok.AccessToken); r.status != 200 {
		t.Fatalf("a token for the default resource (%s): %d %+v", ordersAPI, r.status, r.body)
	}
	if n := e2etest.Sum(sc.Metrics(t), "tokengate_decisions_total", `reason="audience"`); n != 1 {
		t.Fatalf("audience denials %v", n)
	}
	t.Logf("discovery: ready %s after start, from %s via /.well-known/openid-configuration (user agent %q); %s token → %d %s",
		ready.Round(time.Millisecond), loaded["source"], userAgent(reqs[0]), reportsAPI, r.status, r.body.Error)
}

func userAgent(reqLine string) string {
	f := strings.SplitN(reqLine, " ", 3)
	if len(f) < 3 {
		return ""
	}
	return f[2]
}
