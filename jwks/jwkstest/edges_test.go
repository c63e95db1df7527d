package jwkstest_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokengate/tokengate/jwks/jwkstest"
)

func TestJWKWith(t *testing.T) {
	k := jwkstest.MustGenerateKey("k1", "ES256")
	var plain, changed map[string]any
	if err := json.Unmarshal(k.JWK(), &plain); err != nil {
		t.Fatal(err)
	}
	if plain["kid"] != "k1" || plain["alg"] != "ES256" || plain["use"] != "sig" || plain["kty"] != "EC" {
		t.Fatalf("JWK: %v", plain)
	}
	if err := json.Unmarshal(k.JWKWith(map[string]any{"use": "enc", "alg": nil}), &changed); err != nil {
		t.Fatal(err)
	}
	if _, has := changed["alg"]; has || changed["use"] != "enc" || changed["kid"] != "k1" || changed["x"] != plain["x"] {
		t.Fatalf("JWKWith use enc, alg removed: %v", changed)
	}
}

func TestRotationNames(t *testing.T) {
	// A rotated key is named after the signing key's kid with -r and a counter; a kid
	// that merely starts with -r keeps its whole name as the base.
	s := start(t, jwkstest.WithKeys(jwkstest.MustGenerateKey("-r", "ES256"), jwkstest.MustGenerateKey("rsa-1", "RS256")))
	k, err := s.Rotate()
	if err != nil || k.KID != "-r-r1" || k.Alg != "ES256" {
		t.Fatalf("rotation of kid -r: %+v %v", k, err)
	}
	s.SetSigningKey("rsa-1")
	for _, want := range []string{"rsa-1-r2", "rsa-1-r3"} {
		k, err := s.Rotate()
		if err != nil || k.KID != want {
			t.Fatalf("rotation: %+v %v, want kid %s", k, err, want)
		}
	}
}

func TestCacheControl(t *testing.T) {
	s := start(t)
	get := func() string {
		t.Helper()
		resp, err := s.Client().Get(s.JWKSURI())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.Header.Get("Cache-Control")
	}
	if cc := get(); cc != "public, max-age=300" {
		t.Fatalf("default Cache-Control %q", cc)
	}
	s.SetCacheControl("")
	if cc := get(); cc != "" {
		t.Fatalf("Cache-Control %q after SetCacheControl(\"\")", cc)
	}
}

func TestScopesSupported(t *testing.T) {
	s := start(t)
	discover := func() map[string]any {
		t.Helper()
		_, meta := getJSON(t, s.Client(), s.Issuer+jwkstest.OIDCDiscoveryPath)
		return meta
	}
	if v, has := discover()["scopes_supported"]; has {
		t.Fatalf("scopes_supported without clients: %v", v)
	}
	s.AddClient(jwkstest.Client{ID: "a", Secret: "x", Scopes: []string{"b:read", "a:read"}})
	s.AddClient(jwkstest.Client{ID: "b", Secret: "x", Scopes: []string{"a:read"}})
	got, _ := json.Marshal(discover()["scopes_supported"])
	if string(got) != `["a:read","b:read"]` {
		t.Fatalf("scopes_supported %s, want the clients' scopes sorted, once each", got)
	}
}

func TestTokenWithoutScope(t *testing.T) {
	// A client without scopes gets a token without a scope claim, and a response without
	// a scope member: an empty scope is not a scope.
	s := start(t)
	s.AddClient(jwkstest.Client{ID: "plain", Secret: "s"})
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"plain"}, "client_secret": {"s"}}
	resp, err := s.Client().Post(s.TokenURL(), "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %v %v", resp.StatusCode, m, err)
	}
	if v, has := m["scope"]; has {
		t.Fatalf("response scope %q", v)
	}
	parsed, err := jwt.Parse(m["access_token"].(string), keyfuncOf(s))
	if err != nil {
		t.Fatal(err)
	}
	if v, has := parsed.Claims.(jwt.MapClaims)["scope"]; has {
		t.Fatalf("scope claim %q", v)
	}
}
