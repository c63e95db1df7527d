//go:build unix

package sidecar_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/tokengate/tokengate/internal/grpctest"
	"github.com/tokengate/tokengate/jwks/jwkstest"
	"github.com/tokengate/tokengate/sidecar"
)

// BenchmarkGRPC sends unary calls (a 64-byte answer) from one grpc-go client
// connection, 16 at a time, through the sidecar in process to a grpc-go server behind
// an h2c upstream, and, as the baseline of the same run, through a bare
// httputil.ReverseProxy over h2c to the same server (the sidecar's copy buffers and
// flushing, X-Forwarded-*). "direct" is the server with no proxy at all;
// "interleaved" compares the sidecar with the bare proxy in alternating bursts
// (docs/performance.md#grpc-through-the-sidecar-issue-15).
func BenchmarkGRPC(b *testing.B) {
	g := startGRPC(b, "")
	tok := g.as.MustMint(jwkstest.Claims{"scope": "test:read"})

	u, _ := url.Parse("http://" + g.api.Addr)
	tr := &http.Transport{DisableCompression: true, Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	rp := &httputil.ReverseProxy{
		Rewrite:    func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.Out.Host = pr.In.Host; pr.SetXForwarded() },
		Transport:  tr,
		BufferPool: sidecar.CopyBuffers,
	}
	bare := httptest.NewUnstartedServer(rp)
	bare.Config.Protocols = new(http.Protocols)
	bare.Config.Protocols.SetHTTP1(true)
	bare.Config.Protocols.SetUnencryptedHTTP2(true)
	bare.Start()
	defer bare.Close()

	ctx := grpctest.WithToken(context.Background(), tok)
	req := &testpb.SimpleRequest{ResponseSize: 64}
	clients := map[string]testpb.TestServiceClient{}
	for _, target := range []struct{ name, addr string }{
		{"bare", strings.TrimPrefix(bare.URL, "http://")},
		{"sidecar", strings.TrimPrefix(g.url, "http://")},
		{"direct", g.api.Addr},
	} {
		client := testpb.NewTestServiceClient(grpctest.Dial(b, target.addr))
		if _, err := client.UnaryCall(ctx, req); err != nil {
			b.Fatal(err)
		}
		clients[target.name] = client
		b.Run(target.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(8) // 16 callers on 2 cores
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := client.UnaryCall(ctx, req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}

	// interleaved alternates bursts of 256 calls (16 callers, 16 calls each) to the
	// bare proxy and to the sidecar, each first in every other round, so that both see
	// the same machine. It reports, for each, the wall time per call (the inverse of
	// throughput at this concurrency, which a busy machine's other work blurs) and the
	// process's CPU time per call (getrusage: client, proxy and server, all in this
	// process, which is what a saturated machine's throughput is inversely proportional
	// to, and what other processes do not change). x-bare and x-bare-cpu are the
	// sidecar's throughput as a share of the bare proxy's by each measure.
	b.Run("interleaved", func(b *testing.B) {
		const callers, calls = 16, 16
		burst := func(client testpb.TestServiceClient) [2]time.Duration { // wall, CPU
			cpu0, start := cpuTime(b), time.Now()
			var wg sync.WaitGroup
			for range callers {
				wg.Go(func() {
					for range calls {
						if _, err := client.UnaryCall(ctx, req); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			return [2]time.Duration{time.Since(start), cpuTime(b) - cpu0}
		}
		var bare, sidecar [2]time.Duration // wall, CPU
		add := func(to *[2]time.Duration, d [2]time.Duration) { to[0] += d[0]; to[1] += d[1] }
		for i := 0; b.Loop(); i++ {
			if i%2 == 0 {
				add(&bare, burst(clients["bare"]))
				add(&sidecar, burst(clients["sidecar"]))
			} else {
				add(&sidecar, burst(clients["sidecar"]))
				add(&bare, burst(clients["bare"]))
			}
		}
		n := float64(b.N * callers * calls)
		b.ReportMetric(float64(bare[0].Nanoseconds())/n, "bare-ns/call")
		b.ReportMetric(float64(sidecar[0].Nanoseconds())/n, "sidecar-ns/call")
		b.ReportMetric(float64(bare[0])/float64(sidecar[0]), "x-bare")
		b.ReportMetric(float64(bare[1].Nanoseconds())/n, "bare-cpu-ns/call")
		b.ReportMetric(float64(sidecar[1].Nanoseconds())/n, "sidecar-cpu-ns/call")
		b.ReportMetric(float64(bare[1])/float64(sidecar[1]), "x-bare-cpu")
	})
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
