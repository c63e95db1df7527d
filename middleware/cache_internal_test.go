package middleware

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
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
