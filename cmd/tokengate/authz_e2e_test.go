package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tokengate/tokengate/internal/e2etest"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

// authzConfig is `tokengate authz`'s configuration file: no upstream (the gateway
// forwards), the decision endpoints on authz.listen, reading an order needs the scope
// readScope.
const authzConfig = `admin: %[1]q
authz:
  listen: %[2]q
realm: orders-api
issuers:
  - issuer: %[3]q
    audiences: [%[4]q]
routes:
  - match: "GET /healthz"
    public: true
  - match: "GET /orders/{id}"
    scopes: [%[5]s]
  - match: "POST /orders"
    scopes: [orders:write]
forward:
  claims: {sub: X-Auth-Subject, client_id: X-Auth-Client-Id, scope: X-Auth-Scopes}
`

// binaryAuthz is the built tokengate binary running `authz`, with its issuer.
type binaryAuthz struct {
	cmd           *exec.Cmd
	as            *jwkstest.Server
	listen, admin string // authz.listen; http://admin
	adminAddr     string
	cfg           string
	stderr        *e2etest.LockedBuffer
	exited        chan error
}

// startBinaryAuthz writes the configuration for as and starts `tokengate authz`; it
// is killed when the test ends, and its log printed when the test failed. It waits
// until the process answers /healthz (alive), not for its keys.
func startBinaryAuthz(t *testing.T, as *jwkstest.Server) *binaryAuthz {
	t.Helper()
	b := &binaryAuthz{as: as, stderr: &e2etest.LockedBuffer{}, exited: make(chan error, 1)}
	b.listen, b.adminAddr = e2etest.FreeAddr(t), e2etest.FreeAddr(t)
	b.admin = "http://" + b.adminAddr
	b.cfg = filepath.Join(t.TempDir(), "tokengate.yaml")
	b.write(t, "orders:read", b.listen)
	b.cmd = exec.Command(binary, "authz", "--config", b.cfg, "--log-format", "json")
	b.cmd.Stderr = b.stderr
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { b.exited <- b.cmd.Wait() }()
	t.Cleanup(func() {
		_ = b.cmd.Process.Kill()
		<-b.exited
		if t.Failed() {
			t.Logf("authz log:\n%s", b.stderr.String())
		}
	})
	poll(t, "/healthz", func() bool {
		select {
		case err := <-b.exited:
			b.exited <- err
			t.Fatalf("tokengate authz exited: %v", err)
		default:
		}
		return b.adminStatus("/healthz") == 200
	})
	return b
}

// write replaces the configuration file atomically (a rename, as a ConfigMap update
// does), with readScope as the scope GET /orders/{id} needs and listen as
// authz.listen.
func (b *binaryAuthz) write(t *testing.T, readScope, listen string) {
	t.Helper()
	cfg := fmt.Sprintf(authzConfig, b.adminAddr, listen, b.as.Issuer, e2eAudience, readScope)
	if err := os.WriteFile(b.cfg+".tmp", []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(b.cfg+".tmp", b.cfg); err != nil {
		t.Fatal(err)
	}
}

// adminStatus is the status of GET admin+path, 0 when the binary does not answer.
func (b *binaryAuthz) adminStatus(path string) int {
	resp, err := authzClient.Get(b.admin + path)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// metric is the value of one series of the binary's /metrics, as the exposition
// spells it (labels in name order); false when there is no such series.
func (b *binaryAuthz) metric(t *testing.T, series string) (float64, bool) {
	t.Helper()
	resp, err := authzClient.Get(b.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return n, true
		}
	}
	return 0, false
}

// authzClient keeps no connection between requests, so that a check never rides on
// a connection the binary's shutdown may be closing.
var authzClient = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// authzAnswer is the decision service's answer to one check request.
type authzAnswer struct {
	status int
	header http.Header
	error  string // the JSON body's error, on a denial
}

// check sends method path to the decision service with headers ("Name: value").
func (b *binaryAuthz) check(t *testing.T, method, path, host string, headers ...string) authzAnswer {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+b.listen+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Add(k, v)
	}
	resp, err := authzClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		t.Fatal(err)
	}
	a := authzAnswer{status: resp.StatusCode, header: resp.Header}
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil {
		a.error = e.Error
	}
	return a
}

// traefik asks /traefik about GET uri, as Traefik's forwardAuth does.
func (b *binaryAuthz) traefik(t *testing.T, uri string, headers ...string) authzAnswer {
	t.Helper()
	return b.check(t, "GET", "/traefik", "", append([]string{
		"X-Forwarded-Method: GET", "X-Forwarded-Uri: " + uri, "X-Forwarded-Host: orders.example.com",
		"X-Forwarded-Proto: https", "X-Forwarded-For: 192.0.2.7",
	}, headers...)...)
}

// grpcCheck is Envoy's CheckRequest for GET path with headers (lower-case names).
func grpcCheck(path string, headers map[string]string) *authv3.CheckRequest {
	h := map[string]string{":method": "GET", ":path": path, ":authority": "orders.example.com", ":scheme": "https"}
	for k, v := range headers {
		h[k] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: path, Host: "orders.example.com", Scheme: "https", Protocol: "HTTP/1.1", Headers: h,
		}},
	}}
}

func headerValues(opts []*corev3.HeaderValueOption) map[string]string {
	m := map[string]string{}
	for _, o := range opts {
		m[o.GetHeader().GetKey()] = o.GetHeader().GetValue()
	}
	return m
}

// TestAuthzCheckConfig: `tokengate authz --check-config` says valid (exit 0) or names
// every problem with its key and line (exit 2); authz.listen is required; without
// --offline it also loads every issuer's keys, as the sidecar's does.
func TestAuthzCheckConfig(t *testing.T) {
	dir := t.TempDir()
	// An issuer nothing answers for: --check-config reaches it unless --offline.
	const rest = "issuers:\n  - issuer: http://127.0.0.1:1\n    audiences: [x]\nroutes:\n  - match: /\n"
	for _, tc := range []struct {
		name, file string
		args       []string
		code       int
		want       string // in stdout for exit 0, in stderr otherwise
	}{
		{"valid", "authz: {listen: \"127.0.0.1:9191\"}\n" + rest, []string{"--offline"}, exitOK,
			"valid.yaml: valid (1 issuers, 1 routes, authz on 127.0.0.1:9191)"},
		{"valid but the keys cannot be had", "authz: {listen: \"127.0.0.1:9191\"}\n" + rest, nil, exitUsage,
			"the configuration is valid, but it does not work:\n  the keys of http://127.0.0.1:1 could not be loaded"},
		{"no authz", rest, nil, exitUsage,
			`no authz.yaml: authz.listen: is required for tokengate authz`},
		{"no authz.listen", "admin: 127.0.0.1:9090\nauthz: {}\n" + rest, nil, exitUsage,
			`no authz.listen.yaml:2: authz.listen: is required for tokengate authz`},
		{"not host:port", "authz:\n  listen: nope\n" + rest, nil, exitUsage,
			`not host:port.yaml:2: authz.listen: "nope" is not host:port`},
		{"the admin address", "admin: 127.0.0.1:9191\nauthz: {listen: \"127.0.0.1:9191\"}\n" + rest, nil, exitUsage,
			`the admin address.yaml:2: authz.listen: is the same address as admin`},
		{"--listen supplies it", rest, []string{"--offline", "--listen", "127.0.0.1:9292"}, exitOK,
			"authz on 127.0.0.1:9292"},
		{"an unknown key", "authz: {listen: \"127.0.0.1:9191\", port: 9191}\n" + rest, nil, exitUsage,
			`an unknown key.yaml:1: authz.port: unknown key`},
		{"not a header name", "authz: {listen: \"127.0.0.1:9191\"}\n" + rest, []string{"--nginx-uri-header", "X Original URI"}, exitUsage,
			`--nginx-uri-header "X Original URI" is not a header name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name+".yaml")
			if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr := runBinary(t, append([]string{"authz", "--check-config", "--config", path}, tc.args...)...)
			out := stderr
			if tc.code == exitOK {
				out = stdout
			}
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s\nwant exit %d and %q", code, stdout, stderr, tc.code, tc.want)
			}
		})
	}
	if code, _, stderr := runBinary(t, "authz", "--check-config"); code != exitUsage || !strings.Contains(stderr, "--config") {
		t.Errorf("without --config: exit %d, %s", code, stderr)
	}
}

// TestAuthzBinary runs `tokengate authz` and asks it as each gateway does: not ready
// until the issuer's keys are loaded, then decisions over Traefik's forwardAuth,
// nginx's auth_request, Envoy's ext_authz HTTP and gRPC services, each counted under
// its protocol on /metrics.
func TestAuthzBinary(t *testing.T) {
	as, err := jwkstest.NewServer(jwkstest.WithAudience(e2eAudience))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(as.Close)
	as.SetDown(true)
	b := startBinaryAuthz(t, as)
	read := as.MustMint(jwkstest.Claims{"sub": "u1", "client_id": "c1", "scope": "orders:read"})
	write := as.MustMint(jwkstest.Claims{"sub": "u1", "scope": "orders:write"})

	t.Run("readyz once the keys are loaded", func(t *testing.T) {
		if got := b.adminStatus("/readyz"); got != http.StatusServiceUnavailable {
			t.Fatalf("/readyz %d while the issuer is down, want 503", got)
		}
		a := b.traefik(t, "/orders/1", "Authorization: Bearer "+read)
		if a.status != http.StatusServiceUnavailable || a.error != "keys_unavailable" || a.header.Get("Retry-After") == "" {
			t.Fatalf("a check without keys: %d %q Retry-After %q", a.status, a.error, a.header.Get("Retry-After"))
		}
		as.SetDown(false)
		poll(t, "/readyz 200 after the issuer came back", func() bool { return b.adminStatus("/readyz") == 200 })
	})

	t.Run("traefik", func(t *testing.T) {
		a := b.traefik(t, "/orders/1?expand=items", "Authorization: Bearer "+read, "X-Auth-Subject: admin")
		if a.status != 200 || a.header.Get("Cache-Control") != "no-store" {
			t.Fatalf("allowed: %d %q", a.status, a.error)
		}
		for name, want := range map[string]string{"X-Auth-Subject": "u1", "X-Auth-Client-Id": "c1", "X-Auth-Scopes": "orders:read"} {
			if v := a.header.Values(name); len(v) != 1 || v[0] != want {
				t.Errorf("%s %q, want %q", name, v, want)
			}
		}
		a = b.traefik(t, "/orders/1")
		if a.status != 401 || a.header.Get("WWW-Authenticate") != `Bearer realm="orders-api"` || a.error != "missing_token" {
			t.Errorf("no token: %d %q, WWW-Authenticate %q", a.status, a.error, a.header.Values("WWW-Authenticate"))
		}
		if a.header.Get("X-Auth-Subject") != "" {
			t.Errorf("a denial carries X-Auth-Subject %q", a.header.Get("X-Auth-Subject"))
		}
		a = b.traefik(t, "/orders/1", "Authorization: Bearer "+write)
		if a.status != 403 || a.error != "insufficient_scope" || !strings.Contains(a.header.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
			t.Errorf("another scope: %d %q, WWW-Authenticate %q", a.status, a.error, a.header.Values("WWW-Authenticate"))
		}
	})

	t.Run("nginx", func(t *testing.T) {
		a := b.check(t, "GET", "/nginx", "orders.example.com", "X-Original-Method: GET", "X-Original-URI: /orders/7", "Authorization: Bearer "+read)
		if a.status != 200 || a.header.Get("X-Auth-Subject") != "u1" {
			t.Errorf("allowed: %d %q, X-Auth-Subject %q", a.status, a.error, a.header.Get("X-Auth-Subject"))
		}
	})

	t.Run("envoy http", func(t *testing.T) {
		a := b.check(t, "GET", "/envoy/orders/1", "orders.example.com", "Authorization: Bearer "+read, "X-Auth-Role: root")
		if a.status != 200 || a.header.Get("X-Auth-Subject") != "u1" || a.header.Get("X-Auth-Scopes") != "orders:read" {
			t.Errorf("allowed: %d %q, headers %v", a.status, a.error, a.header)
		}
		if got := a.header.Get("X-Envoy-Auth-Headers-To-Remove"); got != "x-auth-role" {
			t.Errorf("x-envoy-auth-headers-to-remove %q, want the client's x-auth-role", got)
		}
		a = b.check(t, "POST", "/envoy/orders", "orders.example.com", "Authorization: Bearer "+read)
		if a.status != 403 || a.error != "insufficient_scope" {
			t.Errorf("another scope: %d %q", a.status, a.error)
		}
	})

	t.Run("envoy grpc", func(t *testing.T) {
		conn, err := grpc.NewClient(b.listen, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		client := authv3.NewAuthorizationClient(conn)

		resp, err := client.Check(ctx, grpcCheck("/orders/1", map[string]string{"authorization": "Bearer " + read}))
		if err != nil {
			t.Fatal(err)
		}
		got := headerValues(resp.GetOkResponse().GetHeaders())
		if c := codes.Code(resp.GetStatus().GetCode()); c != codes.OK || got["x-auth-subject"] != "u1" || got["x-auth-client-id"] != "c1" {
			t.Errorf("allowed: %v %q, headers %v", c, resp.GetStatus().GetMessage(), got)
		}

		resp, err = client.Check(ctx, grpcCheck("/orders/1", map[string]string{"authorization": "Bearer " + write}))
		if err != nil {
			t.Fatal(err) // a denial is an answer, never a gRPC error
		}
		denied := resp.GetDeniedResponse()
		if c := codes.Code(resp.GetStatus().GetCode()); c != codes.PermissionDenied || denied.GetStatus().GetCode() != 403 ||
			!strings.Contains(headerValues(denied.GetHeaders())["www-authenticate"], `error="insufficient_scope"`) ||
			!strings.Contains(denied.GetBody(), `"insufficient_scope"`) {
			t.Errorf("another scope: %v, denied %v", c, denied)
		}

		hc, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
		if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health: %v %v", hc.GetStatus(), err)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		for _, c := range []struct {
			protocol, decision string
			want               float64
		}{
			{"traefik", "allowed", 1}, {"traefik", "denied", 3}, // one of them while keys were not loaded
			{"nginx", "allowed", 1}, {"nginx", "denied", 0},
			{"envoy_http", "allowed", 1}, {"envoy_http", "denied", 1},
			{"envoy_grpc", "allowed", 1}, {"envoy_grpc", "denied", 1},
			{"envoy_grpc", "error", 0},
		} {
			series := fmt.Sprintf(`tokengate_authz_requests_total{decision=%q,protocol=%q}`, c.decision, c.protocol)
			if got, ok := b.metric(t, series); !ok || got != c.want {
				t.Errorf("%s %v (present %v), want %v", series, got, ok, c.want)
			}
		}
		if got, ok := b.metric(t, `tokengate_decisions_total{decision="allowed",reason="ok",route="GET /orders/{id}"}`); !ok || got != 4 {
			t.Errorf("the Gate's allowed decisions on GET /orders/{id}: %v (present %v), want 4", got, ok)
		}
	})
}

// TestAuthzBinaryReload: the binary reads its file again when it changes; a route
// whose scopes changed decides the next check by the new ones, without a restart; a
// new authz.listen is not bound before a restart, and the log says so; a file that
// does not load is refused while the running configuration stays.
func TestAuthzBinaryReload(t *testing.T) {
	as, err := jwkstest.NewServer(jwkstest.WithAudience(e2eAudience))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(as.Close)
	b := startBinaryAuthz(t, as)
	poll(t, "readiness", func() bool { return b.adminStatus("/readyz") == 200 })
	read := "Authorization: Bearer " + as.MustMint(jwkstest.Claims{"scope": "orders:read"})
	if a := b.traefik(t, "/orders/1", read); a.status != 200 {
		t.Fatalf("before the reload: %d %q", a.status, a.error)
	}

	b.write(t, "orders:admin", e2etest.FreeAddr(t))
	poll(t, "the new scopes in force", func() bool { return b.traefik(t, "/orders/1", read).status == 403 })
	// The warning comes after the new configuration is in force.
	poll(t, "a warning that the new authz.listen needs a restart", func() bool {
		return strings.Contains(b.stderr.String(), `"msg":"authz.listen and admin change only on restart; the rest of the configuration is applied"`)
	})
	if a := b.traefik(t, "/orders/1", read); a.error != "insufficient_scope" || !strings.Contains(a.header.Get("WWW-Authenticate"), `scope="orders:admin"`) {
		t.Errorf("after the reload: %d %q, WWW-Authenticate %q", a.status, a.error, a.header.Get("WWW-Authenticate"))
	}
	admin := "Authorization: Bearer " + as.MustMint(jwkstest.Claims{"scope": "orders:admin"})
	if a := b.traefik(t, "/orders/1", admin); a.status != 200 {
		t.Errorf("a token with the new scope: %d %q", a.status, a.error)
	}
	if got, _ := b.metric(t, `tokengate_config_reloads_total{result="success"}`); got != 1 {
		t.Errorf("reloads counted %v, want 1", got)
	}

	// A file that does not load: refused, counted, and the running configuration stays.
	if err := os.WriteFile(b.cfg+".tmp", []byte("authz: {listen: nope}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(b.cfg+".tmp", b.cfg); err != nil {
		t.Fatal(err)
	}
	poll(t, "the refusal counted", func() bool {
		v, _ := b.metric(t, `tokengate_config_reloads_total{result="error"}`)
		return v == 1
	})
	if v, _ := b.metric(t, "tokengate_config_last_reload_successful"); v != 0 {
		t.Errorf("last_reload_successful %v after a refusal", v)
	}
	if a := b.traefik(t, "/orders/1", admin); a.status != 200 {
		t.Errorf("after a refused file: %d %q", a.status, a.error)
	}
	if b.adminStatus("/readyz") != 200 {
		t.Error("not ready after a refused file")
	}
}

// TestAuthzBinarySIGTERM: SIGTERM stops the binary with exit 0, promptly, while a
// gateway's connections (an HTTP/1.1 keep-alive one, a gRPC one) are open and idle.
func TestAuthzBinarySIGTERM(t *testing.T) {
	as, err := jwkstest.NewServer(jwkstest.WithAudience(e2eAudience))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(as.Close)
	b := startBinaryAuthz(t, as)
	poll(t, "readiness", func() bool { return b.adminStatus("/readyz") == 200 })
	read := as.MustMint(jwkstest.Claims{"scope": "orders:read"})

	// An idle keep-alive connection, as nginx's upstream keepalive holds one.
	kept, err := net.DialTimeout("tcp", b.listen, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	_ = kept.SetDeadline(time.Now().Add(15 * time.Second))
	fmt.Fprintf(kept, "GET /traefik HTTP/1.1\r\nHost: authz\r\nX-Forwarded-Method: GET\r\nX-Forwarded-Uri: /orders/1\r\nX-Forwarded-Host: orders.example.com\r\nAuthorization: Bearer %s\r\n\r\n", read)
	line := make([]byte, len("HTTP/1.1 200"))
	if _, err := io.ReadFull(kept, line); err != nil || string(line) != "HTTP/1.1 200" {
		t.Fatalf("the keep-alive check: %q %v", line, err)
	}
	// An idle gRPC connection, as Envoy holds one.
	conn, err := grpc.NewClient(b.listen, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, grpcCheck("/orders/1", map[string]string{"authorization": "Bearer " + read})); err != nil || resp.GetOkResponse() == nil {
		t.Fatalf("the gRPC check: %v %v", resp, err)
	}

	start := time.Now()
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-b.exited:
		b.exited <- err
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(8 * time.Second): // the drain timeout is 10 s: idle connections must not wait for it
		t.Fatal("no exit within 8 s of SIGTERM")
	}
	took := time.Since(start)
	t.Logf("exited 0 %s after SIGTERM", took.Round(time.Millisecond))
	if took > 3*time.Second {
		t.Errorf("exit took %s with idle connections open; want it prompt", took)
	}
	if !strings.Contains(b.stderr.String(), `"msg":"stopped"`) {
		t.Errorf("no stopped line in the log:\n%s", b.stderr.String())
	}
}
