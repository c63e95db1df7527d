package jwks_test

import (
	"context"
	"testing"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"

	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

// lookupFixture is a loaded set with ten keys and a parsed token naming the last one.
func lookupFixture(b testing.TB) (*jwks.Set, *jwkstest.Server, *jwt.Token) {
	srv := server(b)
	for i := range 7 {
		srv.AddKey(jwkstest.MustGenerateKey("ec-extra-"+string(rune('a'+i)), "ES256"), true)
	}
	set := newSet(b, srv, nil)
	ready(b, set)
	tok, _, err := jwt.NewParser().ParseUnverified(srv.MustMint(nil), jwt.MapClaims{})
	if err != nil {
		b.Fatal(err)
	}
	return set, srv, tok
}

// TestKnownKIDLookupAllocatesNothing holds the request path to its promise: a known
// kid costs no allocation, so the key look-up adds nothing for the garbage collector.
func TestKnownKIDLookupAllocatesNothing(t *testing.T) {
	set, _, tok := lookupFixture(t)
	ctx := context.Background()
	if _, err := set.Key(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(1000, func() { _, _ = set.Key(ctx, tok) }); n != 0 {
		t.Fatalf("%v allocations per known-kid look-up, want 0", n)
	}
}

// BenchmarkKeyLookup compares the known-kid look-up of a Set with keyfunc over jwkset's
// own MemoryStorage holding the same keys, the libraries' default path (baseline).
func BenchmarkKeyLookup(b *testing.B) {
	set, srv, tok := lookupFixture(b)
	ctx := context.Background()

	b.Run("tokengate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := set.Key(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("tokengate-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := set.Key(ctx, tok); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})

	kf, err := keyfunc.NewJWKSetJSON(srv.JWKS())
	if err != nil {
		b.Fatal(err)
	}
	b.Run("keyfunc-baseline", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := kf.KeyfuncCtx(ctx)(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}
