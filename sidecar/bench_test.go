package sidecar_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"

	"github.com/tokengate/tokengate/internal/redistest"
	"github.com/tokengate/tokengate/internal/upstreamtest"
	"github.com/tokengate/tokengate/jwks/jwkstest"
	"github.com/tokengate/tokengate/sidecar"
)

// BenchmarkProxy sends requests through the sidecar, in process, with the token cache on
// and off, and through a bare httputil.ReverseProxy to the same upstream (baseline).
// The load test (go run ./internal/loadtest) measures the real binary with wrk.
func BenchmarkProxy(b *testing.B) {
	for _, tc := range []struct {
		name  string
		extra string
	}{{"cache-on", ""}, {"cache-off", "tokens:\n  cache: {entries: 0}\n"}} {
		b.Run(tc.name, func(b *testing.B) {
			h := start(b, tc.extra)
			tok := h.as.MustMint(jwkstest.Claims{"scope": "orders:read"})
			drive(b, h.url+"/orders/1", tok)
		})
	}
	b.Run("bare", func(b *testing.B) {
		up := upstreamtest.Start(b) // the same upstream as the sidecar's, recording included
		u, _ := url.Parse(up.URL)
		rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.SetXForwarded() },
			Transport: &http.Transport{MaxIdleConnsPerHost: 512, DisableCompression: true}, BufferPool: sidecar.CopyBuffers}
		srv := httptest.NewServer(rp)
		defer srv.Close()
		drive(b, srv.URL+"/orders/1", "x")
	})
}

// BenchmarkSingleUse sends requests with a new token each (minted before the timer
// starts) through the sidecar: on a single-use route (the in-memory replay store, and
// a redis-server on loopback), and
// on the same route without single use, the baseline of verifying a new token every
// time; "bare" in BenchmarkProxy is the proxy alone (docs/performance.md#single-use).
func BenchmarkSingleUse(b *testing.B) {
	const once = "  - match: \"POST /payments\"\n    singleUse: true\n"
	for _, tc := range []struct {
		name, route string
		redis       bool
	}{
		{"single-use", once, false},
		{"single-use-redis", once, true},
		{"new-token-each", "  - match: \"POST /payments\"\n", false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			extra := tc.route
			if tc.redis {
				// redis-server from tools/debs, on a loopback port.
				extra += "replay: {store: redis, redis: {addrs: [\"" + redistest.Start(b).Addr() + "\"]}}\n"
			}
			h := start(b, extra)
			tokens := make(chan string, b.N)
			for range b.N {
				tokens <- h.as.MustMint(nil, jwkstest.WithKey(h.as.SigningKey().KID))
			}
			close(tokens)
			driveWith(b, "POST", h.url+"/payments", func() string { return <-tokens })
		})
	}
}

// drive sends the same request with tok, 16 at a time.
func drive(b *testing.B, target, tok string) {
	driveWith(b, "GET", target, func() string { return tok })
}

// driveWith sends requests with the tokens next returns, 16 at a time.
func driveWith(b *testing.B, method, target string, next func() string) {
	tr := &http.Transport{MaxIdleConnsPerHost: 512}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(method, target, nil)
			req.Header.Set("Authorization", "Bearer "+next())
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}
