//go:build e2e

// Package replay_test drives two tokengate sidecar processes that share one real Redis
// as their replay store (replay.store: redis) through what single-use routes promise:
// a token used at one replica is refused at the other; of a thousand concurrent uses
// of one token across both, exactly one is let through; while Redis is down or too
// slow, single-use requests are refused with 503 replay_store_unavailable and
// Retry-After, never let through, and routes without singleUse keep working; once
// Redis answers again, service resumes without a restart. Each test logs its figures.
//
// Redis is Debian's redis-server (internal/redistest), without persistence: a record
// does not outlive a Redis restart, so a token used before one is accepted again after
// it (TestRedisStoppedMidRun says so as an expectation). Single use across a Redis
// restart needs a Redis that keeps its data (persistence, or a replica that takes over).
//
//	go test -tags e2e -count=1 -v ./e2e/replay/
package replay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/e2etest"
	"github.com/tokengate/tokengate/internal/redistest"
	"github.com/tokengate/tokengate/internal/upstreamtest"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

const (
	audience = "https://payments.example.com"
	// singleUse is the single-use route; plain is a route without singleUse.
	singleUse = "POST /payments"
	plain     = "GET /payments/{id}"
)

// config is the sidecars' configuration: one issuer, a single-use route and a plain
// one, and the replay store in the Redis at redisAddr with the default timeout.
func config(issuer, upstream, redisAddr string) string {
	return fmt.Sprintf(`upstream: %q
issuers:
  - issuer: %q
    audiences: [%q]
routes:
  - match: %q
    scopes: [payments:write]
    singleUse: true
  - match: %q
    scopes: [payments:write]
replay:
  store: redis
  redis:
    addrs: [%q]
`, upstream, issuer, audience, singleUse, plain, redisAddr)
}

// rig is one Redis, one authorization server, one recording upstream and two
// sidecar processes, a and b, in front of it.
type rig struct {
	redis *redistest.Server
	as    *jwkstest.Server
	up    *upstreamtest.Server
	a, b  *e2etest.Sidecar
}

func start(t *testing.T) *rig {
	t.Helper()
	r := &rig{redis: redistest.Start(t), up: upstreamtest.Start(t)}
	as, err := jwkstest.NewServer(jwkstest.WithAudience(audience))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(as.Close)
	r.as = as
	cfg := config(as.Issuer, r.up.URL, r.redis.Addr())
	r.a = e2etest.StartSidecar(t, e2etest.Options{Config: cfg})
	r.b = e2etest.StartSidecar(t, e2etest.Options{Config: cfg})
	return r
}

// token mints a valid token for both routes, with a fresh jti.
func (r *rig) token() string {
	return r.as.MustMint(jwkstest.Claims{"scope": "payments:write"})
}

var client = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// answer is what a sidecar answered.
type answer struct {
	status     int
	retryAfter string
	error      string // the JSON body's "error", for a denial
	desc       string // its "error_description"
	took       time.Duration
}

func (a answer) String() string {
	return fmt.Sprintf("%d error=%q description=%q Retry-After=%q", a.status, a.error, a.desc, a.retryAfter)
}

// do sends method path to the sidecar at base with token and reads the answer
// (at most 64 KiB of its body).
func do(base, method, path, token string) (answer, error) {
	req, err := http.NewRequest(method, base+path, nil)
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return answer{took: time.Since(start)}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	a := answer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), took: time.Since(start)}
	if err != nil {
		return a, err
	}
	if resp.StatusCode != 200 {
		var e struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		_ = json.Unmarshal(body, &e)
		a.error, a.desc = e.Error, e.Description
	}
	return a, nil
}

// pay is a use of token on the single-use route.
func pay(sc *e2etest.Sidecar, token string) (answer, error) {
	return do(sc.URL, "POST", "/payments", token)
}

// isReplay is the answer to a token used before: 401 invalid_token, "used before".
func isReplay(a answer) bool {
	return a.status == 401 && a.error == "invalid_token" && strings.Contains(a.desc, "used before")
}

// isUnavailable is the answer while the store does not answer: 503
// replay_store_unavailable with Retry-After.
func isUnavailable(a answer) bool {
	return a.status == 503 && a.error == "replay_store_unavailable" && a.retryAfter != ""
}

// metric sums a metric's series with the given labels over the sidecars.
func metric(t *testing.T, name string, labels []string, scs ...*e2etest.Sidecar) float64 {
	t.Helper()
	var total float64
	for _, sc := range scs {
		total += e2etest.Sum(sc.Metrics(t), name, labels...)
	}
	return total
}

var (
	replayDenied = []string{`decision="denied"`, `reason="replay"`, `route="` + singleUse + `"`}
	storeError   = []string{`store="redis"`, `result="error"`}
)

// replayStore is the replayStore field of the sidecar's /readyz, with its status.
func replayStore(t *testing.T, sc *e2etest.Sidecar) (int, string) {
	t.Helper()
	resp, err := client.Get(sc.Admin + "/readyz")
	if err != nil {
		t.Fatalf("/readyz: %v", err)
	}
	defer resp.Body.Close()
	var body struct {
		ReplayStore string `json:"replayStore"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body); err != nil {
		t.Fatalf("/readyz: %v", err)
	}
	return resp.StatusCode, body.ReplayStore
}

// allowedAtBoth waits until a fresh token is allowed on the single-use route at both
// sidecars.
func (r *rig) allowedAtBoth(t *testing.T, what string) {
	t.Helper()
	for _, sc := range []*e2etest.Sidecar{r.a, r.b} {
		e2etest.Eventually(t, 30*time.Second, what+" at "+sc.URL, func() bool {
			a, err := pay(sc, r.token())
			return err == nil && a.status == 200
		})
	}
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*q)]
}

// TestOneRedisTwoSidecars: a token used at one replica is refused at the other, and at
// the first again.
func TestOneRedisTwoSidecars(t *testing.T) {
	r := start(t)
	tok := r.token()
	if a, err := pay(r.a, tok); err != nil || a.status != 200 {
		t.Fatalf("first use at A: %v %v, want 200", a, err)
	}
	if a, err := pay(r.b, tok); err != nil || !isReplay(a) {
		t.Fatalf("the same token at B: %v %v, want 401 replay", a, err)
	}
	if got := metric(t, "tokengate_decisions_total", replayDenied, r.b); got != 1 {
		t.Errorf("B counted %v denials with reason replay, want 1", got)
	}
	if got := metric(t, "tokengate_replay_store_requests_total", []string{`store="redis"`, `result="replay"`}, r.b); got != 1 {
		t.Errorf("B counted %v replays in the store, want 1", got)
	}
	if a, err := pay(r.a, tok); err != nil || !isReplay(a) {
		t.Fatalf("the same token at A again: %v %v, want 401 replay", a, err)
	}
	if got := metric(t, "tokengate_decisions_total", replayDenied, r.a); got != 1 {
		t.Errorf("A counted %v denials with reason replay, want 1", got)
	}
	if n := r.up.Count(); n != 1 {
		t.Errorf("the upstream saw %d requests, want 1", n)
	}
	t.Logf("one token at A then B then A: 200, 401 replay, 401 replay; upstream saw %d", r.up.Count())
}

// TestConcurrentUsesOfOneToken: 1000 uses of one token at once, 500 at each replica,
// let exactly one through.
func TestConcurrentUsesOfOneToken(t *testing.T) {
	const uses, workers = 1000, 50
	r := start(t)
	tok := r.token()
	before := r.up.Count()

	jobs := make(chan *e2etest.Sidecar, uses)
	for i := range uses {
		jobs <- []*e2etest.Sidecar{r.a, r.b}[i%2]
	}
	close(jobs)
	var (
		mu      sync.Mutex
		answers = map[string]int{}
		other   []string // answers neither 200 nor 401 replay, for the failure message
		wg      sync.WaitGroup
	)
	begin := make(chan struct{})
	for range workers {
		wg.Go(func() {
			<-begin
			for sc := range jobs {
				a, err := pay(sc, tok)
				mu.Lock()
				switch {
				case err != nil:
					answers["error"]++
					other = append(other, err.Error())
				case a.status == 200:
					answers["200"]++
				case isReplay(a):
					answers["401 replay"]++
				default:
					answers[fmt.Sprint(a.status)]++
					other = append(other, a.String())
				}
				mu.Unlock()
			}
		})
	}
	started := time.Now()
	close(begin)
	wg.Wait()
	took := time.Since(started)

	reached := r.up.Count() - before
	m := func(result string) float64 {
		return metric(t, "tokengate_replay_store_requests_total", []string{`store="redis"`, `result="` + result + `"`}, r.a, r.b)
	}
	t.Logf("%d concurrent uses of one token (%d at each sidecar, %d workers) in %s: allowed %d, refused as replay %d, other %d; upstream saw %d; store first_use %v replay %v error %v",
		uses, uses/2, workers, took.Round(time.Millisecond), answers["200"], answers["401 replay"],
		uses-answers["200"]-answers["401 replay"], reached, m("first_use"), m("replay"), m("error"))
	if answers["200"] != 1 || answers["401 replay"] != uses-1 {
		t.Errorf("answers %v, want 1 × 200 and %d × 401 replay; others: %q", answers, uses-1, first(other, 5))
	}
	if reached != 1 {
		t.Errorf("the upstream saw %d requests, want 1", reached)
	}
	if got := metric(t, "tokengate_decisions_total", replayDenied, r.a, r.b); got != uses-1 {
		t.Errorf("the sidecars counted %v denials with reason replay, want %d", got, uses-1)
	}
	if got := metric(t, "tokengate_replay_store_duration_seconds_count", []string{`store="redis"`}, r.a, r.b); got != uses {
		t.Errorf("the sidecars timed %v uses of the store, want %d", got, uses)
	}
}

func first(s []string, n int) []string { return s[:min(n, len(s))] }

// streamPhase is the part of TestRedisStoppedMidRun a request was sent in.
type streamPhase int

const (
	beforeOutage streamPhase = iota // Redis up, then killed while requests are in flight
	outage                          // Redis down: every request sent and answered in it
	afterOutage                     // Redis started again
)

// sent is one request of the stream.
type sent struct {
	phase streamPhase
	token string
	at    *e2etest.Sidecar
	a     answer
	err   error
}

// TestRedisStoppedMidRun: a stream of uses, each of a new token, at both sidecars;
// Redis is killed in the middle of it. While it is down every use is refused with 503
// replay_store_unavailable and Retry-After and none reaches the upstream; /readyz
// says so and stays 200; the error counter rises. Redis started again on the same
// port: both sidecars allow again without a restart.
func TestRedisStoppedMidRun(t *testing.T) {
	const (
		workers     = 4
		maxRequests = 20_000 // with the stream's context, bounds it
		minOutage   = 200    // requests answered during the outage before it ends
		minDown     = 2 * time.Second
	)
	r := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Each worker holds gate's read lock for a request's whole round trip, so that the
	// test, holding the write lock, changes phase only between requests: a request is
	// sent and answered in one phase.
	var (
		gate    sync.RWMutex
		phase   = beforeOutage
		mu      sync.Mutex
		log     []sent
		counted atomic.Int64
		inPhase [3]atomic.Int64
		wg      sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil && counted.Add(1) <= maxRequests; i++ {
				sc := []*e2etest.Sidecar{r.a, r.b}[(w+i)%2]
				tok := r.token()
				gate.RLock()
				p := phase
				a, err := pay(sc, tok)
				gate.RUnlock()
				inPhase[p].Add(1)
				mu.Lock()
				log = append(log, sent{p, tok, sc, a, err})
				mu.Unlock()
			}
		})
	}
	stopStream := func() { cancel(); wg.Wait() }
	defer stopStream()

	e2etest.Eventually(t, 30*time.Second, "100 uses before the outage", func() bool { return inPhase[beforeOutage].Load() >= 100 })
	errorsBefore := metric(t, "tokengate_replay_store_requests_total", storeError, r.a, r.b)

	// Kill Redis with requests in flight; then let those finish and begin the outage.
	r.redis.Stop()
	var upAtStop int
	stopped := between(&gate, func() {
		phase = outage
		upAtStop = r.up.Count()
	})

	e2etest.Eventually(t, 60*time.Second, fmt.Sprintf("%d uses and %s of outage", minOutage, minDown), func() bool {
		return inPhase[outage].Load() >= minOutage && time.Since(stopped) >= minDown
	})
	for _, sc := range []*e2etest.Sidecar{r.a, r.b} {
		status, store := replayStore(t, sc)
		t.Logf("/readyz of %s during the outage: %d replayStore %q", sc.Admin, status, store)
		if status != 200 || !strings.HasPrefix(store, "unavailable: ") {
			t.Errorf("/readyz of %s during the outage: %d replayStore %q, want 200 and unavailable: …", sc.Admin, status, store)
		}
	}
	var upAtStart int
	var errorsDuring float64
	restarted := between(&gate, func() {
		upAtStart = r.up.Count()
		errorsDuring = metric(t, "tokengate_replay_store_requests_total", storeError, r.a, r.b)
		phase = afterOutage
		r.redis.Start()
	})

	r.allowedAtBoth(t, "a new token allowed after Redis came back")
	recovered := time.Since(restarted)
	stopStream()

	var (
		count     [3]int
		allowed   [3]int
		refused   [3]int // 503 replay_store_unavailable with Retry-After
		bad       []string
		usedFirst string // a token allowed before the outage
		retried   string // a token refused during the outage
	)
	for _, s := range log {
		count[s.phase]++
		switch {
		case s.err == nil && s.a.status == 200:
			allowed[s.phase]++
			if s.phase == beforeOutage && usedFirst == "" {
				usedFirst = s.token
			}
		case s.err == nil && isUnavailable(s.a):
			refused[s.phase]++
			if s.phase == outage && retried == "" {
				retried = s.token
			}
		default:
			if s.phase == outage {
				bad = append(bad, fmt.Sprintf("%s: %v %v", s.at.URL, s.a, s.err))
			}
		}
	}
	letThrough := upAtStart - upAtStop
	t.Logf("before the kill: %d uses, %d allowed, %d refused 503 (in flight at the kill)", count[beforeOutage], allowed[beforeOutage], refused[beforeOutage])
	t.Logf("while Redis was down: %d uses, %d refused 503 replay_store_unavailable with Retry-After, %d allowed, %d other; upstream saw %d (let through)",
		count[outage], refused[outage], allowed[outage], len(bad), letThrough)
	t.Logf("after Redis started again: %d uses, %d allowed, %d refused 503; a new token allowed at both %s after the restart; store errors %v → %v",
		count[afterOutage], allowed[afterOutage], refused[afterOutage], recovered.Round(time.Millisecond), errorsBefore, errorsDuring)
	if count[outage] < minOutage || refused[outage] != count[outage] {
		t.Errorf("during the outage %d of %d uses were 503 replay_store_unavailable with Retry-After; others: %q", refused[outage], count[outage], first(bad, 5))
	}
	if letThrough != 0 {
		t.Errorf("the upstream saw %d requests while Redis was down, want 0", letThrough)
	}
	if errorsDuring-errorsBefore < float64(count[outage]) {
		t.Errorf("tokengate_replay_store_requests_total{result=\"error\"} rose by %v during the outage, want at least %d", errorsDuring-errorsBefore, count[outage])
	}
	for _, sc := range []*e2etest.Sidecar{r.a, r.b} {
		if status, store := replayStore(t, sc); status != 200 || store != "ok" {
			t.Errorf("/readyz of %s after the outage: %d replayStore %q, want 200 ok", sc.Admin, status, store)
		}
	}

	// Redis here keeps no data (redistest runs it with --save "" and no AOF), so the
	// restarted Redis is empty: the record of a token used before the outage is lost,
	// and the token is accepted once more. This is what the store promises and no more:
	// single use holds across a Redis restart only when Redis keeps its data
	// (persistence, or a replica promoted in its place).
	if usedFirst == "" {
		t.Fatal("no token was allowed before the outage")
	}
	a, err := pay(r.b, usedFirst)
	if err != nil || a.status != 200 {
		t.Fatalf("a token used before a restart of a Redis without persistence: %v %v, want 200 (its record was lost)", a, err)
	}
	a, err = pay(r.a, usedFirst)
	if err != nil || !isReplay(a) {
		t.Fatalf("that token once more: %v %v, want 401 replay (recorded again)", a, err)
	}
	t.Logf("a token used before the outage: allowed again after the restart (Redis without persistence lost its record), then refused as replay")

	// A use refused because Redis was down never reached it: the client that retries
	// as Retry-After asks is allowed.
	if retried == "" {
		t.Fatal("no token was refused during the outage")
	}
	if a, err := pay(r.b, retried); err != nil || a.status != 200 {
		t.Fatalf("a token refused with 503 during the outage, retried after it: %v %v, want 200", a, err)
	}
}

// between runs f while no request of the stream is in flight (gate's write lock; the
// workers hold its read lock for each request), and returns when f ended. The lock is
// released even when f ends the test (t.Fatal), so that the workers can stop.
func between(gate *sync.RWMutex, f func()) time.Time {
	gate.Lock()
	defer gate.Unlock()
	f()
	return time.Now()
}

// TestSlowRedis: while Redis holds every command (CLIENT PAUSE) for longer than the
// timeout, single-use requests are refused with 503 within the timeout and a margin,
// never allowed; once the pause ends they are allowed again.
func TestSlowRedis(t *testing.T) {
	const (
		pause   = 5 * time.Second
		window  = 2500 * time.Millisecond // requests are sent this long into the pause
		workers = 4
		bound   = 2 * time.Second // the timeout is 50 ms
	)
	r := start(t)
	r.allowedAtBoth(t, "a new token allowed before the pause")
	upBefore := r.up.Count()

	r.redis.Pause(pause)
	paused := time.Now()
	var (
		mu        sync.Mutex
		latencies []time.Duration
		refused   []string // the tokens refused with 503
		allowed   int
		bad       []string
		wg        sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			for i := 0; i < 10_000 && time.Since(paused) < window; i++ {
				sc := []*e2etest.Sidecar{r.a, r.b}[(w+i)%2]
				tok := r.token()
				a, err := pay(sc, tok)
				mu.Lock()
				switch {
				case err == nil && isUnavailable(a):
					latencies = append(latencies, a.took)
					refused = append(refused, tok)
				case err == nil && a.status == 200:
					allowed++
				default:
					bad = append(bad, fmt.Sprintf("%s: %v %v", sc.URL, a, err))
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	sentFor := time.Since(paused)
	reached := r.up.Count() - upBefore
	maxLatency := slices.Max(append([]time.Duration{0}, latencies...))
	t.Logf("Redis paused for %s (timeout 50ms): %d uses in %s, %d refused 503 replay_store_unavailable (p50 %s, p99 %s, max %s), %d allowed, %d other; upstream saw %d",
		pause, len(latencies)+allowed+len(bad), sentFor.Round(time.Millisecond), len(latencies),
		quantile(latencies, 0.5).Round(time.Microsecond), quantile(latencies, 0.99).Round(time.Microsecond), maxLatency.Round(time.Microsecond),
		allowed, len(bad), reached)
	if sentFor >= pause {
		t.Fatalf("the requests took %s, past the %s pause: the figures do not describe a paused Redis", sentFor, pause)
	}
	if len(latencies) == 0 || allowed != 0 || len(bad) != 0 {
		t.Errorf("while Redis was paused: %d refused 503, %d allowed, others %q; want only 503 replay_store_unavailable", len(latencies), allowed, first(bad, 5))
	}
	if reached != 0 {
		t.Errorf("the upstream saw %d requests while Redis was paused, want 0", reached)
	}
	if maxLatency >= bound {
		t.Errorf("a refusal took %s, want under %s", maxLatency, bound)
	}

	r.allowedAtBoth(t, "a new token allowed after the pause")
	t.Logf("allowed again at both %s after the pause began (it lasts %s)", time.Since(paused).Round(time.Millisecond), pause)

	// A use that timed out may still have been recorded: its SET waited in Redis and
	// ran when the pause ended (unless the connection was closed first). A client that
	// retries such a token, as Retry-After asks, may then be refused as a replay: the
	// safe side, and the reason for a fresh token per retry.
	var retriedOK, retriedReplay int
	for i := 0; i < len(refused); i += max(1, len(refused)/20) {
		a, err := pay(r.a, refused[i])
		switch {
		case err == nil && a.status == 200:
			retriedOK++
		case err == nil && isReplay(a):
			retriedReplay++
		default:
			t.Errorf("a token refused during the pause, retried after it: %v %v, want 200 or 401 replay", a, err)
		}
	}
	t.Logf("tokens refused with 503 during the pause, retried after it: %d allowed, %d refused as replay (recorded when the pause ended)", retriedOK, retriedReplay)
}

// TestPlainRoutesWhileRedisIsDown: a route without singleUse never asks the store, so
// it keeps allowing valid tokens while Redis is down; the single-use route refuses
// with 503, and readiness stays 200.
func TestPlainRoutesWhileRedisIsDown(t *testing.T) {
	r := start(t)
	r.redis.Stop()
	before := r.up.Count()
	for _, sc := range []*e2etest.Sidecar{r.a, r.b} {
		tok := r.token()
		if a, err := do(sc.URL, "GET", "/payments/7", tok); err != nil || a.status != 200 {
			t.Errorf("%s %s/payments/7 while Redis is down: %v %v, want 200", plain, sc.URL, a, err)
		}
		if a, err := pay(sc, tok); err != nil || !isUnavailable(a) {
			t.Errorf("%s at %s while Redis is down: %v %v, want 503 replay_store_unavailable", singleUse, sc.URL, a, err)
		}
		if status, store := replayStore(t, sc); status != 200 || !strings.HasPrefix(store, "unavailable: ") {
			t.Errorf("/readyz of %s: %d replayStore %q, want 200 and unavailable: …", sc.Admin, status, store)
		}
	}
	if reached := r.up.Count() - before; reached != 2 {
		t.Errorf("the upstream saw %d requests, want 2 (the plain route's)", reached)
	}
	t.Logf("Redis down: %s allowed at both sidecars, %s refused with 503 at both, /readyz 200", plain, singleUse)
}
