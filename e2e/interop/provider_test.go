//go:build e2e

package interop_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/e2etest"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

// oidcDir is testdata/oidc as an absolute path: the npm project of the provider.
var oidcDir string

// setupNode installs the pinned oidc-provider with `npm ci` unless node_modules already
// holds exactly what package-lock.json pins. It never skips: without Node the suite
// fails.
func setupNode() error {
	dir, err := filepath.Abs(filepath.Join("testdata", "oidc"))
	if err != nil {
		return err
	}
	oidcDir = dir
	node, took, err := e2etest.NPMInstall(dir, "this suite (node-oidc-provider)", 20)
	switch {
	case err != nil:
		return err
	case took > 0:
		fmt.Fprintf(os.Stderr, "e2e/interop: node %s; npm ci took %s\n", node, took.Round(time.Millisecond))
	default:
		fmt.Fprintf(os.Stderr, "e2e/interop: node %s; node_modules up to date\n", node)
	}
	return nil
}

// newKey generates an RSA 2048 signing key with a fresh kid.
func newKey(t *testing.T, name string) *jwkstest.Key {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	k, err := jwkstest.GenerateKey(name+"-"+hex.EncodeToString(b[:]), "RS256")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// privateJWK is the key as the private JWK oidc-provider signs with (RFC 7518 §6.3.2).
func privateJWK(k *jwkstest.Key) map[string]any {
	priv := k.Private.(*rsa.PrivateKey)
	priv.Precompute()
	b := func(i *big.Int) string { return base64.RawURLEncoding.EncodeToString(i.Bytes()) }
	return map[string]any{
		"kty": "RSA", "kid": k.KID, "alg": "RS256", "use": "sig",
		"n": b(priv.N), "e": b(big.NewInt(int64(priv.E))), "d": b(priv.D),
		"p": b(priv.Primes[0]), "q": b(priv.Primes[1]),
		"dp": b(priv.Precomputed.Dp), "dq": b(priv.Precomputed.Dq), "qi": b(priv.Precomputed.Qinv),
	}
}

// provider is a running node-oidc-provider (testdata/oidc/provider.mjs).
type provider struct {
	Issuer string
	port   string
	dir    string

	mu    sync.Mutex
	lines []string // everything it printed, across restarts
	cmd   *exec.Cmd
	done  chan struct{} // closed when cmd exited and its output was read
	runs  int
}

// startProvider starts the provider on a free loopback port, signing with keys[0] and
// publishing every key; it is stopped when the test ends.
func startProvider(t *testing.T, keys ...*jwkstest.Key) *provider {
	t.Helper()
	_, port, _ := net.SplitHostPort(e2etest.FreeAddr(t))
	p := &provider{Issuer: "http://127.0.0.1:" + port, port: port, dir: t.TempDir()}
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("oidc-provider output:\n%s", strings.Join(p.output(), "\n"))
		}
	})
	p.start(t, keys)
	return p
}

// restart stops the provider and starts it again on the same port with these keys, as
// a rotation at the authorization server does; it returns how long it was down.
func (p *provider) restart(t *testing.T, keys ...*jwkstest.Key) time.Duration {
	t.Helper()
	start := time.Now()
	p.stop(t)
	p.start(t, keys)
	return time.Since(start)
}

func (p *provider) start(t *testing.T, keys []*jwkstest.Key) {
	t.Helper()
	jwks := map[string]any{"keys": []any{}}
	for _, k := range keys {
		jwks["keys"] = append(jwks["keys"].([]any), privateJWK(k))
	}
	b, _ := json.Marshal(jwks)
	p.runs++
	keysFile := filepath.Join(p.dir, fmt.Sprintf("keys-%d.json", p.runs))
	if err := os.WriteFile(keysFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	// The port was just released (by FreeAddr or by the previous run): retry a
	// listen that fails for a short while.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := p.startOnce(keysFile)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("oidc-provider did not start: %v\n%s", err, strings.Join(p.output(), "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *provider) startOnce(keysFile string) error {
	return p.startScript("provider.mjs", "--port", p.port, "--keys", keysFile)
}

// startScript runs a node script of testdata/oidc (provider.mjs, bound-provider.mjs)
// and waits until it prints `READY <issuer>`.
func (p *provider) startScript(script string, args ...string) error {
	cmd := exec.Command("node", append([]string{script}, args...)...)
	cmd.Dir = oidcDir
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return err
	}
	ready := make(chan struct{})
	done := make(chan struct{})
	var readyOnce sync.Once
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.lines = append(p.lines, line)
			p.mu.Unlock()
			if line == "READY "+p.Issuer {
				readyOnce.Do(func() { close(ready) })
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		_ = cmd.Wait()
		pw.Close()
		close(done)
	}()
	select {
	case <-ready:
		p.mu.Lock()
		p.cmd, p.done = cmd, done
		p.mu.Unlock()
		return nil
	case <-done:
		return fmt.Errorf("exited before READY: %v", cmd.ProcessState)
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		return errors.New("no READY line within 20s")
	}
}

// stop ends the provider: SIGTERM, then SIGKILL after 5 s; it returns once the process
// is gone and its port is free.
func (p *provider) stop(t *testing.T) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Errorf("oidc-provider (pid %d) did not exit after SIGKILL", cmd.Process.Pid)
		}
	}
}

func (p *provider) output() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// requests are the `REQ <method> <path> <user-agent>` lines the provider printed, from
// index from on.
func (p *provider) requests(from int) []string {
	var out []string
	for _, l := range p.output()[from:] {
		if strings.HasPrefix(l, "REQ ") {
			out = append(out, strings.TrimPrefix(l, "REQ "))
		}
	}
	return out
}

// tokenResponse is the provider's token endpoint answer.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
	Scope       string `json:"scope"`
}

// token asks the provider's token endpoint (found in its discovery document) for an
// access token: client_credentials with client_secret_basic, for resource, with scope.
func (p *provider) token(t *testing.T, clientID, secret, scope, resource string) (tokenResponse, time.Duration) {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}
	if resource != "" {
		form.Set("resource", resource)
	}
	req, _ := http.NewRequest("POST", p.discovery(t).TokenEndpoint, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, secret)
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	took := time.Since(start)
	if resp.StatusCode != 200 {
		t.Fatalf("token endpoint: %s: %s", resp.Status, body)
	}
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" {
		t.Fatalf("token endpoint: %v: %s", err, body)
	}
	return tr, took
}

// discoveryDoc holds the members of the provider's discovery document the suite reads.
type discoveryDoc struct {
	Issuer        string `json:"issuer"`
	JWKSURI       string `json:"jwks_uri"`
	TokenEndpoint string `json:"token_endpoint"`
}

func (p *provider) discovery(t *testing.T) discoveryDoc {
	t.Helper()
	resp, err := client.Get(p.Issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d discoveryDoc
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil || resp.StatusCode != 200 {
		t.Fatalf("discovery document: %s %v", resp.Status, err)
	}
	return d
}

// decodeJWT returns a compact JWS's header and payload, unverified.
func decodeJWT(t *testing.T, tok string) (header, payload map[string]any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %d segments", len(parts))
	}
	for i, dst := range []*map[string]any{&header, &payload} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatalf("segment %d: %v", i, err)
		}
		if err := json.Unmarshal(b, dst); err != nil {
			t.Fatalf("segment %d: %v", i, err)
		}
	}
	return header, payload
}

// stepClient is a running node script of testdata/oidc (dpop-client.mjs,
// mcp-client.mjs) that writes a line of JSON per step, then waits for a line on its
// stdin before the next one.
type stepClient struct {
	script string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  *bufio.Scanner
	stderr *e2etest.LockedBuffer
	begun  bool // the client has written its first line
}

// startStepClient runs `node script args...` in testdata/oidc, for 60 s at most.
func startStepClient(t *testing.T, script string, args ...string) *stepClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	cmd := exec.CommandContext(ctx, "node", append([]string{script}, args...)...)
	cmd.Dir = oidcDir
	cmd.WaitDelay = 5 * time.Second
	c := &stepClient{script: script, cmd: cmd, stderr: &e2etest.LockedBuffer{}}
	cmd.Stderr = c.stderr
	var err error
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		cancel()
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	c.lines = bufio.NewScanner(stdout)
	c.lines.Buffer(make([]byte, 64<<10), 1<<20)
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s stderr:\n%s", script, c.stderr.String())
		}
	})
	return c
}

// next lets the client go on (after the first line) and decodes its next line into v.
func (c *stepClient) next(t *testing.T, v any) {
	t.Helper()
	if c.begun {
		if _, err := io.WriteString(c.stdin, "\n"); err != nil {
			t.Fatalf("%s: %v\n%s", c.script, err, c.stderr.String())
		}
	}
	c.begun = true
	if !c.lines.Scan() {
		t.Fatalf("%s ended early (%v):\n%s", c.script, c.lines.Err(), c.stderr.String())
	}
	if err := json.Unmarshal(c.lines.Bytes(), v); err != nil {
		t.Fatalf("%s wrote %q: %v", c.script, c.lines.Text(), err)
	}
}

// finish lets the client end and checks that it exited 0.
func (c *stepClient) finish(t *testing.T) {
	t.Helper()
	_, _ = io.WriteString(c.stdin, "\n")
	c.stdin.Close()
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("%s: %v\n%s", c.script, err, c.stderr.String())
	}
}
