package dpop_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var b64 = base64.RawURLEncoding

// client is a DPoP client: a key pair and what it puts in a proof's jwk header.
type client struct {
	alg  string
	priv crypto.Signer
	jwk  map[string]any
}

var (
	clientsOnce sync.Once
	clients     map[string]*client
)

// clientFor returns a client for alg, its key made once per test binary.
func clientFor(t testing.TB, alg string) *client {
	t.Helper()
	clientsOnce.Do(func() {
		clients = map[string]*client{}
		rk, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		clients["RS256"] = &client{alg: "RS256", priv: rk, jwk: map[string]any{
			"kty": "RSA", "n": b64.EncodeToString(rk.N.Bytes()), "e": b64.EncodeToString(big.NewInt(int64(rk.E)).Bytes())}}
		clients["PS256"] = &client{alg: "PS256", priv: rk, jwk: clients["RS256"].jwk}
		for alg, curve := range map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()} {
			ek, err := ecdsa.GenerateKey(curve, rand.Reader)
			if err != nil {
				panic(err)
			}
			size := (curve.Params().BitSize + 7) / 8
			clients[alg] = &client{alg: alg, priv: ek, jwk: map[string]any{
				"kty": "EC", "crv": curve.Params().Name,
				"x": b64.EncodeToString(ek.X.FillBytes(make([]byte, size))), "y": b64.EncodeToString(ek.Y.FillBytes(make([]byte, size)))}}
		}
		_, ed, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		clients["EdDSA"] = &client{alg: "EdDSA", priv: ed, jwk: map[string]any{
			"kty": "OKP", "crv": "Ed25519", "x": b64.EncodeToString(ed.Public().(ed25519.PublicKey))}}
	})
	c, ok := clients[alg]
	if !ok {
		t.Fatalf("no client for %s", alg)
	}
	return c
}

// proof signs a proof with header and claims merged over the defaults: typ dpop+jwt,
// the client's alg and jwk; a fresh jti, htm, htu and iat now.
func (c *client) proof(t testing.TB, header, claims map[string]any) string {
	t.Helper()
	h := map[string]any{"typ": "dpop+jwt", "alg": c.alg, "jwk": c.jwk}
	for k, v := range header {
		if v == nil {
			delete(h, k)
		} else {
			h[k] = v
		}
	}
	cl := map[string]any{"jti": rand.Text(), "htm": "GET", "htu": "https://api.example.com/orders/1", "iat": time.Now().Unix()}
	for k, v := range claims {
		if v == nil {
			delete(cl, k)
		} else {
			cl[k] = v
		}
	}
	return c.sign(t, h, cl)
}

func (c *client) sign(t testing.TB, header, claims any) string {
	t.Helper()
	hb, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	input := b64.EncodeToString(hb) + "." + b64.EncodeToString(cb)
	sig, err := jwt.GetSigningMethod(c.alg).Sign(input, c.priv)
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + b64.EncodeToString(sig)
}

func ath(token string) string {
	sum := sha256.Sum256([]byte(token))
	return b64.EncodeToString(sum[:])
}

// tamper changes one character of a proof's segment i.
func tamper(proof string, i int) string {
	parts := strings.Split(proof, ".")
	s := []byte(parts[i])
	if s[len(s)/2] == 'A' {
		s[len(s)/2] = 'B'
	} else {
		s[len(s)/2] = 'A'
	}
	parts[i] = string(s)
	return strings.Join(parts, ".")
}
