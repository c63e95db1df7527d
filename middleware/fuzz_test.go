package middleware_test

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/jwks/jwkstest"
)

// FuzzDecide sends arbitrary tokens through a Gate with real keys: nothing panics, and
// nothing is allowed but the one valid token of the corpus, byte for byte (RS256 has no
// second valid signature, and strict decoding refuses other encodings of the same one).
func FuzzDecide(f *testing.F) {
	e := newEnv(f, nil)
	valid := e.as.MustMint(jwkstest.Claims{"scope": "orders:read"})
	seeds := []string{
		valid,
		valid + ".",
		strings.Replace(valid, ".", "..", 1),
		e.as.MustMint(jwkstest.Claims{"scope": "orders:write"}),
		e.as.MustMint(jwkstest.Claims{"scope": "orders:read"}, jwkstest.WithSigner(jwkstest.MustGenerateKey("rsa-1", "RS256"))),
		jwkstest.Encode([]byte(`{"alg":"none"}`)) + "." + jwkstest.Encode([]byte(`{}`)) + ".",
		"a.b.c", "", "....", strings.Repeat("A", 100),
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		req := httptest.NewRequest("GET", "/orders/1", nil)
		req.Header["Authorization"] = []string{"Bearer " + tok}
		d := e.gate.Decide(req)
		if d.Allowed() && tok != valid {
			t.Fatalf("allowed a token that is not the valid one: %q", tok)
		}
		if !d.Allowed() && d.Err == nil {
			t.Fatal("denial without an error")
		}
	})
}
