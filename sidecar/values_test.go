package sidecar_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/jwks/jwkstest"
)

// forward.values: the upstream sees the headers computed from the verified token, and
// never what a client sent under their names, in any spelling.
func TestForwardValues(t *testing.T) {
	h := start(t, `forward:
  values:
    - {header: X-Auth-Groups, expr: 'claims.groups.join(",")'}
    - {header: Tenant, expr: 'string(claims.tid)'}
`)
	spoofs := []string{"X-Auth-Groups: root", "x_auth_groups: root", "Tenant: evil", "TENANT: evil", "tenant: evil"}
	only := func(name string, want ...string) {
		t.Helper()
		var got []string
		for k, vs := range h.up.Last().Header {
			if strings.EqualFold(strings.ReplaceAll(k, "_", "-"), name) {
				got = append(got, vs...)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("the upstream got %s %q, want %q", name, got, want)
		}
	}

	token := h.as.MustMint(jwkstest.Claims{"sub": "u1", "scope": "orders:read", "groups": []string{"admins", "team-orders"}, "tid": "contoso"})
	if resp, body := h.do(t, "GET", "/orders/1", token, spoofs...); resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	only("X-Auth-Groups", "admins,team-orders")
	only("Tenant", "contoso")
	only("X-Auth-Subject", "u1")

	// A claim a value reads is missing, or cannot travel in a header: no header, and
	// the request is still allowed.
	for name, claims := range map[string]jwkstest.Claims{
		"missing":           {"sub": "u1", "scope": "orders:read"},
		"control character": {"sub": "u1", "scope": "orders:read", "groups": []string{"a\r\nX-Admin: 1"}, "tid": 7},
	} {
		t.Run(name, func(t *testing.T) {
			if resp, body := h.do(t, "GET", "/orders/1", h.as.MustMint(claims), spoofs...); resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			only("X-Auth-Groups")
			if name == "missing" {
				only("Tenant")
			} else {
				only("Tenant", "7")
			}
			only("X-Admin")
		})
	}

	// A public route: no token, no values, and the spoofed ones are gone too.
	if resp, _ := h.do(t, "GET", "/healthz", "", spoofs...); resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	only("X-Auth-Groups")
	only("Tenant")
}
