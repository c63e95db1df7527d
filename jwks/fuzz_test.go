package jwks

import (
	"encoding/json"
	"testing"
)

// FuzzParseJWKS: a JWKS document from the network never panics the parser, and every
// key it keeps can verify some algorithm the issuer allows.
func FuzzParseJWKS(f *testing.F) {
	seeds := []string{
		`{"keys":[]}`,
		`{"keys":[{"kty":"oct","k":"AA"}]}`,
		`{"keys":[{"kty":"EC","crv":"P-256","x":"AQ","y":"AQ"}]}`,
		`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","use":"sig","alg":"RS256"}]}`,
		`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`,
		`{"keys":{}}`, `null`, `[]`, `{"keys":[null,1,"a",[]]}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	allowed := algBit("RS256") | algBit("ES256") | algBit("EdDSA")
	f.Fuzz(func(t *testing.T, doc []byte) {
		p, err := parseJWKS(doc, allowed, 10)
		if err != nil {
			return
		}
		if len(p.keys) == 0 || len(p.keys) > 10 {
			t.Fatalf("%d keys kept", len(p.keys))
		}
		for _, k := range p.keys {
			if keyAlgs(k.Key())&allowed == 0 {
				raw, _ := json.Marshal(k.Marshal())
				t.Fatalf("kept a key that verifies nothing allowed: %s", raw)
			}
		}
	})
}
