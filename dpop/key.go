package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
)

// privateMembers are the JWK members that hold private or symmetric key material
// (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2). A proof's jwk with any of them is
// refused: the client has published its private key, or is probing for a verifier that
// would use a symmetric one.
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// minRSABits is the smallest RSA modulus accepted, as for issuers' keys.
const minRSABits = 2048

// publicKey reads the jwk header of a proof and returns the key, checked against alg:
// RSA for RS*/PS*, the curve of ES256/384/512, Ed25519 for EdDSA.
func publicKey(raw json.RawMessage, alg string) (crypto.PublicKey, error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil || members == nil {
		return nil, errors.New("the jwk header is not a JSON object")
	}
	for _, m := range privateMembers {
		if _, ok := members[m]; ok {
			return nil, fmt.Errorf("the jwk header holds private key material (%q)", m)
		}
	}
	str := func(name string) string {
		var s string
		if v, ok := members[name]; ok {
			_ = json.Unmarshal(v, &s)
		}
		return s
	}
	bytes := func(name string) ([]byte, error) {
		b, err := base64.RawURLEncoding.DecodeString(str(name))
		if err != nil || len(b) == 0 {
			return nil, fmt.Errorf("the jwk's %q is not base64url", name)
		}
		return b, nil
	}
	kty, crv := str("kty"), str("crv")
	switch {
	case kty == "RSA" && (alg[:2] == "RS" || alg[:2] == "PS"):
		n, err := bytes("n")
		if err != nil {
			return nil, err
		}
		e, err := bytes("e")
		if err != nil {
			return nil, err
		}
		if len(e) > 4 || n[0] == 0 || e[0] == 0 {
			return nil, errors.New("the jwk's RSA modulus or exponent is not minimal or too large")
		}
		exp := int(new(big.Int).SetBytes(e).Int64())
		key := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: exp}
		if key.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("the jwk's RSA key has %d bits, fewer than %d", key.N.BitLen(), minRSABits)
		}
		if exp < 3 || exp%2 == 0 {
			return nil, errors.New("the jwk's RSA exponent is not an odd number above 2")
		}
		return key, nil
	case kty == "EC" && curveOf(alg) != nil && curveOf(alg).Params().Name == crv:
		curve := curveOf(alg)
		size := (curve.Params().BitSize + 7) / 8
		x, err := bytes("x")
		if err != nil {
			return nil, err
		}
		y, err := bytes("y")
		if err != nil {
			return nil, err
		}
		if len(x) != size || len(y) != size {
			return nil, fmt.Errorf("the jwk's coordinates are not %d bytes each", size)
		}
		key, err := ecdsa.ParseUncompressedPublicKey(curve, append(append([]byte{4}, x...), y...))
		if err != nil {
			return nil, fmt.Errorf("the jwk is not a point of %s", crv)
		}
		return key, nil
	case kty == "OKP" && crv == "Ed25519" && alg == "EdDSA":
		x, err := bytes("x")
		if err != nil {
			return nil, err
		}
		if len(x) != ed25519.PublicKeySize {
			return nil, errors.New("the jwk's Ed25519 key is not 32 bytes")
		}
		if smallOrder(x) {
			return nil, errors.New("the jwk's Ed25519 key is a point of small order, for which a signature can be made without a private key")
		}
		return ed25519.PublicKey(x), nil
	}
	return nil, fmt.Errorf("a %q %q key cannot verify %s", kty, crv, alg)
}

// curveOf is the curve an ES algorithm signs with, or nil.
func curveOf(alg string) elliptic.Curve {
	switch alg {
	case "ES256":
		return elliptic.P256()
	case "ES384":
		return elliptic.P384()
	case "ES512":
		return elliptic.P521()
	}
	return nil
}

// smallOrderPoints are the encodings of the Ed25519 points of small order, with the
// sign bit cleared (libsodium's blocklist, ge25519_has_small_order). crypto/ed25519
// accepts, for such a key, a signature anyone can make: R the neutral point and S
// zero verifies for every message (found by FuzzProof).
var smallOrderPoints = [7][32]byte{
	{},
	{1},
	{0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05},
	{0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a},
	{0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
	{0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
	{0xee, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
}

// smallOrder reports whether the Ed25519 public key x is a point of small order, in
// any of its encodings (the sign bit aside).
func smallOrder(x []byte) bool {
	var k [32]byte
	copy(k[:], x)
	k[31] &= 0x7f
	for _, p := range smallOrderPoints {
		if k == p {
			return true
		}
	}
	return false
}
