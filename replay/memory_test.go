package replay_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/testclock"
	"github.com/tokengate/tokengate/replay"
)

func TestMemoryFirstUseOnly(t *testing.T) {
	clk := testclock.New(time.Unix(1_700_000_000, 0))
	s := replay.NewMemory(0, clk.Now)
	ctx := context.Background()
	exp := clk.Now().Add(time.Minute)
	use := func(key string, exp time.Time) bool {
		t.Helper()
		first, err := s.Use(ctx, key, exp)
		if err != nil {
			t.Fatal(err)
		}
		return first
	}
	if !use("a", exp) {
		t.Fatal("first use refused")
	}
	if use("a", exp) {
		t.Fatal("second use allowed")
	}
	if !use("b", exp) {
		t.Fatal("another key refused")
	}
	clk.Advance(59 * time.Second)
	if use("a", exp) {
		t.Fatal("a use one second before exp allowed")
	}
	clk.Advance(time.Second)
	if !use("a", clk.Now().Add(time.Minute)) {
		t.Fatal("a use at exp refused: the record has expired")
	}
	if use("a", clk.Now().Add(time.Minute)) {
		t.Fatal("the renewed record allowed a second use")
	}
	// A key whose exp has already passed is not remembered.
	if !use("old", clk.Now()) || !use("old", clk.Now().Add(-time.Second)) || s.Len() != 2 {
		t.Fatalf("an expired use was remembered: %d records", s.Len())
	}
}

func TestMemoryIsBoundedAndFailsClosed(t *testing.T) {
	clk := testclock.New(time.Unix(1_700_000_000, 0))
	s := replay.NewMemory(3, clk.Now)
	ctx := context.Background()
	for i := range 3 {
		if first, err := s.Use(ctx, fmt.Sprint(i), clk.Now().Add(time.Duration(i+1)*time.Second)); !first || err != nil {
			t.Fatalf("use %d: %v %v", i, first, err)
		}
	}
	// Full of live records: refusing is safe, forgetting one would allow its replay.
	if first, err := s.Use(ctx, "x", clk.Now().Add(time.Hour)); first || !errors.Is(err, replay.ErrFull) {
		t.Fatalf("a use when full: %v %v", first, err)
	}
	if first, _ := s.Use(ctx, "0", clk.Now().Add(time.Hour)); first {
		t.Fatal("a live record was dropped to make room")
	}
	clk.Advance(time.Second) // "0" expires; room for one
	if first, err := s.Use(ctx, "x", clk.Now().Add(time.Hour)); !first || err != nil || s.Len() != 3 {
		t.Fatalf("a use after an expiry: %v %v, %d records", first, err, s.Len())
	}
	if first, _ := s.Use(ctx, "1", clk.Now().Add(time.Hour)); first {
		t.Fatal("the sweep dropped a live record")
	}
}

func TestMemoryHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s := replay.NewMemory(0, nil)
	if first, err := s.Use(ctx, "a", time.Now().Add(time.Minute)); first || !errors.Is(err, context.Canceled) {
		t.Fatalf("a use with a cancelled context: %v %v", first, err)
	}
	if s.Len() != 0 {
		t.Fatal("a refused use was recorded")
	}
}

func TestMemoryConcurrentUsesOneWinner(t *testing.T) {
	s := replay.NewMemory(0, nil)
	var wins atomic.Int64
	var wg sync.WaitGroup
	exp := time.Now().Add(time.Minute)
	for range 64 {
		wg.Go(func() {
			if first, err := s.Use(context.Background(), "jti-1", exp); err == nil && first {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d first uses of one key", wins.Load())
	}
}

func ExampleMemory() {
	s := replay.NewMemory(0, nil)
	exp := time.Now().Add(time.Minute)
	first, _ := s.Use(context.Background(), "issuer|jti-7", exp)
	again, _ := s.Use(context.Background(), "issuer|jti-7", exp)
	fmt.Println(first, again)
	// Output: true false
}
