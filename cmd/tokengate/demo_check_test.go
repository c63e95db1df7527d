package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/jwks/jwkstest"
)

// TestDemo runs `tokengate demo --once` as the README tells a newcomer to run it, and
// checks the four outcomes the README's walkthrough shows.
func TestDemo(t *testing.T) {
	cmd := exec.Command(binary, "demo", "--once")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	text := string(out)
	for _, want := range []string{
		"1. Allowed: a valid token with scope orders:read",
		"   → 200 OK",
		`"X-Auth-Subject":"alice"`,
		"2. Expired: the client should use its refresh token and try again",
		`   → 401 Unauthorized` + "\n" + `     WWW-Authenticate: Bearer realm="orders-api", error="invalid_token", error_description="the access token expired"`,
		"3. Missing scope: the token has orders:write, the route needs orders:read",
		`   → 403 Forbidden` + "\n" + `     WWW-Authenticate: Bearer realm="orders-api", error="insufficient_scope", error_description="the access token lacks a scope this route requires", scope="orders:read"`,
		"4. No token",
		`   → 401 Unauthorized` + "\n" + `     WWW-Authenticate: Bearer realm="orders-api"` + "\n",
		"curl -s -u demo-client:demo-secret -d grant_type=client_credentials",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q:\n%s", want, text)
		}
	}
	if strings.Count(text, "curl -i") != 4 {
		t.Errorf("want four curl lines:\n%s", text)
	}
}

func TestCheckCommand(t *testing.T) {
	as, err := jwkstest.NewServer(jwkstest.WithAudience(e2eAudience))
	if err != nil {
		t.Fatal(err)
	}
	defer as.Close()
	cfg := filepath.Join(t.TempDir(), "tokengate.yaml")
	_ = os.WriteFile(cfg, []byte(fmt.Sprintf(`issuers:
  - issuer: %q
    audiences: [%q]
routes:
  - match: "GET /orders/{id}"
    scopes: [orders:read]
  - match: "POST /payments"
    rules:
      - {name: own-account, expr: 'request.headers["x-account"] == claims.sub'}
      - {name: tier, expr: 'claims.tier == "gold"'}
  - match: "/"
`, as.Issuer, e2eAudience)), 0o600)

	run := func(stdin string, args ...string) (int, string) {
		cmd := exec.Command(binary, append([]string{"check", "--config", cfg}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		switch {
		case err == nil:
			return 0, string(out)
		case errors.As(err, &ee):
			return ee.ExitCode(), string(out)
		}
		t.Fatal(err)
		return -1, ""
	}
	ok := as.MustMint(jwkstest.Claims{"scope": "orders:read", "sub": "alice"})
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		code  int
		want  []string
	}{
		{"allowed", "", []string{"--path", "/orders/1", ok}, 0, []string{"decision: allowed", "route:    GET /orders/{id} (needs orders:read)", "claims (verified):", `sub        "alice"`}},
		{"token from stdin", "Bearer " + ok + "\n", []string{"--path", "/orders/1"}, 0, []string{"decision: allowed"}},
		{"expired", "", []string{"--path", "/orders/1", as.MustMint(jwkstest.Claims{"scope": "orders:read", "exp": time.Now().Add(-3 * time.Minute).Unix()})}, 1,
			[]string{"reason:   expired", "why:      the token expired 3m"}},
		{"scope", "", []string{"--path", "/orders/1", as.MustMint(jwkstest.Claims{"scope": "orders:write"})}, 1,
			[]string{"why:      route GET /orders/{id} needs orders:read; the token has orders:write"}},
		{"audience", "", []string{"--path", "/orders/1", as.MustMint(jwkstest.Claims{"aud": "https://other.example"})}, 1,
			[]string{`why:      the token is for "https://other.example"; this API accepts [https://orders.example.com]`}},
		{"unknown kid", "", []string{"--path", "/orders/1", as.MustMint(nil, jwkstest.WithHeader(jwkstest.Claims{"kid": "gone"}))}, 1,
			[]string{`why:      no key with kid "gone"`, "(it has: rsa-1, ec-1, ed-1)", "NOT verified"}},
		{"a reading of the path", "", []string{"--path", "/ORDERS/1", as.MustMint(jwkstest.Claims{"scope": "profile"})}, 1,
			[]string{"route:    GET /orders/{id} (needs orders:read)", "as the upstream may read it counts: upstreamPaths strict"}},
		{"no route", "", []string{"--path", "/orders;x/1", ok}, 1, []string{"reason:   no_route", "why:      the path holds ';'"}},
		{"rules hold", "", []string{"--method", "POST", "--path", "/payments", "--header", "X-Account: alice", as.MustMint(jwkstest.Claims{"sub": "alice", "tier": "gold"})}, 0,
			[]string{"decision: allowed"}},
		{"a false rule", "", []string{"--method", "POST", "--path", "/payments", "--header", "X-Account: bob", ok}, 1,
			[]string{"reason:   rule", `why:      rule "own-account" (routes[1].rules[0]) is false: request.headers["x-account"] == claims.sub`}},
		{"a rule that cannot be evaluated", "", []string{"--method", "POST", "--path", "/payments", "--header", "X-Account: alice", ok}, 1,
			[]string{"reason:   rule", `why:      rule "tier" (routes[1].rules[1]) could not be evaluated, which denies (fail closed): `, "no such key: tier"}},
		{"usage", "", []string{"--path", "orders"}, 2, []string{"--path \"orders\" must start with /"}},
		{"a bad header flag", "", []string{"--header", "no colon", ok}, 2, []string{`"no colon" is not "Name: value"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := run(tc.stdin, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d:\n%s", code, tc.code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, ok[:30]) {
				t.Error("check printed the token")
			}
		})
	}
}
