package jwks_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokengate/tokengate/internal/testclock"
	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

func TestRecheck(t *testing.T) {
	// A token whose kid the set holds but whose signature that key refuses may come from
	// a key the issuer replaced under the same kid. Recheck fetches again within the
	// unknown-kid budget and says whether the key under the kid changed.
	srv := lightServer(t)
	clk := testclock.New(time.Now())
	reg := prometheus.NewRegistry()
	m, err := jwks.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	const every = time.Minute
	set := newSet(t, srv, func(c *jwks.Config) {
		c.Refresh.UnknownKIDEvery = every
		c.Refresh.UnknownKIDWait = 30 * time.Second
	}, func(o *jwks.Options) { o.Now = clk.Now; o.Metrics = m })
	ready(t, set)
	ctx := context.Background()
	before := srv.JWKSFetches()
	fetches := func(want int) {
		t.Helper()
		if got := srv.JWKSFetches() - before; got != want {
			t.Fatalf("%d fetches, want %d", got, want)
		}
	}
	bySignature := func() float64 {
		return metricValue(t, reg, "tokengate_jwks_refreshes_total", map[string]string{"result": "not_modified", "trigger": "signature"}) +
			metricValue(t, reg, "tokengate_jwks_refreshes_total", map[string]string{"result": "updated", "trigger": "signature"})
	}

	if set.Recheck(ctx, "nope") {
		t.Fatal("Recheck of a kid the set does not hold reported a change")
	}
	fetches(0) // that is the unknown-kid path's business, not Recheck's

	if set.Recheck(ctx, "ec-1") {
		t.Fatal("Recheck of an unchanged key reported a change")
	}
	fetches(1)
	if n := bySignature(); n != 1 {
		t.Fatalf("%v refreshes counted with trigger signature, want 1", n)
	}

	// The issuer replaces the key under kid ec-1. Its tokens fail until a fetch, and the
	// budget of this minute is spent: no fetch, no change.
	srv.ReplaceKey(jwkstest.MustGenerateKey("ec-1", "ES256"))
	tok := srv.MustMint(nil)
	if err := verify(ctx, set, tok); err == nil {
		t.Fatal("a token of the replaced key verified before any fetch")
	}
	if set.Recheck(ctx, "ec-1") {
		t.Fatal("Recheck reported a change without a fetch")
	}
	fetches(1)

	clk.Advance(every)
	if !set.Recheck(ctx, "ec-1") {
		t.Fatal("Recheck after the issuer replaced the key reported no change")
	}
	fetches(2)
	if err := verify(ctx, set, tok); err != nil {
		t.Fatalf("token of the replaced key after Recheck: %v", err)
	}
	if n := set.Removals(); n != 1 {
		t.Fatalf("a key replaced under its kid: %d removals, want 1", n)
	}

	// Group.Recheck asks the set of the issuer only.
	g, err := jwks.GroupOf(set)
	if err != nil {
		t.Fatal(err)
	}
	srv.ReplaceKey(jwkstest.MustGenerateKey("ec-1", "ES256"))
	clk.Advance(every)
	if g.Recheck(ctx, "https://other.example", "ec-1") {
		t.Fatal("Group.Recheck of an unknown issuer reported a change")
	}
	fetches(2)
	if !g.Recheck(ctx, srv.Issuer, "ec-1") {
		t.Fatal("Group.Recheck reported no change")
	}
	fetches(3)

	// A closed set fetches nothing.
	set.Close()
	srv.ReplaceKey(jwkstest.MustGenerateKey("ec-1", "ES256"))
	clk.Advance(every)
	if set.Recheck(ctx, "ec-1") {
		t.Fatal("Recheck on a closed set reported a change")
	}
	fetches(3)
}

func TestRecheckWaitIsBounded(t *testing.T) {
	srv := lightServer(t)
	set := newSet(t, srv, func(c *jwks.Config) { c.Refresh.UnknownKIDWait = 50 * time.Millisecond })
	ready(t, set)
	srv.SetDelay(time.Minute)
	start := time.Now()
	if set.Recheck(context.Background(), "ec-1") {
		t.Fatal("a fetch that never answered reported a change")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Recheck waited %s with unknownKidWait 50ms", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if set.Recheck(ctx, "ec-1") {
		t.Fatal("a cancelled Recheck reported a change")
	}
}

// hookClock is a clock that runs hook, once, the first time it is read after arm.
type hookClock struct {
	*testclock.Clock
	mu   sync.Mutex
	hook func()
}

func (h *hookClock) arm(f func()) { h.mu.Lock(); h.hook = f; h.mu.Unlock() }

func (h *hookClock) Now() time.Time {
	h.mu.Lock()
	f := h.hook
	h.hook = nil
	h.mu.Unlock()
	if f != nil {
		f()
	}
	return h.Clock.Now()
}

func TestAFetchThatFinishedMeanwhileIsUsed(t *testing.T) {
	// A request that missed its kid, or a Recheck, finds no fetch in flight and the
	// budget of fetches spent; a fetch that finished between its first look and that
	// moment still counts: the key it brought is used. The clock is the hook that
	// finishes a fetch at exactly that moment (the unknown-kid path reads it first
	// thing, Recheck when it asks the rate limit).
	srv := lightServer(t)
	clk := &hookClock{Clock: testclock.New(time.Now())}
	set := newSet(t, srv, func(c *jwks.Config) {
		c.Refresh.UnknownKIDEvery = time.Minute
		c.Refresh.UnknownKIDWait = 30 * time.Second
	}, func(o *jwks.Options) { o.Now = clk.Now })
	ready(t, set)
	ctx := context.Background()
	spend := func() { // an unknown kid spends the budget of this minute
		t.Helper()
		tok := &jwt.Token{Method: jwt.SigningMethodRS256, Header: map[string]any{"alg": "RS256", "kid": "spend-" + time.Now().String()}}
		if _, err := set.Key(ctx, tok); !errors.Is(err, jwks.ErrUnknownKey) {
			t.Fatal(err)
		}
	}
	refresh := func() {
		if err := set.Refresh(ctx); err != nil {
			t.Error(err)
		}
	}

	spend()
	if _, err := srv.Rotate(); err != nil {
		t.Fatal(err)
	}
	clk.arm(refresh)
	if err := verify(ctx, set, srv.MustMint(nil)); err != nil {
		t.Fatalf("token of a key that a fetch brought while its request looked: %v", err)
	}

	clk.Advance(time.Minute)
	spend()
	srv.ReplaceKey(jwkstest.MustGenerateKey(srv.SigningKey().KID, srv.SigningKey().Alg))
	before := srv.JWKSFetches()
	clk.arm(refresh)
	if !set.Recheck(ctx, srv.SigningKey().KID) {
		t.Fatal("Recheck did not see the key that a fetch replaced meanwhile")
	}
	if n := srv.JWKSFetches() - before; n != 1 {
		t.Fatalf("%d fetches, want only the one that finished meanwhile (the budget was spent)", n)
	}
}
