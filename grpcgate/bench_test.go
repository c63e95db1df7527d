//go:build unix

package grpcgate_test

import (
	"context"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/tokengate/tokengate/grpcgate"
	"github.com/tokengate/tokengate/internal/grpctest"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

// BenchmarkUnary measures unary calls over loopback from one grpc-go client to one
// grpc-go server, "bare" without an interceptor and "interceptor" behind
// UnaryServerInterceptor (the token found in the Gate's cache), in the same run;
// "-parallel" with GOMAXPROCS concurrent callers; "interleaved" compares the two in
// alternating bursts. The difference is what the Gate costs a call.
func BenchmarkUnary(b *testing.B) {
	e := newEnv(b, routes)
	bare := grpctest.Start(b)
	guarded := serve(b, e.gate)
	tok := e.as.MustMint(jwkstest.Claims{"scope": "test:read"})
	ctx := grpctest.WithToken(context.Background(), tok)
	req := &testpb.SimpleRequest{ResponseSize: 64}
	clients := map[string]testpb.TestServiceClient{}
	for _, s := range []struct {
		name string
		srv  *grpctest.Server
	}{{"bare", bare}, {"interceptor", guarded}} {
		client := testpb.NewTestServiceClient(grpctest.Dial(b, s.srv.Addr))
		clients[s.name] = client
		b.Run(s.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := client.UnaryCall(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(s.name+"-parallel", func(b *testing.B) {
			b.ReportAllocs()
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
	// two servers, each first in every other round, and reports the wall time and the
	// process's CPU time (getrusage: client and server) per call of each; x-bare and
	// x-bare-cpu are the guarded server's throughput as a share of the bare one's.
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
		var plain, guarded [2]time.Duration
		add := func(to *[2]time.Duration, d [2]time.Duration) { to[0] += d[0]; to[1] += d[1] }
		for i := 0; b.Loop(); i++ {
			if i%2 == 0 {
				add(&plain, burst(clients["bare"]))
				add(&guarded, burst(clients["interceptor"]))
			} else {
				add(&guarded, burst(clients["interceptor"]))
				add(&plain, burst(clients["bare"]))
			}
		}
		n := float64(b.N * callers * calls)
		b.ReportMetric(float64(plain[0].Nanoseconds())/n, "bare-ns/call")
		b.ReportMetric(float64(guarded[0].Nanoseconds())/n, "interceptor-ns/call")
		b.ReportMetric(float64(plain[0])/float64(guarded[0]), "x-bare")
		b.ReportMetric(float64(plain[1].Nanoseconds())/n, "bare-cpu-ns/call")
		b.ReportMetric(float64(guarded[1].Nanoseconds())/n, "interceptor-cpu-ns/call")
		b.ReportMetric(float64(plain[1])/float64(guarded[1]), "x-bare-cpu")
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

// BenchmarkInterceptor measures the interceptor alone, without the network: building
// the request from the call's metadata, a cached decision, the context for the handler.
func BenchmarkInterceptor(b *testing.B) {
	e := newEnv(b, routes)
	tok := e.as.MustMint(jwkstest.Claims{"scope": "test:read"})
	ctx := metadata.NewIncomingContext(context.Background(), metadata.MD{
		":authority":    {"127.0.0.1:8000"},
		"authorization": {"Bearer " + tok},
		"content-type":  {"application/grpc"},
		"user-agent":    {"grpc-go/1.85.0"},
		"te":            {"trailers"},
	})
	ctx = peer.NewContext(ctx, &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000}})
	intercept := grpcgate.UnaryServerInterceptor(e.gate)
	info := &grpc.UnaryServerInfo{FullMethod: "/grpc.testing.TestService/UnaryCall"}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	if _, err := intercept(ctx, nil, info, handler); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := intercept(ctx, nil, info, handler); err != nil {
			b.Fatal(err)
		}
	}
}
