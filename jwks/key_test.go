package jwks_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokengate/tokengate/jwks"
	"github.com/tokengate/tokengate/jwks/jwkstest"
)

func TestEveryAlgorithmVerifies(t *testing.T) {
	// Each algorithm of the default allowlist verifies a token signed with a key that
	// fits it: an RSA key without alg does RS* and PS*, each NIST curve its own ES*.
	srv := lightServer(t)
	rsaAny := jwkstest.MustGenerateKey("rsa-any", "RS256")
	srv.AddKey(rsaAny, false)
	srv.SetExtraJWKs(rsaAny.JWKWith(map[string]any{"alg": nil}))
	for _, k := range [][2]string{{"p-384", "ES384"}, {"p-521", "ES512"}} {
		srv.AddKey(jwkstest.MustGenerateKey(k[0], k[1]), true)
	}
	set := newSet(t, srv, nil)
	ready(t, set)
	for alg, kid := range map[string]string{
		"RS256": "rsa-any", "RS384": "rsa-any", "RS512": "rsa-any",
		"PS256": "rsa-any", "PS384": "rsa-any", "PS512": "rsa-any",
		"ES256": "ec-1", "ES384": "p-384", "ES512": "p-521", "EdDSA": "ed-1",
	} {
		if err := verify(context.Background(), set, srv.MustMint(nil, jwkstest.WithKey(kid), jwkstest.WithAlg(alg))); err != nil {
			t.Errorf("%s with key %s: %v", alg, kid, err)
		}
	}
}

func TestKeyRefusesWhatDoesNotFit(t *testing.T) {
	// Set.Key binds the token's alg to the key before any signature check, also for keys
	// whose JWK names no alg (keyfunc only compares a JWK's own alg), and a kid-less
	// token before the first load is 503 material, not 401.
	srv := lightServer(t)
	var extra []json.RawMessage
	for _, k := range []*jwkstest.Key{
		jwkstest.MustGenerateKey("rsa-noalg", "RS256"),
		jwkstest.MustGenerateKey("p384-noalg", "ES384"),
		jwkstest.MustGenerateKey("ed-noalg", "EdDSA"),
	} {
		srv.AddKey(k, false)
		extra = append(extra, k.JWKWith(map[string]any{"alg": nil}))
	}
	srv.SetExtraJWKs(extra...)
	set := newSet(t, srv, nil)
	ready(t, set)
	for _, tc := range []struct{ kid, alg string }{
		{"rsa-noalg", "ES256"}, {"rsa-noalg", "EdDSA"},
		{"p384-noalg", "ES256"}, {"p384-noalg", "ES512"}, {"p384-noalg", "RS256"},
		{"ed-noalg", "ES256"}, {"ed-noalg", "PS256"},
	} {
		tok := &jwt.Token{Method: jwt.GetSigningMethod(tc.alg), Header: map[string]any{"alg": tc.alg, "kid": tc.kid}}
		if key, err := set.Key(context.Background(), tok); !errors.Is(err, jwks.ErrAlgorithm) {
			t.Errorf("%s key without alg, token alg %s: %T %v, want ErrAlgorithm", tc.kid, tc.alg, key, err)
		}
	}
	// A nil context is a background one (an unknown kid still waits and fails cleanly).
	var noCtx context.Context
	tok := &jwt.Token{Method: jwt.SigningMethodRS256, Header: map[string]any{"alg": "RS256", "kid": "unknown"}}
	if _, err := set.Key(noCtx, tok); !errors.Is(err, jwks.ErrUnknownKey) {
		t.Fatalf("nil context: %v", err)
	}

	down := lightServer(t)
	down.SetDown(true)
	notYet := newSet(t, down, nil)
	noKID := &jwt.Token{Method: jwt.SigningMethodRS256, Header: map[string]any{"alg": "RS256"}}
	if _, err := notYet.Key(context.Background(), noKID); !errors.Is(err, jwks.ErrKeysUnavailable) {
		t.Fatalf("kid-less token before the first load: %v, want ErrKeysUnavailable", err)
	}
}

func TestKIDLessTokenRespectsTheKeysAlg(t *testing.T) {
	// A token without kid gets the only key that fits its alg, and a JWK that names its
	// alg fits that one only: the RSA key published as RS256 does not verify a kid-less
	// PS256 token, even one it signed.
	srv := server(t)
	set := newSet(t, srv, nil)
	ready(t, set)
	noKID := jwkstest.WithHeader(jwkstest.Claims{"kid": jwkstest.Absent})
	if err := verify(context.Background(), set, srv.MustMint(nil, noKID)); err != nil {
		t.Fatalf("kid-less RS256 token of the RS256 key: %v", err)
	}
	if err := verify(context.Background(), set, srv.MustMint(nil, noKID, jwkstest.WithAlg("PS256"))); !errors.Is(err, jwks.ErrUnknownKey) {
		t.Fatalf("kid-less PS256 token signed by the key published as RS256: %v, want ErrUnknownKey", err)
	}
}
