package jwkstest_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/testclock"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

// introspect posts token to s's introspection endpoint with client_secret_basic of
// id and secret (form-encoded first, RFC 6749 §2.3.1), and returns the status and
// the raw body.
func introspect(t *testing.T, s *jwkstest.Server, id, secret, token string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.IntrospectionURL(), strings.NewReader(url.Values{"token": {token}, "token_type_hint": {"access_token"}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// answer introspects token as the registered client rs and decodes the answer.
func answer(t *testing.T, s *jwkstest.Server, token string) map[string]any {
	t.Helper()
	code, body := introspect(t, s, "rs", "rs secret", token)
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	return m
}

func withClient(t *testing.T, opts ...jwkstest.Option) *jwkstest.Server {
	s := start(t, opts...)
	s.AddClient(jwkstest.Client{ID: "rs", Secret: "rs secret"})
	return s
}

func TestIntrospectionEndpointInDiscovery(t *testing.T) {
	s := start(t, jwkstest.WithIssuerPath("/realms/shop"))
	for _, path := range []string{"/realms/shop/.well-known/openid-configuration", "/.well-known/oauth-authorization-server/realms/shop"} {
		if _, meta := getJSON(t, s.Client(), s.URL+path); meta["introspection_endpoint"] != s.IntrospectionURL() || s.IntrospectionURL() != s.URL+jwkstest.IntrospectionPath {
			t.Fatalf("%s: %v", path, meta)
		}
	}
}

func TestOpaqueTokens(t *testing.T) {
	clk := testclock.New(time.Unix(1_900_000_000, 0))
	s := withClient(t, jwkstest.WithClock(clk.Now))
	tok := s.MintOpaque(jwkstest.Claims{"scope": "orders:read", "sub": "alice", "cnf": map[string]string{"jkt": "x"}})
	if strings.Count(tok, ".") != 0 || tok == s.MintOpaque(nil) {
		t.Fatalf("not an opaque, unique token: %q", tok)
	}
	m := answer(t, s, tok)
	if m["active"] != true || m["scope"] != "orders:read" || m["sub"] != "alice" || m["iss"] != s.Issuer || m["aud"] != s.Audience() ||
		m["client_id"] != "client-1" || m["jti"] == nil || m["exp"] != json.Number("1900000300") || m["iat"] != json.Number("1900000000") {
		t.Fatalf("%v", m)
	}
	if cnf, _ := m["cnf"].(map[string]any); cnf["jkt"] != "x" {
		t.Fatalf("cnf %v", m["cnf"])
	}

	if m := answer(t, s, "never-issued"); len(m) != 1 || m["active"] != false {
		t.Fatalf("unknown token: %v", m)
	}
	s.Revoke(tok)
	if m := answer(t, s, tok); len(m) != 1 || m["active"] != false {
		t.Fatalf("revoked token: %v", m)
	}

	expiring := s.MintOpaque(nil)
	clk.Advance(5*time.Minute - time.Second)
	if answer(t, s, expiring)["active"] != true {
		t.Fatal("inactive before exp")
	}
	clk.Advance(time.Second)
	if m := answer(t, s, expiring); m["active"] != false {
		t.Fatalf("active at exp: %v", m)
	}

	if m := answer(t, s, s.MintOpaque(jwkstest.Claims{"active": jwkstest.Absent, "exp": jwkstest.Absent})); m["active"] != nil || m["sub"] != "user-1" {
		t.Fatalf("active not left out: %v", m)
	}
}

func TestIntrospectingJWTs(t *testing.T) {
	s := withClient(t)
	tok := s.MustMint(jwkstest.Claims{"scope": "a b", "aud": []string{"x", "y"}})
	m := answer(t, s, tok)
	if m["active"] != true || m["scope"] != "a b" || m["iss"] != s.Issuer {
		t.Fatalf("%v", m)
	}
	if aud, _ := m["aud"].([]any); len(aud) != 2 || aud[0] != "x" {
		t.Fatalf("aud %v", m["aud"])
	}
	for name, tok := range map[string]string{
		"expired":         s.MustMint(jwkstest.Claims{"exp": time.Now().Add(-time.Minute).Unix()}),
		"unknown key":     s.MustMint(nil, jwkstest.WithSigner(jwkstest.MustGenerateKey("rsa-1", "RS256"))),
		"another alg":     s.MustMint(nil, jwkstest.WithAlg("PS256")),
		"bad signature":   tok[:len(tok)-4] + "AAAA",
		"three segments":  "a.b.c",
		"a revoked token": s.MustMint(nil),
	} {
		if name == "a revoked token" {
			s.Revoke(tok)
		}
		if m := answer(t, s, tok); m["active"] != false {
			t.Errorf("%s: %v", name, m)
		}
	}
}

func TestIntrospectionRequiresClientSecretBasic(t *testing.T) {
	s := withClient(t)
	s.AddClient(jwkstest.Client{ID: "a:b c", Secret: "p@ss w:rd/+%&=ü"})
	tok := s.MintOpaque(nil)
	if code, _ := introspect(t, s, "a:b c", "p@ss w:rd/+%&=ü", tok); code != 200 {
		t.Fatalf("special characters, form-encoded: %d", code)
	}
	for name, creds := range map[string][2]string{"none": {"", ""}, "wrong secret": {"rs", "nope"}, "unknown client": {"who", "rs secret"}} {
		code, body := introspect(t, s, creds[0], creds[1], tok)
		if code != 401 || !strings.Contains(string(body), "invalid_client") {
			t.Errorf("%s: %d %s", name, code, body)
		}
	}
	// client_secret_post is not accepted here.
	resp, err := s.Client().PostForm(s.IntrospectionURL(), url.Values{"token": {tok}, "client_id": {"rs"}, "client_secret": {"rs secret"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("client_secret_post: %d", resp.StatusCode)
	}
	// No token; not a POST.
	if code, _ := introspect(t, s, "rs", "rs secret", ""); code != 400 {
		t.Fatalf("no token: %d", code)
	}
	resp, err = s.Client().Get(s.IntrospectionURL())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
	if n := s.IntrospectionCalls(); n != 7 {
		t.Fatalf("IntrospectionCalls %d", n)
	}
}

func TestIntrospectionFaults(t *testing.T) {
	s := withClient(t)
	tok := s.MintOpaque(nil)

	s.SetIntrospectionFault(jwkstest.IntrospectionGarbage)
	if code, body := introspect(t, s, "rs", "rs secret", tok); code != 200 || json.Valid(body) {
		t.Fatalf("garbage: %d %s", code, body)
	}
	s.SetIntrospectionFault(jwkstest.IntrospectionOversized)
	if code, body := introspect(t, s, "rs", "rs secret", tok); code != 200 || len(body) != jwkstest.OversizedIntrospection || !json.Valid(body) {
		t.Fatalf("oversized: %d, %d bytes", code, len(body))
	}
	s.SetIntrospectionFault(jwkstest.IntrospectionMissingActive)
	if m := answer(t, s, tok); m["active"] != nil || m["sub"] != "user-1" {
		t.Fatalf("missingActive: %v", m)
	}

	post := func(timeout time.Duration) error {
		c := s.Client()
		c.Timeout = timeout
		resp, err := c.PostForm(s.IntrospectionURL(), url.Values{"token": {tok}})
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	s.SetIntrospectionFault(jwkstest.IntrospectionDown)
	if err := post(10 * time.Second); err == nil {
		t.Fatal("down: an answer")
	}
	s.SetIntrospectionFault(jwkstest.IntrospectionSlow)
	start := time.Now()
	var timeout interface{ Timeout() bool }
	if err := post(200 * time.Millisecond); !errors.As(err, &timeout) || !timeout.Timeout() || time.Since(start) < 200*time.Millisecond {
		t.Fatalf("slow: %v after %s", err, time.Since(start))
	}

	s.SetIntrospectionFault(jwkstest.IntrospectionNormal)
	s.SetDown(true)
	if code, _ := introspect(t, s, "rs", "rs secret", tok); code != 503 {
		t.Fatalf("SetDown: %d", code)
	}
	s.SetDown(false)
	if answer(t, s, tok)["active"] != true {
		t.Fatal("not back to normal")
	}
	if n := s.IntrospectionCalls(); n != 7 {
		t.Fatalf("IntrospectionCalls %d", n)
	}
	if jwkstest.IntrospectionMissingActive.String() != "missingActive" {
		t.Fatal(jwkstest.IntrospectionMissingActive.String())
	}
}
