// Package jwks holds the signing keys of the authorization servers that a resource
// server trusts: one key set per issuer, fetched from the issuer's JWKS (found by
// discovery, named by a URL, read from a file, or given inline), cached, refreshed in
// the background, and looked up on the request path without a lock or an allocation.
//
// It is built on github.com/MicahParks/jwkset (key parsing and storage) and
// github.com/MicahParks/keyfunc/v3 (the jwt.Keyfunc over that storage), with its own
// fetch and refresh policy, because the libraries' defaults are unsafe for a resource
// server; see "Deliberate differences" below.
//
// # Using it
//
//  1. Describe each trusted issuer with a Config. Only Issuer is required: keys are found
//     by OpenID Connect discovery, then RFC 8414. Every zero field means its default.
//  2. Build the metrics once with NewMetrics(registerer) and pass them in Options.
//  3. Start the sets with NewGroup (several issuers) or New (one). They load in the
//     background; Ready and WaitReady tell when the first load succeeded.
//  4. In a jwt.Keyfunc, pick the set by the token's iss (Group.Key) and let it return
//     the key: Set.Key(requestContext, token).
//  5. Close the sets (or cancel their context) to stop their goroutines.
//
// # What a look-up checks
//
// The token's alg must be in the issuer's allowlist and fit the key: RSA keys verify
// RS* and PS*, an EC key only the ES algorithm of its curve, an Ed25519 key only EdDSA,
// and a key that names its own alg only that one. A kid must be a string of 1 to 256
// printable bytes. A token without a kid is verified only when exactly one key of the
// issuer's set fits its alg. Keys of one issuer never verify another's tokens.
//
// # Fetching and refreshing
//
//   - Issuer, discovery and JWKS URLs must be https, except on a loopback host or when
//     an issuer sets InsecureHTTP (with a warning). A discovery document is used only
//     when its issuer equals the configured one byte for byte.
//   - Each issuer has its own HTTP client: timeouts on every phase, TLS verification
//     always (plus an optional private CA), redirects only within the first origin,
//     response bodies capped at 1 MiB and documents at 100 keys.
//   - An issuer whose metadata is not public (a Kubernetes API server's
//     /openid/v1/jwks) is fetched with the bearer token of BearerTokenFile, read at
//     every fetch so that a rotated token is used at once, and sent only over https (or
//     to loopback) to the origins of JWKSURI and IssuerCheckURL (of Issuer, whose
//     discovery it reads, without JWKSURI), never across
//     a redirect to another origin nor to a jwks_uri that discovery names elsewhere. A
//     file that cannot be read fails the fetch; no request goes out without its token.
//     With JWKSURI, which skips discovery, IssuerCheckURL names the discovery document
//     to compare Issuer with once, so that a wrong Issuer is logged, not only refused.
//   - Keys are parsed one at a time. Symmetric (oct) keys, encryption keys, keys whose
//     key_ops lack verify, published private keys, RSA keys under 2048 bits, keys whose
//     alg does not fit their type, unsupported types, bad kids and duplicate kids are
//     skipped with a log line and a gauge (tokengate_jwks_skipped_keys); they never
//     break the set. A document with no usable key is a failed fetch.
//   - Scheduled refreshes follow Cache-Control max-age within [Refresh.Min,
//     Refresh.Max], minus up to 10% of jitter, and send If-None-Match. A failed fetch
//     keeps the last good keys and retries with a backoff from 1 s up to Refresh.Min.
//   - A kid that is not in the set triggers at most one fetch in flight per issuer,
//     shared by every request that needs it, rate-limited to one per
//     Refresh.UnknownKIDEvery; a request waits for it no longer than
//     Refresh.UnknownKIDWait (2 s) or its own context. Kids still unknown afterwards are
//     remembered for a while, so a flood of them costs nothing.
//
// # Deliberate differences from the libraries' defaults
//
// keyfunc's NewDefault waits up to a minute for its unknown-kid limiter, fetches with
// http.DefaultClient, reads responses of any size, merges the keys of every URL into one
// set and hands every key to a token without kid; jwkset fails a whole refresh for one
// bad key. None of that is used: this package fills its own jwkset.Storage and only
// borrows keyfunc's look-up.
package jwks
