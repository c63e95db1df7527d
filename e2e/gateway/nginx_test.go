//go:build e2e

// Package gateway_test puts a real gateway in front of an API and tokengate's decision
// service (`tokengate authz`, the real binary) behind it, configured as
// docs/gateways.md says: Debian's nginx (tools/debs pins it), started by the test on a
// loopback port with the documentation's own auth_request block (read from
// docs/gateways.md, so the documentation is what runs), in front of a recording API.
// What reaches the API and what reaches the client is checked: identity headers from
// the verified token only, spoofed ones (any case, an underscore spelling) never; the
// RFC 6750 challenge, status and body of a denial; a 400 and a 503, which nginx would
// turn into 500s, restored.
//
// The decision service is the tokengate binary, built once by TestMain, started with a
// configuration file (authz.listen and admin on free loopback ports) and stopped with
// SIGTERM; its issuer is a real authorization server (jwkstest, real keys over a real
// JWKS endpoint, found by discovery). What the suite reads of it, it reads from outside:
// /readyz, /healthz and /metrics on its admin port.
//
//	go test -tags e2e -count=1 -v ./e2e/gateway/
//
// Needs nginx from tools/debs; it never skips.
package gateway_test

import (
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

	"github.com/tokengate/tokengate/authz"
	"github.com/tokengate/tokengate/internal/e2etest"
	"github.com/tokengate/tokengate/internal/upstreamtest"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

const (
	// nginxBinary is Debian's nginx, by absolute path: PATH may lead to another build.
	nginxBinary = "/usr/sbin/nginx"
	audience    = "https://orders.example.com"
	realm       = "orders-api"
	// The addresses docs/gateways.md's nginx block names, replaced by the test's.
	docsAuthz    = "127.0.0.1:9191"
	docsUpstream = "127.0.0.1:8080"
)

var client = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{}}

// binary is the tokengate binary the suite runs, built once by TestMain, or the one
// TOKENGATE_E2E_BINARY names (an earlier build, as every end-to-end suite allows).
var binary string

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	if binary = os.Getenv("TOKENGATE_E2E_BINARY"); binary != "" {
		return m.Run()
	}
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e/gateway: FAIL: %v\n", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "tokengate-gateway")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e/gateway: FAIL: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "tokengate")
	build := exec.Command("go", "build", "-o", binary, "./cmd/tokengate")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e/gateway: FAIL: building tokengate: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// moduleRoot is the repository's root directory.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

// config is the decision service's configuration file for the orders API: the
// issuer's keys by discovery, reading an order needs orders:read, creating one
// orders:write, and forward.claims as the documentation's nginx block expects them.
// With dpop, the issuer's tokens may be DPoP-bound (and externalURL is required).
func config(issuer, listen, admin string, dpop bool) string {
	var issuerDPoP, externalURL string
	if dpop {
		issuerDPoP = "    dpop: allowed\n"
		externalURL = "externalURL: \"https://orders.example.com\"\n"
	}
	return fmt.Sprintf(`realm: %q
admin: %q
authz:
  listen: %q
%sissuers:
  - issuer: %q
    audiences: [%q]
%sroutes:
  - match: "GET /healthz"
    public: true
  - match: "GET /orders/{id}"
    scopes: [orders:read]
  - match: "POST /orders"
    scopes: [orders:write]
forward:
  claims: {sub: X-Auth-Subject, client_id: X-Auth-Client-Id, scope: X-Auth-Scopes}
`, realm, admin, listen, externalURL, issuer, audience, issuerDPoP)
}

// decisionService is a running `tokengate authz`.
type decisionService struct {
	addr  string // authz.listen, which nginx asks
	admin string // http://admin, for /metrics, /healthz and /readyz
	log   *e2etest.LockedBuffer
}

// startDecisionService runs `tokengate authz` with the orders API's configuration for
// the issuer as until the test ends, then stops it with SIGTERM and expects exit 0. It
// waits for /readyz (the issuer's keys loaded) when waitKeys, for /healthz otherwise.
func startDecisionService(t *testing.T, as *jwkstest.Server, waitKeys, dpop bool) *decisionService {
	t.Helper()
	ds := &decisionService{log: &e2etest.LockedBuffer{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("tokengate authz log (last 8000 bytes):\n%s", tail(ds.log.String(), 8000))
		}
	})
	probe := "/healthz"
	if waitKeys {
		probe = "/readyz"
	}
	cfgPath := filepath.Join(t.TempDir(), "tokengate.yaml")
	// The ports are free when chosen and taken by the binary a moment later: another
	// process may take one in between. Then the binary exits at once, and other ports
	// are tried.
	for attempt := range 3 {
		ds.addr = e2etest.FreeAddr(t)
		adminAddr := e2etest.FreeAddr(t)
		ds.admin = "http://" + adminAddr
		if err := os.WriteFile(cfgPath, []byte(config(as.Issuer, ds.addr, adminAddr, dpop)), 0o600); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(ds.log, "--- attempt %d\n", attempt+1)
		cmd := exec.Command(binary, "authz", "--config", cfgPath, "--log-format", "json")
		cmd.Stdout, cmd.Stderr = ds.log, ds.log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		if ds.answers(probe, exited) {
			t.Cleanup(func() { ds.stop(t, cmd, exited) })
			return ds
		}
		_ = cmd.Process.Kill()
		<-exited
	}
	t.Fatalf("tokengate authz did not answer 200 on %s", probe)
	return nil
}

// answers waits, for at most 20 s, until the admin path answers 200; false if the
// binary exited first.
func (ds *decisionService) answers(path string, exited chan error) bool {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			exited <- err
			return false
		default:
		}
		if ds.adminStatus(path) == http.StatusOK {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// adminStatus is the status of GET admin+path, 0 when the binary does not answer.
func (ds *decisionService) adminStatus(path string) int {
	resp, err := client.Get(ds.admin + path)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// stop sends SIGTERM and expects exit 0 within 15 s; SIGKILL otherwise.
func (ds *decisionService) stop(t *testing.T, cmd *exec.Cmd, exited chan error) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("tokengate authz exited on SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		t.Error("tokengate authz did not exit within 15 s of SIGTERM")
	}
}

// requests is tokengate_authz_requests_total{protocol="nginx", decision}, scraped
// from the binary's /metrics. The series exists from the start, at zero.
func (ds *decisionService) requests(t *testing.T, decision string) float64 {
	t.Helper()
	resp, err := client.Get(ds.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		t.Fatal(err)
	}
	series := fmt.Sprintf(`tokengate_authz_requests_total{decision=%q,protocol="nginx"} `, decision)
	for line := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return n
		}
	}
	t.Fatalf("/metrics has no %s", strings.TrimSpace(series))
	return 0
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// docsBlock is the nginx configuration docs/gateways.md gives, between "## nginx" and
// the next heading: its first nginx code block.
func docsBlock(t *testing.T) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(root, "docs", "gateways.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n## nginx\n")
	if !ok {
		t.Fatal("docs/gateways.md has no ## nginx section")
	}
	_, block, ok := strings.Cut(section, "```nginx\n")
	if !ok {
		t.Fatal("docs/gateways.md's nginx section has no nginx block")
	}
	block, _, ok = strings.Cut(block, "```")
	if !ok || !strings.Contains(block, docsAuthz) || !strings.Contains(block, docsUpstream) {
		t.Fatalf("docs/gateways.md's nginx block does not name %s and %s as the test expects", docsAuthz, docsUpstream)
	}
	return block
}

// nginx is a running nginx.
type nginx struct {
	url string
	log *e2etest.LockedBuffer
}

// startNginx runs nginx with the documentation's block in a server on a free loopback
// port, the decision service at authzAddr and the API at upstream; it stops when the
// test ends, and its log is printed when the test failed.
func startNginx(t *testing.T, authzAddr, upstream string) *nginx {
	t.Helper()
	if _, err := os.Stat(nginxBinary); err != nil {
		t.Fatalf("%s is missing (%v): run `tools/debs` as root from the repository's root; it installs the pinned nginx", nginxBinary, err)
	}
	block := strings.NewReplacer(docsAuthz, authzAddr, docsUpstream, upstream).Replace(docsBlock(t))
	dir := t.TempDir()
	n := &nginx{log: &e2etest.LockedBuffer{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("nginx log:\n%s", n.log.String())
		}
	})
	// The port is free when chosen and taken by nginx a moment later: another process
	// may take it in between. Then nginx exits at once, and another port is tried.
	for attempt := range 3 {
		addr := e2etest.FreeAddr(t)
		conf := filepath.Join(dir, fmt.Sprintf("nginx-%d.conf", attempt))
		user := ""
		if os.Geteuid() == 0 {
			user = "user root;" // workers as root read the test's temporary files
		}
		if err := os.WriteFile(conf, []byte(fmt.Sprintf(`%s
worker_processes 1;
error_log stderr info;
pid %[2]s/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %[2]s/client_body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
    server {
        listen %[3]s;
%[4]s
    }
}
`, user, dir, addr, block)), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(nginxBinary, "-p", dir, "-c", conf, "-g", "daemon off;")
		cmd.Stdout, cmd.Stderr = n.log, n.log
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // the master and its worker, stopped together
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		if up(addr, exited) {
			t.Cleanup(func() { stop(t, cmd, exited) })
			n.url = "http://" + addr
			return n
		}
		stop(t, cmd, exited)
	}
	t.Fatalf("nginx did not start:\n%s", n.log.String())
	return nil
}

// up waits, for at most 10 s, until addr accepts connections; false if nginx exited.
func up(addr string, exited chan error) bool {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			exited <- err
			return false
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// stop ends nginx: SIGQUIT lets it finish, SIGKILL to the process group after 10 s.
func stop(t *testing.T, cmd *exec.Cmd, exited chan error) {
	_ = cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		t.Error("nginx did not stop on SIGQUIT")
	}
}

// answer is what nginx answered the client.
type answer struct {
	status    int
	challenge []string
	header    http.Header
	error     string // the JSON body's error
	desc      string
	body      string
}

func (n *nginx) do(t *testing.T, method, path string, header ...string) answer {
	t.Helper()
	req, err := http.NewRequest(method, n.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "orders.example.com"
	for _, h := range header {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Add(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	a := answer{status: resp.StatusCode, challenge: resp.Header.Values("WWW-Authenticate"), header: resp.Header, body: string(b)}
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if json.Unmarshal(b, &e) == nil {
		a.error, a.desc = e.Error, e.Description
	}
	return a
}

// TestNginxAuthRequest is the documented nginx block in front of the API: allowed
// requests reach it with the token's identity and nothing a client forged; denied ones
// never reach it, and the client gets tokengate's answer.
func TestNginxAuthRequest(t *testing.T) {
	as := jwkstest.MustNewServer(jwkstest.WithAudience(audience))
	t.Cleanup(as.Close)
	ds := startDecisionService(t, as, true, false)
	api := upstreamtest.Start(t)
	ngx := startNginx(t, ds.addr, strings.TrimPrefix(api.URL, "http://"))
	read := "Authorization: Bearer " + as.MustMint(jwkstest.Claims{"sub": "alice", "scope": "orders:read"})

	t.Run("allowed, identity headers reach the API, spoofed ones do not", func(t *testing.T) {
		before := api.Count()
		a := ngx.do(t, "GET", "/orders/42?expand=items", read,
			"X-Auth-Subject: admin", "x-auth-client-id: admin-client", "X_Auth_Subject: admin2", "X-AUTH-SCOPES: orders:admin",
			"X-Auth-Role: root")
		if a.status != 200 {
			t.Fatalf("status %d: %s", a.status, a.body)
		}
		if api.Count() != before+1 {
			t.Fatal("the API was not reached")
		}
		got := api.Last()
		if got.Path != "/orders/42" || got.Query != "expand=items" {
			t.Errorf("the API got %s?%s", got.Path, got.Query)
		}
		for name, want := range map[string]string{"X-Auth-Subject": "alice", "X-Auth-Client-Id": "client-1", "X-Auth-Scopes": "orders:read"} {
			if v := got.Header.Values(name); len(v) != 1 || v[0] != want {
				t.Errorf("the API got %s %q, want exactly %q", name, v, want)
			}
		}
		for name, v := range got.Header {
			if strings.Contains(strings.ToLower(name), "x_auth") || strings.HasPrefix(name, "Tokengate") {
				t.Errorf("the API got %s %q", name, v)
			}
		}
		// As docs/gateways.md says: nginx cannot drop headers by prefix, so a name
		// outside forward.claims passes. If this fails, nginx changed: update the docs.
		if v := got.Header.Values("X-Auth-Role"); len(v) != 1 {
			t.Errorf("X-Auth-Role %q: docs/gateways.md says nginx passes it", v)
		}
	})

	t.Run("a claim the token lacks: the client's header is removed", func(t *testing.T) {
		tok := as.MustMint(jwkstest.Claims{"sub": "bob", "scope": "orders:read", "client_id": jwkstest.Absent})
		a := ngx.do(t, "GET", "/orders/1", "Authorization: Bearer "+tok, "X-Auth-Client-Id: admin-client")
		if a.status != 200 {
			t.Fatalf("status %d: %s", a.status, a.body)
		}
		if v := api.Last().Header.Values("X-Auth-Client-Id"); len(v) != 0 {
			t.Errorf("the API got X-Auth-Client-Id %q", v)
		}
	})

	t.Run("public route: no identity", func(t *testing.T) {
		a := ngx.do(t, "GET", "/healthz", "X-Auth-Subject: admin")
		if a.status != 200 {
			t.Fatalf("status %d: %s", a.status, a.body)
		}
		if v := api.Last().Header.Values("X-Auth-Subject"); len(v) != 0 {
			t.Errorf("the API got X-Auth-Subject %q", v)
		}
	})

	expired := as.MustMint(jwkstest.Claims{"scope": "orders:read", "exp": time.Now().Add(-time.Hour).Unix()})
	write := as.MustMint(jwkstest.Claims{"scope": "orders:write"})
	for _, tc := range []struct {
		name, method, path string
		header             []string
		status             int
		challenge, error   string
	}{
		{"no token", "GET", "/orders/42", []string{"X-Auth-Subject: admin"}, 401, `Bearer realm="orders-api"`, "missing_token"},
		{"expired", "GET", "/orders/42", []string{"Authorization: Bearer " + expired}, 401,
			`Bearer realm="orders-api", error="invalid_token", error_description="the access token expired"`, "invalid_token"},
		{"insufficient scope", "GET", "/orders/42", []string{"Authorization: Bearer " + write}, 403,
			`Bearer realm="orders-api", error="insufficient_scope", error_description="the access token lacks a scope this route requires", scope="orders:read"`,
			"insufficient_scope"},
		{"no route", "DELETE", "/orders/42", []string{read}, 403, `Bearer realm="orders-api"`, "no_route"},
		// nginx turns a subrequest's 400 into a 500; the documented error_page gives
		// the client tokengate's 400 back.
		{"malformed header", "GET", "/orders/42", []string{"Authorization: Bearer a b"}, 400,
			`Bearer realm="orders-api", error="invalid_request", error_description="the request carries a malformed or duplicated access token"`,
			"invalid_request"},
	} {
		t.Run("denied: "+tc.name, func(t *testing.T) {
			before := api.Count()
			a := ngx.do(t, tc.method, tc.path, tc.header...)
			if a.status != tc.status {
				t.Fatalf("status %d, want %d: %s", a.status, tc.status, a.body)
			}
			if len(a.challenge) != 1 || a.challenge[0] != tc.challenge {
				t.Errorf("WWW-Authenticate %q, want %q", a.challenge, tc.challenge)
			}
			if a.error != tc.error || a.desc == "" || a.header.Get("Content-Type") != "application/json" || a.header.Get("Cache-Control") != "no-store" {
				t.Errorf("body %q (Content-Type %q, Cache-Control %q), want error %q",
					a.body, a.header.Get("Content-Type"), a.header.Get("Cache-Control"), tc.error)
			}
			if a.header.Get(authz.BodyHeader) != "" {
				t.Errorf("the client got %s", authz.BodyHeader)
			}
			if api.Count() != before {
				t.Error("a denied request reached the API")
			}
		})
	}

	// The decision service counted each question under nginx.
	for decision, want := range map[string]float64{"allowed": 3, "denied": 5, "error": 0} {
		if got := ds.requests(t, decision); got != want {
			t.Errorf("tokengate_authz_requests_total{protocol=nginx,decision=%s} %v, want %v", decision, got, want)
		}
	}
}

// TestNginxChallenges: with DPoP allowed a denial has a Bearer and a DPoP challenge;
// nginx 1.22 reads one header field of a name, and /nginx puts both in one.
func TestNginxChallenges(t *testing.T) {
	as := jwkstest.MustNewServer(jwkstest.WithAudience(audience))
	t.Cleanup(as.Close)
	ds := startDecisionService(t, as, true, true)
	api := upstreamtest.Start(t)
	ngx := startNginx(t, ds.addr, strings.TrimPrefix(api.URL, "http://"))
	for _, tc := range []struct {
		path   string
		status int
	}{{"/orders/1", 401}, {"/orders", 403}} {
		a := ngx.do(t, "GET", tc.path)
		if a.status != tc.status || len(a.challenge) != 1 ||
			!strings.HasPrefix(a.challenge[0], `Bearer realm="orders-api", DPoP realm="orders-api", algs="`) {
			t.Errorf("%s: status %d, WWW-Authenticate %q", tc.path, a.status, a.challenge)
		}
	}
}

// TestNginxUnavailable: while the issuer's keys never loaded (its authorization
// server answers every request 503), tokengate is alive but not ready and answers 503;
// nginx would turn it into a 500, and the documented error_page gives the client the
// 503 with Retry-After. Never an allow.
func TestNginxUnavailable(t *testing.T) {
	as := jwkstest.MustNewServer(jwkstest.WithAudience(audience))
	t.Cleanup(as.Close)
	as.SetDown(true)
	ds := startDecisionService(t, as, false, false)
	if got := ds.adminStatus("/readyz"); got != http.StatusServiceUnavailable {
		t.Fatalf("/readyz %d without the issuer's keys, want 503", got)
	}
	api := upstreamtest.Start(t)
	ngx := startNginx(t, ds.addr, strings.TrimPrefix(api.URL, "http://"))
	a := ngx.do(t, "GET", "/orders/1", "Authorization: Bearer "+as.MustMint(jwkstest.Claims{"scope": "orders:read"}))
	if a.status != 503 || a.header.Get("Retry-After") == "" || a.error != "keys_unavailable" {
		t.Fatalf("status %d, Retry-After %q, body %s", a.status, a.header.Get("Retry-After"), a.body)
	}
	if api.Count() != 0 {
		t.Error("the API was reached")
	}
	if got := ds.requests(t, "denied"); got != 1 {
		t.Errorf("tokengate_authz_requests_total{protocol=nginx,decision=denied} %v, want 1", got)
	}
}

// TestNginxDecisionServiceDown: with the decision service unreachable, nginx answers
// 503 without a body: fail closed.
func TestNginxDecisionServiceDown(t *testing.T) {
	api := upstreamtest.Start(t)
	ngx := startNginx(t, e2etest.FreeAddr(t), strings.TrimPrefix(api.URL, "http://"))
	a := ngx.do(t, "GET", "/healthz")
	if a.status != 503 || api.Count() != 0 {
		t.Fatalf("status %d, API reached %d times", a.status, api.Count())
	}
}
