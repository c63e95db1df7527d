package sidecar_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/jwks/jwkstest"
)

// TestOpaqueTokensThroughTheSidecar: an opaque token is introspected with the client
// secret from its file, its claims reach the upstream, and a reload keeps the cached
// answer (no second call) while the secret stays the same.
func TestOpaqueTokensThroughTheSidecar(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const tmpl = `
upstream: %[2]q
realm: orders-api
issuers:
  - issuer: %[1]q
    audiences: [%[3]q]
    introspection: {clientID: orders-api, clientSecretFile: SECRET, opaqueTokens: true}
routes:
  - match: "GET /orders/{id}"
    scopes: [orders:read]
`
	h := startWith(t, strings.Replace(tmpl, "SECRET", secret, 1), "")
	h.as.AddClient(jwkstest.Client{ID: "orders-api", Secret: "s3cret"})
	tok := h.as.MintOpaque(jwkstest.Claims{"scope": "orders:read", "sub": "alice"})
	resp, body := h.do(t, "GET", "/orders/1", tok)
	if resp.StatusCode != 200 || h.up.Last().Header.Get("X-Auth-Subject") != "alice" {
		t.Fatalf("an opaque token: %d %s %q", resp.StatusCode, body, resp.Header.Get("WWW-Authenticate"))
	}
	h.writeConfig(t, "mode: enforce\n")
	eventually(t, "the reload", func() bool { return strings.Contains(h.logs.String(), "configuration reloaded") })
	if resp, _ := h.do(t, "GET", "/orders/1", tok); resp.StatusCode != 200 || h.as.IntrospectionCalls() != 1 {
		t.Errorf("after a reload: %d, %d calls (want 200 and the cached answer)", resp.StatusCode, h.as.IntrospectionCalls())
	}
	h.as.SetDown(true)
	if resp, _ := h.do(t, "GET", "/orders/1", h.as.MintOpaque(jwkstest.Claims{"scope": "orders:read"})); resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("the issuer down: %d", resp.StatusCode)
	}
}
