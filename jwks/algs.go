package jwks

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"slices"
	"strings"
)

// DefaultAlgorithms returns the algorithm allowlist of an issuer that configures none:
// every asymmetric JWS algorithm golang-jwt implements. It is safe because every key is
// bound to the algorithms its type and curve allow, so a wide list never lets one key be
// used with two families. HMAC and "none" are not in it and cannot be added. Each call
// returns a new slice: the list a Set checks against cannot be changed from outside.
func DefaultAlgorithms() []string { return slices.Clone(defaultAlgorithms) }

var defaultAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// algSet is a set of supported JWS algorithms as a bit mask, so that checking an
// algorithm against a key or an issuer on the request path costs no allocation.
type algSet uint16

const (
	algRS256 algSet = 1 << iota
	algRS384
	algRS512
	algPS256
	algPS384
	algPS512
	algES256
	algES384
	algES512
	algEdDSA

	rsaAlgs = algRS256 | algRS384 | algRS512 | algPS256 | algPS384 | algPS512
)

// algBit returns the bit of a supported algorithm, or 0 for anything else (HMAC, none,
// unregistered or misspelled names: JWS algorithm names are case-sensitive).
func algBit(name string) algSet {
	switch name {
	case "RS256":
		return algRS256
	case "RS384":
		return algRS384
	case "RS512":
		return algRS512
	case "PS256":
		return algPS256
	case "PS384":
		return algPS384
	case "PS512":
		return algPS512
	case "ES256":
		return algES256
	case "ES384":
		return algES384
	case "ES512":
		return algES512
	case "EdDSA":
		return algEdDSA
	}
	return 0
}

// has reports whether every algorithm in o is in s.
func (s algSet) has(o algSet) bool { return o != 0 && s&o == o }

// String lists the set's algorithms in DefaultAlgorithms order, for logs and errors.
func (s algSet) String() string {
	var names []string
	for _, n := range defaultAlgorithms {
		if s.has(algBit(n)) {
			names = append(names, n)
		}
	}
	return strings.Join(names, " ")
}

// keyAlgs returns the algorithms a public key can verify: RSA keys the RS and PS
// families, an EC key only the one ES algorithm of its curve (RFC 7518 §3.4), an Ed25519
// key only EdDSA. Anything else verifies nothing.
func keyAlgs(pub any) algSet {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return rsaAlgs
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return algES256
		case elliptic.P384():
			return algES384
		case elliptic.P521():
			return algES512
		}
	case ed25519.PublicKey:
		return algEdDSA
	}
	return 0
}
