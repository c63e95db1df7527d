package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tokengate/tokengate/replay/redisstore"
)

// A store whose Redis cannot be reached answers every use with an error, never with a
// first use: the caller refuses the request (503 replay_store_unavailable).
func Example() {
	store, err := redisstore.New(redisstore.Config{
		Addrs:   []string{"127.0.0.1:1"}, // nothing listens here
		Timeout: 50 * time.Millisecond,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()

	exp := time.Now().Add(5 * time.Minute) // the token's exp
	first, err := store.Use(context.Background(), "https://auth.example.com|jti-7", exp)
	switch {
	case errors.Is(err, redisstore.ErrUnavailable):
		fmt.Println("refused: the replay store is unavailable; first =", first)
	case err != nil:
		fmt.Println("refused:", err)
	case !first:
		fmt.Println("refused: the token was used before")
	default:
		fmt.Println("allowed")
	}
	// Output: refused: the replay store is unavailable; first = false
}

// New reports every problem of a Config at once, each a *ConfigError.
func ExampleNew_configErrors() {
	_, err := redisstore.New(redisstore.Config{
		Addrs:   []string{"redis", "redis:6379"},
		Timeout: -time.Second,
	})
	fmt.Println(err)
	var ce *redisstore.ConfigError
	fmt.Println(errors.As(err, &ce), ce.Field)
	// Output:
	// redisstore: Addrs[0]: "redis" is not host:port: address redis: missing port in address
	// redisstore: Timeout: -1s is negative: use a positive duration, or zero for 50ms
	// true Addrs[0]
}
