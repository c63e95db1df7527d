// Package dpoptest makes DPoP proofs (RFC 9449) for tests, as a client would: a key
// pair, its RFC 7638 thumbprint (what a DPoP-bound token's cnf.jkt holds) and proofs
// for a request, with any claim or header member changed or left out to build the
// proofs a resource server must refuse.
package dpoptest
