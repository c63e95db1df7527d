package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"github.com/tokengate/tokengate/internal/e2etest"
	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

func TestParseClient(t *testing.T) {
	for _, tc := range []struct {
		in         string
		id, secret string
		scopes     []string
		err        string // in the error; "" means valid
	}{
		{in: "c1:s1:orders:read,orders:write", id: "c1", secret: "s1", scopes: []string{"orders:read", "orders:write"}},
		{in: "c1:s1:orders:read, orders:write,", id: "c1", secret: "s1", scopes: []string{"orders:read", "orders:write"}},
		{in: "c1:s1:urn:example:api:read", id: "c1", secret: "s1", scopes: []string{"urn:example:api:read"}},
		{in: "c1:s1", id: "c1", secret: "s1"},
		{in: "c1:s1:", id: "c1", secret: "s1"},
		{in: "", err: "want id:secret"},
		{in: "c1", err: `want id:secret:scope1,scope2 (scopes optional), got "c1"`},
		{in: ":s1", err: "want id:secret"},
		{in: "c1::read", err: `got "c1:***:read"`},
		{in: "c1:s1:orders read", err: `scope "orders read"`},
		{in: `c1:s1:a"b`, err: "RFC 6749 §3.3"},
		{in: "c1:s1:caf\u00e9", err: "printable ASCII"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			cl, err := parseClient(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "s1") {
					t.Fatalf("the error shows the secret: %v", err)
				}
				return
			}
			if err != nil || cl.ID != tc.id || cl.Secret != tc.secret || !slices.Equal(cl.Scopes, tc.scopes) {
				t.Fatalf("%+v %v", cl, err)
			}
		})
	}
}

func TestCheckListen(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:8081": true, "127.0.0.2:0": true, "[::1]:0": true, "localhost:0": true,
		":8081": false, "0.0.0.0:0": false, "[::]:0": false, "192.0.2.1:80": false, "example.com:80": false, "127.0.0.1": false,
	} {
		if err := checkListen(addr); (err == nil) != ok {
			t.Errorf("%s: %v", addr, err)
		}
	}
}

func TestCurlLine(t *testing.T) {
	for _, tc := range []struct {
		id, secret string
		scopes     []string
		want       string
	}{
		{"c1", "s1", []string{"orders:read", "orders:write"}, "curl -s -u c1:s1 -d grant_type=client_credentials --data-urlencode 'scope=orders:read orders:write' http://127.0.0.1:1/token"},
		{"c1", "s1", []string{"a&b"}, "curl -s -u c1:s1 -d grant_type=client_credentials --data-urlencode 'scope=a&b' http://127.0.0.1:1/token"},
		// Form-encoded first (RFC 6749 §2.3.1), then quoted for the shell where needed.
		{"c1", "it's $x", nil, `curl -s -u c1:it%27s+%24x -d grant_type=client_credentials http://127.0.0.1:1/token`},
		{"c 1", "s", nil, `curl -s -u c+1:s -d grant_type=client_credentials http://127.0.0.1:1/token`},
	} {
		got := curlLine(jwkstest.Client{ID: tc.id, Secret: tc.secret, Scopes: tc.scopes}, "http://127.0.0.1:1/token")
		if got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
	}
}

// TestIssuerInProcess runs the command in the test's process: the context stops it
// with exit 0, and every goroutine it started is gone when it returns.
func TestIssuerInProcess(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr e2etest.LockedBuffer
	exited := make(chan int, 1)
	go func() {
		exited <- run(ctx, []string{"issuer", "--listen", "127.0.0.1:0", "--alg", "EdDSA", "--rotate-every", "20ms", "--client", "c1:s1"}, &stdout, &stderr)
	}()
	issuer := waitIssuerLine(t, &stdout, &stderr, exited)

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	var doc struct{ Keys []map[string]any }
	getJSON(t, client, issuer+"/jwks", &doc)
	if len(doc.Keys) == 0 {
		t.Fatal("empty JWKS")
	}
	for _, k := range doc.Keys {
		// The kid is the key's RFC 7638 thumbprint.
		x, _ := base64.RawURLEncoding.DecodeString(k["x"].(string))
		tp, _ := jwks.Thumbprint(ed25519.PublicKey(x))
		if k["kty"] != "OKP" || k["alg"] != "EdDSA" || k["kid"] != tp {
			t.Fatalf("--alg EdDSA, key %v (thumbprint %s)", k, tp)
		}
	}
	poll(t, "two timed rotations", func() bool { return strings.Count(stderr.String(), `msg="signing key rotated"`) >= 2 })
	if !strings.Contains(stderr.String(), "make --rotate-every at least --token-ttl") || !strings.Contains(stderr.String(), "DEVELOPMENT authorization server") {
		t.Errorf("stderr lacks the warnings:\n%s", stderr.String())
	}

	cancel()
	select {
	case code := <-exited:
		if code != exitOK {
			t.Fatalf("exit %d after cancel; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no return within 10s of cancel")
	}
}

// waitIssuerLine waits for the "issuer: <URL>" line that the command prints first.
func waitIssuerLine(t *testing.T, stdout, stderr *e2etest.LockedBuffer, exited <-chan int) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if line, _, ok := strings.Cut(stdout.String(), "\n"); ok {
			issuer, found := strings.CutPrefix(line, "issuer: ")
			if !found || !strings.HasPrefix(issuer, "http://127.0.0.1:") {
				t.Fatalf("first line %q", line)
			}
			return issuer
		}
		select {
		case code := <-exited:
			t.Fatalf("exit %d before the issuer line; stderr:\n%s", code, stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no issuer line in 20s; stderr:\n%s", stderr.String())
		}
	}
}

func getJSON(t *testing.T, c *http.Client, url string, v any) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// issuerProcess is the built binary running `tokengate issuer`.
type issuerProcess struct {
	cmd            *exec.Cmd
	issuer         string
	stdout, stderr *e2etest.LockedBuffer
	done           chan struct{} // closed when the process has exited
	err            error         // Wait's result, once done is closed
}

func startIssuer(t *testing.T, env []string, args ...string) *issuerProcess {
	t.Helper()
	p := &issuerProcess{stdout: &e2etest.LockedBuffer{}, stderr: &e2etest.LockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(binary, append([]string{"issuer", "--listen", "127.0.0.1:0"}, args...)...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("issuer stdout:\n%s\nstderr:\n%s", p.stdout.String(), p.stderr.String())
		}
	})
	exited := make(chan int, 1)
	go func() { <-p.done; exited <- p.cmd.ProcessState.ExitCode() }()
	p.issuer = waitIssuerLine(t, p.stdout, p.stderr, exited)
	return p
}

// signal sends sig, then waits until the process has logged want n times.
func (p *issuerProcess) signal(t *testing.T, sig os.Signal, want string, n int) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	poll(t, want, func() bool { return strings.Count(p.stderr.String(), want) >= n })
}

func postToken(t *testing.T, tokenURL, user, pass string, form url.Values) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(user, pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, m
}

func TestIssuerEndToEnd(t *testing.T) {
	const audience = "https://orders.example.com"
	p := startIssuer(t, []string{"TOKENGATE_AUDIENCE=" + audience, "TOKENGATE_TOKEN_TTL=2m"},
		"--client", "c1:s1:orders:read", "--client", "c2:s2:orders:write")
	issuer := p.issuer

	var meta map[string]any
	getJSON(t, http.DefaultClient, issuer+"/.well-known/openid-configuration", &meta)
	if meta["issuer"] != issuer {
		t.Fatalf("discovery issuer %v, want %s", meta["issuer"], issuer)
	}
	tokenURL, _ := meta["token_endpoint"].(string)
	for _, want := range []string{"jwks: " + meta["jwks_uri"].(string) + "\n", "token: " + tokenURL + "\n", "audience: " + audience + "\n"} {
		if !strings.Contains(p.stdout.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, p.stdout.String())
		}
	}

	for _, tc := range []struct {
		name, user, pass, scope string
		code                    int
		err                     string
	}{
		{"wrong secret", "c1", "s2", "orders:read", http.StatusUnauthorized, "invalid_client"},
		{"unknown client", "c3", "s1", "", http.StatusUnauthorized, "invalid_client"},
		{"scope of another client", "c1", "s1", "orders:write", http.StatusBadRequest, "invalid_scope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, m := postToken(t, tokenURL, tc.user, tc.pass, url.Values{"grant_type": {"client_credentials"}, "scope": {tc.scope}})
			if code != tc.code || m["error"] != tc.err || m["access_token"] != nil {
				t.Fatalf("%d %v, want %d %s", code, m, tc.code, tc.err)
			}
		})
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	set, err := jwks.New(ctx, jwks.Config{Issuer: issuer}, jwks.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	if err := set.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	parser := jwt.NewParser(jwt.WithValidMethods([]string{"RS256"}), jwt.WithExpirationRequired(), jwt.WithIssuedAt(),
		jwt.WithAudience(audience), jwt.WithIssuer(issuer))
	verify := func(t *testing.T, raw string) *jwt.Token {
		t.Helper()
		tok, err := parser.Parse(raw, set.Keyfunc(ctx))
		if err != nil {
			t.Fatalf("verifying the token: %v", err)
		}
		c := tok.Claims.(jwt.MapClaims)
		iat, _ := c["iat"].(float64)
		exp, _ := c["exp"].(float64)
		if c["aud"] != audience || c["scope"] != "orders:read" || c["client_id"] != "c1" || exp-iat != 120 {
			t.Fatalf("claims %v (want a lifetime of 120s from TOKENGATE_TOKEN_TTL)", c)
		}
		return tok
	}
	newToken := func(t *testing.T) string {
		t.Helper()
		code, m := postToken(t, tokenURL, "c1", "s1", url.Values{"grant_type": {"client_credentials"}, "scope": {"orders:read"}})
		if code != http.StatusOK || m["token_type"] != "Bearer" || m["expires_in"] != 120.0 {
			t.Fatalf("token: %d %v", code, m)
		}
		return m["access_token"].(string)
	}
	first := verify(t, newToken(t)).Header["kid"]

	t.Run("the printed curl command", func(t *testing.T) {
		if _, err := exec.LookPath("curl"); err != nil {
			t.Skip("no curl")
		}
		_, line, _ := strings.Cut(p.stdout.String(), "Get a token for c1 (the access_token member of the answer):\n  ")
		line, _, _ = strings.Cut(line, "\n")
		out, err := exec.CommandContext(ctx, "sh", "-c", line).Output()
		var m map[string]any
		if err != nil || json.Unmarshal(out, &m) != nil || m["access_token"] == nil {
			t.Fatalf("%s: %v\n%s", line, err, out)
		}
		verify(t, m["access_token"].(string))
	})

	// SIGHUP rotates: new tokens carry a new kid, which the key set learns through its
	// unknown-kid refresh, and the JWKS keeps the previous key only.
	p.signal(t, syscall.SIGHUP, `msg="signing key rotated"`, 1)
	second := verify(t, newToken(t)).Header["kid"]
	if second == first {
		t.Fatalf("kid %v after SIGHUP, as before", second)
	}
	p.signal(t, syscall.SIGHUP, `msg="signing key rotated"`, 2)
	tok, _, err := jwt.NewParser().ParseUnverified(newToken(t), jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	third := tok.Header["kid"]
	var doc struct{ Keys []struct{ Kid string } }
	getJSON(t, http.DefaultClient, meta["jwks_uri"].(string), &doc)
	var kids []any
	for _, k := range doc.Keys {
		kids = append(kids, k.Kid)
	}
	if want := []any{second, third}; !slices.Equal(kids, want) || third == second {
		t.Fatalf("JWKS after two rotations: %v, want %v (the first key, %v, withdrawn)", kids, want, first)
	}

	// SIGTERM: a clean exit 0.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
		if p.err != nil {
			t.Fatalf("exit after SIGTERM: %v", p.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit within 10s of SIGTERM")
	}
}
