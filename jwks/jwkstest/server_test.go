package jwkstest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"github.com/tokengate/tokengate/jwks/jwkstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func start(t *testing.T, opts ...jwkstest.Option) *jwkstest.Server {
	t.Helper()
	s, err := jwkstest.NewServer(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func getJSON(t *testing.T, c *http.Client, u string) (int, map[string]any) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// keyfuncOf verifies against the server's published JWKS, parsed by hand so this test
// does not depend on package jwks.
func keyfuncOf(s *jwkstest.Server) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		k, ok := s.KeyByID(kid)
		if !ok {
			return nil, jwt.ErrTokenUnverifiable
		}
		return k.Public(), nil
	}
}

func TestDiscoveryDocuments(t *testing.T) {
	s := start(t, jwkstest.WithIssuerPath("/realms/shop"))
	c := s.Client()
	for _, path := range []string{"/realms/shop/.well-known/openid-configuration", "/.well-known/oauth-authorization-server/realms/shop"} {
		code, meta := getJSON(t, c, s.URL+path)
		if code != 200 || meta["issuer"] != s.Issuer || meta["jwks_uri"] != s.JWKSURI() || meta["token_endpoint"] != s.TokenURL() {
			t.Fatalf("%s: %d %v", path, code, meta)
		}
	}
	s.SetDiscovery(false, true)
	if code, _ := getJSON(t, c, s.Issuer+jwkstest.OIDCDiscoveryPath); code != 404 {
		t.Fatalf("disabled OIDC discovery answered %d", code)
	}
	lie := "https://evil.example"
	s.SetDiscoveryIssuer(&lie)
	if _, meta := getJSON(t, c, s.URL+"/.well-known/oauth-authorization-server/realms/shop"); meta["issuer"] != lie {
		t.Fatal("lie not told")
	}
	if s.DiscoveryFetches() != 4 {
		t.Fatalf("discovery fetches %d", s.DiscoveryFetches())
	}
}

func TestJWKSAndSwitches(t *testing.T) {
	s := start(t)
	c := s.Client()
	code, doc := getJSON(t, c, s.JWKSURI())
	if code != 200 || len(doc["keys"].([]any)) != 3 {
		t.Fatalf("%d %v", code, doc)
	}
	s.SetExtraJWKs([]byte(`{"kty":"oct","k":"AA"}`))
	s.Publish("ec-1", false)
	if _, doc = getJSON(t, c, s.JWKSURI()); len(doc["keys"].([]any)) != 3 {
		t.Fatalf("extra/unpublish: %v", doc)
	}

	req, _ := http.NewRequest("GET", s.JWKSURI(), nil)
	resp, _ := c.Do(req)
	resp.Body.Close()
	req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
	if resp, _ = c.Do(req); resp.StatusCode != 304 || s.NotModified() != 1 {
		t.Fatalf("conditional GET: %d", resp.StatusCode)
	}
	resp.Body.Close()

	s.SetDown(true)
	if code, _ := getJSON(t, c, s.JWKSURI()); code != 503 {
		t.Fatalf("down: %d", code)
	}
	s.SetDown(false)
	s.SetGarbage(true)
	resp, _ = c.Get(s.JWKSURI())
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if json.Valid(b) {
		t.Fatal("garbage is JSON")
	}
	s.SetGarbage(false)
	s.SetOversized(1 << 20)
	resp, _ = c.Get(s.JWKSURI())
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(b) != 1<<20 || !json.Valid(b) {
		t.Fatalf("oversized: %d bytes", len(b))
	}
	s.SetOversized(0)
	s.SetDelay(50 * time.Millisecond)
	start := time.Now()
	getJSON(t, c, s.JWKSURI())
	if time.Since(start) < 50*time.Millisecond {
		t.Fatal("no delay")
	}
	s.SetDelay(0)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	s.SetRedirect("http://127.0.0.1:1/x")
	resp, _ = noRedirect.Get(s.JWKSURI())
	resp.Body.Close()
	if resp.StatusCode != 302 || resp.Header.Get("Location") != "http://127.0.0.1:1/x" {
		t.Fatalf("redirect: %d", resp.StatusCode)
	}
	if s.JWKSFetches() < 8 {
		t.Fatalf("fetches %d", s.JWKSFetches())
	}
}

func TestMintAndRotate(t *testing.T) {
	s := start(t, jwkstest.WithAudience("https://orders.example.com"))
	tok := s.MustMint(jwkstest.Claims{"scope": "a b", "sub": jwkstest.Absent})
	parsed, err := jwt.Parse(tok, keyfuncOf(s))
	if err != nil {
		t.Fatal(err)
	}
	claims := parsed.Claims.(jwt.MapClaims)
	if claims["aud"] != "https://orders.example.com" || claims["scope"] != "a b" || claims["iss"] != s.Issuer {
		t.Fatalf("claims %v", claims)
	}
	if _, has := claims["sub"]; has {
		t.Fatal("Absent claim present")
	}
	if parsed.Header["typ"] != "at+jwt" || parsed.Header["kid"] != "rsa-1" {
		t.Fatalf("header %v", parsed.Header)
	}
	for _, kid := range []string{"ec-1", "ed-1"} {
		if _, err := jwt.Parse(s.MustMint(nil, jwkstest.WithKey(kid)), keyfuncOf(s)); err != nil {
			t.Fatalf("%s: %v", kid, err)
		}
	}
	k, err := s.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	parsed, err = jwt.Parse(s.MustMint(nil), keyfuncOf(s))
	if err != nil || parsed.Header["kid"] != k.KID || k.KID == "rsa-1" {
		t.Fatalf("after rotation: %v %v", parsed.Header, err)
	}
	// Rotation never reuses a kid, whatever the existing kids look like.
	s.AddKey(jwkstest.MustGenerateKey(k.KID[:len(k.KID)-1]+"2", "RS256"), true)
	k2, err := s.Rotate()
	if err != nil || k2.KID == k.KID || k2.KID == k.KID[:len(k.KID)-1]+"2" {
		t.Fatalf("second rotation: %v %v", k2, err)
	}
	s.SetSigningKey("missing")
	if _, err := s.Rotate(); err == nil {
		t.Fatal("rotation from an unknown signing key")
	}
	s.SetSigningKey(k2.KID)
	if _, err := s.Mint(nil, jwkstest.WithKey("nope")); err == nil {
		t.Fatal("minted with an unknown key")
	}
	raw, err := jwkstest.SignRaw(s.SigningKey(), "RS256", []byte(`{"alg":"RS256","alg":"none"}`), []byte(`null`))
	if err != nil || strings.Count(raw, ".") != 2 {
		t.Fatal(raw, err)
	}
}

func TestTokenEndpoint(t *testing.T) {
	s := start(t)
	s.AddClient(jwkstest.Client{ID: "c1", Secret: "s1", Scopes: []string{"orders:read", "orders:write"}, Audiences: []string{"https://a.example", "https://b.example"}})
	post := func(form url.Values, basic bool) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest("POST", s.TokenURL(), strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if basic {
			req.SetBasicAuth("c1", "s1")
		}
		resp, err := s.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	code, m := post(url.Values{"grant_type": {"client_credentials"}, "scope": {"orders:read"}, "resource": {"https://b.example"}}, true)
	if code != 200 || m["token_type"] != "Bearer" || m["scope"] != "orders:read" {
		t.Fatalf("%d %v", code, m)
	}
	parsed, err := jwt.Parse(m["access_token"].(string), keyfuncOf(s))
	if err != nil {
		t.Fatal(err)
	}
	c := parsed.Claims.(jwt.MapClaims)
	if c["aud"] != "https://b.example" || c["client_id"] != "c1" || c["scope"] != "orders:read" {
		t.Fatalf("claims %v", c)
	}
	// Basic credentials are form-encoded (RFC 6749 §2.3.1).
	s.AddClient(jwkstest.Client{ID: "c+2", Secret: "a b&c", Scopes: []string{"x"}})
	req, _ := http.NewRequest("POST", s.TokenURL(), strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape("c+2"), url.QueryEscape("a b&c"))
	if resp, err := s.Client().Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("form-encoded Basic credentials: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	code, m = post(url.Values{"grant_type": {"client_credentials"}, "client_id": {"c1"}, "client_secret": {"s1"}}, false)
	if code != 200 || m["scope"] != "orders:read orders:write" {
		t.Fatalf("client_secret_post / default scope: %d %v", code, m)
	}
	for name, tc := range map[string]struct {
		form  url.Values
		basic bool
		code  int
		err   string
	}{
		"wrong secret":   {url.Values{"grant_type": {"client_credentials"}, "client_id": {"c1"}, "client_secret": {"x"}}, false, 401, "invalid_client"},
		"unknown client": {url.Values{"grant_type": {"client_credentials"}, "client_id": {"c2"}}, false, 401, "invalid_client"},
		"grant":          {url.Values{"grant_type": {"password"}}, true, 400, "unsupported_grant_type"},
		"scope":          {url.Values{"grant_type": {"client_credentials"}, "scope": {"admin"}}, true, 400, "invalid_scope"},
		"resource":       {url.Values{"grant_type": {"client_credentials"}, "resource": {"https://c.example"}}, true, 400, "invalid_target"},
	} {
		t.Run(name, func(t *testing.T) {
			code, m := post(tc.form, tc.basic)
			if code != tc.code || m["error"] != tc.err {
				t.Fatalf("%d %v", code, m)
			}
		})
	}
}

func TestTLS(t *testing.T) {
	s := start(t, jwkstest.WithTLS())
	if !strings.HasPrefix(s.Issuer, "https://127.0.0.1:") || len(s.CertPEM()) == 0 {
		t.Fatal(s.Issuer)
	}
	if code, _ := getJSON(t, s.Client(), s.JWKSURI()); code != 200 {
		t.Fatal(code)
	}
}
