package redisstore_test

import (
	"context"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/redistest"
	"github.com/tokengate/tokengate/replay"
	"github.com/tokengate/tokengate/replay/redisstore"
)

// The benchmarks measure a use against a real redis-server on loopback, serially and
// from parallel goroutines, and report the p50 and p99 latency of one call beside
// ns/op. In the same run, two baselines: a bare PING round trip on one connection
// without a client library (the floor: what one round trip costs), and replay.Memory's
// Use (what a single replica pays). The goal is one round trip per use, and at most
// 0.5 ms of p99 over the PING on loopback:
//
//	go test -run '^$' -bench . -benchtime 20000x ./replay/redisstore/

func BenchmarkUse(b *testing.B) {
	srv := redistest.Start(b)
	s := newStore(b, redisstore.Config{Addrs: []string{srv.Addr()}, Timeout: time.Second})
	exp := time.Now().Add(time.Hour)
	ctx := context.Background()
	var n atomic.Int64
	use := func() {
		// A new key each time: every use is a first use that Redis stores.
		if _, err := s.Use(ctx, "bench|"+strconv.FormatInt(n.Add(1), 10), exp); err != nil {
			b.Fatal(err)
		}
	}
	use() // connect outside the measurement
	b.Run("serial", func(b *testing.B) { serial(b, use) })
	b.Run("parallel", func(b *testing.B) { parallel(b, 1, use) })
	// 32 goroutines per CPU, as a busy sidecar: rueidis writes their commands on one
	// connection together.
	b.Run("parallel-32x", func(b *testing.B) { parallel(b, 32, use) })
}

// BenchmarkPing is the baseline round trip: PING on a raw connection, as the least a
// client library can do, then Store.Ping, which is that through rueidis.
func BenchmarkPing(b *testing.B) {
	srv := redistest.Start(b)
	c, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 64)
	ping := []byte("*1\r\n$4\r\nPING\r\n")
	b.Run("raw", func(b *testing.B) {
		serial(b, func() {
			if _, err := c.Write(ping); err != nil {
				b.Fatal(err)
			}
			if n, err := c.Read(buf); err != nil || string(buf[:n]) != "+PONG\r\n" {
				b.Fatalf("%q %v", buf[:n], err)
			}
		})
	})
	s := newStore(b, redisstore.Config{Addrs: []string{srv.Addr()}, Timeout: time.Second})
	ping2 := func() {
		if err := s.Ping(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	ping2()
	b.Run("store", func(b *testing.B) { serial(b, ping2) })
	b.Run("store-parallel", func(b *testing.B) { parallel(b, 1, ping2) })
}

func BenchmarkMemoryUse(b *testing.B) {
	m := replay.NewMemory(0, nil)
	exp := time.Now().Add(time.Hour)
	ctx := context.Background()
	var n atomic.Int64
	use := func() {
		if _, err := m.Use(ctx, "bench|"+strconv.FormatInt(n.Add(1), 10), exp); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("serial", func(b *testing.B) { serial(b, use) })
	b.Run("parallel", func(b *testing.B) { parallel(b, 1, use) })
}

// serial times each call of f and reports the latency percentiles.
func serial(b *testing.B, f func()) {
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		f()
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	report(b, lat)
}

// parallel times each call of f from perCPU × GOMAXPROCS goroutines (b.RunParallel)
// and reports the latency percentiles over all of them.
func parallel(b *testing.B, perCPU int, f func()) {
	var mu sync.Mutex
	var lat []time.Duration
	b.SetParallelism(perCPU)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		mine := make([]time.Duration, 0, 1024)
		for pb.Next() {
			start := time.Now()
			f()
			mine = append(mine, time.Since(start))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	b.StopTimer()
	report(b, lat)
}

func report(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	at := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / 1e3
	}
	b.ReportMetric(at(0.50), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
}
