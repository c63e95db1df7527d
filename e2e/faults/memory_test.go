//go:build e2e

package faults

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/e2etest"
	"github.com/tokengate/tokengate/internal/upstreamtest"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

// slowBody opens a connection, sends a request that declares a 100 000-byte body and
// sends one byte of it, then nothing. It reports how long the answer took, its status,
// and whether the sidecar closed the connection after it; the connection stays open on
// this side until the sidecar closes it or wait passes.
type slowResult struct {
	status int
	answer time.Duration
	closed bool
	err    error
}

func slowBody(addr, request string, wait time.Duration) slowResult {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return slowResult{err: err}
	}
	defer c.Close()
	start := time.Now()
	if _, err := io.WriteString(c, request+"Content-Length: 100000\r\n\r\nx"); err != nil {
		return slowResult{err: err}
	}
	_ = c.SetReadDeadline(start.Add(wait))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return slowResult{err: fmt.Errorf("no answer after %s: %w", time.Since(start).Round(time.Millisecond), err)}
	}
	r := slowResult{status: resp.StatusCode, answer: time.Since(start)}
	_, _ = io.Copy(io.Discard, resp.Body)
	_, err = br.ReadByte()
	var ne net.Error
	r.closed = err != nil && !(errors.As(err, &ne) && ne.Timeout())
	return r
}

func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*q))]
}

// TestSlowBodies is the review's finding 3 (issue 10) at scale: thousands of
// connections that declare a body and send one byte of it. Denied ones (no token) are
// answered at once and closed; allowed ones are cut after limits.bodyIdle. Goroutines
// and memory come back. The figures go to docs/operations.md.
func TestSlowBodies(t *testing.T) {
	as := authServer(t)
	up := upstreamtest.Start(t)
	const bodyIdle = 3 * time.Second
	sc := e2etest.StartSidecar(t, e2etest.Options{Config: config(as.Issuer, up.URL, fmt.Sprintf("limits: {bodyIdle: %s}\n", bodyIdle))})
	tok := valid(as)
	if code, _, _ := get(sc.URL+"/orders/1", tok); code != 200 {
		t.Fatal(code)
	}
	goroutines := func() float64 {
		m, err := sc.TryMetrics()
		if err != nil {
			return -1
		}
		return e2etest.Sum(m, "go_goroutines")
	}
	base, baseRSS := goroutines(), sc.Status(t)["VmRSS"]

	run := func(name string, n int, request string, wait time.Duration) ([]slowResult, float64) {
		results := make([]slowResult, n)
		var peak atomic.Int64
		ctx, stop := context.WithCancel(context.Background())
		var sampler sync.WaitGroup
		sampler.Go(func() {
			for ctx.Err() == nil {
				if g := int64(goroutines()); g > peak.Load() {
					peak.Store(g)
				}
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
			}
		})
		var wg sync.WaitGroup
		sem := make(chan struct{}, 500) // connections being opened at once
		for i := range n {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				results[i] = slowBody(sc.Listen, request, wait)
			})
		}
		wg.Wait()
		stop()
		sampler.Wait()
		return results, float64(peak.Load())
	}
	summarize := func(name string, results []slowResult, wantStatus int) []time.Duration {
		var answers []time.Duration
		var wrong, open, failed int
		for _, r := range results {
			switch {
			case r.err != nil:
				failed++
				if failed == 1 {
					t.Errorf("%s: %v", name, r.err)
				}
			case r.status != wantStatus:
				wrong++
			case !r.closed:
				open++
			default:
				answers = append(answers, r.answer)
			}
		}
		if failed+wrong+open > 0 {
			t.Errorf("%s: of %d, %d unanswered, %d with another status than %d, %d left open", name, len(results), failed, wrong, wantStatus, open)
		}
		return answers
	}

	n := min(3000, int(openFiles()/4))
	denied, peakDenied := run("denied", n, "POST /orders HTTP/1.1\r\nHost: api\r\n", 10*time.Second)
	answers := summarize("denied", denied, 401)
	e2etest.Eventually(t, 10*time.Second, "goroutines back after the denied bodies", func() bool { return goroutines() <= base+5 })
	rssDenied := sc.Status(t)["VmHWM"]
	t.Logf("%d token-less POSTs with 1 of 100000 body bytes: answered 401 and closed, p50 %s, p99 %s, slowest %s; goroutines %v → peak %v → %v; RSS %.1f MiB → peak %.1f MiB",
		n, quantile(answers, .5).Round(time.Microsecond), quantile(answers, .99).Round(time.Microsecond), quantile(answers, 1).Round(time.Microsecond),
		base, peakDenied, goroutines(), baseRSS/(1<<20), rssDenied/(1<<20))
	if p := quantile(answers, .99); p > 2*time.Second {
		t.Errorf("denied slow bodies answered in %s at p99: not at once", p)
	}

	// Allowed ones reach the upstream, which waits for the body; bodyIdle cuts them.
	m := min(500, int(openFiles()/8))
	before := up.Count()
	allowed, peakAllowed := run("allowed", m, "POST /upload HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer "+tok+"\r\n", bodyIdle+15*time.Second)
	answers = summarize("allowed", allowed, 408)
	e2etest.Eventually(t, 10*time.Second, "goroutines back after the allowed bodies", func() bool { return goroutines() <= base+5 })
	e2etest.Eventually(t, 10*time.Second, "the upstream to see every cut request", func() bool { return up.Count()-before >= m })
	t.Logf("%d allowed POSTs with 1 of 100000 body bytes: cut with 408 and closed after p50 %s, slowest %s (limits.bodyIdle %s); goroutines peak %v → %v; RSS peak %.1f MiB",
		m, quantile(answers, .5).Round(time.Millisecond), quantile(answers, 1).Round(time.Millisecond), bodyIdle, peakAllowed, goroutines(), sc.Status(t)["VmHWM"]/(1<<20))
	if lo, hi := quantile(answers, 0), quantile(answers, 1); lo < bodyIdle-500*time.Millisecond || hi > bodyIdle+10*time.Second {
		t.Errorf("allowed slow bodies cut after %s to %s, want about %s", lo, hi, bodyIdle)
	}
	// The sidecar serves valid requests afterwards, as before.
	if code, _, err := get(sc.URL+"/orders/1", tok); err != nil || code != 200 {
		t.Fatalf("a valid request after the slow bodies: %d %v", code, err)
	}
}

// TestCacheMemory is the review's finding 4 (issue 10): 60 000 distinct valid tokens
// of about 2.5 KB, each used once, with GOMEMLIMIT set as the chart sets it (the
// container's 64 MiB memory limit). The verified-token cache, bounded by bytes, keeps
// the heap well under the limit, and a valid client's requests stay fast meanwhile.
func TestCacheMemory(t *testing.T) {
	const limit = 64 << 20
	as := authServer(t)
	up := upstreamtest.Start(t)
	sc := e2etest.StartSidecar(t, e2etest.Options{
		Config: config(as.Issuer, up.URL, ""),
		Env:    []string{fmt.Sprintf("GOMEMLIMIT=%d", limit)},
	})
	groups := make([]string, 40)
	for i := range groups {
		groups[i] = fmt.Sprintf("cn=team-%02d,ou=groups,dc=example,dc=com", i)
	}
	mint := func(i int) string {
		return as.MustMint(jwkstest.Claims{"scope": "orders:read", "sub": fmt.Sprintf("user-%d", i), "groups": groups}, jwkstest.WithKey("ec-1"))
	}
	probe := valid(as)
	if code, _, _ := get(sc.URL+"/orders/1", probe); code != 200 {
		t.Fatal(code)
	}
	before := sc.Metrics(t)
	size := len(mint(0))

	const total = 60000
	var next, failed atomic.Int64
	ctx, stop := context.WithCancel(context.Background())
	var probeLat []time.Duration
	var rssPeak float64
	var samplers sync.WaitGroup
	samplers.Go(func() {
		for ctx.Err() == nil {
			if _, d, err := get(sc.URL+"/orders/1", probe); err == nil {
				probeLat = append(probeLat, d)
			}
			rssPeak = max(rssPeak, sc.Status(t)["VmRSS"])
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	start := time.Now()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > total || time.Since(start) > 5*time.Minute {
					return
				}
				if code, _, err := get(sc.URL+"/orders/1", mint(int(i))); err != nil || code != 200 {
					if failed.Add(1) == 1 {
						t.Errorf("token %d: %d %v", i, code, err)
					}
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	stop()
	samplers.Wait()
	after := sc.Metrics(t)
	status := sc.Status(t)
	gcs := e2etest.Sum(after, "go_gc_duration_seconds_count") - e2etest.Sum(before, "go_gc_duration_seconds_count")
	heap := e2etest.Sum(after, "go_memstats_heap_inuse_bytes")
	misses := e2etest.Sum(after, "tokengate_token_cache_requests_total", `result="miss"`) - e2etest.Sum(before, "tokengate_token_cache_requests_total", `result="miss"`)

	t.Logf("%d distinct %d-byte ES256 tokens in %s (%d failed), GOMEMLIMIT 64 MiB: RSS peak %.1f MiB (VmHWM %.1f MiB), heap in use after %.1f MiB, %.0f GCs (%.1f/s); probe with a cached token: p50 %s, p99 %s, slowest %s over %d requests; %.0f cache misses",
		next.Load()-1, size, took.Round(time.Millisecond), failed.Load(), rssPeak/(1<<20), status["VmHWM"]/(1<<20), heap/(1<<20), gcs, gcs/took.Seconds(),
		quantile(probeLat, .5).Round(time.Microsecond), quantile(probeLat, .99).Round(time.Microsecond), quantile(probeLat, 1).Round(time.Microsecond), len(probeLat), misses)
	if failed.Load() > 0 || next.Load() <= total {
		t.Fatalf("%d of %d tokens failed; %d sent", failed.Load(), total, next.Load()-1)
	}
	if status["VmHWM"] >= limit*0.9 {
		t.Errorf("the sidecar's resident memory peaked at %.1f MiB, within a tenth of the 64 MiB limit", status["VmHWM"]/(1<<20))
	}
	if heap > 40<<20 {
		t.Errorf("heap in use %.1f MiB after the flood", heap/(1<<20))
	}
	if p := quantile(probeLat, .99); p > 250*time.Millisecond {
		t.Errorf("a cached valid token took %s at p99 during the flood", p)
	}
	if !strings.Contains(sc.Log(), "tokengate sidecar serving") {
		t.Fatal("no start line")
	}
}
