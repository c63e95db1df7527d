package dpoptest_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/tokengate/tokengate/dpop"
	"github.com/tokengate/tokengate/dpop/dpoptest"
	"github.com/tokengate/tokengate/jwks"
)

// RFC 7638 §3.1's example key and thumbprint.
func TestThumbprint(t *testing.T) {
	jwk := map[string]any{
		"kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29",
		"n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
	}
	got, err := dpoptest.Thumbprint(jwk)
	if err != nil || got != "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs" {
		t.Fatalf("Thumbprint = %q, %v", got, err)
	}
	if _, err := dpoptest.Thumbprint(map[string]any{"kty": "oct"}); err == nil {
		t.Error("a symmetric key has a thumbprint")
	}
}

// The proofs a Client makes are what dpop verifies, for every algorithm, and the JKT is
// the verifier's thumbprint of the key; an override makes the proof one that fails.
func TestProofsVerify(t *testing.T) {
	v, err := dpop.New(dpop.Config{ExternalURL: "https://api.example.com"}, dpop.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, alg := range []string{"ES256", "RS256", "EdDSA"} {
		c := dpoptest.MustNewClient(alg)
		r := httptest.NewRequest("POST", "/orders", nil)
		p, err := v.Verify(context.Background(), c.MustProof("POST", "https://api.example.com/orders", "tok", nil, nil), r, "tok")
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		want, _ := jwks.Thumbprint(c.Key.Public())
		if p.JKT != want || c.JKT() != want {
			t.Errorf("%s: JKT %s, client %s, want %s", alg, p.JKT, c.JKT(), want)
		}
		bad := c.MustProof("POST", "https://api.example.com/orders", "tok", dpoptest.Claims{"htm": dpoptest.Absent}, nil)
		if _, err := v.Verify(context.Background(), bad, r, "tok"); !errors.Is(err, dpop.ErrInvalidProof) {
			t.Errorf("%s: a proof without htm: %v", alg, err)
		}
	}
}
