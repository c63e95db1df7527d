package dpop_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokengate/tokengate/dpop"
)

func ExampleVerifier_Verify() {
	v, err := dpop.New(dpop.Config{ExternalURL: "https://api.example.com"}, dpop.Options{})
	if err != nil {
		panic(err)
	}

	// The client: its own key, and a proof for one request with its access token.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	enc := base64.RawURLEncoding
	accessToken := "eyJ...the token"
	sum := sha256.Sum256([]byte(accessToken))
	header, _ := json.Marshal(map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": map[string]string{
		"kty": "EC", "crv": "P-256", "x": enc.EncodeToString(key.X.FillBytes(make([]byte, 32))), "y": enc.EncodeToString(key.Y.FillBytes(make([]byte, 32)))}})
	claims, _ := json.Marshal(map[string]any{"jti": "e1j3V_bKic8-LAEB", "htm": "GET", "htu": "https://api.example.com/orders/1",
		"iat": time.Now().Unix(), "ath": enc.EncodeToString(sum[:])})
	input := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
	sig, _ := jwt.SigningMethodES256.Sign(input, key)
	proof := input + "." + enc.EncodeToString(sig)

	r := httptest.NewRequest("GET", "/orders/1", nil)
	p, err := v.Verify(context.Background(), proof, r, accessToken)
	fmt.Println(err == nil, len(p.JKT)) // the token's cnf.jkt must equal p.JKT

	_, err = v.Verify(context.Background(), proof, r, accessToken)
	fmt.Println(errors.Is(err, dpop.ErrReplay))
	// Output:
	// true 43
	// true
}
