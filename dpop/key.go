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

	"github.com/tokengate/tokengate/internal/smallorder"
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
		if smallorder.Ed25519(x) {
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
