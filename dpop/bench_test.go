package dpop_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokengate/tokengate/dpop"
	"github.com/tokengate/tokengate/replay"
)

// BenchmarkProofCheck compares, in one run, the whole check of an ES256 proof (Verify
// with an in-memory replay store) with what it cannot do without: one bare ES256
// signature verification, and golang-jwt's ES256 Verify (the hash and the r||s
// decoding with it). A golang-jwt parse of an ES256 access token, what the middleware
// does for every token, is the scale. The goal (the DPoP issue) is a check that costs
// at most one ES256 verification plus 10 %: Verify reports its ratio to each baseline
// as x-ecdsa and x-jwt-es256 when they ran first.
func BenchmarkProofCheck(b *testing.B) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	var ecdsaNS, jwtNS float64 // ns/op of the baselines, from their last round
	nsPerOp := func(b *testing.B) float64 { return float64(b.Elapsed().Nanoseconds()) / float64(b.N) }

	b.Run("ecdsa.VerifyASN1", func(b *testing.B) {
		digest := sha256.Sum256([]byte("a proof's signing input"))
		sig, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if !ecdsa.VerifyASN1(&key.PublicKey, digest[:], sig) {
				b.Fatal("the signature does not verify")
			}
		}
		ecdsaNS = nsPerOp(b)
	})

	b.Run("jwt.ES256.Verify", func(b *testing.B) {
		es := clientFor(b, "ES256")
		p := es.proof(b, nil, map[string]any{"ath": ath(token)})
		i := len(p) - 87 // the '.' before the 86 characters of an ES256 signature
		input, sig := p[:i], p[i+1:]
		raw, err := b64.DecodeString(sig)
		if err != nil {
			b.Fatal(err)
		}
		pub := es.priv.Public()
		b.ReportAllocs()
		for b.Loop() {
			if err := jwt.SigningMethodES256.Verify(input, raw, pub); err != nil {
				b.Fatal(err)
			}
		}
		jwtNS = nsPerOp(b)
	})

	b.Run("jwt.Parse-ES256-token", func(b *testing.B) {
		now := time.Now()
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
			"iss": "https://auth.example.com", "sub": "user-1", "aud": "orders", "scope": "orders:read",
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": "a-token-id",
			"cnf": map[string]any{"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"},
		})
		tok.Header["kid"] = "es-1"
		signed, err := tok.SignedString(key)
		if err != nil {
			b.Fatal(err)
		}
		parser := jwt.NewParser(jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer("https://auth.example.com"),
			jwt.WithAudience("orders"), jwt.WithExpirationRequired(), jwt.WithLeeway(5*time.Second))
		keyfunc := func(*jwt.Token) (any, error) { return &key.PublicKey, nil }
		b.ReportAllocs()
		for b.Loop() {
			if _, err := parser.Parse(signed, keyfunc); err != nil {
				b.Fatal(err)
			}
		}
	})

	b.Run("Verify", func(b *testing.B) {
		es := clientFor(b, "ES256")
		now := time.Now().Truncate(time.Second)
		clock := func() time.Time { return now }
		v, err := dpop.New(dpop.Config{ExternalURL: "https://api.example.com"}, dpop.Options{Replay: replay.NewMemory(0, clock), Now: clock})
		if err != nil {
			b.Fatal(err)
		}
		// Every proof has its own jti, as a client's do; signing them is not timed.
		proofs := make([]string, b.N)
		for i := range proofs {
			proofs[i] = es.proof(b, nil, map[string]any{"ath": ath(token), "iat": now.Unix()})
		}
		r := httptest.NewRequest("GET", "/orders/1", nil)
		ctx := context.Background()
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if _, err := v.Verify(ctx, proofs[i], r, token); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		if ns := nsPerOp(b); ecdsaNS > 0 && jwtNS > 0 {
			b.ReportMetric(ns/ecdsaNS, "x-ecdsa")
			b.ReportMetric(ns/jwtNS, "x-jwt-es256")
		}
	})
}
