package jwks

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
)

// Thumbprint is the RFC 7638 JWK thumbprint of a public key: the base64url SHA-256 of
// its required JWK members in lexicographic order, without white space. A key's
// thumbprint is the same wherever the key is: a kid derived from it names the key
// itself, so a restarted issuer that keeps its key keeps its kid, and one that makes a
// new key makes a new kid. (RFC 9449's cnf.jkt is the same value.)
func Thumbprint(pub crypto.PublicKey) (string, error) {
	b64 := base64.RawURLEncoding.EncodeToString
	var canonical string
	switch k := pub.(type) {
	case *rsa.PublicKey:
		// RFC 7518 §6.3.1: n and e unsigned big-endian, without leading zeros.
		canonical = fmt.Sprintf(`{"e":"%s","kty":"RSA","n":"%s"}`, b64(big.NewInt(int64(k.E)).Bytes()), b64(k.N.Bytes()))
	case *ecdsa.PublicKey:
		point, err := k.Bytes()
		if err != nil {
			return "", fmt.Errorf("jwks: thumbprint of an EC key: %w", err)
		}
		// The uncompressed point is 0x04 || x || y, each the curve's full length, as
		// RFC 7518 §6.2.1.2 wants them.
		n := (len(point) - 1) / 2
		canonical = fmt.Sprintf(`{"crv":"%s","kty":"EC","x":"%s","y":"%s"}`, k.Curve.Params().Name, b64(point[1:1+n]), b64(point[1+n:]))
	case ed25519.PublicKey:
		canonical = fmt.Sprintf(`{"crv":"Ed25519","kty":"OKP","x":"%s"}`, b64(k))
	default:
		return "", errors.New("jwks: thumbprint of an unsupported key type")
	}
	sum := sha256.Sum256([]byte(canonical))
	return b64(sum[:]), nil
}
