package introspect_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/tokengate/tokengate/introspect"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

func ExampleClient_Introspect() {
	// An authorization server that issues opaque tokens, and this API registered at it.
	as := jwkstest.MustNewServer()
	defer as.Close()
	as.AddClient(jwkstest.Client{ID: "orders-api", Secret: "from-a-file"})
	ctx := context.Background()

	endpoint, err := introspect.Discover(ctx, nil, as.Issuer)
	if err != nil {
		panic(err)
	}
	c, err := introspect.New(introspect.Config{
		Endpoint:     endpoint,
		ClientID:     "orders-api",
		ClientSecret: []byte("from-a-file"),
	}, introspect.Options{})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	token := as.MintOpaque(jwkstest.Claims{"sub": "alice", "scope": "orders:read"})
	res, err := c.Introspect(ctx, token)
	fmt.Println(err, res.Subject, res.Scopes()) // the caller checks exp, aud, iss, scope

	_, err = c.Introspect(ctx, "a token nobody issued")
	fmt.Println(errors.Is(err, introspect.ErrInactive)) // 401 invalid_token

	as.SetDown(true)
	_, err = c.Introspect(ctx, as.MintOpaque(nil))
	fmt.Println(errors.Is(err, introspect.ErrUnavailable)) // 503, never allowed
	// Output:
	// <nil> alice [orders:read]
	// true
	// true
}
