package sidecar_test

import (
	"fmt"

	"github.com/tokengate/tokengate/sidecar"
)

// Load reports every problem of a configuration file at once, in the order of its
// lines, each naming the key.
func ExampleLoad() {
	file := `upstream: localhost:8080
issuers:
  - issuer: https://auth.example.com
    audience: [https://orders.example.com]
routes:
  - match: "GET /orders/{id}"
    scopes: [orders:read]
`
	_, err := sidecar.Load("tokengate.yaml", []byte(file), sidecar.ForProxy, sidecar.Overrides{})
	fmt.Println(err)
	// Output:
	// tokengate.yaml:1: upstream: "localhost:8080" is not an http(s) URL with a host and nothing else (no credentials, query or fragment)
	// tokengate.yaml:3: issuers[0].audiences: is empty: a token for any API would be accepted; list this API's identifiers
	// tokengate.yaml:4: issuers[0].audience: unknown key (known here: issuer, jwksURI, jwksFile, audiences, algorithms, tokenType, scopeClaim, audienceClaims, refresh, caFile, insecureHTTP, dpop, introspection)
}
