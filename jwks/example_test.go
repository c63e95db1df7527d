package jwks_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

// A Go program trusts one authorization server: it starts the issuer's key set, waits
// for the first load, and verifies tokens with the set as the jwt.Keyfunc.
func ExampleNew() {
	as := jwkstest.MustNewServer() // stands in for https://auth.example.com
	defer as.Close()

	ctx := context.Background()
	metrics, err := jwks.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		panic(err)
	}
	set, err := jwks.New(ctx, jwks.Config{Issuer: as.Issuer}, jwks.Options{Metrics: metrics, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	defer set.Close()

	wait, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := set.WaitReady(wait); err != nil {
		panic(err)
	}

	parser := jwt.NewParser(jwt.WithValidMethods(jwks.DefaultAlgorithms()), jwt.WithExpirationRequired())
	token := as.MustMint(jwkstest.Claims{"sub": "alice"})
	parsed, err := parser.Parse(token, set.Keyfunc(ctx))
	if err != nil {
		panic(err)
	}
	sub, _ := parsed.Claims.GetSubject()
	fmt.Println("valid:", parsed.Valid, "subject:", sub)

	// A token signed by a key the issuer never published is refused.
	attacker := jwkstest.MustGenerateKey("rsa-1", "RS256")
	_, err = parser.Parse(as.MustMint(nil, jwkstest.WithSigner(attacker)), set.Keyfunc(ctx))
	fmt.Println("forged:", errors.Is(err, jwt.ErrTokenSignatureInvalid))
	// Output:
	// valid: true subject: alice
	// forged: true
}

// Several issuers are held apart in a Group: the caller picks the set by the token's
// iss, and an issuer that is not configured has no keys at all.
func ExampleGroup() {
	a, b := jwkstest.MustNewServer(), jwkstest.MustNewServer()
	defer a.Close()
	defer b.Close()

	ctx := context.Background()
	group, err := jwks.NewGroup(ctx, []jwks.Config{
		{Issuer: a.Issuer, Algorithms: []string{"RS256"}},
		{Issuer: b.Issuer, Algorithms: []string{"ES256"}},
	}, jwks.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	defer group.Close()
	wait, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := group.WaitReady(wait); err != nil {
		panic(err)
	}

	keyfunc := func(t *jwt.Token) (any, error) {
		iss, err := t.Claims.GetIssuer()
		if err != nil {
			return nil, err
		}
		return group.Key(ctx, iss, t)
	}
	_, err = jwt.Parse(a.MustMint(nil), keyfunc)
	fmt.Println("issuer A, RS256:", err == nil)
	_, err = jwt.Parse(b.MustMint(nil), keyfunc)
	fmt.Println("issuer B, RS256 not allowed:", errors.Is(err, jwks.ErrAlgorithm))
	_, err = jwt.Parse(b.MustMint(jwkstest.Claims{"iss": "https://evil.example"}), keyfunc)
	fmt.Println("unknown issuer:", errors.Is(err, jwks.ErrUnknownIssuer))
	// Output:
	// issuer A, RS256: true
	// issuer B, RS256 not allowed: true
	// unknown issuer: true
}

// Configuration mistakes that would turn a check off are refused, each naming its
// field.
func ExampleConfigError() {
	_, err := jwks.New(context.Background(), jwks.Config{
		Issuer:     "http://auth.example.com",
		Algorithms: []string{"HS256"},
	}, jwks.Options{})
	var ce *jwks.ConfigError
	fmt.Println(errors.As(err, &ce))
	fmt.Println(err)
	// Output:
	// true
	// issuer "http://auth.example.com": Issuer: "http://auth.example.com" is plain http to a host that is not loopback; use https (or set InsecureHTTP, never in production)
	// issuer "http://auth.example.com": Algorithms: "HS256" is HMAC: a shared secret cannot come from a published key set
}
