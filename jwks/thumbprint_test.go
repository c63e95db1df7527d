package jwks_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"math/big"
	"testing"

	"github.com/MicahParks/jwkset"

	"github.com/tokengate/tokengate/jwks"
)

// The example of RFC 7638 §3.1, and keys of every supported type checked against the
// thumbprint of their JWK as jwkset writes it.
func TestThumbprint(t *testing.T) {
	n, _ := base64.RawURLEncoding.DecodeString("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
	rfc := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: 65537}
	if got, err := jwks.Thumbprint(rfc); err != nil || got != "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs" {
		t.Fatalf("RFC 7638 §3.1: %q %v", got, err)
	}
	// Other key types against their JWK as jwkset (an independent encoder) writes it.
	ec, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	ed, _, _ := ed25519.GenerateKey(rand.Reader)
	for _, pub := range []any{&ec.PublicKey, ed} {
		j, err := jwkset.NewJWKFromKey(pub, jwkset.JWKOptions{})
		if err != nil {
			t.Fatal(err)
		}
		m := j.Marshal()
		canonical := `{"crv":"` + string(m.CRV) + `","kty":"` + string(m.KTY) + `","x":"` + m.X + `"}`
		if m.KTY == jwkset.KtyEC {
			canonical = `{"crv":"` + string(m.CRV) + `","kty":"EC","x":"` + m.X + `","y":"` + m.Y + `"}`
		}
		sum := sha256.Sum256([]byte(canonical))
		want := base64.RawURLEncoding.EncodeToString(sum[:])
		if got, err := jwks.Thumbprint(pub); err != nil || got != want {
			t.Errorf("%T: %q %v, want %q", pub, got, err, want)
		}
	}
	if _, err := jwks.Thumbprint("not a key"); err == nil {
		t.Fatal("an unsupported key has a thumbprint")
	}
}
