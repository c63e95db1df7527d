package jwks_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokengate/tokengate/internal/testclock"
	"github.com/tokengate/tokengate/jwks"
)

func TestNegativeCacheHoldsManyKidsAndIsBounded(t *testing.T) {
	// Unknown kids are remembered, each for Refresh.UnknownKIDEvery, so that asking
	// again costs no fetch even when the rate limit would allow one; but at most 4096 of
	// them: a flood of distinct kids makes the cache start over rather than grow.
	srv := lightServer(t)
	clk := testclock.New(time.Now())
	const every = time.Minute
	set := newSet(t, srv, func(c *jwks.Config) {
		c.Refresh.UnknownKIDEvery = every
		c.Refresh.UnknownKIDWait = 30 * time.Second
	}, func(o *jwks.Options) { o.Now = clk.Now })
	ready(t, set)
	ctx := context.Background()
	unknown := func(kid string) {
		t.Helper()
		tok := &jwt.Token{Method: jwt.SigningMethodRS256, Header: map[string]any{"alg": "RS256", "kid": kid}}
		if _, err := set.Key(ctx, tok); !errors.Is(err, jwks.ErrUnknownKey) {
			t.Fatalf("kid %s: %v, want ErrUnknownKey", kid, err)
		}
	}
	before := srv.JWKSFetches()
	fetches := func(want int) {
		t.Helper()
		if got := srv.JWKSFetches() - before; got != want {
			t.Fatalf("%d fetches, want %d", got, want)
		}
	}

	// The cap: kid 0 spends the budget of this minute; 4095 more fill the cache to 4096
	// and the next one empties it. Once the budget is back, kid 1 is no longer known to
	// be unknown, and fetches.
	unknown("flood-0")
	fetches(1)
	clk.Advance(every / 2)
	for i := 1; i <= 4096; i++ {
		unknown(fmt.Sprintf("flood-%d", i))
	}
	fetches(1)
	clk.Advance(every/2 + time.Second)
	unknown("flood-1")
	fetches(2)

	// Many at once: ten kids asked within one minute are all remembered the next.
	clk.Advance(every / 2)
	for i := range 10 {
		unknown(fmt.Sprintf("many-%d", i))
	}
	clk.Advance(every/2 + time.Second)
	for i := range 10 {
		unknown(fmt.Sprintf("many-%d", i))
	}
	fetches(2)
}

func TestUnknownKIDWaitDefault(t *testing.T) {
	// Without Refresh.UnknownKIDWait, a request for a new kid waits up to 2 s for the
	// fetch it started: a fetch that the server holds back ends the wait after no less
	// than that (the timer guarantees the lower bound) and well before a minute.
	t.Parallel()
	o := newOrigin(t, lightServer(t))
	set := newSet(t, o.keys, func(c *jwks.Config) { c.Issuer, c.JWKSURI = o.URL, o.JWKSURI() })
	ready(t, set)
	o.set(func(o *origin) { o.gate = make(chan struct{}) }) // never opened: Close ends the fetch
	tok := &jwt.Token{Method: jwt.SigningMethodRS256, Header: map[string]any{"alg": "RS256", "kid": "new"}}
	start := time.Now()
	_, err := set.Key(context.Background(), tok)
	waited := time.Since(start)
	if !errors.Is(err, jwks.ErrUnknownKey) {
		t.Fatalf("Key = %v, want ErrUnknownKey", err)
	}
	if waited < jwks.DefaultUnknownKIDWait || waited > 30*time.Second {
		t.Fatalf("waited %s for the fetch, want the default %s", waited, jwks.DefaultUnknownKIDWait)
	}
}
