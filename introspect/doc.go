// Package introspect asks an authorization server whether a token is active (OAuth 2.0
// Token Introspection, RFC 7662), for tokens a resource server cannot verify itself
// (opaque tokens) and for JWTs whose revocation must be seen at once.
//
// A Client posts the token (with token_type_hint) to one endpoint, authenticated with
// client_secret_basic, under a strict timeout and a cap on the answer's size, and
// follows no redirect. It caches answers under the token's SHA-256, never the token:
// an active answer for at most CacheTTL and never past its exp, an inactive one for
// NegativeTTL, an error never. The cache is bounded, and concurrent requests for one
// token share one call.
//
// The package decides nothing about the token beyond the shape of the answer: the
// caller checks an active Result's exp, aud, iss, scope and client_id as it checks a
// JWT's claims. Its errors have two classes, and they must never be confused:
// ErrInactive (refuse the token: 401) and ErrUnavailable (the endpoint gave no usable
// answer: 503, never 401, never allowed).
//
// # Usage
//
//	endpoint, err := introspect.Discover(ctx, nil, "https://auth.example.com")
//	if err != nil { ... } // or configure the endpoint
//	c, err := introspect.New(introspect.Config{
//		Endpoint:     endpoint,
//		ClientID:     "orders-api",
//		ClientSecret: secret, // read from a file
//	}, introspect.Options{})
//	if err != nil { ... } // every configuration problem, each a *ConfigError
//	defer c.Close()
//
//	res, err := c.Introspect(r.Context(), token)
//	switch {
//	case errors.Is(err, introspect.ErrInactive): // 401 invalid_token
//	case err != nil: // 503 introspection_unavailable
//	default: // check res.ExpiresAt, res.Audience, res.Scopes()...
//	}
//
// # Revocation and cost
//
// A revoked token stays allowed until its cached answer expires: CacheTTL at most.
// Every other request with a known token costs a SHA-256 and a map look-up; a token
// seen for the first time (or once per CacheTTL) costs a round trip to the
// authorization server, which the request waits for (up to Timeout).
//
// # Goroutines
//
// Each call to the endpoint runs on a goroutine of the Client, so that every caller
// waiting for it can give up on its own context while the others still get the
// answer. It ends with the call, within Timeout; Close cancels the calls in flight and
// waits for them.
package introspect
