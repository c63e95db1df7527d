package jwks_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokengate/tokengate/internal/e2etest"
	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

// lightServer is a jwkstest server whose keys are cheap to make: "ec-1" (ES256, the
// signing key) and "ed-1" (EdDSA), no RSA key, for tests about fetching and refreshing
// rather than key types. Generating RSA keys is most of this package's test time under
// -race.
func lightServer(t testing.TB, opts ...jwkstest.Option) *jwkstest.Server {
	t.Helper()
	keys := jwkstest.WithKeys(jwkstest.MustGenerateKey("ec-1", "ES256"), jwkstest.MustGenerateKey("ed-1", "EdDSA"))
	return server(t, append([]jwkstest.Option{keys}, opts...)...)
}

// origin is an authorization server on a loopback port that serves the documents of a
// jwkstest server itself, so that a test sees when each JWKS request arrived and what it
// sent, and can answer what jwkstest does not: any status, a 304 without ETag, chains
// of redirects, discovery documents of any content.
type origin struct {
	*httptest.Server
	keys *jwkstest.Server // publishes the keys and signs the tokens

	mu       sync.Mutex
	status   int            // of JWKS answers; 0 means 200
	script   []int          // statuses of the next JWKS answers, before status applies
	etag     string         // sent with a 200; a 304 (to a matching If-None-Match) sends none
	meta     any            // the discovery document; nil: issuer and jwks_uri of this origin
	inm      []string       // If-None-Match of every JWKS request
	headers  http.Header    // of the last JWKS request
	disco    int            // discovery requests
	gate     chan struct{}  // when set, JWKS requests wait until it is closed
	arrivals chan time.Time // arrival of every JWKS request
}

func newOrigin(t testing.TB, keys *jwkstest.Server) *origin {
	t.Helper()
	o := &origin{keys: keys, arrivals: make(chan time.Time, 10_000)}
	o.Server = httptest.NewServer(http.HandlerFunc(o.serve))
	t.Cleanup(o.Close)
	return o
}

func (o *origin) JWKSURI() string { return o.URL + "/jwks" }

func (o *origin) serve(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch p := r.URL.Path; {
	case p == "/.well-known/openid-configuration":
		o.disco++
		meta := o.meta
		if meta == nil {
			meta = map[string]any{"issuer": o.URL, "jwks_uri": o.JWKSURI()}
		}
		_ = json.NewEncoder(w).Encode(meta)
	case strings.HasPrefix(p, "/hop/"): // /hop/N redirects N+1 times before the JWKS
		n, _ := strconv.Atoi(strings.TrimPrefix(p, "/hop/"))
		next := o.JWKSURI()
		if n > 0 {
			next = fmt.Sprintf("%s/hop/%d", o.URL, n-1)
		}
		http.Redirect(w, r, next, http.StatusFound)
	case p == "/jwks":
		o.arrivals <- time.Now()
		o.inm = append(o.inm, r.Header.Get("If-None-Match"))
		o.headers = r.Header.Clone()
		if gate := o.gate; gate != nil {
			o.mu.Unlock()
			select {
			case <-gate:
			case <-r.Context().Done():
			}
			o.mu.Lock()
		}
		status := o.status
		if len(o.script) > 0 {
			status, o.script = o.script[0], o.script[1:]
		}
		switch {
		case status != 0 && status != http.StatusOK:
			http.Error(w, "no", status)
		case o.etag != "" && r.Header.Get("If-None-Match") == o.etag:
			w.WriteHeader(http.StatusNotModified)
		default:
			if o.etag != "" {
				w.Header().Set("ETag", o.etag)
			}
			_, _ = w.Write(o.keys.JWKS())
		}
	default:
		http.NotFound(w, r)
	}
}

func (o *origin) set(f func(o *origin)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	f(o)
}

func (o *origin) discoveries() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.disco
}

// next waits (bounded) for the next JWKS request and returns its arrival time.
func (o *origin) next(t testing.TB, within time.Duration) time.Time {
	t.Helper()
	select {
	case at := <-o.arrivals:
		return at
	case <-time.After(within):
		t.Fatalf("no JWKS request within %s", within)
		return time.Time{}
	}
}

func TestScheduledRefreshesAreJittered(t *testing.T) {
	// The wait between two scheduled fetches is the interval less up to 10 % (so that
	// sidecars started together drift apart), never more than that. Timers only ever
	// fire late, so a gap shorter than the interval can only come from jitter; the
	// test watches gaps until it sees one (nearly every gap on a quiet machine).
	t.Parallel()
	const interval = 300 * time.Millisecond
	o := newOrigin(t, lightServer(t)) // no Cache-Control: the interval is Refresh.Max
	set := newSet(t, o.keys, func(c *jwks.Config) {
		c.Issuer, c.JWKSURI = o.URL, o.JWKSURI()
		c.Refresh.Min, c.Refresh.Max = interval, interval
	})
	prev := o.next(t, 10*time.Second)
	ready(t, set)
	deadline := time.Now().Add(20 * time.Second)
	for n := 1; ; n++ {
		at := o.next(t, 10*time.Second)
		gap := at.Sub(prev)
		if gap < interval-interval/10 {
			t.Fatalf("a scheduled refresh came %s after the last, sooner than the interval %s less 10 %%", gap, interval)
		}
		if gap < interval {
			return // jittered
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d scheduled refreshes, none sooner than the interval %s: the wait is not jittered", n, interval)
		}
		prev = at
	}
}

func TestFailedFetchesBackOff(t *testing.T) {
	// An outage is retried after 1 s, then after twice that, up to Refresh.Min: never
	// faster, so that a fleet of resource servers does not hammer an authorization
	// server that is down. Jitter takes at most 10 % off each wait.
	t.Parallel()
	o := newOrigin(t, lightServer(t))
	o.set(func(o *origin) { o.status = http.StatusServiceUnavailable })
	const refreshMin = 1500 * time.Millisecond
	set := newSet(t, o.keys, func(c *jwks.Config) {
		c.Issuer, c.JWKSURI = o.URL, o.JWKSURI()
		c.Refresh.Min = refreshMin
	})
	first := o.next(t, 10*time.Second)
	second := o.next(t, 10*time.Second)
	third := o.next(t, 10*time.Second)
	if gap := second.Sub(first); gap < 900*time.Millisecond {
		t.Fatalf("first retry %s after the failure, want at least 0.9 s", gap)
	}
	if gap := third.Sub(second); gap < refreshMin*9/10 {
		t.Fatalf("second retry %s after the first, want the backoff doubled up to refresh.min %s (less 10 %%)", gap, refreshMin)
	}
	if set.Ready() || set.Status().LastError == nil {
		t.Fatalf("status during the outage: %+v", set.Status())
	}
}

func TestBackoffStartsOverAfterASuccess(t *testing.T) {
	// After a success the next outage is retried after 1 s again, not after the backoff
	// that the last outage reached (here refresh.min, 200 ms: the backoff never exceeds
	// it). The retries of a first load count as startup, later fetches as scheduled.
	t.Parallel()
	o := newOrigin(t, lightServer(t))
	o.set(func(o *origin) { o.script = []int{503, 200, 503}; o.status = 503 })
	reg := prometheus.NewRegistry()
	m, err := jwks.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	set := newSet(t, o.keys, func(c *jwks.Config) {
		c.Issuer, c.JWKSURI = o.URL, o.JWKSURI()
		c.Refresh.Min, c.Refresh.Max = 200*time.Millisecond, 300*time.Millisecond
	}, func(opts *jwks.Options) { opts.Metrics = m })
	var at [4]time.Time
	for i := range at {
		at[i] = o.next(t, 10*time.Second)
	}
	// at[0] failed, at[1] loaded the keys, at[2] (scheduled) failed, at[3] is its retry.
	if gap := at[3].Sub(at[2]); gap < 900*time.Millisecond {
		t.Fatalf("first retry of a new outage after %s, want 1 s less jitter", gap)
	}
	if !set.Ready() {
		t.Fatal("not ready after a successful load")
	}
	count := func(result, trigger string) float64 {
		return metricValue(t, reg, "tokengate_jwks_refreshes_total", map[string]string{"result": result, "trigger": trigger})
	}
	if n := count("error", "startup"); n != 1 {
		t.Errorf("%v failed startup fetches counted, want 1", n)
	}
	if n := count("updated", "startup"); n != 1 {
		t.Errorf("%v startup loads counted, want 1", n)
	}
	if n := count("error", "scheduled"); n < 1 {
		t.Errorf("%v failed scheduled fetches counted, want at least 1", n)
	}
}

func TestKeyFilePollInterval(t *testing.T) {
	// A key file is polled every min(refresh.min, 10 s): with the default refresh.min,
	// every 10 s, and nothing is read in between; with a shorter refresh.min, that often.
	t.Parallel()
	srv := lightServer(t)
	file := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(file, srv.JWKS(), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m, err := jwks.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	set := newSet(t, srv, func(c *jwks.Config) { c.JWKSFile = file }, func(o *jwks.Options) { o.Metrics = m })
	ready(t, set)
	time.Sleep(300 * time.Millisecond) // a window in which a poll would be a bug
	polls := metricValue(t, reg, "tokengate_jwks_refreshes_total", map[string]string{"result": "not_modified", "trigger": "scheduled"})
	if polls != 0 {
		t.Fatalf("the key file was polled %v times within 300 ms of loading", polls)
	}

	reg2 := prometheus.NewRegistry()
	m2, err := jwks.NewMetrics(reg2)
	if err != nil {
		t.Fatal(err)
	}
	often := newSet(t, srv, func(c *jwks.Config) { c.JWKSFile = file; c.Refresh.Min = 20 * time.Millisecond }, func(o *jwks.Options) { o.Metrics = m2 })
	ready(t, often)
	eventually(t, "two polls of the key file", func() bool {
		return metricValue(t, reg2, "tokengate_jwks_refreshes_total", map[string]string{"result": "not_modified", "trigger": "scheduled"}) >= 2
	})
}

func TestKeyFileRewrittenWithinOneMtimeTick(t *testing.T) {
	// Some file systems keep mtimes in whole seconds: a file rewritten within the same
	// second keeps its mtime. A different size still says it changed.
	srv := lightServer(t)
	file := filepath.Join(t.TempDir(), "jwks.json")
	v1 := srv.JWKS()
	if err := os.WriteFile(file, v1, 0o600); err != nil {
		t.Fatal(err)
	}
	set := newSet(t, srv, func(c *jwks.Config) { c.JWKSFile = file })
	ready(t, set)
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Rotate(); err != nil {
		t.Fatal(err)
	}
	v2 := srv.JWKS()
	if len(v2) == len(v1) {
		t.Fatal("the rotated document has the size of the first; the test needs another")
	}
	if err := os.WriteFile(file, v2, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(file, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	if err := set.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := verify(context.Background(), set, srv.MustMint(nil)); err != nil {
		t.Fatalf("token of the rotated key after re-reading the file: %v", err)
	}
}

func TestSizeCapsAreInclusive(t *testing.T) {
	// A document of exactly maxResponseBytes is read; one byte more is refused, whether
	// its size is announced (Content-Length), only known once read (chunked), or a
	// file's.
	ctx := context.Background()
	contentLength := func(t *testing.T, srv *jwkstest.Server) int64 {
		t.Helper()
		resp, err := srv.Client().Get(srv.JWKSURI())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.ContentLength
	}
	check := func(t *testing.T, srv *jwkstest.Server, size int, detail string, mut func(*jwks.Config)) {
		t.Helper()
		at := newSet(t, srv, func(c *jwks.Config) { mut(c); c.MaxResponseBytes = int64(size) })
		if err := at.Refresh(ctx); err != nil {
			t.Fatalf("document of exactly maxResponseBytes (%d): %v", size, err)
		}
		over := newSet(t, srv, func(c *jwks.Config) { mut(c); c.MaxResponseBytes = int64(size - 1) })
		if err := over.Refresh(ctx); !errors.Is(err, jwks.ErrFetch) || !strings.Contains(err.Error(), "over the cap") {
			t.Fatalf("document one byte over maxResponseBytes: %v", err)
		} else if !strings.Contains(err.Error(), detail) {
			t.Fatalf("document one byte over maxResponseBytes: %v, want it to say %q", err, detail)
		}
	}
	t.Run("Content-Length", func(t *testing.T) {
		srv := lightServer(t)
		size := len(srv.JWKS())
		if n := contentLength(t, srv); n != int64(size) {
			t.Fatalf("Content-Length %d, want %d", n, size)
		}
		// An announced size over the cap is refused before the body is read.
		check(t, srv, size, fmt.Sprintf("body of %d bytes", size), func(c *jwks.Config) { c.JWKSURI = srv.JWKSURI() })
	})
	t.Run("chunked", func(t *testing.T) {
		srv := lightServer(t)
		const size = 8 << 10
		srv.SetOversized(size)
		if n := contentLength(t, srv); n != -1 {
			t.Fatalf("Content-Length %d, want none (chunked)", n)
		}
		check(t, srv, size, "body is over the cap", func(c *jwks.Config) { c.JWKSURI = srv.JWKSURI() })
	})
	t.Run("file", func(t *testing.T) {
		srv := lightServer(t)
		file := filepath.Join(t.TempDir(), "jwks.json")
		if err := os.WriteFile(file, srv.JWKS(), 0o600); err != nil {
			t.Fatal(err)
		}
		check(t, srv, len(srv.JWKS()), fmt.Sprintf("is %d bytes", len(srv.JWKS())), func(c *jwks.Config) { c.JWKSFile = file })
	})
}

func TestRedirectChainIsBounded(t *testing.T) {
	// Two redirects within the origin are followed; a third is refused.
	o := newOrigin(t, lightServer(t))
	ok := newSet(t, o.keys, func(c *jwks.Config) { c.Issuer, c.JWKSURI = o.URL, o.URL+"/hop/1" })
	if err := ok.Refresh(context.Background()); err != nil {
		t.Fatalf("two redirects: %v", err)
	}
	long := newSet(t, o.keys, func(c *jwks.Config) { c.Issuer, c.JWKSURI = o.URL, o.URL+"/hop/2" })
	if err := long.Refresh(context.Background()); !errors.Is(err, jwks.ErrFetch) || !strings.Contains(err.Error(), "redirects") {
		t.Fatalf("three redirects: %v", err)
	}
}

func TestConditionalRequests(t *testing.T) {
	// The first fetch is unconditional; later ones send the ETag of the last 200, also
	// after a 304 that did not repeat it.
	o := newOrigin(t, lightServer(t))
	o.set(func(o *origin) { o.etag = `"v1"` })
	set := newSet(t, o.keys, func(c *jwks.Config) { c.Issuer, c.JWKSURI = o.URL, o.JWKSURI() })
	ready(t, set)
	for range 2 {
		if err := set.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	o.mu.Lock()
	got, h := strings.Join(o.inm, " "), o.headers
	o.mu.Unlock()
	if got != ` "v1" "v1"` {
		t.Fatalf("If-None-Match of three fetches: %q, want none, then \"v1\" twice", got)
	}
	// The client says what it accepts and who it is.
	if a, ua := h.Get("Accept"), h.Get("User-Agent"); a != "application/json, application/jwk-set+json" || ua != "tokengate" {
		t.Fatalf("Accept %q, User-Agent %q", a, ua)
	}
}

func TestMovedJWKSURIIsDiscoveredAgain(t *testing.T) {
	// A discovered jwks_uri that answers 404 or 410 has moved: the next fetch runs
	// discovery again. Any other failure keeps it, and a configured jwksURI is never
	// replaced by discovery.
	ctx := context.Background()
	for _, tc := range []struct {
		status      int
		rediscovers bool
	}{
		{http.StatusNotFound, true},
		{http.StatusGone, true},
		{http.StatusServiceUnavailable, false},
		{http.StatusForbidden, false},
	} {
		t.Run(strconv.Itoa(tc.status), func(t *testing.T) {
			o := newOrigin(t, lightServer(t))
			set := newSet(t, o.keys, func(c *jwks.Config) { c.Issuer = o.URL })
			ready(t, set)
			before := o.discoveries()
			o.set(func(o *origin) { o.status = tc.status })
			err := set.Refresh(ctx)
			var se *jwks.StatusError
			if !errors.Is(err, jwks.ErrFetch) || !errors.As(err, &se) || se.Code != tc.status || se.URL != o.JWKSURI() ||
				!strings.Contains(err.Error(), fmt.Sprintf("GET %s: status %d", o.JWKSURI(), tc.status)) {
				t.Fatalf("Refresh = %v, want a StatusError of %s", err, o.JWKSURI())
			}
			o.set(func(o *origin) { o.status = 0 })
			if err := set.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			if err := set.Status().LastError; err != nil {
				t.Fatalf("LastError after a successful fetch: %v", err)
			}
			if again := o.discoveries() > before; again != tc.rediscovers {
				t.Fatalf("discovery ran again after a %d: %v, want %v", tc.status, again, tc.rediscovers)
			}
		})
	}
	t.Run("configured jwksURI", func(t *testing.T) {
		o := newOrigin(t, lightServer(t))
		o.set(func(o *origin) { o.meta = map[string]any{"issuer": o.URL, "jwks_uri": o.URL + "/elsewhere"} })
		set := newSet(t, o.keys, func(c *jwks.Config) { c.Issuer, c.JWKSURI = o.URL, o.JWKSURI() })
		ready(t, set)
		o.set(func(o *origin) { o.status = http.StatusNotFound })
		if err := set.Refresh(ctx); !errors.Is(err, jwks.ErrFetch) {
			t.Fatalf("Refresh = %v", err)
		}
		o.set(func(o *origin) { o.status = 0 })
		if err := set.Refresh(ctx); err != nil {
			t.Fatalf("the configured jwksURI was given up: %v", err)
		}
		if n := o.discoveries(); n != 0 {
			t.Fatalf("discovery ran %d times for a configured jwksURI", n)
		}
	})
}

func TestDiscoveryRefusalSaysWhy(t *testing.T) {
	// A discovery document that cannot be used is named with its reason, and an issuer
	// that differs only by a trailing slash says so: that is the usual mistake.
	ctx := context.Background()
	o := newOrigin(t, lightServer(t))
	for _, tc := range []struct {
		name  string
		meta  any
		want  []string
		never string
	}{
		{"not an object", []string{"issuer"}, []string{"is not a metadata document"}, ""},
		{"trailing slash", map[string]any{"issuer": o.URL + "/", "jwks_uri": o.JWKSURI()},
			[]string{`names issuer "` + o.URL + `/"`, "differ by a trailing slash"}, ""},
		{"another issuer", map[string]any{"issuer": "https://other.example", "jwks_uri": o.JWKSURI()},
			[]string{`names issuer "https://other.example"`}, "trailing slash"},
		{"no issuer", map[string]any{"jwks_uri": o.JWKSURI()},
			[]string{"names issuer none"}, "trailing slash"},
		{"no jwks_uri", map[string]any{"issuer": o.URL},
			[]string{"has no jwks_uri"}, ""},
		{"empty jwks_uri", map[string]any{"issuer": o.URL, "jwks_uri": ""},
			[]string{"has no jwks_uri"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o.set(func(o *origin) { o.meta = tc.meta })
			set := newSet(t, o.keys, func(c *jwks.Config) { c.Issuer = o.URL })
			err := set.Refresh(ctx)
			if !errors.Is(err, jwks.ErrFetch) {
				t.Fatalf("Refresh = %v, want an ErrFetch", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
			if tc.never != "" && strings.Contains(err.Error(), tc.never) {
				t.Errorf("error has %q: %v", tc.never, err)
			}
		})
	}
}

// metricValue reads one series of a counter or gauge from reg: the first whose labels
// include labels.
func metricValue(t testing.TB, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue series
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

func TestHugeResponseHeadersAreRefused(t *testing.T) {
	// A JWKS endpoint cannot make the client buffer more than 64 KiB of headers.
	srv := lightServer(t)
	huge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Padding", strings.Repeat("p", 100<<10))
		_, _ = w.Write(srv.JWKS())
	}))
	t.Cleanup(huge.Close)
	set := newSet(t, srv, func(c *jwks.Config) { c.Issuer, c.JWKSURI = huge.URL, huge.URL+"/jwks" })
	if err := set.Refresh(context.Background()); !errors.Is(err, jwks.ErrFetch) || !strings.Contains(err.Error(), "header") {
		t.Fatalf("Refresh = %v, want the headers refused", err)
	}
}

func TestRefreshSharesTheFetchInFlight(t *testing.T) {
	// A Refresh while a fetch is in flight waits for that fetch rather than starting
	// another: the server sees one request.
	o := newOrigin(t, lightServer(t))
	gate := make(chan struct{})
	o.set(func(o *origin) { o.gate = gate })
	set := newSet(t, o.keys, func(c *jwks.Config) { c.Issuer, c.JWKSURI = o.URL, o.JWKSURI() })
	o.next(t, 10*time.Second) // the first load is at the server, held
	// A Refresh with a done context joins (or would start) a fetch before it returns.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := set.Refresh(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Refresh with a cancelled context = %v", err)
	}
	close(gate)
	ready(t, set)
	select {
	case <-o.arrivals:
		t.Fatal("Refresh started a second fetch while one was in flight")
	case <-time.After(200 * time.Millisecond): // a window in which a second request would arrive
	}
}

func TestUnusableDocument(t *testing.T) {
	// A document without a usable key fails every fetch, also when it comes with an
	// ETag: before the first load a 304 is never taken for one (the client does not ask
	// for one). Before any load, a failure is logged as an error, and the skipped keys
	// are named.
	var logs e2etest.LockedBuffer
	o := newOrigin(t, lightServer(t))
	o.keys.SetJWKSBody([]byte(`{"keys":[{"kty":"oct","kid":"h1","k":"AAAA"}]}`))
	o.set(func(o *origin) { o.etag = `"v1"` })
	set := newSet(t, o.keys, func(c *jwks.Config) { c.Issuer, c.JWKSURI = o.URL, o.JWKSURI() },
		func(opts *jwks.Options) { opts.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) })
	for i := range 3 {
		if err := set.Refresh(context.Background()); !errors.Is(err, jwks.ErrFetch) || !strings.Contains(err.Error(), "no usable") {
			t.Fatalf("fetch %d of an unusable document: %v", i, err)
		}
	}
	if set.Ready() || set.Status().LastError == nil {
		t.Fatalf("status %+v", set.Status())
	}
	for _, want := range []string{
		`"level":"ERROR","msg":"fetching keys failed; tokens of this issuer get 503 until keys load"`,
		`"level":"WARN","msg":"key skipped","issuer":"` + o.URL + `","kid":"h1","index":0,"reason":"symmetric"`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s\nlogs:\n%s", want, logs.String())
		}
	}
}

func TestIdenticalBodyIsNotModified(t *testing.T) {
	// Without ETags, a document identical to the last one is not parsed and installed
	// again: the fetch counts as not_modified.
	o := newOrigin(t, lightServer(t)) // sends no ETag
	reg := prometheus.NewRegistry()
	m, err := jwks.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	set := newSet(t, o.keys, func(c *jwks.Config) { c.Issuer, c.JWKSURI = o.URL, o.JWKSURI() }, func(opts *jwks.Options) { opts.Metrics = m })
	ready(t, set)
	if err := set.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	count := func(result string) float64 {
		return metricValue(t, reg, "tokengate_jwks_refreshes_total", map[string]string{"result": result, "trigger": "scheduled"})
	}
	if u, n := count("updated"), count("not_modified"); u != 0 || n != 1 {
		t.Fatalf("refresh of an identical document: %v updated, %v not_modified", u, n)
	}
	// A changed document is one.
	if _, err := o.keys.Rotate(); err != nil {
		t.Fatal(err)
	}
	if err := set.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if u := count("updated"); u != 1 {
		t.Fatalf("refresh of a changed document: %v updated", u)
	}
}

func TestKeyFileErrors(t *testing.T) {
	// A key file that is missing or cannot be read fails the fetch, saying why.
	srv := lightServer(t)
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		file string
		want string
	}{
		"missing":   {filepath.Join(dir, "missing.json"), "no such file"},
		"directory": {dir, "is a directory"},
	} {
		t.Run(name, func(t *testing.T) {
			set := newSet(t, srv, func(c *jwks.Config) { c.JWKSFile = tc.file })
			if err := set.Refresh(context.Background()); !errors.Is(err, jwks.ErrFetch) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Refresh = %v, want an ErrFetch saying %q", err, tc.want)
			}
		})
	}
}

func TestBrokenBodies(t *testing.T) {
	// A body cut short fails the fetch as such, and a body that is refused unread does
	// not keep its connection open.
	ctx := context.Background()
	srv := lightServer(t)
	var opened, closed atomic.Int64
	bad := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/short": // announces more than it sends, then hangs up
			w.Header().Set("Content-Length", "1000")
			_, _ = w.Write([]byte(`{"keys":[`))
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close()
			}
		case "/big": // refused for its Content-Length, unread
			_, _ = w.Write([]byte(strings.Repeat(" ", 64<<10) + string(srv.JWKS())))
		}
	}))
	bad.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			opened.Add(1)
		case http.StateClosed, http.StateHijacked:
			closed.Add(1)
		}
	}
	bad.Start()
	t.Cleanup(bad.Close)

	short := newSet(t, srv, func(c *jwks.Config) { c.Issuer, c.JWKSURI = bad.URL, bad.URL+"/short" })
	if err := short.Refresh(ctx); !errors.Is(err, jwks.ErrFetch) || !strings.Contains(err.Error(), "reading body") {
		t.Fatalf("a body cut short: %v", err)
	}

	big := newSet(t, srv, func(c *jwks.Config) { c.Issuer, c.JWKSURI = bad.URL, bad.URL+"/big"; c.MaxResponseBytes = 4 << 10 })
	for range 3 {
		if err := big.Refresh(ctx); !errors.Is(err, jwks.ErrFetch) {
			t.Fatalf("a body over the cap: %v", err)
		}
	}
	eventually(t, "every connection closed", func() bool { return closed.Load() == opened.Load() })
}
