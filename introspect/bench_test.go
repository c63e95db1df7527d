package introspect_test

import (
	"context"
	"testing"

	"github.com/tokengate/tokengate/introspect"
)

// BenchmarkIntrospect measures an answer from the cache (what nearly every request
// with a known token costs: a SHA-256 of the token and a map look-up) and a miss: a
// call to jwkstest's endpoint on loopback, with the cache off so that every
// iteration makes one.
func BenchmarkIntrospect(b *testing.B) {
	as := server(b, nil)
	ctx := context.Background()

	b.Run("hit", func(b *testing.B) {
		c := newClient(b, as.IntrospectionURL(), nil, nil, nil)
		token := as.MintOpaque(nil)
		mustActive(b, c, token)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Introspect(ctx, token); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("hit-parallel", func(b *testing.B) {
		c := newClient(b, as.IntrospectionURL(), nil, nil, nil)
		token := as.MintOpaque(nil)
		mustActive(b, c, token)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := c.Introspect(ctx, token); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("miss-loopback", func(b *testing.B) {
		c := newClient(b, as.IntrospectionURL(), nil, func(cfg *introspect.Config) { cfg.CacheTTL = -1 }, nil)
		token := as.MintOpaque(nil)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Introspect(ctx, token); err != nil {
				b.Fatal(err)
			}
		}
	})
}
