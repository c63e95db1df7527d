package jwkstest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// Key is a signing key pair of the test authorization server.
type Key struct {
	// KID is the key's kid, in the JWKS and in the header of tokens it signs.
	KID string
	// Alg is the algorithm the key signs with and its JWK announces.
	Alg string
	// Private signs; its Public() is what the JWKS publishes.
	Private crypto.Signer
}

// GenerateKey makes a new key pair for alg: RSA 2048 for RS* and PS*, the matching NIST
// curve for ES256/ES384/ES512, Ed25519 for EdDSA.
func GenerateKey(kid, alg string) (*Key, error) {
	var (
		priv crypto.Signer
		err  error
	)
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ES512":
		priv, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, fmt.Errorf("jwkstest: no key type for alg %q", alg)
	}
	if err != nil {
		return nil, fmt.Errorf("jwkstest: generating a %s key: %w", alg, err)
	}
	return &Key{KID: kid, Alg: alg, Private: priv}, nil
}

// MustGenerateKey is GenerateKey that panics, for tests.
func MustGenerateKey(kid, alg string) *Key {
	k, err := GenerateKey(kid, alg)
	if err != nil {
		panic(err)
	}
	return k
}

// Public returns the public key.
func (k *Key) Public() crypto.PublicKey { return k.Private.Public() }

// JWK returns the public JWK of the key: kty and its parameters, kid, alg and use "sig".
func (k *Key) JWK() json.RawMessage {
	return k.JWKWith(nil)
}

// JWKWith returns the public JWK with members set or, for a nil value, removed: for
// example {"use": "enc"} or {"alg": nil}. It is how tests build keys that a careful
// resource server must refuse.
func (k *Key) JWKWith(members map[string]any) json.RawMessage {
	j, err := jwkset.NewJWKFromKey(k.Public(), jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{
		KID: k.KID, ALG: jwkset.ALG(k.Alg), USE: jwkset.UseSig,
	}})
	if err != nil {
		panic(fmt.Sprintf("jwkstest: marshalling key %q: %v", k.KID, err))
	}
	raw, err := json.Marshal(j.Marshal())
	if err != nil {
		panic(err)
	}
	if len(members) == 0 {
		return raw
	}
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	for name, v := range members {
		if v == nil {
			delete(m, name)
		} else {
			m[name] = v
		}
	}
	raw, _ = json.Marshal(m)
	return raw
}

// Sign signs input with the key under alg, which may differ from k.Alg (to build tokens
// that misuse a key).
func (k *Key) Sign(alg string, input []byte) ([]byte, error) {
	m := jwt.GetSigningMethod(alg)
	if m == nil {
		return nil, fmt.Errorf("jwkstest: unknown alg %q", alg)
	}
	return m.Sign(string(input), k.Private)
}
