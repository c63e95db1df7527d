// Package dpop verifies DPoP proofs (RFC 9449): the JWT a client signs with its own key
// for each request, which makes an access token bound to that key useless to anyone
// who steals the token alone.
//
// A Verifier runs every check of RFC 9449 §4.3 on one proof: one well-formed JWS with
// typ dpop+jwt, an allowed asymmetric alg, a public key in its jwk header (never
// private members) that verifies the signature, htm and htu naming this request's
// method and URI (the scheme and authority from the configured external URL, never from
// a header a client sends), iat within the configured window, ath the hash of the
// access token, a jti not seen before (through a replay.Store), and, when server nonces
// are on, a nonce this server issued. Nonces are stateless: an HMAC of a time slot
// under a shared secret, so that every replica accepts every other's.
//
// The package decides nothing about the access token: the caller compares the proof's
// thumbprint (Proof.JKT) with the token's cnf.jkt (RFC 9449 §6).
package dpop
