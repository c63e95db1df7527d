package middleware

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

// largePayload is the payload of an access token of about n bytes: registered claims,
// scopes and a groups array, the kind the review flooded the cache with (issue 10,
// finding 4).
func largePayload(i, n int) []byte {
	var groups []string
	for size := 0; size < n; size += 40 {
		groups = append(groups, fmt.Sprintf("cn=group-%06d-%06d,ou=groups,dc=example", i, size))
	}
	b, _ := json.Marshal(map[string]any{
		"iss": "https://auth.example.com", "sub": fmt.Sprintf("user-%d", i), "aud": "https://orders.example.com",
		"client_id": "c1", "jti": fmt.Sprint(i), "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(),
		"scope": "orders:read orders:write profile", "groups": groups,
	})
	return b
}

// TestCacheChargesWhatItHolds measures what the verified-token cache really holds per
// entry (heap after a garbage collection) against what it charges to its byte budget:
// the charge must not be below what is held, or the budget would not bound memory, and
// not far above it, or the cache would hold fewer tokens than it could.
func TestCacheChargesWhatItHolds(t *testing.T) {
	for _, tc := range []struct {
		name string
		keep []string
		size int
	}{
		{"sidecar keeps sub and client_id, 2.4 KB tokens", []string{"sub", "client_id"}, 1800},
		{"sidecar keeps groups, 2.4 KB tokens", []string{"sub", "groups"}, 1800},
		{"middleware keeps every claim, 2.4 KB tokens", nil, 1800},
		{"sidecar, 7.8 KB tokens", []string{"sub", "client_id"}, 5800},
		{"small tokens", []string{"sub", "client_id"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 2000
			c := newTokenCache(1<<30, 1<<40, time.Minute, tc.keep)
			now := time.Now()
			var tokenBytes int
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for i := range n {
				p := largePayload(i, tc.size)
				cl := &Claims{}
				if err := cl.UnmarshalJSON(p); err != nil {
					t.Fatal(err)
				}
				if err := cl.scopesFrom(""); err != nil {
					t.Fatal(err)
				}
				// A token as a request carries it: in a header value, after "Bearer ".
				sig := make([]byte, 256)
				rand.Read(sig)
				header := "Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYS0xIn0." + base64.RawURLEncoding.EncodeToString(p) + "." + base64.RawURLEncoding.EncodeToString(sig)
				token := strings.TrimPrefix(header, "Bearer ")
				tokenBytes += len(token)
				c.put(token, cl, 0, now)
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			held := float64(after.HeapAlloc) - float64(before.HeapAlloc)
			charged := float64(c.entries.bytes.Load())
			ratio := held / charged
			t.Logf("%d entries: token %.0f B, held %.0f B, charged %.0f B per entry (%.2f× the token); held/charged %.2f",
				n, float64(tokenBytes)/n, held/n, charged/n, charged/float64(tokenBytes), ratio)
			if ratio > 1.1 || ratio < 0.6 {
				t.Fatalf("the cache holds %.2f× what it charges", ratio)
			}
			runtime.KeepAlive(c)
		})
	}
}

// The byte budget bounds the cache whatever the token sizes, and entries are charged
// back when they go.
func TestCacheBoundedByBytes(t *testing.T) {
	const budget = 256 << 10
	c := newTokenCache(1<<30, budget, time.Minute, []string{"sub"})
	now := time.Now()
	for i := range 2000 {
		cl := &Claims{}
		if err := cl.UnmarshalJSON(largePayload(i, 1800)); err != nil {
			t.Fatal(err)
		}
		c.put(fmt.Sprintf("token-%d-%s", i, strings.Repeat("x", 2400)), cl, 0, now)
		if b := c.entries.bytes.Load(); b > budget+budget/10 {
			t.Fatalf("after %d tokens the cache charges %d bytes, budget %d", i+1, b, budget)
		}
	}
	var sum int64
	b := c.entries
	b.m.Range(func(_, v any) bool { sum += v.(*slot[*Claims]).cost; return true })
	if sum != b.bytes.Load() || int64(b.len()) != b.size.Load() {
		t.Fatalf("charged %d, entries cost %d; %d entries, counted %d", b.bytes.Load(), sum, b.len(), b.size.Load())
	}
	if b.len() < 50 {
		t.Fatalf("only %d entries kept", b.len())
	}
	// A token whose entry alone is more than a tenth of the budget is not cached.
	cl := &Claims{}
	_ = cl.UnmarshalJSON(largePayload(0, 1800))
	big := strings.Repeat("y", budget/10)
	c.put(big, cl, 0, now)
	if v, _ := c.get(big, now, 0); v != nil {
		t.Fatal("an oversized token was cached")
	}
}

// boundedMap keeps what fits: an entry of a tenth of the bytes, exactly the bounds.
func TestBoundedMapBounds(t *testing.T) {
	now := time.Now()
	later := now.Add(time.Hour)
	t.Run("an entry of a tenth of the bytes is stored, a byte more is not", func(t *testing.T) {
		b := newBoundedMap[int, string](100, 1000)
		b.put(1, "tenth", 100, later, 0, now)
		b.put(2, "more", 101, later, 0, now)
		if _, found, _ := b.get(1, now, 0); !found {
			t.Error("an entry of exactly a tenth of the bytes was not stored")
		}
		if _, found, _ := b.get(2, now, 0); found {
			t.Error("an entry of more than a tenth of the bytes was stored")
		}
	})
	t.Run("exactly max entries stay; one more evicts down to nine tenths", func(t *testing.T) {
		b := newBoundedMap[int, int](10, 1<<20)
		for i := range 10 {
			b.put(i, i, 1, later, 0, now)
		}
		if n := b.len(); n != 10 || b.size.Load() != 10 {
			t.Fatalf("%d entries (counted %d) after 10 puts into 10", n, b.size.Load())
		}
		b.put(10, 10, 1, later, 0, now)
		if n := b.len(); n != 9 || b.size.Load() != 9 {
			t.Fatalf("%d entries (counted %d) after the 11th put, want 9", n, b.size.Load())
		}
	})
	t.Run("exactly max bytes stay; one more evicts down to nine tenths", func(t *testing.T) {
		b := newBoundedMap[int, int](1000, 1000)
		for i := range 10 {
			b.put(i, i, 100, later, 0, now)
		}
		if n := b.len(); n != 10 || b.bytes.Load() != 1000 {
			t.Fatalf("%d entries, %d bytes after 1000 bytes into 1000", n, b.bytes.Load())
		}
		b.put(10, 10, 100, later, 0, now)
		if n := b.len(); n != 9 || b.bytes.Load() != 900 {
			t.Fatalf("%d entries, %d bytes after one more, want 9 and 900", n, b.bytes.Load())
		}
	})
	t.Run("expired entries go first", func(t *testing.T) {
		b := newBoundedMap[int, int](10, 1<<20)
		for i := range 10 {
			until := later
			if i%2 == 0 {
				until = now.Add(time.Second) // expired by the time of the next put
			}
			b.put(i, i, 1, until, 0, now)
		}
		b.put(10, 10, 1, later, 0, now.Add(time.Minute))
		for _, i := range []int{1, 3, 5, 7, 9, 10} {
			if _, found, _ := b.get(i, now.Add(time.Minute), 0); !found {
				t.Errorf("live entry %d evicted while expired ones were there", i)
			}
		}
		if n := b.len(); n != 6 {
			t.Errorf("%d entries, want the 6 live ones", n)
		}
	})
	t.Run("expiry and removals", func(t *testing.T) {
		b := newBoundedMap[string, int](10, 1000)
		b.put("k", 1, 10, now.Add(time.Second), 7, now)
		if v, found, expired := b.get("k", now, 7); !found || expired || v != 1 {
			t.Fatalf("get before expiry: %v %v %v", v, found, expired)
		}
		if _, found, _ := b.get("k", now, 8); found {
			t.Fatal("an entry made before a key removal was found")
		}
		if b.len() != 0 || b.size.Load() != 0 || b.bytes.Load() != 0 {
			t.Fatalf("a stale entry stayed: %d entries, %d counted, %d bytes", b.len(), b.size.Load(), b.bytes.Load())
		}
		b.put("k", 1, 10, now.Add(time.Second), 7, now)
		if _, found, expired := b.get("k", now.Add(time.Second), 7); found || !expired {
			t.Fatalf("at its expiry instant: found %v, expired %v", found, expired)
		}
		if b.len() != 0 || b.bytes.Load() != 0 {
			t.Fatal("an expired entry stayed")
		}
	})
	t.Run("a second put keeps the first value", func(t *testing.T) {
		b := newBoundedMap[string, int](10, 1000)
		if v := b.put("k", 1, 10, later, 0, now); v != 1 {
			t.Fatalf("put returned %d", v)
		}
		if v := b.put("k", 2, 10, later, 0, now); v != 1 {
			t.Fatalf("a second put returned %d, want the cached 1", v)
		}
		if b.size.Load() != 1 || b.bytes.Load() != 10 {
			t.Fatalf("counted %d entries, %d bytes", b.size.Load(), b.bytes.Load())
		}
	})
}

// A cached token whose nbf is ahead of a clock that went back is verified afresh,
// with the same leeway as a first verification.
func TestCacheNotBeforeLeeway(t *testing.T) {
	nbf := time.Unix(2_000_000_000, 0)
	c := newTokenCache(10, 1<<20, 30*time.Second, nil)
	c.put("tok", &Claims{NotBefore: nbf, ExpiresAt: nbf.Add(time.Hour)}, 0, nbf)
	if cl, _ := c.get("tok", nbf.Add(-10*time.Second), 0); cl == nil {
		t.Error("10 s before nbf, within the 30 s leeway: not found")
	}
	if cl, _ := c.get("tok", nbf.Add(-31*time.Second), 0); cl != nil {
		t.Error("31 s before nbf, beyond the leeway: found")
	}
	if cl, _ := c.get("tok", nbf.Add(time.Hour+29*time.Second), 0); cl == nil {
		t.Error("29 s after exp, within the leeway: not found")
	}
}

// A refused token's entry keeps the denial's reason, issuer, kid and message (cut
// short), never the error chain, and is charged for what it keeps.
func TestRejectCacheKeepsAndCharges(t *testing.T) {
	now := time.Now()
	c := newRejectCache(10, 1<<20)
	long := strings.Repeat("é", 400) // 800 bytes
	e := &Error{Reason: ReasonSignature, Issuer: "https://auth.example.com", KeyID: "kid-1", Err: fmt.Errorf("wrapped: %w: %s", errSegments, long)}
	c.put([32]byte{1}, e, now, 0)
	got := c.get([32]byte{1}, now, 0)
	if got == nil {
		t.Fatal("not remembered")
	}
	if got.Reason != e.Reason || got.Issuer != e.Issuer || got.KeyID != e.KeyID {
		t.Fatalf("kept %+v", got)
	}
	if got.Err == nil || !strings.HasPrefix(got.Err.Error(), "wrapped: ") || len(got.Err.Error()) > 512+len("…") || errors.Is(got, errSegments) {
		t.Fatalf("kept error %v", got.Err)
	}
	want := int64(rejectOverhead + len(got.Issuer) + len(got.KeyID) + len(got.Err.Error()))
	if b := c.entries.bytes.Load(); b != want {
		t.Fatalf("charged %d bytes, want %d", b, want)
	}
	c.put([32]byte{2}, &Error{Reason: ReasonExpired}, now, 0)
	if got := c.get([32]byte{2}, now, 0); got == nil || got.Err != nil {
		t.Fatalf("a denial without a cause came back as %+v", got)
	}
	if b := c.entries.bytes.Load(); b != want+rejectOverhead {
		t.Fatalf("charged %d bytes, want %d", b, want+rejectOverhead)
	}
	if got := c.get([32]byte{1}, now.Add(rejectTTL), 0); got != nil {
		t.Fatal("remembered beyond rejectTTL")
	}
}

// Claims.size charges every string, list item and Raw member it holds.
func TestClaimsSize(t *testing.T) {
	c := &Claims{
		Issuer: "iss-5", Subject: "sub-6!", ClientID: "cid-7!!", ID: "jti-8!!!",
		Audience: []string{"a", "bb"},
		Scopes:   []string{"ccc"},
		Raw:      map[string]json.RawMessage{"tenant": json.RawMessage(`"t1"`)},
	}
	want := int64(5 + 6 + 7 + 8 + (1 + 16) + (2 + 16) + (3 + 16) + (6 + 4 + 3*16))
	if got := c.size(); got != want {
		t.Fatalf("size %d, want %d", got, want)
	}
}

// The refused-token cache of a Gate takes an eighth of Tokens.CacheBytes and at most
// Tokens.CacheEntries entries, however many forged tokens a client sends.
func TestGateRejectCacheBounds(t *testing.T) {
	as, err := jwkstest.NewServer(jwkstest.WithAudience("https://orders.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	defer as.Close()
	for _, tc := range []struct {
		name    string
		entries int
		bytes   int64
	}{
		{"by bytes", 100000, 64 << 10},
		{"by entries", 40, 1 << 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := New(t.Context(), Config{
				Issuers: []Issuer{{Config: jwks.Config{Issuer: as.Issuer}, Audiences: []string{"https://orders.example.com"}}},
				Routes:  []Route{{Match: "/"}},
				Tokens:  Tokens{CacheEntries: tc.entries, CacheBytes: tc.bytes},
			}, Options{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			if err := g.WaitReady(t.Context()); err != nil {
				t.Fatal(err)
			}
			good := as.MustMint(jwkstest.Claims{})
			body := good[:strings.LastIndexByte(good, '.')+1]
			for i := range 200 {
				// A forged signature: the same length, other bytes. Refused
				// (signature) and remembered.
				sig := base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("%0256d", i)))
				req := httptest.NewRequest("GET", "/", nil)
				req.Header.Set("Authorization", "Bearer "+body+sig)
				if d := g.Decide(req); d.Reason != ReasonSignature {
					t.Fatalf("forged token %d: %s (%v)", i, d.Reason, d.Err)
				}
			}
			r := g.rejects.entries
			if r.maxBytes != max(1, tc.bytes/8) || r.max != int64(tc.entries) {
				t.Fatalf("bounds %d entries, %d bytes; want %d, %d", r.max, r.maxBytes, tc.entries, tc.bytes/8)
			}
			if n := r.size.Load(); n == 0 || n > r.max {
				t.Fatalf("%d refusals remembered, bound %d", n, r.max)
			}
			if b := r.bytes.Load(); b == 0 || b > r.maxBytes {
				t.Fatalf("%d bytes remembered, bound %d", b, r.maxBytes)
			}
		})
	}
}
