package testclock_test

import (
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/testclock"
)

func TestClock(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	c := testclock.New(start)
	if !c.Now().Equal(start) {
		t.Fatalf("Now = %v", c.Now())
	}
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() { c.Advance(time.Second); _ = c.Now() })
	}
	wg.Wait()
	if got := c.Now().Sub(start); got != 10*time.Second {
		t.Fatalf("advanced %s, want 10s", got)
	}
}
