// Package jwkstest runs an OAuth 2.0 authorization server in process, for tests,
// examples and the demo, in the spirit of net/http/httptest.
//
// A Server listens on a loopback port and serves what a resource server reads from a
// real authorization server: OpenID Connect and RFC 8414 discovery documents, a JWKS
// with RSA, EC and Ed25519 keys, a token endpoint for the client_credentials grant, and
// an introspection endpoint (RFC 7662) for the JWTs it mints and the opaque tokens of
// MintOpaque, which Revoke turns inactive.
// Tests mint tokens directly with Mint (any claims, any header, any key, or raw bytes
// with SignRaw for hostile tokens), rotate and revoke keys, and switch on faults: an
// outage, slowness, garbage, oversized bodies, redirects, a lying discovery document.
// It counts the JWKS and discovery requests it gets.
//
// # Usage
//
//	as := jwkstest.MustNewServer()
//	defer as.Close()
//	tok := as.MustMint(jwkstest.Claims{"scope": "orders:read"})
//	as.SetDown(true)  // the authorization server is down
//	as.Rotate()       // a new signing key, published
//
// Never use it outside tests and development: anyone who can reach it gets tokens.
package jwkstest
