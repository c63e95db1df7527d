package policy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/tokengate/tokengate/internal/joined"
	"github.com/tokengate/tokengate/jwks/jwkstest"
	"github.com/tokengate/tokengate/middleware"
	"github.com/tokengate/tokengate/policy"
	"github.com/tokengate/tokengate/replay"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const audience = "https://orders.example.com"

// serviceConfig is a Go service's file: no upstream. %[1]s is the issuer, %[2]s more
// routes, %[3]s more top-level keys.
const serviceConfig = `realm: orders-api
issuers:
  - issuer: %[1]q
    audiences: [https://orders.example.com]
routes:
  - match: "GET /orders/{id}"
    scopes: [orders:read]
%[2]s%[3]s`

// service is a Go service that loads its policy with Watch: an authorization server,
// the file, the Watcher and an httptest server behind w.Handler.
type service struct {
	as      *jwkstest.Server
	path    string
	w       *policy.Watcher
	srv     *httptest.Server
	reg     *prometheus.Registry
	logs    *lockedBuffer
	reloads chan error // one per attempt to apply a changed file
}

func newService(t *testing.T, routes, extra string) *service {
	t.Helper()
	s := &service{as: jwkstest.MustNewServer(jwkstest.WithAudience(audience)), reg: prometheus.NewRegistry(),
		logs: &lockedBuffer{}, reloads: make(chan error, 16)}
	t.Cleanup(s.as.Close)
	s.path = filepath.Join(t.TempDir(), "tokengate.yaml")
	s.write(t, routes, extra)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var err error
	s.w, err = policy.Watch(ctx, s.path, policy.WatchOptions{
		Registerer: s.reg,
		Logger:     slog.New(slog.NewTextHandler(s.logs, nil)),
		Every:      5 * time.Millisecond,
		OnReload:   func(_ *policy.Loaded, err error) { s.reloads <- err },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.w.Close)
	waitCtx, stop := context.WithTimeout(ctx, 10*time.Second)
	defer stop()
	if err := s.w.Gate().WaitReady(waitCtx); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		c, _ := middleware.ClaimsFrom(r.Context())
		fmt.Fprintf(w, "hello %s", c.Subject)
	})
	s.srv = httptest.NewServer(s.w.Handler(mux))
	t.Cleanup(s.srv.Close)
	return s
}

// write replaces the file as kubectl cp or an editor does: a new file renamed over it.
func (s *service) write(t *testing.T, routes, extra string) {
	t.Helper()
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf(serviceConfig, s.as.Issuer, routes, extra)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		t.Fatal(err)
	}
}

// reloaded waits for the next attempt to apply the file, and returns its error.
func (s *service) reloaded(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.reloads:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the change of the file was not seen")
		return nil
	}
}

func (s *service) status(t *testing.T, method, path, token string) int {
	t.Helper()
	req, err := http.NewRequest(method, s.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func reloadMetrics(success, failure, ok int) string {
	return fmt.Sprintf(`
# HELP tokengate_config_last_reload_successful 1 while the running configuration is the configuration file's content; 0 while the file holds a configuration that was refused.
# TYPE tokengate_config_last_reload_successful gauge
tokengate_config_last_reload_successful %d
# HELP tokengate_config_reloads_total Configuration reloads, by result (success, error).
# TYPE tokengate_config_reloads_total counter
tokengate_config_reloads_total{result="error"} %d
tokengate_config_reloads_total{result="success"} %d
`, ok, failure, success)
}

func checkReloadMetrics(t *testing.T, reg prometheus.Gatherer, success, failure, ok int) {
	t.Helper()
	if err := testutil.GatherAndCompare(reg, strings.NewReader(reloadMetrics(success, failure, ok)),
		"tokengate_config_reloads_total", "tokengate_config_last_reload_successful"); err != nil {
		t.Error(err)
	}
}

// A changed file is applied between two requests, without fetching the keys again; a
// bad one is refused with every problem, logged and counted, and the running policy
// keeps answering until a good one comes.
func TestWatchAppliesAChangedFile(t *testing.T) {
	s := newService(t, "", "")
	tok := s.as.MustMint(jwkstest.Claims{"sub": "alice", "scope": "orders:read orders:write"})
	if got := s.status(t, "GET", "/orders/1", tok); got != 200 {
		t.Fatalf("GET /orders/1: %d", got)
	}
	if got := s.status(t, "POST", "/orders", tok); got != 403 {
		t.Fatalf("POST /orders before the reload: %d, want 403 (no route)", got)
	}
	fetches := s.as.JWKSFetches()
	gate := s.w.Gate()

	s.write(t, "  - match: \"POST /orders\"\n    scopes: [orders:write]\n", "")
	if err := s.reloaded(t); err != nil {
		t.Fatal(err)
	}
	if got := s.status(t, "POST", "/orders", tok); got != 200 {
		t.Fatalf("POST /orders after the reload: %d", got)
	}
	if s.w.Gate() == gate || len(s.w.Loaded().Gate.Routes) != 2 {
		t.Fatal("the Gate in force is not the new file's")
	}
	if s.as.JWKSFetches() != fetches {
		t.Fatal("a reload that kept the issuer fetched its keys again")
	}
	checkReloadMetrics(t, s.reg, 1, 0, 1)
	if !strings.Contains(s.logs.String(), "configuration reloaded") {
		t.Error("the reload is not logged")
	}

	// Two problems at once: the refusal names both, in the log too.
	s.write(t, "  - match: \"POST /orders\"\n    scope: [orders:write]\n  - match: \"GET /a/{x\"\n", "")
	err := s.reloaded(t)
	if err == nil {
		t.Fatal("a bad file was applied")
	}
	if n := len(joined.Flatten(err)); n != 2 {
		t.Errorf("%d problems, want 2: %v", n, err)
	}
	for _, want := range []string{"routes[1].scope: unknown key", "routes[2].match"} {
		if !strings.Contains(err.Error(), want) || !strings.Contains(s.logs.String(), want) {
			t.Errorf("%q is not in the error and the log:\n%v\n%s", want, err, s.logs)
		}
	}
	if !strings.Contains(s.logs.String(), "configuration refused") {
		t.Error("the refusal is not logged")
	}
	if got := s.status(t, "POST", "/orders", tok); got != 200 {
		t.Fatalf("POST /orders after a refused file: %d, want the running policy's 200", got)
	}
	checkReloadMetrics(t, s.reg, 1, 1, 0)

	// The next good file ends the refusal.
	s.write(t, "", "")
	if err := s.reloaded(t); err != nil {
		t.Fatal(err)
	}
	if got := s.status(t, "POST", "/orders", tok); got != 403 {
		t.Fatalf("POST /orders after the route was removed: %d", got)
	}
	checkReloadMetrics(t, s.reg, 2, 1, 1)
}

// A Kubernetes ConfigMap volume: the file is a symlink through ..data, which an update
// swaps to a new directory; the watch reads by path and sees the new content.
func TestWatchSeesAConfigMapUpdate(t *testing.T) {
	as := jwkstest.MustNewServer(jwkstest.WithAudience(audience))
	defer as.Close()
	dir := t.TempDir()
	version := func(name, routes string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "tokengate.yaml"), []byte(fmt.Sprintf(serviceConfig, as.Issuer, routes, "")), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(name, filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..2026_01_01", "")
	path := filepath.Join(dir, "tokengate.yaml")
	if err := os.Symlink("..data/tokengate.yaml", path); err != nil {
		t.Fatal(err)
	}
	reloads := make(chan error, 4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := policy.Watch(ctx, path, policy.WatchOptions{Logger: slog.New(slog.DiscardHandler), Every: 5 * time.Millisecond,
		OnReload: func(_ *policy.Loaded, err error) { reloads <- err }})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	version("..2026_01_02", "  - match: \"POST /orders\"\n")
	select {
	case err := <-reloads:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the ConfigMap update was not seen")
	}
	if routes := w.Loaded().Gate.Routes; len(routes) != 2 || routes[1].Match != "POST /orders" {
		t.Fatalf("routes %+v", routes)
	}
}

// While files change, every request is decided by one whole policy: never by none,
// never by half of one. Run with -race.
func TestWatchSwapsBetweenRequests(t *testing.T) {
	s := newService(t, "", "")
	tok := s.as.MustMint(jwkstest.Claims{"scope": "orders:read"})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				req, _ := http.NewRequest("GET", s.srv.URL+"/orders/1", nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := s.srv.Client().Do(req)
				if err != nil {
					errs <- err
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- fmt.Errorf("GET /orders/1 during reloads: %d", resp.StatusCode)
					return
				}
			}
		})
	}
	for i := range 6 {
		s.write(t, fmt.Sprintf("  - match: \"GET /extra/%d\"\n", i), "")
		if err := s.reloaded(t); err != nil {
			t.Error(err)
		}
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// A reload that names another issuer drops the first one's keys and fetches the new
// one's; tokens follow the file.
func TestWatchChangesIssuers(t *testing.T) {
	s := newService(t, "", "")
	other := jwkstest.MustNewServer(jwkstest.WithAudience(audience))
	defer other.Close()
	tokA := s.as.MustMint(jwkstest.Claims{"scope": "orders:read"})
	tokB := other.MustMint(jwkstest.Claims{"scope": "orders:read"})
	if got := s.status(t, "GET", "/orders/1", tokB); got != 401 {
		t.Fatalf("a token of an issuer the file does not name: %d", got)
	}
	file := fmt.Sprintf(`issuers:
  - issuer: %q
    audiences: [https://orders.example.com]
routes:
  - match: "GET /orders/{id}"
    scopes: [orders:read]
`, other.Issuer)
	if err := os.WriteFile(s.path+".tmp", []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(s.path+".tmp", s.path); err != nil {
		t.Fatal(err)
	}
	if err := s.reloaded(t); err != nil {
		t.Fatal(err)
	}
	waitCtx, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	if err := s.w.Gate().WaitReady(waitCtx); err != nil {
		t.Fatal(err)
	}
	if got := s.status(t, "GET", "/orders/1", tokB); got != 200 {
		t.Fatalf("a token of the new issuer: %d", got)
	}
	if got := s.status(t, "GET", "/orders/1", tokA); got != 401 {
		t.Fatalf("a token of the issuer the file dropped: %d", got)
	}
	// The dropped issuer's key set is closed, and its series are gone.
	families, err := s.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	kept := 0
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "tokengate_jwks_") {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				switch {
				case l.GetName() != "issuer":
				case l.GetValue() == s.as.Issuer:
					t.Errorf("%s still has a series of the dropped issuer", f.GetName())
				case l.GetValue() == other.Issuer:
					kept++
				}
			}
		}
	}
	if kept == 0 {
		t.Error("the new issuer's key set has no series")
	}
}

// The first file's problems come back from Watch, every one, and nothing is started.
func TestWatchRefusesABadFirstFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokengate.yaml")
	if err := os.WriteFile(path, []byte("issuers:\n  - issuer: https://auth.example.com\n    audience: [x]\nroutes: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := policy.Watch(context.Background(), path, policy.WatchOptions{})
	var p *policy.Problem
	if !errors.As(err, &p) || len(joined.Flatten(err)) < 3 {
		t.Fatalf("want every problem, each a *Problem: %v", err)
	}
	if _, err := policy.Watch(context.Background(), filepath.Join(dir, "nothing.yaml"), policy.WatchOptions{}); !errors.As(err, &p) || p.Path != filepath.Join(dir, "nothing.yaml") {
		t.Fatalf("a missing file: %v", err)
	}
}

// A Redis replay store comes from the program: policy imports no Redis client.
func TestWatchRedisReplayNeedsAStore(t *testing.T) {
	as := jwkstest.MustNewServer(jwkstest.WithAudience(audience))
	defer as.Close()
	path := filepath.Join(t.TempDir(), "tokengate.yaml")
	file := fmt.Sprintf(serviceConfig, as.Issuer, "", "replay: {store: redis, redis: {addrs: [\"127.0.0.1:6379\"]}}\n")
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := policy.Watch(context.Background(), path, policy.WatchOptions{}); err == nil || !strings.Contains(err.Error(), "WatchOptions.Gate.Replay") {
		t.Fatalf("want a clear refusal: %v", err)
	}
	w, err := policy.Watch(context.Background(), path, policy.WatchOptions{Logger: slog.New(slog.DiscardHandler),
		Gate: middleware.Options{Replay: replay.NewMemory(10, nil)}})
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
}

// The Watcher's goroutines (the file watch, the key sets' refreshes) end with its
// context, Close or not; Close after that is harmless.
func TestWatchStopsWithItsContext(t *testing.T) {
	before := goleak.IgnoreCurrent()
	as := jwkstest.MustNewServer(jwkstest.WithAudience(audience))
	path := filepath.Join(t.TempDir(), "tokengate.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(serviceConfig, as.Issuer, "", "")), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w, err := policy.Watch(ctx, path, policy.WatchOptions{Logger: slog.New(slog.DiscardHandler), Every: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	waitCtx, stop := context.WithTimeout(ctx, 10*time.Second)
	defer stop()
	if err := w.Gate().WaitReady(waitCtx); err != nil {
		t.Fatal(err)
	}
	cancel()
	as.Close()
	goleak.VerifyNone(t, before)
	w.Close()
	w.Close()
}

// A reload keeps the Introspectors of the issuers it keeps, and their caches: the
// answer for an opaque token is not asked for again.
func TestWatchKeepsIntrospectionAnswers(t *testing.T) {
	as := jwkstest.MustNewServer(jwkstest.WithAudience(audience))
	defer as.Close()
	as.AddClient(jwkstest.Client{ID: "orders-api", Secret: "s3cret"})
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "tokengate.yaml")
	write := func(mode string) {
		file := fmt.Sprintf(`mode: %s
issuers:
  - issuer: %q
    audiences: [https://orders.example.com]
    introspection: {clientID: orders-api, clientSecretFile: %q, opaqueTokens: true}
routes:
  - match: "GET /orders/{id}"
    scopes: [orders:read]
`, mode, as.Issuer, secret)
		if err := os.WriteFile(path+".tmp", []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	write("enforce")
	reloads := make(chan error, 4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := policy.Watch(ctx, path, policy.WatchOptions{Logger: slog.New(slog.DiscardHandler), Every: 5 * time.Millisecond,
		OnReload: func(_ *policy.Loaded, err error) { reloads <- err }})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	tok := as.MintOpaque(jwkstest.Claims{"scope": "orders:read", "sub": "alice"})
	decide := func() middleware.Decision {
		req := httptest.NewRequest("GET", "/orders/1", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		return w.Gate().Decide(req)
	}
	if d := decide(); !d.Allowed() || as.IntrospectionCalls() != 1 {
		t.Fatalf("an opaque token: %v, %d calls", d.Reason, as.IntrospectionCalls())
	}
	write("shadow")
	if err := <-reloads; err != nil {
		t.Fatal(err)
	}
	if !w.Loaded().Gate.Shadow {
		t.Fatal("the new file is not in force")
	}
	if d := decide(); !d.Allowed() || as.IntrospectionCalls() != 1 {
		t.Fatalf("after a reload: %v, %d calls (want the cached answer)", d.Reason, as.IntrospectionCalls())
	}
}
