//go:build e2e

// Package faults drives the real tokengate binary through the faults that take other
// guards down: an authorization server that is down at start or later, slow, or
// serving garbage, oversized or shrunken key sets; key rotation and revocation under
// load; a flood of unknown kids; an upstream that is down, slow or resets connections;
// configuration reloads under load. Each test logs its figures.
//
//	go test -tags e2e -v ./e2e/faults/
package faults

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/e2etest"
	"github.com/tokengate/tokengate/internal/upstreamtest"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

const audience = "https://orders.example.com"

func config(issuer, upstream, extra string) string {
	return fmt.Sprintf(`upstream: %q
issuers:
  - issuer: %q
    audiences: [%q]
    refresh: {min: 2s, max: 4s, unknownKidEvery: 2s, unknownKidWait: 1s}
routes:
  - match: "GET /healthz"
    public: true
  - match: "/"
    scopes: [orders:read]
%s`, upstream, issuer, audience, extra)
}

func authServer(t *testing.T) *jwkstest.Server {
	t.Helper()
	as, err := jwkstest.NewServer(jwkstest.WithAudience(audience))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(as.Close)
	as.SetCacheControl("max-age=2")
	return as
}

var client = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

func get(url, token string) (int, time.Duration, error) {
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, time.Since(start), err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, time.Since(start), nil
}

// maxLoadRequests bounds every load by count as well as by its context's time.
const maxLoadRequests = 1_000_000

type loadResult struct {
	byStatus  map[int]int
	errors    int
	latencies []time.Duration
}

// load sends requests from workers goroutines until ctx ends (or maxLoadRequests were
// sent), with the token tok() returns each time, and counts the answers.
func load(ctx context.Context, url string, workers int, tok func() string) loadResult {
	var mu sync.Mutex
	res := loadResult{byStatus: map[int]int{}}
	var wg sync.WaitGroup
	var sent atomic.Int64
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil && sent.Add(1) <= maxLoadRequests {
				code, d, err := get(url, tok())
				mu.Lock()
				if err != nil {
					res.errors++
				} else {
					res.byStatus[code]++
					res.latencies = append(res.latencies, d)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(res.latencies)
	return res
}

func (r loadResult) p(q float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	return r.latencies[int(float64(len(r.latencies)-1)*q)]
}

func (r loadResult) total() int {
	n := r.errors
	for _, c := range r.byStatus {
		n += c
	}
	return n
}

func valid(as *jwkstest.Server) string {
	return as.MustMint(jwkstest.Claims{"scope": "orders:read", "exp": time.Now().Add(10 * time.Minute).Unix()})
}

func TestAuthorizationServerDownAtStart(t *testing.T) {
	as := authServer(t)
	as.SetDown(true)
	up := upstreamtest.Start(t)
	sc := e2etest.StartSidecar(t, e2etest.Options{Config: config(as.Issuer, up.URL, ""), NoWait: true})
	e2etest.Eventually(t, 20*time.Second, "the admin listener", func() bool { return sc.AdminStatus("/healthz") == 200 })

	tok := valid(as)
	if s := sc.AdminStatus("/readyz"); s != 503 {
		t.Fatalf("/readyz %d while no keys are loaded, want 503", s)
	}
	code, _, err := get(sc.URL+"/orders/1", tok)
	if err != nil || code != 503 {
		t.Fatalf("a valid token while the authorization server is down: %d %v, want 503 keys_unavailable", code, err)
	}
	if up.Count() != 0 {
		t.Fatal("a request reached the upstream without keys")
	}

	as.SetDown(false)
	upAt := time.Now()
	e2etest.Eventually(t, 20*time.Second, "recovery", func() bool {
		code, _, _ := get(sc.URL+"/orders/1", tok)
		return code == 200
	})
	recovered := time.Since(upAt)
	t.Logf("authorization server down at start: 503 keys_unavailable and /readyz 503; allowed again %s after it came back (refresh.min 2s)", recovered.Round(time.Millisecond))
	if recovered > 4*time.Second {
		t.Fatalf("recovery took %s, more than the 2s refresh bound plus a retry", recovered)
	}
	if s := sc.AdminStatus("/readyz"); s != 200 {
		t.Fatalf("/readyz %d after recovery", s)
	}
}

func TestAuthorizationServerDownLater(t *testing.T) {
	as := authServer(t)
	up := upstreamtest.Start(t)
	sc := e2etest.StartSidecar(t, e2etest.Options{Config: config(as.Issuer, up.URL, "tokens:\n  cache: {entries: 0}\n")})
	tok := valid(as)
	as.SetDown(true)
	// Long enough for scheduled refreshes (every 2 s here) to fail.
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
	res := load(ctx, sc.URL+"/orders/1", 8, func() string { return tok })
	cancel()
	m := sc.Metrics(t)
	failed := e2etest.Sum(m, "tokengate_jwks_refreshes_total", `result="error"`)
	t.Logf("authorization server down for 6s after start: %d requests with the cache off, %v; %v failed key refreshes; /readyz %d",
		res.total(), res.byStatus, failed, sc.AdminStatus("/readyz"))
	if res.byStatus[200] != res.total() || res.total() == 0 {
		t.Fatalf("valid tokens refused while the last good keys were there: %v, %d errors", res.byStatus, res.errors)
	}
	if failed < 1 {
		t.Fatal("no failed refresh counted during the outage")
	}
	if sc.AdminStatus("/readyz") != 200 {
		t.Fatal("not ready during an outage with good keys")
	}
}

func TestSlowAuthorizationServer(t *testing.T) {
	as := authServer(t)
	up := upstreamtest.Start(t)
	sc := e2etest.StartSidecar(t, e2etest.Options{Config: config(as.Issuer, up.URL, "tokens:\n  cache: {entries: 0}\n")})
	tok := valid(as)
	// Every key fetch now takes 3 s; requests must not wait for them.
	as.SetDelay(3 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
	res := load(ctx, sc.URL+"/orders/1", 8, func() string { return tok })
	cancel()
	t.Logf("slow authorization server (3s per fetch) during 6s of load: %d requests, %v, p50 %s p99 %s",
		res.total(), res.byStatus, res.p(0.5), res.p(0.99))
	if res.byStatus[200] != res.total() {
		t.Fatalf("%v", res.byStatus)
	}
	if res.p(0.99) > time.Second {
		t.Fatalf("p99 %s: requests waited for slow key fetches", res.p(0.99))
	}
	// A new kid waits for a slow fetch at most unknownKidWait (1 s here).
	k, err := as.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	_, d, _ := get(sc.URL+"/orders/1", as.MustMint(jwkstest.Claims{"scope": "orders:read"}))
	t.Logf("a token with a new kid while fetches take 3s: answered in %s (unknownKidWait 1s), kid %s", d.Round(time.Millisecond), k.KID)
	if d > 2500*time.Millisecond {
		t.Fatalf("a request waited %s for a slow key fetch", d)
	}
}

func TestBadKeySets(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(*jwkstest.Server)
	}{
		{"garbage", func(as *jwkstest.Server) { as.SetGarbage(true) }},
		{"oversized (2 MiB)", func(as *jwkstest.Server) { as.SetOversized(2 << 20) }},
		{"redirected to another host", func(as *jwkstest.Server) { as.SetRedirect("http://127.0.0.2:1/jwks") }},
		{"no usable key", func(as *jwkstest.Server) { as.SetJWKSBody([]byte(`{"keys":[{"kty":"oct","k":"AAAA"}]}`)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			as := authServer(t)
			up := upstreamtest.Start(t)
			sc := e2etest.StartSidecar(t, e2etest.Options{Config: config(as.Issuer, up.URL, "tokens:\n  cache: {entries: 0}\n")})
			tok := valid(as)
			before := e2etest.Sum(sc.Metrics(t), "tokengate_jwks_refreshes_total", `result="error"`)
			tc.break_(as)
			e2etest.Eventually(t, 15*time.Second, "a failed refresh", func() bool {
				return e2etest.Sum(sc.Metrics(t), "tokengate_jwks_refreshes_total", `result="error"`) > before
			})
			for range 20 {
				if code, _, err := get(sc.URL+"/orders/1", tok); code != 200 {
					t.Fatalf("a valid token refused after a %s key set: %d %v", tc.name, code, err)
				}
			}
			m := sc.Metrics(t)
			t.Logf("%s key set: refreshes failing (%v errors), %v keys kept, valid tokens allowed, /readyz %d", tc.name,
				e2etest.Sum(m, "tokengate_jwks_refreshes_total", `result="error"`), e2etest.Sum(m, "tokengate_jwks_keys"), sc.AdminStatus("/readyz"))
		})
	}
	t.Run("half the keys (revocation)", func(t *testing.T) {
		as := authServer(t)
		up := upstreamtest.Start(t)
		sc := e2etest.StartSidecar(t, e2etest.Options{Config: config(as.Issuer, up.URL, "tokens:\n  cache: {entries: 0}\n")})
		rsaTok, ecTok := valid(as), as.MustMint(jwkstest.Claims{"scope": "orders:read"}, jwkstest.WithKey("ec-1"))
		as.Publish("rsa-1", false)
		e2etest.Eventually(t, 15*time.Second, "the revocation", func() bool { code, _, _ := get(sc.URL+"/orders/1", rsaTok); return code == 401 })
		if code, _, _ := get(sc.URL+"/orders/1", ecTok); code != 200 {
			t.Fatalf("a token of a key still published: %d", code)
		}
		t.Logf("key set shrunk to 2 of 3 keys: tokens of the removed key refused after the next refresh, the others allowed")
	})
}

func TestRotationAndRevocationUnderLoad(t *testing.T) {
	as := authServer(t)
	up := upstreamtest.Start(t)
	sc := e2etest.StartSidecar(t, e2etest.Options{Config: config(as.Issuer, up.URL, "")})
	var current atomic.Pointer[string]
	tok := valid(as)
	current.Store(&tok)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan loadResult, 1)
	go func() { done <- load(ctx, sc.URL+"/orders/1", 8, func() string { return *current.Load() }) }()

	// jwkstest signs with a new key at once; the sidecar learns it from the first token
	// that names it, through a fetch it allows once per unknownKidEvery (2 s here), so
	// rotations are spaced by more than that. (An authorization server that publishes
	// a key before signing with it needs no such fetch at all.)
	for i := range 3 {
		time.Sleep(2500 * time.Millisecond)
		k, err := as.Rotate()
		if err != nil {
			t.Fatal(err)
		}
		next := valid(as)
		current.Store(&next)
		t.Logf("rotation %d: signing with %s", i+1, k.KID)
	}
	time.Sleep(time.Second)
	cancel()
	res := <-done
	m := sc.Metrics(t)
	t.Logf("3 rotations, 2.5s apart, under load: %d requests, %v, %d errors; JWKS fetches on unknown kid: %v", res.total(), res.byStatus, res.errors,
		e2etest.Sum(m, "tokengate_jwks_refreshes_total", `trigger="unknown_kid"`))
	if res.byStatus[200] != res.total() {
		t.Fatalf("valid tokens refused during rotation: %v", res.byStatus)
	}
	// Revocation: a key is taken out of the set; its tokens, even one verified and
	// cached before, are refused once the set is refreshed (refresh.max 4s here).
	old := as.MustMint(jwkstest.Claims{"scope": "orders:read"}, jwkstest.WithKey("rsa-1"))
	if code, _, _ := get(sc.URL+"/orders/1", old); code != 200 {
		t.Fatalf("a token of a published key: %d", code)
	}
	revoked := time.Now()
	as.Publish("rsa-1", false)
	e2etest.Eventually(t, 15*time.Second, "the revocation", func() bool { code, _, _ := get(sc.URL+"/orders/1", old); return code == 401 })
	t.Logf("revocation: a cached token of the revoked key refused %s after the key left the JWKS (refresh.max 4s)", time.Since(revoked).Round(100*time.Millisecond))
	if code, _, _ := get(sc.URL+"/orders/1", *current.Load()); code != 200 {
		t.Fatal("the current key stopped working")
	}
}

func TestUnknownKIDFlood(t *testing.T) {
	as := authServer(t)
	as.SetCacheControl("max-age=3600") // no scheduled fetch during the test
	up := upstreamtest.Start(t)
	sc := e2etest.StartSidecar(t, e2etest.Options{Config: config(as.Issuer, up.URL, "")})
	tok := valid(as)
	// Baseline latency of valid traffic.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	base := load(ctx, sc.URL+"/orders/1", 4, func() string { return tok })
	cancel()

	// Minted before the flood, so that signing in this process does not compete with
	// the sidecar for the CPU.
	flooding := make([]string, 20000)
	for i := range flooding {
		flooding[i] = as.MustMint(jwkstest.Claims{"scope": "orders:read"}, jwkstest.WithKey("ec-1"), jwkstest.WithHeader(jwkstest.Claims{"kid": fmt.Sprintf("random-%d", i)}))
	}
	unknownKidFetches := func() float64 {
		return e2etest.Sum(sc.Metrics(t), "tokengate_jwks_refreshes_total", `trigger="unknown_kid"`)
	}
	fetches := unknownKidFetches()
	var n atomic.Int64
	ctx, cancel = context.WithTimeout(context.Background(), 4*time.Second)
	floodDone := make(chan loadResult, 1)
	go func() {
		floodDone <- load(ctx, sc.URL+"/orders/1", 16, func() string { return flooding[int(n.Add(1))%len(flooding)] })
	}()
	during := load(ctx, sc.URL+"/orders/1", 4, func() string { return tok })
	flood := <-floodDone
	cancel()
	extra := unknownKidFetches() - fetches
	t.Logf("unknown-kid flood: %d requests with random kids in 4s (%v), %v JWKS fetches on unknown kid (limit: one per unknownKidEvery 2s); valid traffic p50/p99 %s/%s during the flood, %s/%s before",
		flood.total(), flood.byStatus, extra, during.p(0.5), during.p(0.99), base.p(0.5), base.p(0.99))
	if flood.byStatus[401] != flood.total() {
		t.Fatalf("random kids: %v", flood.byStatus)
	}
	if extra > 3 {
		t.Fatalf("%v JWKS fetches on unknown kid in 4s", extra)
	}
	if during.byStatus[200] != during.total() {
		t.Fatalf("valid traffic during the flood: %v", during.byStatus)
	}
}

// resetting is an upstream that accepts connections and resets them.
func resetting(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*net.TCPConn).SetLinger(0)
			buf := make([]byte, 512)
			_, _ = c.Read(buf)
			c.Close() // RST
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return "http://" + ln.Addr().String()
}

func TestUpstreamFaults(t *testing.T) {
	as := authServer(t)
	down := e2etest.FreeAddr(t) // nothing listens here
	slowUp := upstreamtest.Start(t)
	for _, tc := range []struct {
		name, upstream, path string
		status               int
	}{
		{"down", "http://" + down, "/orders/1", 502},
		{"slow", slowUp.URL, upstreamtest.SlowPath, 504},
		{"resetting connections", resetting(t), "/orders/1", 502},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := e2etest.StartSidecar(t, e2etest.Options{Config: config(as.Issuer, tc.upstream, ""), Args: []string{"--upstream-timeout=200ms"}})
			tok := valid(as)
			base := sc.Metrics(t)
			for range 50 {
				code, _, err := get(sc.URL+tc.path, tok)
				if err != nil || code != tc.status {
					t.Fatalf("%d %v, want %d", code, err, tc.status)
				}
			}
			// Goroutines and file descriptors return to where they were.
			var after map[string]float64
			e2etest.Eventually(t, 10*time.Second, "goroutines back to the baseline", func() bool {
				after = sc.Metrics(t)
				return after["go_goroutines"] <= base["go_goroutines"]+2
			})
			t.Logf("upstream %s: 50 requests answered %d; goroutines %v → %v, open fds %v → %v, upstream errors counted %v", tc.name, tc.status,
				base["go_goroutines"], after["go_goroutines"], base["process_open_fds"], after["process_open_fds"],
				e2etest.Sum(after, "tokengate_upstream_requests_total", `code="error"`))
			if after["process_open_fds"] > base["process_open_fds"]+5 {
				t.Fatalf("file descriptors leak: %v → %v", base["process_open_fds"], after["process_open_fds"])
			}
		})
	}
}

func TestReloadUnderLoad(t *testing.T) {
	as := authServer(t)
	up := upstreamtest.Start(t)
	sc := e2etest.StartSidecar(t, e2etest.Options{Config: config(as.Issuer, up.URL, ""), Args: nil})
	tok := valid(as)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan loadResult, 1)
	go func() { done <- load(ctx, sc.URL+"/orders/1", 8, func() string { return tok }) }()
	for i := range 10 {
		// Alternate two valid configurations; every one is applied while requests run.
		extra := fmt.Sprintf("  - match: \"GET /reload-%d\"\n    public: true\n", i)
		sc.WriteConfig(t, config(as.Issuer, up.URL, "")+extra)
		e2etest.Eventually(t, 10*time.Second, "the reload", func() bool {
			return e2etest.Sum(sc.Metrics(t), "tokengate_config_reloads_total", `result="success"`) >= float64(i+1)
		})
	}
	cancel()
	res := <-done
	t.Logf("10 configuration reloads under load: %d requests, %v, %d errors", res.total(), res.byStatus, res.errors)
	if res.byStatus[200] != res.total() {
		t.Fatalf("requests failed during reloads: %v, %d errors", res.byStatus, res.errors)
	}
}
