package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/internal/e2etest"
	"github.com/tokengate/tokengate/internal/upstreamtest"
)

// runBinary runs the built binary and returns its exit code and output.
func runBinary(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), stdout.String(), stderr.String()
	}
	t.Fatal(err)
	return -1, "", ""
}

// `tokengate token` mints with the key `tokengate issuer --key-file` keeps; the issuer
// keeps its key, and so its kid, across restarts; `tokengate check` explains each
// token against a configuration (issue 11).
func TestTokenCommand(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "issuer.pem")
	const audience = "https://orders.example.com"
	p := startIssuer(t, nil, "--key-file", keyFile, "--alg", "ES256", "--audience", audience)
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	kid := lineValue(t, p.stdout.String(), "kid: ")
	cfg := filepath.Join(dir, "tokengate.yaml")
	_ = os.WriteFile(cfg, []byte(fmt.Sprintf(`issuers:
  - issuer: %q
    audiences: [%q]
routes:
  - match: "GET /orders/{id}"
    scopes: [orders:read]
`, p.issuer, audience)), 0o600)

	mint := func(args ...string) string {
		t.Helper()
		code, out, errOut := runBinary(t, append([]string{"token", "--key-file", keyFile, "--issuer", p.issuer, "--alg", "ES256", "--aud", audience}, args...)...)
		if code != 0 || strings.Count(out, ".") != 2 || strings.Contains(strings.TrimSpace(out), "\n") {
			t.Fatalf("token %v: exit %d: %q %s", args, code, out, errOut)
		}
		return strings.TrimSpace(out)
	}
	check := func(tok string, wantCode int, want string) {
		t.Helper()
		code, out, errOut := runBinary(t, "check", "--config", cfg, "--path", "/orders/1", tok)
		if code != wantCode || !strings.Contains(out, want) {
			t.Fatalf("check: exit %d, want %d with %q:\n%s%s", code, wantCode, want, out, errOut)
		}
	}
	valid := mint("--scope", "orders:read", "--sub", "alice", "--claim", `groups=["eng","ops"]`)
	check(valid, 0, `sub        "alice"`)
	check(mint("--scope", "orders:read", "--expired"), 1, "reason:   expired")
	check(mint("--scope", "orders:read", "--aud", "https://other.example"), 1, "reason:   audience")
	check(mint("--scope", "orders:write"), 1, "reason:   insufficient_scope")

	// A restarted issuer reads its key back: same kid, and a token minted before the
	// restart verifies against the new process's JWKS.
	_ = p.cmd.Process.Kill()
	<-p.done
	p2 := startIssuer(t, nil, "--key-file", keyFile, "--alg", "ES256", "--audience", audience, "--listen", strings.TrimPrefix(p.issuer, "http://"))
	if got := lineValue(t, p2.stdout.String(), "kid: "); got != kid {
		t.Fatalf("kid %s after a restart, %s before", got, kid)
	}
	check(valid, 0, "decision: allowed")

	// Usage errors name the flag and what to do.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"token"}, "--key-file is required"},
		{[]string{"token", "--key-file", filepath.Join(dir, "missing.pem")}, "does not exist: 'tokengate issuer --key-file"},
		{[]string{"token", "--key-file", keyFile, "--alg", "RS256"}, "holds a EC P-256 key, which cannot sign RS256"},
		{[]string{"token", "--key-file", keyFile, "--alg", "ES256", "--scope", `a"b`}, `"a\"b" is not a scope`},
		{[]string{"token", "--key-file", keyFile, "--alg", "ES256", "--claim", "novalue"}, "want name=value"},
	} {
		if code, _, errOut := runBinary(t, tc.args...); code != exitUsage || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
}

// lineValue is the rest of the first line of out that starts with prefix.
func lineValue(t *testing.T, out, prefix string) string {
	t.Helper()
	for line := range strings.SplitSeq(out, "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			return v
		}
	}
	t.Fatalf("no line %q in:\n%s", prefix, out)
	return ""
}

// `tokengate token --dpop-key` binds a token to a client key that it makes, and
// `tokengate proof` signs that key's proofs: together they try a DPoP policy with curl,
// here against the real binary.
func TestDPoPCommands(t *testing.T) {
	dir := t.TempDir()
	keyFile, clientKey := filepath.Join(dir, "issuer.pem"), filepath.Join(dir, "client.pem")
	const audience = "https://orders.example.com"
	p := startIssuer(t, nil, "--key-file", keyFile, "--alg", "ES256", "--audience", audience)
	up := upstreamtest.Start(t)
	sc := e2etest.StartSidecar(t, e2etest.Options{Config: fmt.Sprintf(`upstream: %q
externalURL: https://orders.example.com
issuers:
  - issuer: %q
    audiences: [%q]
    dpop: required
routes:
  - match: "GET /orders/{id}"
    scopes: [orders:read]
`, up.URL, p.issuer, audience)})

	code, out, errOut := runBinary(t, "token", "--key-file", keyFile, "--issuer", p.issuer, "--alg", "ES256", "--aud", audience,
		"--scope", "orders:read", "--dpop-key", clientKey)
	if code != 0 {
		t.Fatalf("token --dpop-key: exit %d %s", code, errOut)
	}
	tok := strings.TrimSpace(out)
	if fi, err := os.Stat(clientKey); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the client key file: %v %v", fi, err)
	}
	proof := func(args ...string) string {
		t.Helper()
		code, out, errOut := runBinary(t, append([]string{"proof", "--dpop-key", clientKey}, args...)...)
		if code != 0 {
			t.Fatalf("proof %v: exit %d %s", args, code, errOut)
		}
		return strings.TrimSpace(out)
	}
	get := func(headers ...string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", sc.URL+"/orders/1", nil)
		for _, h := range headers {
			k, v, _ := strings.Cut(h, ": ")
			req.Header.Add(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	good := proof("--url", "https://orders.example.com/orders/1", "--token", tok)
	if code := get("Authorization: DPoP "+tok, "DPoP: "+good); code != 200 {
		t.Fatalf("the bound token with its proof: %d", code)
	}
	for name, headers := range map[string][]string{
		"the proof again":          {"Authorization: DPoP " + tok, "DPoP: " + good},
		"no proof":                 {"Authorization: DPoP " + tok},
		"as a bearer token":        {"Authorization: Bearer " + tok},
		"a proof for another path": {"Authorization: DPoP " + tok, "DPoP: " + proof("--url", "https://orders.example.com/orders/2", "--token", tok)},
	} {
		if code := get(headers...); code != 401 {
			t.Errorf("%s: %d, want 401", name, code)
		}
	}
	if up.Count() != 1 {
		t.Errorf("the upstream saw %d requests, want 1", up.Count())
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"proof", "--url", "https://a.example/x"}, "--dpop-key is required"},
		{[]string{"proof", "--dpop-key", clientKey}, "--url is required"},
		{[]string{"proof", "--dpop-key", clientKey, "--url", "orders/1"}, `"orders/1" is not an http(s) URL`},
		{[]string{"proof", "--dpop-key", keyFile + ".rsa", "--url", "https://a.example/x"}, ""},
	} {
		code, _, errOut := runBinary(t, tc.args...)
		if tc.want == "" {
			if code != 0 || !strings.Contains(errOut, "made a new key") {
				t.Errorf("%v: exit %d %q, want a new key made", tc.args, code, errOut)
			}
			continue
		}
		if code != exitUsage || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
}
