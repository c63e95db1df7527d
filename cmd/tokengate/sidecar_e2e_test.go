package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/e2etest"

	"github.com/coder/websocket"

	"github.com/tokengate/tokengate/internal/upstreamtest"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

const e2eAudience = "https://orders.example.com"

const e2eConfig = `listen: %[1]q
admin: %[2]q
upstream: %[3]q
realm: orders-api
issuers:
  - issuer: %[4]q
    audiences: [%[5]q]
routes:
  - match: "GET /healthz"
    public: true
  - match: "GET /orders/{id}"
    scopes: [orders:read]
  - match: "POST /upload"
  - match: "/ws"
    websocket: true
  - match: "/stream"
  - match: "/slow"
%[6]s`

// binarySidecar is the built tokengate binary running `sidecar`, with its world.
type binarySidecar struct {
	cmd        *exec.Cmd
	as         *jwkstest.Server
	up         *upstreamtest.Server
	url, admin string
	cfg        string
	listen     string
	adminAddr  string
	stderr     *e2etest.LockedBuffer
	exited     chan error
}

func startBinarySidecar(t *testing.T, extra string) *binarySidecar {
	t.Helper()
	as, err := jwkstest.NewServer(jwkstest.WithAudience(e2eAudience))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(as.Close)
	b := &binarySidecar{as: as, up: upstreamtest.Start(t), stderr: &e2etest.LockedBuffer{}, exited: make(chan error, 1)}
	b.listen, b.adminAddr = e2etest.FreeAddr(t), e2etest.FreeAddr(t)
	b.url, b.admin = "http://"+b.listen, "http://"+b.adminAddr
	b.cfg = filepath.Join(t.TempDir(), "tokengate.yaml")
	b.write(t, extra)
	b.cmd = exec.Command(binary, "sidecar", "--config", b.cfg, "--drain-timeout", "10s")
	b.cmd.Env = append(os.Environ(), "TOKENGATE_LOG_LEVEL=info")
	b.cmd.Stderr = b.stderr
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { b.exited <- b.cmd.Wait() }()
	t.Cleanup(func() {
		_ = b.cmd.Process.Kill()
		<-b.exited
		if t.Failed() {
			t.Logf("sidecar log:\n%s", b.stderr.String())
		}
	})
	poll(t, "readiness", func() bool { return b.get(t, "/readyz") == 200 })
	return b
}

func (b *binarySidecar) write(t *testing.T, extra string) {
	t.Helper()
	cfg := fmt.Sprintf(e2eConfig, b.listen, b.adminAddr, b.up.URL, b.as.Issuer, e2eAudience, extra)
	if err := os.WriteFile(b.cfg+".tmp", []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(b.cfg+".tmp", b.cfg); err != nil {
		t.Fatal(err)
	}
}

// get asks the admin listener, returning the status (0 when it does not answer).
func (b *binarySidecar) get(t *testing.T, path string) int {
	resp, err := http.Get(b.admin + path)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (b *binarySidecar) metrics(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(b.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

func (b *binarySidecar) do(t *testing.T, method, path, token string, body io.Reader, headers ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, b.url+path, body)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Add(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, string(out)
}

func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSidecarBinary(t *testing.T) {
	b := startBinarySidecar(t, "")
	read := b.as.MustMint(jwkstest.Claims{"sub": "u1", "client_id": "c1", "scope": "orders:read"})

	t.Run("allowed with claim headers", func(t *testing.T) {
		resp, body := b.do(t, "GET", "/orders/1", read, nil)
		got := b.up.Last()
		if resp.StatusCode != 200 || body != "upstream saw GET /orders/1" || got.Header.Get("X-Auth-Subject") != "u1" || got.Header.Get("X-Auth-Scopes") != "orders:read" {
			t.Fatalf("%d %s %v", resp.StatusCode, body, got.Header)
		}
	})
	t.Run("every denial of the responses table stays away from the upstream", func(t *testing.T) {
		as := b.as
		for name, tc := range map[string]struct {
			path, token string
			headers     []string
			status      int
		}{
			"missing_token":      {"/orders/1", "", nil, 401},
			"malformed_request":  {"/orders/1", read, []string{"Authorization: Bearer again"}, 400},
			"malformed_token":    {"/orders/1", "not.a.jwt", nil, 401},
			"algorithm":          {"/orders/1", as.MustMint(jwkstest.Claims{"scope": "orders:read"}, jwkstest.WithAlg("PS256")), nil, 401},
			"issuer":             {"/orders/1", as.MustMint(jwkstest.Claims{"iss": "https://evil.example"}), nil, 401},
			"unknown_key":        {"/orders/1", as.MustMint(nil, jwkstest.WithHeader(jwkstest.Claims{"kid": "nope"})), nil, 401},
			"signature":          {"/orders/1", as.MustMint(nil, jwkstest.WithSigner(jwkstest.MustGenerateKey("rsa-1", "RS256"))), nil, 401},
			"expired":            {"/orders/1", as.MustMint(jwkstest.Claims{"scope": "orders:read", "exp": time.Now().Add(-time.Hour).Unix()}), nil, 401},
			"not_yet_valid":      {"/orders/1", as.MustMint(jwkstest.Claims{"scope": "orders:read", "nbf": time.Now().Add(time.Hour).Unix()}), nil, 401},
			"audience":           {"/orders/1", as.MustMint(jwkstest.Claims{"scope": "orders:read", "aud": "x"}), nil, 401},
			"claims":             {"/orders/1", as.MustMint(jwkstest.Claims{"scope": "orders:read", "exp": jwkstest.Absent}), nil, 401},
			"insufficient_scope": {"/orders/1", as.MustMint(jwkstest.Claims{"scope": "orders:write"}), nil, 403},
			"no_route":           {"/admin", read, nil, 403},
		} {
			before := b.up.Count()
			resp, body := b.do(t, "GET", tc.path, tc.token, nil, tc.headers...)
			if resp.StatusCode != tc.status || b.up.Count() != before || resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s: %d %s (upstream requests %d → %d)", name, resp.StatusCode, body, before, b.up.Count())
			}
			if !strings.Contains(b.metrics(t), `reason="`+name+`"`) {
				t.Errorf("%s not counted", name)
			}
		}
	})
	t.Run("spoofed identity headers never arrive", func(t *testing.T) {
		b.do(t, "GET", "/orders/1", read, nil, "X-Auth-Subject: admin", "x_auth_subject: admin", "X-AUTH_SUBJECT: admin", "Connection: X-Auth-Subject")
		if v := b.up.Last().Header.Values("X-Auth-Subject"); len(v) != 1 || v[0] != "u1" {
			t.Fatalf("X-Auth-Subject %q", v)
		}
		for name := range b.up.Last().Header {
			if strings.Contains(name, "_") {
				t.Fatalf("%s reached the upstream", name)
			}
		}
	})
	t.Run("20 MiB body and a slow stream pass intact", func(t *testing.T) {
		body := bytes.Repeat([]byte("tokengate"), 20<<20/9+1)
		sum := sha256.Sum256(body)
		resp, _ := b.do(t, "POST", "/upload", read, bytes.NewReader(body))
		if got := b.up.Last(); resp.StatusCode != 200 || got.BodySHA256 != hex.EncodeToString(sum[:]) {
			t.Fatalf("%d, upstream got %d bytes", resp.StatusCode, got.BodyLen)
		}
		req, _ := http.NewRequest("GET", b.url+"/stream", nil)
		req.Header.Set("Authorization", "Bearer "+read)
		start := time.Now()
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		line, _ := bufio.NewReader(r.Body).ReadString('\n')
		if line != "chunk 0\n" || time.Since(start) > 400*time.Millisecond {
			t.Fatalf("first chunk %q after %s", line, time.Since(start))
		}
	})
	t.Run("WebSocket echo", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, _, err := websocket.Dial(ctx, "ws://"+b.listen+"/ws", &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + read}}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		_ = c.Write(ctx, websocket.MessageText, []byte("hi"))
		if _, msg, err := c.Read(ctx); err != nil || string(msg) != "echo: hi" {
			t.Fatalf("%q %v", msg, err)
		}
		c.Close(websocket.StatusNormalClosure, "")
	})
	t.Run("reload: valid applies, invalid is refused", func(t *testing.T) {
		if resp, _ := b.do(t, "GET", "/extra", read, nil); resp.StatusCode != 403 {
			t.Fatal("route exists before the reload")
		}
		b.write(t, "  - match: \"GET /extra\"\n")
		poll(t, "the reload", func() bool { resp, _ := b.do(t, "GET", "/extra", read, nil); return resp.StatusCode == 200 })
		if err := os.WriteFile(b.cfg, []byte("issuers: {"), 0o600); err != nil {
			t.Fatal(err)
		}
		poll(t, "the refusal", func() bool {
			return strings.Contains(b.metrics(t), `tokengate_config_reloads_total{result="error"} 1`)
		})
		if resp, _ := b.do(t, "GET", "/extra", read, nil); resp.StatusCode != 200 {
			t.Fatal("the running configuration was dropped")
		}
		m := b.metrics(t)
		for _, want := range []string{`tokengate_config_reloads_total{result="success"} 1`, "tokengate_build_info{", `tokengate_upstream_requests_total{code="2xx"}`, "tokengate_jwks_keys{", "process_resident_memory_bytes"} {
			if !strings.Contains(m, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
		if b.get(t, "/readyz") != 200 || b.get(t, "/healthz") != 200 {
			t.Fatal("not ready after a refused reload")
		}
	})
	t.Run("logs never hold a token", func(t *testing.T) {
		logs := b.stderr.String()
		if strings.Contains(logs, read[:40]) || strings.Contains(logs, "eyJ") {
			t.Fatal("a token is in the log")
		}
		if !strings.Contains(logs, `"msg":"request denied"`) || !strings.Contains(logs, `"reason":"expired"`) {
			t.Fatalf("denials not logged:\n%s", logs)
		}
	})
}

func TestSidecarBinaryDrainsOnSIGTERM(t *testing.T) {
	b := startBinarySidecar(t, "")
	read := b.as.MustMint(jwkstest.Claims{"scope": "orders:read"})
	const inflight = 20
	codes := make(chan int, inflight)
	var wg sync.WaitGroup
	for range inflight {
		wg.Go(func() {
			req, _ := http.NewRequest("GET", b.url+"/slow", nil)
			req.Header.Set("Authorization", "Bearer "+read)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				codes <- -1
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		})
	}
	time.Sleep(150 * time.Millisecond) // all 20 are waiting on the slow upstream
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(codes)
	lost := 0
	for c := range codes {
		if c != 200 {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d requests in flight were lost at SIGTERM", lost, inflight)
	}
	select {
	case err := <-b.exited:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, b.stderr.String())
		}
		b.exited <- nil
	case <-time.After(15 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
}

func TestCheckConfigFlag(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(good, []byte("upstream: http://127.0.0.1:1\nissuers:\n  - issuer: https://a.example\n    audiences: [x]\nroutes:\n  - match: /\n"), 0o600)
	_ = os.WriteFile(bad, []byte("upstream: http://127.0.0.1:1\nissuers:\n  - issuer: https://a.example\n    audience: [x]\nroutes:\n  - match: /\n"), 0o600)
	out, err := exec.Command(binary, "sidecar", "--check-config", "--offline", "--config", good).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "valid") {
		t.Fatalf("%v %s", err, out)
	}
	out, err = exec.Command(binary, "sidecar", "--check-config", "--config", bad).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "bad.yaml:4: issuers[0].audience: unknown key") {
		t.Fatalf("%v %s", err, out)
	}

	// A valid file whose issuer has a trailing slash that the issuer's own discovery
	// document does not have (issue 11): --check-config says what is wrong, at once,
	// and so does check instead of waiting out --wait.
	as, err := jwkstest.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer as.Close()
	slash := filepath.Join(dir, "slash.yaml")
	_ = os.WriteFile(slash, []byte(fmt.Sprintf("upstream: http://127.0.0.1:1\nissuers:\n  - issuer: %s/\n    audiences: [x]\nroutes:\n  - match: /\n", as.Issuer)), 0o600)
	start := time.Now()
	out, err = exec.Command(binary, "sidecar", "--check-config", "--config", slash).CombinedOutput()
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "they differ by a trailing slash") {
		t.Fatalf("%v %s", err, out)
	}
	out, err = exec.Command(binary, "check", "--config", slash, "--wait", "30s", as.MustMint(nil)).CombinedOutput()
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "keys:     the keys of "+as.Issuer+"/ could not be loaded") {
		t.Fatalf("%v %s", err, out)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Fatalf("took %s: check waited out --wait", took)
	}
	// The same file with the issuer right is valid, keys and all.
	_ = os.WriteFile(slash, []byte(fmt.Sprintf("upstream: http://127.0.0.1:1\nissuers:\n  - issuer: %s\n    audiences: [x]\nroutes:\n  - match: /\n", as.Issuer)), 0o600)
	if out, err := exec.Command(binary, "sidecar", "--check-config", "--config", slash).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
}
