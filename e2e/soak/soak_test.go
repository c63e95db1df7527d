//go:build e2e

// Package soak runs the real tokengate binary under a steady mix of valid, expired,
// wrong-scope and forged tokens while the authorization server rotates and revokes
// keys and the configuration file changes, and proves from counts on both sides that
// nothing was wrongly allowed, wrongly denied or left unanswered, and that memory and
// goroutines came back to their baseline.
//
// Its size comes from the environment, with CI's short run as the default:
//
//	TOKENGATE_SOAK_REQUESTS  requests in all (20000)
//	TOKENGATE_SOAK_RATE      requests a second (500)
//
// The run is bounded by both: it stops at the count, and fails past twice the time
// the count should take at the rate, plus a minute.
package soak

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/e2etest"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

const audience = "https://orders.example.com"

// kind is what a request carries; the upstream counts arrivals by kind.
type kind int

const (
	kindValid kind = iota
	kindExpired
	kindWrongScope
	kindForged
	kinds
)

var kindNames = [kinds]string{"valid", "expired", "wrong-scope", "forged"}

// want is the status each kind must get.
var want = [kinds]int{200, 401, 403, 401}

// mix is the kind of the i-th request: 60% valid, 15% expired, 10% wrong scope, 15%
// forged, interleaved.
func mix(i int) kind {
	switch i % 20 {
	case 3, 9, 15:
		return kindExpired
	case 5, 17:
		return kindWrongScope
	case 1, 11, 19:
		return kindForged
	}
	return kindValid
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// upstream counts what reached it, by the X-Soak-Kind header the test sets.
type upstream struct {
	url     string
	srv     *http.Server
	wg      sync.WaitGroup
	arrived [kinds]atomic.Int64
	unknown atomic.Int64
}

func startUpstream(t *testing.T) *upstream {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{url: "http://" + ln.Addr().String()}
	u.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := -1
		for i, n := range kindNames {
			if r.Header.Get("X-Soak-Kind") == n {
				k = i
			}
		}
		if k < 0 {
			u.unknown.Add(1)
		} else {
			u.arrived[k].Add(1)
		}
		_, _ = io.WriteString(w, "ok")
	})}
	u.wg.Go(func() { _ = u.srv.Serve(ln) })
	t.Cleanup(func() { _ = u.srv.Close(); u.wg.Wait() })
	return u
}

// config is the sidecar's configuration; generation changes a route that the traffic
// does not use, so that every reload is a real change.
func config(issuer, upstream string, generation int) string {
	return fmt.Sprintf(`upstream: %q
issuers:
  - issuer: %q
    audiences: [%q]
    refresh: {min: 1s, max: 2s, unknownKidEvery: 2s, unknownKidWait: 1s}
routes:
  - match: "GET /healthz"
    public: true
  - match: "GET /reports/%d/"
    scopes: [reports:read]
  - match: "/orders/"
    scopes: [orders:read]
`, upstream, issuer, audience, generation)
}

// pools are the tokens clients hold: valid ones of the current and the previous key.
type pools struct {
	current, previous    []string
	signing, previousKID string // the kids of their keys
}

// mintPool mints n valid tokens of the key kid; minting with the test's own keys does
// not fail.
func mintPool(as *jwkstest.Server, kid string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = as.MustMint(jwkstest.Claims{"scope": "orders:read orders:write", "exp": time.Now().Add(30 * time.Minute).Unix()}, jwkstest.WithKey(kid))
	}
	return out
}

// sample is what the sidecar reports of itself, after a garbage collection.
type sample struct {
	goroutines, heapInuse, rss float64
}

func (s sample) String() string {
	return fmt.Sprintf("%v goroutines, heap in use %.1f MiB, RSS %.1f MiB", s.goroutines, s.heapInuse/(1<<20), s.rss/(1<<20))
}

func measure(t *testing.T, sc *e2etest.Sidecar, client *http.Client) sample {
	t.Helper()
	client.CloseIdleConnections()
	// The heap profile with gc=1 runs a collection in the sidecar first.
	resp, err := http.Get(sc.Admin + "/debug/pprof/heap?gc=1")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	time.Sleep(200 * time.Millisecond) // closed connections' goroutines return
	m := sc.Metrics(t)
	return sample{
		goroutines: e2etest.Sum(m, "go_goroutines"),
		heapInuse:  e2etest.Sum(m, "go_memstats_heap_inuse_bytes"),
		rss:        e2etest.Sum(m, "process_resident_memory_bytes"),
	}
}

type result struct {
	sent, unanswered [kinds]atomic.Int64
	status           [kinds]sync.Map // status → *atomic.Int64
}

func (r *result) record(k kind, status int) {
	v, _ := r.status[k].LoadOrStore(status, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

func (r *result) statuses(k kind) map[int]int64 {
	out := map[int]int64{}
	r.status[k].Range(func(key, v any) bool { out[key.(int)] = v.(*atomic.Int64).Load(); return true })
	return out
}

func TestSoak(t *testing.T) {
	total := envInt(t, "TOKENGATE_SOAK_REQUESTS", 20000)
	rate := envInt(t, "TOKENGATE_SOAK_RATE", 500)
	limit := 2*time.Duration(total)*time.Second/time.Duration(rate) + time.Minute

	as, err := jwkstest.NewServer(jwkstest.WithAudience(audience))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(as.Close)
	as.SetCacheControl("max-age=1")
	attacker, err := jwkstest.GenerateKey("attacker", "ES256")
	if err != nil {
		t.Fatal(err)
	}
	up := startUpstream(t)
	generation := 0
	sc := e2etest.StartSidecar(t, e2etest.Options{Config: config(as.Issuer, up.url, generation), Args: []string{"--pprof", "--log-level", "warn"}})

	workers := 16
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers, MaxIdleConns: workers}}
	var held atomic.Pointer[pools]
	held.Store(&pools{current: mintPool(as, as.SigningKey().KID, 64), signing: as.SigningKey().KID})
	var fresh atomic.Int64

	// token returns a token of kind k, as a client or an attacker would send it.
	token := func(k kind, i int) string {
		p := held.Load()
		var tok string
		var err error
		switch k {
		case kindValid:
			switch {
			case i%10 == 0: // a client with a new token: verified, not cached
				tok, err = as.Mint(jwkstest.Claims{"scope": "orders:read", "jti": fmt.Sprint("fresh-", fresh.Add(1))}, jwkstest.WithKey(p.signing))
			case i%3 == 0 && p.previous != nil: // a client still on the previous key
				tok = p.previous[i%len(p.previous)]
			default:
				tok = p.current[i%len(p.current)]
			}
		case kindExpired:
			now := time.Now()
			tok, err = as.Mint(jwkstest.Claims{"scope": "orders:read", "iat": now.Add(-10 * time.Minute).Unix(), "exp": now.Add(-5 * time.Minute).Unix()}, jwkstest.WithKey(p.signing))
		case kindWrongScope:
			tok, err = as.Mint(jwkstest.Claims{"scope": "billing:read"}, jwkstest.WithKey(p.signing))
		case kindForged:
			// An attacker's key under the current kid (a bad signature, or an algorithm
			// that key does not have), or under a kid nobody published (unknown_key,
			// and a flood of fetches it must not cause).
			kid := p.signing
			if (i/20)%2 == 0 {
				kid = fmt.Sprint("forged-", i)
			}
			tok, err = as.Mint(jwkstest.Claims{"scope": "orders:read orders:write"}, jwkstest.WithSigner(attacker), jwkstest.WithHeader(jwkstest.Claims{"kid": kid}))
		}
		if err != nil {
			panic(err) // minting with the test's own keys does not fail
		}
		return tok
	}

	var res result
	send := func(ctx context.Context, i int) {
		k := mix(i)
		req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/orders/%d", sc.URL, i), nil)
		req.Header.Set("Authorization", "Bearer "+token(k, i))
		req.Header.Set("X-Soak-Kind", kindNames[k])
		res.sent[k].Add(1)
		resp, err := client.Do(req)
		if err != nil {
			res.unanswered[k].Add(1)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		res.record(k, resp.StatusCode)
	}

	// Warm up with the same mix and concurrency (so that the sidecar's pool of upstream
	// connections has its working size), then take the baseline.
	var warm sync.WaitGroup
	for w := range workers {
		warm.Go(func() {
			for i := w; i < 50*workers; i += workers {
				send(context.Background(), i)
			}
		})
	}
	warm.Wait()
	base := measure(t, sc, client)
	before := sc.Metrics(t)
	res = result{}
	for k := range kinds {
		up.arrived[k].Store(0)
	}

	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	jobs := make(chan int, 256)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				send(ctx, i)
			}
		})
	}

	// Key rotation, as an authorization server should do it: publish the new key,
	// sign with it once every resource server has it (refresh.max 2 s), keep the old
	// one published while its tokens are in use, then revoke the one before.
	var rotations, revocations atomic.Int64
	var churn sync.WaitGroup
	stop := make(chan struct{})
	churn.Go(func() {
		algs := []string{"ES256", "RS256", "EdDSA"}
		for n := 1; ; n++ {
			select {
			case <-stop:
				return
			case <-time.After(3 * time.Second):
			}
			k, err := jwkstest.GenerateKey(fmt.Sprintf("soak-%d", n), algs[n%len(algs)])
			if err != nil {
				t.Error(err)
				return
			}
			as.AddKey(k, true)
			select {
			case <-stop:
				return
			case <-time.After(2500 * time.Millisecond):
			}
			old := held.Load()
			as.SetSigningKey(k.KID)
			held.Store(&pools{current: mintPool(as, k.KID, 64), previous: old.current, signing: k.KID, previousKID: old.signing})
			rotations.Add(1)
			// The key before the old one is no longer used by any client; revoke it once
			// requests already on their way with it are answered.
			if old.previousKID != "" {
				time.Sleep(time.Second)
				as.Publish(old.previousKID, false)
				revocations.Add(1)
			}
		}
	})
	// Configuration reloads: a changed file every two seconds.
	var reloadsWritten atomic.Int64
	churn.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Second):
			}
			generation++
			sc.WriteConfig(t, config(as.Issuer, up.url, generation))
			reloadsWritten.Add(1)
		}
	})

	// The steady rate: a batch every 10 ms.
	start := time.Now()
	var mid sample
	tick := time.NewTicker(10 * time.Millisecond)
	perTick := max(1, rate/100)
	i := 0
	for i < total && ctx.Err() == nil {
		<-tick.C
		for j := 0; j < perTick && i < total; j++ {
			select {
			case jobs <- i:
				i++
			case <-ctx.Done():
			}
		}
		if i == total/2 && mid.goroutines == 0 {
			mid = measure(t, sc, client)
		}
	}
	tick.Stop()
	close(jobs)
	wg.Wait()
	elapsed := time.Since(start)
	close(stop)
	churn.Wait()
	if ctx.Err() != nil {
		t.Fatalf("the soak did not finish within %s: %d of %d requests sent", limit, i, total)
	}
	after := measure(t, sc, client)
	m := sc.Metrics(t)

	// The figures.
	var sent, answered, wronglyAllowed, wronglyDenied, unanswered, arrivedTotal int64
	t.Logf("soak: %d requests at %d/s in %s; %d key rotations, %d revocations, %v configuration reloads (%d written)",
		total, rate, elapsed.Round(100*time.Millisecond), rotations.Load(), revocations.Load(),
		e2etest.Sum(m, "tokengate_config_reloads_total", `result="success"`), reloadsWritten.Load())
	for k := range kinds {
		st := res.statuses(k)
		var n int64
		for _, c := range st {
			n += c
		}
		arrived := up.arrived[k].Load()
		sent += res.sent[k].Load()
		answered += n
		unanswered += res.unanswered[k].Load()
		arrivedTotal += arrived
		if k == kindValid {
			wronglyDenied += n - st[200]
		} else {
			wronglyAllowed += arrived + st[200]
		}
		wrongStatus := n - st[want[k]]
		t.Logf("  %-11s sent %6d, answered %v, reached the upstream %6d, unanswered %d", kindNames[k], res.sent[k].Load(), st, arrived, res.unanswered[k].Load())
		if wrongStatus != 0 {
			t.Errorf("%s: %d answers other than %d: %v", kindNames[k], wrongStatus, want[k], st)
		}
	}
	t.Logf("  wrongly allowed %d, wrongly denied %d, unanswered %d", wronglyAllowed, wronglyDenied, unanswered)
	t.Logf("  sidecar before: %s; half-way: %s; after: %s", base, mid, after)
	t.Logf("  JWKS fetches on unknown kid: %v; decisions from the caches: %v of %v",
		e2etest.Sum(m, "tokengate_jwks_refreshes_total", `trigger="unknown_kid"`),
		e2etest.Sum(m, "tokengate_token_cache_requests_total", `result="hit"`),
		e2etest.Sum(m, "tokengate_token_cache_requests_total"))

	// Each kind was refused for its own reason.
	reasons := func(rs ...string) (n float64) {
		for _, r := range rs {
			l := fmt.Sprintf(`reason="%s"`, r)
			n += e2etest.Sum(m, "tokengate_decisions_total", l) - e2etest.Sum(before, "tokengate_decisions_total", l)
		}
		return n
	}
	for k, rs := range map[kind][]string{kindExpired: {"expired"}, kindWrongScope: {"insufficient_scope"}, kindForged: {"signature", "algorithm", "unknown_key"}} {
		if got := reasons(rs...); got != float64(res.sent[k].Load()) {
			t.Errorf("%s: %v decisions with reason %v, %d sent", kindNames[k], got, rs, res.sent[k].Load())
		}
	}

	if sent != int64(total) || answered+unanswered != sent {
		t.Errorf("sent %d, answered %d, unanswered %d: requests lost in the test", sent, answered, unanswered)
	}
	if wronglyAllowed != 0 || wronglyDenied != 0 || unanswered != 0 || up.unknown.Load() != 0 {
		t.Errorf("wrongly allowed %d, wrongly denied %d, unanswered %d, unlabelled at the upstream %d: all must be 0",
			wronglyAllowed, wronglyDenied, unanswered, up.unknown.Load())
	}
	if arrivedTotal != res.sent[kindValid].Load() {
		t.Errorf("%d requests reached the upstream, %d valid were sent", arrivedTotal, res.sent[kindValid].Load())
	}
	if rotations.Load() == 0 || reloadsWritten.Load() == 0 || e2etest.Sum(m, "tokengate_config_reloads_total", `result="success"`) == 0 {
		t.Errorf("nothing churned: %d rotations, %d reloads", rotations.Load(), reloadsWritten.Load())
	}
	if e := e2etest.Sum(m, "tokengate_config_reloads_total", `result="error"`); e != 0 {
		t.Errorf("%v configuration reloads failed", e)
	}
	// Back to the baseline: the goroutines exactly (a few of the metrics scrape's own
	// may come and go), the heap within what the bounded caches may hold.
	if after.goroutines > base.goroutines+3 {
		t.Errorf("goroutines %v before, %v after:\n%s", base.goroutines, after.goroutines, goroutineDump(sc))
	}
	if after.heapInuse > base.heapInuse+32<<20 {
		t.Errorf("heap in use %.1f MiB before, %.1f MiB after", base.heapInuse/(1<<20), after.heapInuse/(1<<20))
	}
}

// goroutineDump is the sidecar's goroutines, grouped by stack, for a failure message.
func goroutineDump(sc *e2etest.Sidecar) string {
	resp, err := http.Get(sc.Admin + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return string(b)
}
